#!/usr/bin/env python
"""Peak memory of a masked forward pass per mask, against the estimate of
``fairseq_xattn.explain.mask_batching.bytes_per_mask`` (issue 16: the free-memory cap on GPUs).

For each target and utterance, a fresh process runs one pass of N1 and one of N2 masks (after a
1-mask warm-up) and reads the growth of its peak resident memory (``ru_maxrss``); the slope per mask
is compared with the estimate's activation part (``frames x D x layers``, in D-wide float32 tensors
per frame and layer: the ``ACTIVATION_WIDTHS`` the measurement implies) and with the whole estimate.
CPU only (resident memory); the allocator and the kernels differ on a GPU, hence the estimate's margin.

    .venv/bin/python scripts/bench/bench_mask_memory.py [--checkpoint CKPT --data DATA] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DEMO_WORK = Path(__file__).resolve().parents[2] / "work" / "demo"


def measure(args) -> dict:
    """In this process: peak RSS growth (bytes) of one pass of ``args.n`` masks."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    from fairseq import checkpoint_utils

    import fairseq_xattn.plugin  # noqa: F401
    from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder
    from fairseq_xattn.explain.masks import MaskSampler
    from fairseq_xattn.explain.perturbations import build_perturbation
    from fairseq_xattn.explain.targets import TARGETS

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([args.checkpoint],
                                                                       arg_overrides={"data": args.data})
    task.load_dataset(args.split)
    ds = task.datasets[args.split]
    item = ds[args.index]
    features, tokens = item.source, item.target.long()
    adapter = FairseqForcedDecoder(models[0].eval())
    perturbation = build_perturbation(TARGETS.get(args.target).perturbation)
    prev = torch.cat([tokens.new_tensor([task.target_dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
    ctx = perturbation.setup(adapter, features, prev)
    sampler = MaskSampler(ctx.units_per_level, TARGETS.get(args.target).p, 1, "mem")
    for _ in range(2):
        perturbation.logprobs(adapter, ctx, sampler.batch(0, 1), prev)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = perturbation.logprobs(adapter, ctx, sampler.batch(0, args.n), prev)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = adapter.model_size()
    return {"growth": after - before, "n_cells": ctx.n_cells, "n_tokens": int(out.shape[1]),
            "vocab": int(out.shape[2]), "model_dim": size.model_dim, "encoder_layers": size.encoder_layers,
            "decoder_layers": size.decoder_layers}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEMO_WORK / "ckpt_asr" / "averaged.pt"))
    p.add_argument("--data", default=str(DEMO_WORK / "data_asr"))
    p.add_argument("--split", default="test_explain")
    p.add_argument("--indices", default="0,9", help="utterances of the split (a short and a long one)")
    p.add_argument("--targets", default="input,encoder")
    p.add_argument("--masks", default="8,40", help="N1,N2: the two pass sizes of the slope")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    if not Path(args.checkpoint).exists():
        sys.exit(f"bench_mask_memory: no checkpoint {args.checkpoint} (run `make demo` or pass --checkpoint/--data)")
    from fairseq_xattn.explain.mask_batching import ACTIVATION_WIDTHS, ModelSize, bytes_per_mask

    n1, n2 = (int(x) for x in args.masks.split(","))
    print(f"{'target':8} {'utt':>4} {'cells':>6} {'I x V':>9} {'measured MB/mask':>17} {'estimate MB/mask':>17} "
          f"{'implied widths':>15}  (ACTIVATION_WIDTHS: {ACTIVATION_WIDTHS})")
    for target in args.targets.split(","):
        for index in (int(x) for x in args.indices.split(",")):
            runs = []
            for n in (n1, n2):
                cmd = [sys.executable, __file__, "--child", "--checkpoint", args.checkpoint, "--data", args.data,
                       "--split", args.split, "--threads", str(args.threads), "--target", target,
                       "--index", str(index), "--n", str(n)]
                lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()
                runs.append(json.loads(lines[-1]))
            r = runs[0]
            slope = (runs[1]["growth"] - runs[0]["growth"]) / (n2 - n1)
            size = ModelSize(r["model_dim"], r["encoder_layers"], r["decoder_layers"])
            estimate = bytes_per_mask(target, r["n_cells"], r["n_tokens"], r["vocab"], size)
            layers = size.decoder_layers + (size.encoder_layers if target == "input" else 0)
            logits = 3 * 4 * r["n_tokens"] * r["vocab"]
            widths = (slope - logits) / (4 * r["n_cells"] * size.model_dim * layers)
            print(f"{target:8} {index:>4} {r['n_cells']:>6} {r['n_tokens']}x{r['vocab']:<6} {slope / 2**20:>17.2f} "
                  f"{estimate / 2**20:>17.2f} {widths:>15.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
