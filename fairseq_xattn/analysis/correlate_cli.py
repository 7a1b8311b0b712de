"""``xattn correlate``: Pearson r between an attention store and a saliency store.

Example::

    xattn correlate --attention results/attn --saliency results/spes_input \
        --view grid --subset best=5:*,6:* --csv r.csv --json r.json
"""
from __future__ import annotations

import csv
import json
import sys

from ..files import check_output
from ..maps.heads import parse_pairs
from ..maps.pooling import AGGREGATORS
from .correlate import (
    CorrelationConfig, CorrelationError, StorePairing, correlate, csv_rows, markdown_grid, markdown_layers,
    markdown_reliability, markdown_subsets,
)
from ..maps.normalisers import CHAINS, NORMALISERS
from .options import normaliser_chain, positive_int


def add_arguments(parser) -> None:
    parser.add_argument("--attention", required=True, help="cross-attention store (kind cross_attention)")
    parser.add_argument("--saliency", required=True, help="saliency store (kind saliency, target input or encoder)")
    parser.add_argument("--aggregation", default="max2d", choices=sorted(AGGREGATORS),
                        help="pooling of input saliency I x T x F to I x T' (default: %(default)s)")
    choices = f"{sorted(NORMALISERS)} or chains {sorted(CHAINS)}"
    parser.add_argument("--saliency-norm", nargs="*", default=["spes"], type=normaliser_chain,
                        help=f"normalisers applied per token to saliency, in order; from {choices} "
                             "(default: spes = single_mean_std paired_min_max; give none for raw maps)")
    parser.add_argument("--attention-norm", nargs="*", default=["frame_mean_variance"], type=normaliser_chain,
                        help="normalisers applied to the averaged attention (default: %(default)s)")
    parser.add_argument("--keep-eos", action="store_true", help="keep the EOS row (dropped by default)")
    parser.add_argument("--subsampling", type=positive_int, default=None,
                        help="encoder subsampling s (default: the records' 'subsampling' meta, else 4)")
    parser.add_argument("--view", choices=["grid", "layers", "subsets", "all"], default="all",
                        help="Markdown printed on stdout: head x layer grid (paper Table 1), layer-wise "
                             "(Tables 2, 3), the --subset rows, or all (default)")
    parser.add_argument("--subset", action="append", default=[], metavar="NAME=L:H,L:H",
                        help="an explicit set of 1-based (layer, head) pairs to average, e.g. "
                             "deep=5:*,6:* or pair=6:1,6:3 (repeatable)")
    parser.add_argument("--spread", action="store_true", help="print mean ± std in the Markdown tables")
    parser.add_argument("--intersect", action="store_true",
                        help="use only the ids present in both stores (default: a missing id is an error)")
    parser.add_argument("--allow-other-model", action="store_true",
                        help="allow a saliency store made with another model than the attention store (the "
                             "stores record their model's hash; by default a difference is an error)")
    parser.add_argument("--csv", default=None, help="write the long-format table (view, layer, head, mean, std, n)")
    parser.add_argument("--json", default=None, help="write every cell with mean, std, n and the settings")
    parser.add_argument("--per-utterance", default=None,
                        help="write per-utterance r (full average and head-average per layer) as CSV")


def _parse_subsets(items):
    subsets = {}
    for item in items:
        if "=" in item:
            name, spec = item.split("=", 1)
        else:
            name, spec = item, item
        if name in subsets:
            raise CorrelationError(f"--subset name {name!r} given twice")
        try:
            subsets[name] = parse_pairs(spec)
        except ValueError as e:
            raise CorrelationError(f"--subset {item!r}: {e}") from None
    return subsets


def saliency_label(target: str, aggregation: str) -> str:
    """The saliency side of the table title: pooling applies to SM^X (I x T x F) only; SM^H is on the
    encoder grid already."""
    if target == "input":
        return f"SM^X (input saliency, {aggregation} pooling)"
    if target == "encoder":
        return "SM^H (encoder-output saliency, no pooling)"
    return f"SM ({target} saliency)"


def main(args) -> int:
    inputs = {"--attention": args.attention, "--saliency": args.saliency}
    for flag, path in (("--csv", args.csv), ("--json", args.json), ("--per-utterance", args.per_utterance)):
        if path:  # before the work: a path that cannot be written fails now, not after the correlations
            check_output(path, flag, inputs)
    cfg = CorrelationConfig(
        aggregation=args.aggregation,
        saliency_norm=tuple(args.saliency_norm),
        attention_norm=tuple(args.attention_norm),
        drop_eos=not args.keep_eos,
        subsampling=args.subsampling,
        subsets=_parse_subsets(args.subset),
        intersect=args.intersect,
        allow_other_model=args.allow_other_model,
    )
    pairing = StorePairing(args.attention, args.saliency, cfg)
    for warning in pairing.warnings:
        sys.stderr.write(f"xattn correlate: warning: {warning}\n")
    result = correlate(pairing)
    summary = result.summary()
    out = sys.stdout
    out.write(f"Pearson r, CA vs {saliency_label(summary['config']['saliency_target'], args.aggregation)}, "
              f"mean over {len(result.ids)} utterances\n\n")
    if args.view in ("grid", "all"):
        out.write(markdown_grid(summary, spread=args.spread) + "\n\n")
        if summary.get("corrected"):
            out.write("Attenuation-corrected r (per utterance r / sqrt(reliability of the saliency map)):\n\n"
                      + markdown_grid(summary["corrected"], spread=args.spread) + "\n\n")
    if args.view in ("layers", "all"):
        out.write(markdown_layers(summary, spread=args.spread) + "\n\n")
    if result.subsets and args.view in ("subsets", "all"):
        out.write(markdown_subsets(summary) + "\n\n")
    reliability = markdown_reliability(summary)
    if reliability:
        out.write(reliability + "\n\n")
    undefined = summary["full_avg"]["n_undefined"]
    if undefined:
        out.write(f"note: r is undefined (a constant map) for {undefined} utterance(s); they are left out\n")
    if args.csv:
        rows = csv_rows(summary)
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if args.per_utterance:
        with open(args.per_utterance, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "full_avg"] + [f"layer{l + 1}" for l in range(result.n_layers)])
            for i, utt in enumerate(result.ids):
                w.writerow([utt, result.full[i]] + list(result.head_avg[i]))
    return 0
