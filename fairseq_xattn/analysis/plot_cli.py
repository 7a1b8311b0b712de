"""``xattn plot``: figures as PNG and PDF.

Subcommands::

    xattn plot utterance --id U --attention A --saliency-input SX --saliency-encoder SH \
        [--layer 6] [--head avg] --out figs/U          # Figure-2 style panels + SM^X per token
    xattn plot grid --json correlate.json --out figs/grid
    xattn plot curves --json faithfulness.json [--mode deletion] --out figs/deletion
"""
from __future__ import annotations

import sys

from ..files import check_output, read_json
from ..maps.heads import ALL_HEADS, HeadSelectionError
from ..maps.pooling import AGGREGATORS
from .plots import (
    PlotError, curves_figure, grid_figure, load_utterance_maps, save, token_spectrogram_figure, utterance_figure,
)
from .options import normaliser_chain, positive_int


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    u = sub.add_parser("utterance", help="SM^X, SM^H and CA side by side for one utterance (+ SM^X per token)")
    u.add_argument("--id", required=True, help="utterance id")
    u.add_argument("--attention", help="cross-attention store")
    u.add_argument("--saliency-input", help="input saliency store (SM^X)")
    u.add_argument("--saliency-encoder", help="encoder saliency store (SM^H)")
    u.add_argument("--layer", default="avg", help="decoder layer (1-based), comma list, or avg (default)")
    u.add_argument("--head", default="avg", help="head (1-based) or avg (default)")
    u.add_argument("--aggregation", default="max2d", choices=sorted(AGGREGATORS))
    u.add_argument("--saliency-norm", nargs="*", default=["spes"], type=normaliser_chain)
    u.add_argument("--attention-norm", nargs="*", default=["none"], type=normaliser_chain,
                   help="normalisers for the plotted CA (default: none, raw attention weights)")
    u.add_argument("--keep-eos", action="store_true")
    u.add_argument("--max-tokens", type=positive_int, default=12, help="tokens shown in the per-token SM^X figure")
    g = sub.add_parser("grid", help="correlation heatmap from `xattn correlate --json`")
    g.add_argument("--json", required=True)
    g.add_argument("--title", default="Pearson r, CA vs SM")
    c = sub.add_parser("curves", help="deletion/insertion curves from `xattn faithfulness --json`")
    c.add_argument("--json", required=True)
    c.add_argument("--mode", default="deletion", choices=["deletion", "insertion"])
    for p in (u, g, c):
        p.add_argument("--out", required=True, help="output path without extension (writes .png and .pdf)")
        p.add_argument("--formats", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"])


def _pairs(layer: str, head: str):
    if layer == "avg" and head == "avg":
        return None
    try:
        layers = None if layer == "avg" else [int(x) for x in layer.split(",")]
        heads = ALL_HEADS if head == "avg" else int(head)
    except ValueError:
        raise PlotError(f"--layer {layer!r} / --head {head!r}: give 1-based numbers (layers comma-separated) "
                        "or avg") from None
    if layers is None:
        raise PlotError("--head needs --layer (a single head of every layer is not an explanation view)")
    return [(l, heads) for l in layers]


def main(args) -> int:
    written = _run(args)
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0


def _run(args):
    import logging

    import matplotlib

    matplotlib.use("Agg")
    # fairseq's import configures the root logger; font-manager debug chatter is not for users
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    inputs = {flag: getattr(args, name, None) for flag, name in (
        ("--attention", "attention"), ("--saliency-input", "saliency_input"), ("--saliency-encoder", "saliency_encoder"))}
    check_output(args.out, "--out", {k: v for k, v in inputs.items() if v})
    if args.figure == "utterance":
        try:
            maps = load_utterance_maps(args.id, attention=args.attention, saliency_input=args.saliency_input,
                                       saliency_encoder=args.saliency_encoder, pairs=_pairs(args.layer, args.head),
                                       saliency_norm=args.saliency_norm, attention_norm=args.attention_norm,
                                       aggregation=args.aggregation, drop_eos=not args.keep_eos)
        except HeadSelectionError as e:  # the pairs come from --layer/--head: name them
            raise PlotError(f"--layer {args.layer} --head {args.head}: {e}") from None
        written = save(utterance_figure(maps), args.out, args.formats)
        if maps.sm_x is not None:
            written += save(token_spectrogram_figure(maps, args.max_tokens), f"{args.out}_tokens", args.formats)
        return written
    if args.figure == "grid":
        data = read_json(args.json, "--json", ["grid", "head_avg", "full_avg"], "xattn correlate --json")
        return save(grid_figure(data, args.title), args.out, args.formats)
    data = read_json(args.json, "--json", ["rows", "percents"], "xattn faithfulness --json")
    return save(curves_figure(data, args.mode), args.out, args.formats)
