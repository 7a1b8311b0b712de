#!/usr/bin/env python
"""Dropout forward + backward: ``torch.nn.functional.dropout`` against our CPU path
(``fairseq_xattn.models.dropout.dropout``: a ``rand_like >= p`` mask and a plain multiply).

The two are timed on the same activation in interleaved rounds (A B, then B A, ...) so that load
from other processes hits both alike.  Printed: milliseconds per forward + backward of each and the
ratio F.dropout / ours (how many times faster ours is).  This is the gain behind the training-speed
ratio of bench_train_speed.py.

Example:  python scripts/bench/bench_dropout.py --shape 8 100 2048 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from fairseq_xattn.models.dropout import dropout


def time_fwd_bwd(fn, x: torch.Tensor, grad: torch.Tensor, p: float, repeats: int) -> float:
    """Seconds per forward + backward of ``fn(x, p)`` with output gradient ``grad`` (mean over
    ``repeats``); ``x`` is a leaf, so the backward is dropout's own (no other node in the graph)."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x, p, training=True).backward(grad)
        x.grad = None
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs="+", default=[8, 100, 2048], help="activation shape")
    parser.add_argument("--p", type=float, default=0.1, help="drop probability")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=50, help="forward + backward passes per round and method")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(*args.shape, requires_grad=True)
    grad = torch.randn(*args.shape)
    methods = {"F.dropout": F.dropout, "fairseq_xattn dropout": dropout}
    for fn in methods.values():  # warm-up
        time_fwd_bwd(fn, x, grad, args.p, 3)
    seconds = {name: [] for name in methods}
    for r in range(args.rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            seconds[name].append(time_fwd_bwd(methods[name], x, grad, args.p, args.repeats))
    print(f"dropout p {args.p} on {' x '.join(map(str, args.shape))} float32, forward + backward, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds of {args.repeats}")
    for name, s in seconds.items():
        print(f"{name:<24} {1000 * statistics.median(s):7.2f} ms")
    ratios = [a / b for a, b in zip(seconds["F.dropout"], seconds["fairseq_xattn dropout"])]
    print(f"ratio F.dropout / ours (time): {statistics.median(ratios):.2f}x "
          f"(per round {', '.join(f'{q:.2f}' for q in ratios)})")


if __name__ == "__main__":
    main()
