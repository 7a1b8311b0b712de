"""``xattn timestamps``: word timestamps from cross-attention, saliency or CTC; ``xattn timestamps
evaluate``: their errors against reference word times.

Examples::

    xattn timestamps --attention results/attn --method dtw --heads all --out-dir ts/ --format json ctm srt vtt
    xattn timestamps evaluate --reference DATA/timings/test.jsonl --attention results/attn \
        --saliency results/spes_encoder --method dtw argmax --heads all layers heads \
        --markdown table.md --json rows.json
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Dict

from ...errors import UserError
from ...files import check_input_file, check_output
from ...maps.pooling import AGGREGATORS
from .alignment import TIMESTAMP_METHODS
from .evaluate import DEFAULT_COLLAR, markdown_table, score_systems
from .formats import OUTPUT_FORMATS, read_json_lines, write_outputs
from .references import REFERENCE_FORMATS, read_references
from .systems import TimestampRequest, compute_systems
from .timing import TimedWord, UtteranceTimestamps
from .words import WORD_SCHEMES
from ..options import non_negative_float, non_negative_int, normaliser_chain, positive_int


def _add_sources(p) -> None:
    p.add_argument("--attention", help="cross-attention store (kind cross_attention)")
    p.add_argument("--saliency", action="append", default=[],
                   help="saliency store (target input: SM^X, pooled to the encoder grid; target encoder: SM^H); "
                        "repeatable")
    p.add_argument("--method", nargs="+", default=["dtw"], choices=sorted(TIMESTAMP_METHODS),
                   help="how maps become token spans (default: %(default)s)")
    p.add_argument("--heads", nargs="+", default=["all"],
                   help="attention head selections: all | layers | heads | layer:N | L:H[,L:H] (1-based) | "
                        "whisper (alignment_heads of the store meta) | FILE.json (0-based [layer, head] list) | auto "
                        "(chosen on --dev-attention / --dev-reference) (default: all)")
    p.add_argument("--dev-attention", help="attention store of a development split, for --heads auto")
    p.add_argument("--dev-reference", help="reference word times of the development split, for --heads auto")
    p.add_argument("--max-auto-heads", type=positive_int, default=None, help="at most this many heads for --heads auto")
    p.add_argument("--words", default="auto", choices=sorted(WORD_SCHEMES),
                   help="subword -> word grouping: sentencepiece (▁), byte_bpe (Whisper: Ġ or a leading space), tokens (one word each), "
                        "auto (default)")
    p.add_argument("--no-eos-row", action="store_true",
                   help="leave the EOS row out of the alignment (by default it takes the trailing frames, as in Whisper)")
    p.add_argument("--saliency-norm", nargs="*", default=["spes"], type=normaliser_chain,
                   help="normalisers applied per token to saliency before the alignment (default: spes)")
    p.add_argument("--aggregation", default="max2d", choices=sorted(AGGREGATORS),
                   help="pooling of input saliency I x T x F to I x T' (default: %(default)s)")
    p.add_argument("--rank", type=non_negative_int, default=0, help="hypothesis rank in n-best stores (default: 0)")
    p.add_argument("--subsampling", type=positive_int, default=None,
                   help="encoder subsampling s for stores without 'subsampling' record meta")
    p.add_argument("--ctc", metavar="CHECKPOINT", help="add CTC forced alignment with this xattn_conformer checkpoint")
    p.add_argument("--data", help="data folder of the checkpoint (for --ctc)")
    p.add_argument("--split", help="split the stores were made from (for --ctc)")
    p.add_argument("--config-yaml", default=None, help="config yaml of the data folder (for --ctc)")
    p.add_argument("--user-dir", default=None, help="fairseq --user-dir (for --ctc)")
    p.add_argument("--infer-tgt-lang", default=None, help="target language of a multilingual model (for --ctc)")


def _add_reference_options(p, prefix: str = "") -> None:
    p.add_argument("--reference-format", default="auto", choices=["auto", *REFERENCE_FORMATS],
                   help="format of the reference times (default: from the file name)")
    p.add_argument("--tier", default=None, help="TextGrid tier of the words (default: 'words', else the first)")
    p.add_argument("--collar", type=non_negative_float, default=DEFAULT_COLLAR, help="F1 collar in seconds (default: %(default)s)")
    p.add_argument("--exclude-merged", action="store_true",
                   help="do not time reference words marked 'merged' (approximate boundaries, docs/corpus.md)")


def add_arguments(parser) -> None:
    _add_sources(parser)
    _add_reference_options(parser)
    parser.add_argument("--out-dir", help="output folder (one sub-folder per system when there are several)")
    parser.add_argument("--format", nargs="+", default=["json"], choices=sorted(OUTPUT_FORMATS),
                        help="output formats: json (words.jsonl, Whisper-style), ctm (words.ctm), srt, vtt "
                             "(one file per utterance) (default: json)")
    sub = parser.add_subparsers(dest="action", metavar="evaluate")
    ev = sub.add_parser("evaluate", help="score word times against reference word times",
                        description="Score word times against reference times: one row per system, sorted by "
                                    "mean boundary error.")
    ev.add_argument("--reference", required=True, help="reference word times: timings/<split>.jsonl, CTM, "
                                                        "a TextGrid or a folder of TextGrids")
    ev.add_argument("--hypotheses", action="append", default=[],
                    help="word times written earlier (words.jsonl or a CTM); repeatable")
    _add_sources(ev)
    _add_reference_options(ev)
    ev.add_argument("--intersect", action="store_true",
                    help="score only utterances with reference times (default: a missing one is an error)")
    ev.add_argument("--markdown", help="write the Markdown table here (it is printed anyway)")
    ev.add_argument("--json", help="write the rows as JSON")
    ev.add_argument("--csv", help="write the rows as CSV")


def _request(args) -> TimestampRequest:
    dev_refs = None
    if args.dev_reference:
        dev_refs = read_references(args.dev_reference, args.reference_format, args.tier)
    return TimestampRequest(
        attention=args.attention, saliency=list(args.saliency), methods=list(args.method), heads=list(args.heads),
        scheme=args.words, eos_row=not args.no_eos_row, rank=args.rank, subsampling=args.subsampling,
        saliency_norm=list(args.saliency_norm), aggregation=args.aggregation, dev_attention=args.dev_attention,
        dev_references=dev_refs, max_auto_heads=args.max_auto_heads, ctc_checkpoint=args.ctc, data=args.data,
        split=args.split, user_dir=args.user_dir, config_yaml=args.config_yaml, infer_tgt_lang=args.infer_tgt_lang,
        score_options={"collar": args.collar, "exclude_merged": args.exclude_merged, "intersect": True})


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def main(args) -> int:
    if getattr(args, "action", None) == "evaluate":
        return _evaluate(args)
    return _produce(args)


def _produce(args) -> int:
    if not args.out_dir:
        raise UserError("--out-dir is required (or run `xattn timestamps evaluate`)")
    check_output(args.out_dir, "--out-dir", _inputs(args), folder=True)
    systems = compute_systems(_request(args))
    out = Path(args.out_dir)
    for name, utts in systems.items():
        folder = out if len(systems) == 1 else out / _slug(name)
        paths = write_outputs(list(utts.values()), folder, args.format)
        print(f"{name}: {len(utts)} utterances -> {folder} ({len(paths)} files)")
    return 0


def _read_hypotheses(path: str) -> Dict[str, Dict[str, UtteranceTimestamps]]:
    from .references import read_ctm

    p = Path(path)
    if p.suffix.lower() == ".ctm":
        utts = {u: UtteranceTimestamps(u, [TimedWord(w.word, w.start, w.end, 1.0) for w in words], p.stem)
                for u, words in read_ctm(p).items()}
        return {f"{p.parent.name}/{p.stem}": utts}
    utts = read_json_lines(p)
    names = {u.system for u in utts.values()} - {""}
    name = names.pop() if len(names) == 1 else f"{p.parent.name}/{p.stem}"
    return {name: utts}


def _inputs(args) -> Dict[str, object]:
    """What the command reads (an output must not land inside it)."""
    return {"--attention": args.attention, "--saliency": list(args.saliency), "--data": args.data,
            "--dev-attention": args.dev_attention}


def _evaluate(args) -> int:
    for path in args.hypotheses:
        check_input_file(path, "--hypotheses")
    for flag, path in (("--markdown", args.markdown), ("--json", args.json), ("--csv", args.csv)):
        if path:
            check_output(path, flag, _inputs(args))
    references = read_references(args.reference, args.reference_format, args.tier)
    systems: Dict[str, Dict[str, UtteranceTimestamps]] = {}
    for path in args.hypotheses:
        for name, utts in _read_hypotheses(path).items():
            systems[name if name not in systems else f"{name} ({path})"] = utts
    if args.attention or args.saliency:
        systems.update(compute_systems(_request(args)))
    if not systems:
        raise UserError("nothing to score: give --hypotheses FILE, --attention STORE or --saliency STORE")
    rows = score_systems(systems, references, collar=args.collar, exclude_merged=args.exclude_merged,
                         intersect=args.intersect)
    table = markdown_table(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if args.json:
        strict = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]  # NaN -> null
        Path(args.json).write_text(json.dumps(strict, indent=1) + "\n", encoding="utf-8")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0
