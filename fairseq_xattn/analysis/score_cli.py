"""``xattn score``: WER / BLEU / chrF / COMET of hypotheses against references.

Inputs (one of):

* ``--hyp FILE --ref FILE [--src FILE]``: plain text, one sentence per line;
* ``--generate-output FILE``: a fairseq-generate log (``D-<i>`` detokenised hypotheses and
  ``T-<i>`` references, joined by sample index);
* ``--store DIR``: an attention store (record meta ``text`` and ``reference``, hypothesis rank 0).

Example::

    xattn score --generate-output results/generate-test.txt --metrics wer bleu chrf
"""
from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional, Tuple

from .metrics import HIGHER_IS_BETTER, MetricError, TEXT_NORMALISERS, score, scorer_names


def add_arguments(parser) -> None:
    src = parser.add_argument_group("input (one of)")
    src.add_argument("--hyp", help="hypotheses, one per line")
    src.add_argument("--ref", help="references, one per line (with --hyp)")
    src.add_argument("--src", help="source sentences, one per line (COMET only)")
    src.add_argument("--generate-output", help="fairseq-generate output (D-/T- lines)")
    src.add_argument("--store", help="attention store (meta 'text' and 'reference')")
    parser.add_argument("--metrics", nargs="+", default=["wer"], choices=scorer_names(),
                        help="metrics to compute (default: %(default)s)")
    parser.add_argument("--normaliser", default="whisper_english", choices=sorted(TEXT_NORMALISERS),
                        help="text normaliser applied before WER (default: %(default)s; for other languages "
                             "use whisper_basic or basic)")
    parser.add_argument("--comet-model", default=None,
                        help="local COMET checkpoint (.ckpt) or model directory; nothing is downloaded")
    parser.add_argument("--comet-batch-size", type=int, default=8)
    parser.add_argument("--json", default=None, help="write the scores as JSON")


def read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def read_generate_output(path: str) -> Tuple[List[str], List[str]]:
    """Hypotheses (``D-``) and references (``T-``) of a fairseq-generate log, ordered by sample index."""
    hyps: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            tag, _, rest = line.rstrip("\n").partition("\t")
            if tag[:2] not in ("D-", "T-") or not tag[2:].isdigit():
                continue
            idx = int(tag[2:])
            if tag.startswith("D-"):
                # D-<i> \t score \t text ; keep the best (first) hypothesis only
                parts = rest.split("\t", 1)
                if len(parts) != 2:
                    raise MetricError(f"{path}:{n}: a D- line needs a score and a text, got {line.strip()!r}")
                hyps.setdefault(idx, parts[1])
            else:
                refs[idx] = rest
    if not hyps:
        raise MetricError(f"{path}: no D-<i> hypothesis line (is it a fairseq-generate log?)")
    missing = sorted(set(hyps) ^ set(refs))
    if missing:
        raise MetricError(f"{path}: samples {missing[:10]} have a hypothesis or a reference but not both")
    order = sorted(hyps)
    return [hyps[i] for i in order], [refs[i] for i in order]


def read_store(path: str) -> Tuple[List[str], List[str]]:
    from ..stores import StoreReader

    reader = StoreReader(path)
    hyps, refs = [], []
    for utt_id in reader.ids():
        meta = reader.row_meta(utt_id)
        if "text" not in meta or "reference" not in meta:
            raise MetricError(f"{path}: record {utt_id!r} has no 'text'/'reference' meta")
        hyps.append(meta["text"])
        refs.append(meta["reference"])
    return hyps, refs


def load_inputs(args) -> Tuple[List[str], List[str], Optional[List[str]]]:
    given = [x for x in ("hyp", "generate_output", "store") if getattr(args, x)]
    if len(given) != 1:
        raise MetricError("give exactly one input: --hyp/--ref, --generate-output or --store")
    srcs = read_lines(args.src) if args.src else None
    if args.hyp:
        if not args.ref:
            raise MetricError("--hyp needs --ref")
        hyps, refs = read_lines(args.hyp), read_lines(args.ref)
        if len(hyps) != len(refs):
            raise MetricError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
    elif args.generate_output:
        hyps, refs = read_generate_output(args.generate_output)
    else:
        hyps, refs = read_store(args.store)
    if srcs is not None and len(srcs) != len(hyps):
        raise MetricError(f"{args.src} has {len(srcs)} lines for {len(hyps)} hypotheses")
    return hyps, refs, srcs


def main(args) -> int:
    try:
        hyps, refs, srcs = load_inputs(args)
        results = {}
        for name in args.metrics:
            results[name] = score(name, hyps, refs, srcs=srcs, normaliser=args.normaliser,
                                  comet_model=args.comet_model, batch_size=args.comet_batch_size)
    except (MetricError, OSError) as e:
        sys.stderr.write(f"xattn score: error: {e}\n")
        return 2
    sys.stdout.write("| metric | score | better |\n|---|---|---|\n")
    for name, value in results.items():
        sys.stdout.write(f"| {name} | {value:.2f} | {'higher' if HIGHER_IS_BETTER[name] else 'lower'} |\n")
    sys.stdout.write(f"\n{len(hyps)} sentences; WER normaliser: {args.normaliser}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": len(hyps), "normaliser": args.normaliser, "scores": results}, f, indent=1)
    return 0
