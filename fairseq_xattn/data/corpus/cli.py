"""``xattn corpus``: build the synthetic bilingual espeak-ng corpus with word timings."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ...errors import OptionError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output directory (created)")
    parser.add_argument("--size", type=int, default=8000,
                        help="distinct sentence pairs over train+dev+test (default 8000; test_voices re-speaks test)")
    parser.add_argument("--eval-size", type=int, default=None,
                        help="sentences in each of dev, test, test_voices (default size/40)")
    parser.add_argument("--seed", type=int, default=1, help="same seed -> same bytes (default 1)")
    parser.add_argument("--workers", type=int, default=None, help="synthesis processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_options(args: argparse.Namespace) -> None:
    """Bad values are refused before any synthesis, naming the flag (sizes: build_corpus)."""
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise OptionError(f"output {args.out} exists and is not a folder; give a folder")
    if args.workers is not None and args.workers < 1:
        raise OptionError(f"--workers must be at least 1 (got {args.workers})")


def main(args: argparse.Namespace) -> int:
    from .build import build_corpus

    check_options(args)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    summary = build_corpus(args.out, size=args.size, seed=args.seed, workers=args.workers,
                           eval_size=args.eval_size, progress=not args.no_progress)
    print(json.dumps(summary["splits"], indent=1, ensure_ascii=False))
    print(f"corpus written to {args.out} in {time.time() - t0:.1f} s")
    return 0
