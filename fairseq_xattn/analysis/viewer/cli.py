"""``xattn view``: one self-contained HTML file to explore attention, saliency and word times.

Example::

    xattn view --attention results/attn --saliency-input results/spes_input \
        --saliency-encoder results/spes_encoder --features-from DATA --audio-from CORPUS/test.tsv \
        --timestamps results/timestamps.json --out results/explorer.html
"""
from __future__ import annotations

import sys
from pathlib import Path

from ...errors import OptionError
from ...files import check_output
from ...maps.normalisers import CHAINS, NORMALISERS
from ...maps.pooling import AGGREGATORS
from ..metrics import TEXT_NORMALISERS
from .encode import AUDIO_CODECS


def add_arguments(parser) -> None:
    parser.add_argument("--attention", required=True, help="cross-attention store (kind cross_attention)")
    parser.add_argument("--saliency-input", help="input saliency store (SM^X, target input)")
    parser.add_argument("--saliency-encoder", help="encoder-output saliency store (SM^H, target encoder)")
    parser.add_argument("--timestamps", help="hypothesis word times: the words.jsonl of `xattn timestamps` "
                                             "(one method) or a CTM file")
    parser.add_argument("--reference-timings",
                        help="reference word times: our corpus's timings/<split>.jsonl, CTM or TextGrid(s) "
                             "(default: the corpus timings beside --features-from or --audio-from, when found)")
    parser.add_argument("--features-from", metavar="DATA_DIR",
                        help="fairseq data folder whose manifest gives the spectrograms (fbank80.zip)")
    parser.add_argument("--audio-from", metavar="MANIFEST",
                        help="raw manifest (id, audio) for playback (and the spectrogram without --features-from)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--ids", nargs="+", help="utterance ids to show (default: those all stores share)")
    parser.add_argument("--max-utterances", type=int, default=100,
                        help="show at most this many utterances (default: %(default)s; 0: all)")
    parser.add_argument("--allow-other-model", action="store_true",
                        help="accept saliency stores made with another model than the attention store")
    parser.add_argument("--aggregation", default="max2d", choices=sorted(AGGREGATORS),
                        help="pooling of SM^X to the encoder grid for the rows and r (default: %(default)s)")
    parser.add_argument("--saliency-norm", nargs="*", default=["spes"],
                        help=f"normalisers applied per token to saliency, from {sorted(NORMALISERS)} or "
                             f"chains {sorted(CHAINS)} (default: spes)")
    parser.add_argument("--wer-normaliser", default="whisper_english", choices=sorted(TEXT_NORMALISERS),
                        help="text normaliser of the per-utterance WER (default: %(default)s)")
    parser.add_argument("--audio-codec", default="opus", choices=sorted(AUDIO_CODECS),
                        help="how audio is embedded: " + "; ".join(f"{k}: {v.description}"
                                                                    for k, v in sorted(AUDIO_CODECS.items())))
    parser.add_argument("--saliency-block", default="2x4", metavar="FRAMESxBINS",
                        help="SM^X pictures average blocks of this many frames x bins (default: %(default)s; "
                             "2x2: 1.3x, 1x1: 2.2x the file size); rows and r use the full maps")
    parser.add_argument("--picture-bits", type=int, default=5, choices=range(4, 9), metavar="{4..8}",
                        help="levels of the SM^X and spectrogram pictures, 2**bits (default: %(default)s)")
    parser.add_argument("--title", default=None, help="page title (default: the attention store's folder name)")


def main(args) -> int:
    path, n = _run(args)
    size = path.stat().st_size
    sys.stdout.write(f"{path}: {n} utterances, {size / 1e6:.2f} MB\n")
    return 0


def parse_block(text: str):
    """``"2x2"`` -> ``(2, 2)``."""
    try:
        frames, bins = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"--saliency-block {text!r}: write FRAMESxBINS, e.g. 2x2") from None
    if frames < 1 or bins < 1:
        raise OptionError(f"--saliency-block {text!r}: both sizes must be >= 1")
    return frames, bins


def _run(args):
    from .builder import PictureSettings, write_html
    from .load import ViewerInputs, load_report

    pictures = PictureSettings(saliency_block=parse_block(args.saliency_block), bits=args.picture_bits)
    if args.max_utterances < 0:
        raise OptionError(f"--max-utterances must be >= 0, got {args.max_utterances}")
    check_output(args.out, "--out", {"--attention": args.attention, "--saliency-input": args.saliency_input,
                                     "--saliency-encoder": args.saliency_encoder, "--features-from": args.features_from})
    report = load_report(ViewerInputs(
        attention=args.attention, saliency_input=args.saliency_input, saliency_encoder=args.saliency_encoder,
        ids=args.ids, max_utterances=args.max_utterances or None, saliency_norm=tuple(args.saliency_norm),
        aggregation=args.aggregation, features_from=args.features_from, audio_from=args.audio_from,
        timestamps=args.timestamps, reference_timings=args.reference_timings, wer_normaliser=args.wer_normaliser,
        allow_other_model=args.allow_other_model))
    title = args.title or f"xattn view: {Path(args.attention).resolve().name}"
    path = write_html(args.out, report.views(), title=title, settings=report.settings, notes=report.notes,
                      audio_codec=args.audio_codec, pictures=pictures)
    for note in report.notes:  # after the maps were read: an error stays the only line
        sys.stderr.write(f"xattn view: {note}\n")
    return path, len(report.ids)
