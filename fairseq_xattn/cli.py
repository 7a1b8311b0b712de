"""The ``xattn`` command: one subcommand per pipeline stage.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args)``;
modules are imported only when their subcommand runs, so ``xattn --help`` stays fast.  A
:class:`~fairseq_xattn.errors.UserError` raised anywhere below becomes one line
``xattn COMMAND: error: MESSAGE`` and exit status 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from .errors import UserError, disk_full

#: name -> (module, one-line help).  The order is the pipeline's.
SUBCOMMANDS = {
    "corpus": ("fairseq_xattn.data.corpus.cli", "build the synthetic bilingual espeak-ng corpus with word timings"),
    "prep": ("fairseq_xattn.data.prep", "audio + transcripts -> fbank zip, TSV manifests, SentencePiece, config.yaml"),
    "average": ("fairseq_xattn.checkpoint_average", "average the parameters of the last N checkpoints"),
    "whisper-import": ("fairseq_xattn.models.whisper.import_cli",
                       "Whisper checkpoint (OpenAI .pt, Hugging Face folder or hub name, CTranslate2 folder) -> "
                       "a folder fairseq-generate uses"),
    "score": ("fairseq_xattn.analysis.score_cli", "WER / BLEU / chrF / COMET of hypotheses against references"),
    "correlate": ("fairseq_xattn.analysis.correlate_cli", "Pearson r between cross-attention and saliency stores"),
    "faithfulness": ("fairseq_xattn.analysis.faithfulness_cli", "deletion/insertion curves, AUC and size of explanations"),
    "plot": ("fairseq_xattn.analysis.plot_cli", "figures: saliency vs attention per utterance, correlation grids, curves"),
    "view": ("fairseq_xattn.analysis.viewer.cli",
             "one self-contained HTML file to explore attention, saliency and word times per utterance"),
    "timestamps": ("fairseq_xattn.analysis.timestamps.cli",
                   "word timestamps from attention, saliency or CTC, and their evaluation against true times"),
    "store": ("fairseq_xattn.stores.cli", "inspect, merge and export attention/saliency stores"),
    "user-dir": ("fairseq_xattn.setup_cli", "print the path to pass as fairseq's --user-dir"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xattn",
        description="fairseq-xattn: explain speech-to-text models (cross-attention vs. saliency). "
        "Training, decoding and explaining run through the stock fairseq commands with "
        "--user-dir $(xattn user-dir); these subcommands prepare data and analyse the results.",
        epilog="Run 'xattn COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        # Parsers are filled lazily (see main) so that --help does not import torch/fairseq.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] == "--version":
        from . import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)}")
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(prog=f"xattn {name}", description=help_text)
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except UserError as e:
        print(f"xattn {name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        full = disk_full(e)
        if full is None:
            raise
        print(f"xattn {name}: error: {full}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
