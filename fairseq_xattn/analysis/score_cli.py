"""``xattn score``: WER / BLEU / chrF / COMET of hypotheses against references.

Inputs (one of):

* ``--hyp FILE --ref FILE [--src FILE]``: plain text, one sentence per line, the three files
  parallel (line n of each is the same sentence);
* ``--generate-output FILE``: a fairseq-generate log (``D-<i>`` detokenised hypotheses and
  ``T-<i>`` references, joined by the sample index ``i``, the dataset index of the utterance);
* ``--store DIR``: an attention store (record meta ``text`` and ``reference``, hypothesis rank 0,
  keyed by utterance id).

Sources (COMET) are joined to the hypotheses by utterance id or dataset index, never by the order
in which the hypotheses were written: fairseq-generate and the recording write them in batch order
(sorted by length), not in manifest order.

* ``--src-manifest TSV [TSV ...]``: manifest(s) with ``id`` and ``src_text`` columns (the prepared
  ``<split>.tsv``, or the raw manifest given to ``xattn prep``).  With ``--store``: joined by
  utterance id.  With ``--generate-output``: sample index i is row i of the manifests concatenated
  in the order given (fairseq's ``ConcatDataset`` for a comma-joined ``--gen-subset``).
* ``--src FILE``: sources one per line in manifest order.  With ``--hyp``: parallel to it.  With
  ``--generate-output``: line i + 1 is sample index i.  With ``--store`` it is refused (records
  carry ids, a line number would be a guess): use ``--src-manifest``.

Example::

    xattn score --generate-output results/generate-test.txt --metrics wer bleu chrf
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from ..files import check_input_file, check_output
from .metrics import HIGHER_IS_BETTER, MetricError, TEXT_NORMALISERS, score, scorer_names
from .options import positive_int


def add_arguments(parser) -> None:
    src = parser.add_argument_group("input (one of)")
    src.add_argument("--hyp", help="hypotheses, one per line")
    src.add_argument("--ref", help="references, one per line (with --hyp)")
    src.add_argument("--generate-output", help="fairseq-generate output (D-/T- lines, joined by sample index)")
    src.add_argument("--store", help="attention store (meta 'text' and 'reference', keyed by utterance id)")
    sources = parser.add_argument_group("sources (COMET only)")
    sources.add_argument("--src-manifest", nargs="+", default=None, metavar="TSV",
                         help="manifest(s) with columns id and src_text (e.g. DATA/test.tsv): joined by utterance "
                              "id (--store) or by dataset index = row of the manifests in the order given "
                              "(--generate-output)")
    sources.add_argument("--src", help="sources, one per line in manifest order: parallel to --hyp, or line i+1 = "
                                       "sample index i of --generate-output (not with --store)")
    parser.add_argument("--metrics", nargs="+", default=["wer"], choices=scorer_names(),
                        help="metrics to compute (default: %(default)s)")
    parser.add_argument("--normaliser", default="whisper_english", choices=sorted(TEXT_NORMALISERS),
                        help="text normaliser applied before WER (default: %(default)s; for other languages "
                             "use whisper_basic or basic)")
    parser.add_argument("--comet-model", default=None,
                        help="local COMET checkpoint (.ckpt) or model directory; nothing is downloaded")
    parser.add_argument("--comet-batch-size", type=positive_int, default=8)
    parser.add_argument("--cpu", action="store_true", help="run COMET on the CPU even when a GPU is available")
    parser.add_argument("--json", default=None, help="write the scores as JSON")


@dataclass
class Scored:
    """What is scored: hypotheses, references and the key each came with (utterance id or sample index)."""

    hyps: List[str]
    refs: List[str]
    keys: List[object]
    key_kind: str  # "line", "index" or "id"
    srcs: Optional[List[str]] = None


def read_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


#: fairseq-generate prints a sample's lines together: S- and T- once, then H-/D-/P-[/A-] per hypothesis
#: (several with --nbest); any other "<letter>-<i>" tag belongs to the same sample block.
_ONCE_PER_SAMPLE = ("S", "T")
_CONCATENATED = "several fairseq-generate outputs concatenated? Score each run's output on its own"


def read_generate_output(path: str) -> Scored:
    """Hypotheses (``D-``) and references (``T-``) of a fairseq-generate log, ordered by sample index.

    With ``--nbest`` a sample has several ``D-`` lines, one after the other in its block: the first
    (best) is kept.  A sample index that comes back after other samples' lines (a second block, a second
    ``S-``/``T-`` line) means several runs' outputs in one file: refused, naming the file, the line and the
    index, since pairing one run's hypotheses with another's references gives a meaningless score.
    """
    hyps: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    first_line: Dict[tuple, int] = {}  # (tag letter, index) -> line where it was first seen
    block_start: Dict[int, int] = {}  # index -> first line of its block
    current = None  # sample index of the block being read
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            tag, _, rest = line.rstrip("\n").partition("\t")
            letter, dash, number = tag.partition("-")
            if not dash or len(letter) != 1 or not letter.isupper() or not number.isdigit():
                continue
            idx = int(number)
            if idx != current:
                if idx in block_start:
                    raise MetricError(f"{path}, line {n}: sample id {idx} appears again (its lines began at line "
                                      f"{block_start[idx]}, then other samples followed): {_CONCATENATED}")
                block_start[idx], current = n, idx
            if letter in _ONCE_PER_SAMPLE and (letter, idx) in first_line:
                m = first_line[(letter, idx)]
                same = letter != "T" or refs.get(idx) == rest
                raise MetricError(f"{path}, line {n}: a second {tag} line for sample id {idx} (the first is at line "
                                  f"{m}{'' if same else ' and says otherwise'}): {_CONCATENATED}")
            first_line.setdefault((letter, idx), n)
            if letter == "D":
                # D-<i> \t score \t text ; keep the best (first) hypothesis only
                parts = rest.split("\t", 1)
                if len(parts) != 2:
                    raise MetricError(f"{path}, line {n}: a D- line needs a score and a text, got {line.strip()!r}")
                hyps.setdefault(idx, parts[1])
            elif letter == "T":
                refs[idx] = rest
    if not hyps:
        raise MetricError(f"{path}: no D-<i> hypothesis line (is it a fairseq-generate log?)")
    missing = sorted(set(hyps) ^ set(refs))
    if missing:
        raise MetricError(f"{path}: samples {missing[:10]} have a hypothesis or a reference but not both")
    order = sorted(hyps)
    return Scored([hyps[i] for i in order], [refs[i] for i in order], list(order), "index")


def read_store(path: str) -> Scored:
    from ..stores import KIND_CROSS_ATTENTION, open_store

    reader = open_store(path, KIND_CROSS_ATTENTION, flag="--store")
    hyps, refs = [], []
    ids = reader.ids()
    for utt_id in ids:
        meta = reader.row_meta(utt_id)
        if "text" not in meta or "reference" not in meta:
            raise MetricError(f"{path}: record {utt_id!r} has no 'text'/'reference' meta")
        if meta["reference"] is None:
            raise MetricError(f"{path}: record {utt_id!r} has no reference (the split had no target text)")
        hyps.append(meta["text"])
        refs.append(meta["reference"])
    return Scored(hyps, refs, list(ids), "id")


def read_source_manifests(paths: Sequence[str]) -> List[Dict[str, str]]:
    """Rows (``id``, ``src_text``) of the manifests, concatenated in the order given."""
    from ..data.manifest import ManifestError, read_tsv

    rows: List[Dict[str, str]] = []
    for path in paths:
        try:
            m = read_tsv(path, ("id", "src_text"))
        except ManifestError as e:
            raise MetricError(str(e)) from None
        rows += [{"id": r["id"], "src_text": r["src_text"], "where": m.where(i)} for i, r in enumerate(m.rows)]
    return rows


def join_sources(scored: Scored, src_lines: Optional[List[str]] = None,
                 manifest_rows: Optional[List[Dict[str, str]]] = None, src_name: str = "--src",
                 manifest_name: str = "--src-manifest") -> List[str]:
    """The source sentence of every scored hypothesis, by its key; refuses any pairing it cannot prove.

    * key ``line`` (``--hyp``): ``src_lines`` parallel to the hypotheses; manifests are refused.
    * key ``index`` (fairseq-generate sample index = dataset index): line ``i`` of ``src_lines``, or
      row ``i`` of ``manifest_rows``.
    * key ``id`` (store records): the manifest row with that id; ``src_lines`` are refused.
    """
    if (src_lines is None) == (manifest_rows is None):
        raise MetricError(f"give the sources once: {src_name} or {manifest_name}")
    n = len(scored.hyps)
    if scored.key_kind == "line":
        if manifest_rows is not None:
            raise MetricError(f"{manifest_name} needs utterance ids or sample indices, and --hyp has neither: give "
                              f"the sources as {src_name}, a file parallel to --hyp")
        if len(src_lines) != n:
            raise MetricError(f"{src_name} has {len(src_lines)} lines for {n} hypotheses")
        return list(src_lines)
    if scored.key_kind == "index":
        table = src_lines if src_lines is not None else [r["src_text"] for r in manifest_rows]
        name = src_name if src_lines is not None else manifest_name
        beyond = [i for i in scored.keys if not 0 <= int(i) < len(table)]
        if beyond:
            raise MetricError(f"sample indices {beyond[:10]} of the fairseq-generate output are beyond the "
                              f"{len(table)} sources of {name} (sample i is source line/row i+1 in manifest "
                              "order: is it the manifest of the --gen-subset that was decoded?)")
        return [table[int(i)] for i in scored.keys]
    if scored.key_kind == "id":
        if src_lines is not None:
            raise MetricError(f"{src_name} pairs sources by line, but store records are keyed by utterance id and "
                              "written in batch (length) order: give the manifest with ids instead, "
                              f"{manifest_name} DATA/<split>.tsv")
        by_id = {r["id"]: r["src_text"] for r in manifest_rows}
        missing = [u for u in scored.keys if u not in by_id]
        if missing:
            raise MetricError(f"{len(missing)} record id(s) are not in {manifest_name}: {missing[:5]}")
        return [by_id[u] for u in scored.keys]
    raise ValueError(f"unknown key kind {scored.key_kind!r}")


def load_inputs(args) -> Scored:
    given = [x for x in ("hyp", "generate_output", "store") if getattr(args, x)]
    if len(given) != 1:
        raise MetricError("give exactly one input: --hyp/--ref, --generate-output or --store")
    for flag in ("--hyp", "--ref", "--generate-output", "--src"):
        path = getattr(args, flag[2:].replace("-", "_"), None)
        if path:
            check_input_file(path, flag)
    if args.hyp:
        if not args.ref:
            raise MetricError("--hyp needs --ref")
        hyps, refs = read_lines(args.hyp), read_lines(args.ref)
        if len(hyps) != len(refs):
            raise MetricError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
        scored = Scored(hyps, refs, list(range(len(hyps))), "line")
    elif args.generate_output:
        scored = read_generate_output(args.generate_output)
    else:
        scored = read_store(args.store)
    src_manifest = getattr(args, "src_manifest", None)
    if args.src or src_manifest:
        scored.srcs = join_sources(
            scored, src_lines=read_lines(args.src) if args.src else None,
            manifest_rows=read_source_manifests(src_manifest) if src_manifest else None,
            src_name=f"--src {args.src}" if args.src else "--src",
            manifest_name=f"--src-manifest {' '.join(src_manifest)}" if src_manifest else "--src-manifest")
    return scored


def format_score(name: str, value: float) -> str:
    """COMET is on its 0..1 scale (the paper's 0.854): four decimals; the others are 0..100: two."""
    return f"{value:.4f}" if name == "comet" else f"{value:.2f}"


def main(args) -> int:
    if args.json:  # before scoring (COMET takes minutes): an unwritable path fails now
        check_output(args.json, "--json", {"--store": args.store})
    try:
        scored = load_inputs(args)
        results = {}
        for name in args.metrics:
            if name == "comet" and scored.srcs is None:
                raise MetricError("COMET needs the source sentences: --src-manifest DATA/<split>.tsv "
                                  "(--store, --generate-output) or --src FILE (--hyp, --generate-output)")
            results[name] = score(name, scored.hyps, scored.refs, srcs=scored.srcs, normaliser=args.normaliser,
                                  comet_model=args.comet_model, batch_size=args.comet_batch_size,
                                  cpu=getattr(args, "cpu", False))
    except (MetricError, OSError) as e:
        sys.stderr.write(f"xattn score: error: {e}\n")
        return 2
    sys.stdout.write("| metric | score | better |\n|---|---|---|\n")
    for name, value in results.items():
        sys.stdout.write(f"| {name} | {format_score(name, value)} | "
                         f"{'higher' if HIGHER_IS_BETTER[name] else 'lower'} |\n")
    note = "; COMET on its 0..1 scale, the others on 0..100" if "comet" in results else ""
    sys.stdout.write(f"\n{len(scored.hyps)} sentences; WER normaliser: {args.normaliser}{note}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": len(scored.hyps), "normaliser": args.normaliser, "scores": results}, f, indent=1)
    return 0
