#!/usr/bin/env python
"""--explain-autocast (issue 16): agreement of low-precision maps with float32 maps, and speed.

For the first K utterances of the demo's explain split (their recorded hypotheses when the demo's
attention store exists, else the references) and both targets, explains each utterance with the
same seed and masks in float32 and under each autocast dtype, and prints per utterance the Pearson r
of the low-precision map with the float32 map (raw maps, and after the SPES per-token normalisation
the analysis uses), the largest absolute difference, and masks/s with the speed ratio dtype / float32.
Timed runs follow an untimed 64-mask warm-up per setting.  Ratios, not absolute rates, are what to
read on a shared machine.

    .venv/bin/python scripts/bench/bench_autocast.py [--utterances 2] [--masks 500] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEMO_WORK = Path(__file__).resolve().parents[2] / "work" / "demo"


def load(args):
    """(model, dictionary, [(utt_id, features T x F, tokens I)])."""
    from fairseq import checkpoint_utils  # fairseq first, then the plugin (registers models, compat shims)

    import fairseq_xattn.plugin  # noqa: F401

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([args.checkpoint],
                                                                       arg_overrides={"data": args.data})
    task.load_dataset(args.split)
    ds = task.datasets[args.split]
    store = None
    if args.attention and args.attention != "none" and Path(args.attention).exists():
        from fairseq_xattn.stores import open_store

        store = open_store(args.attention, "cross_attention")
    utts = []
    for i in range(min(args.utterances, len(ds))):
        utt_id, item = str(ds.ids[i]), ds[i]
        tokens = item.target.long()
        if store is not None and utt_id in store:
            tokens = torch.tensor(store[utt_id].meta["tokens"], dtype=torch.long)
        utts.append((utt_id, item.source, tokens))
    source = f"hypotheses of {args.attention}" if store is not None else "reference transcripts"
    return models[0].eval(), task.target_dictionary, utts, source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEMO_WORK / "ckpt_asr" / "averaged.pt"))
    p.add_argument("--data", default=str(DEMO_WORK / "data_asr"))
    p.add_argument("--split", default="test_explain")
    p.add_argument("--attention", default=str(DEMO_WORK / "attention_test_explain"),
                   help="recording store whose hypotheses are explained (default: the demo's; none: references)")
    p.add_argument("--utterances", type=int, default=2)
    p.add_argument("--masks", type=int, default=500)
    p.add_argument("--targets", default="input,encoder")
    p.add_argument("--dtypes", default="bf16,fp16", help="autocast values compared with none (float32)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core to others)")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).exists():
        sys.exit(f"bench_autocast: no checkpoint {args.checkpoint} (run `make demo` or pass --checkpoint/--data)")
    torch.set_num_threads(args.threads)
    from fairseq_xattn.explain.convergence import map_correlation
    from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
    from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder

    model, dictionary, utts, source = load(args)
    adapter = FairseqForcedDecoder(model)
    dtypes = [d for d in args.dtypes.split(",") if d]
    print(f"model {args.checkpoint} ({sum(x.numel() for x in model.parameters()) / 1e6:.2f}M), split {args.split}, "
          f"{args.masks} masks, seed 1, {args.threads} thread(s), torch {torch.__version__}; {source}")
    print(f"{'target':8} {'utterance':15} {'frames':>6} {'tok':>4} {'dtype':6} {'r raw':>8} {'r SPES':>8} "
          f"{'max |diff|':>10} {'fp32 m/s':>9} {'dtype m/s':>9} {'speed':>6}")
    ratios = {}
    for target in [t for t in args.targets.split(",") if t]:
        def run(utt, autocast, n):
            settings = ExplainSettings(target=target, n_masks=n, autocast=autocast)
            return Explainer(adapter, settings).explain(utt[0], utt[1], utt[2], dictionary.eos())

        for utt in utts:
            maps, rates = {}, {}
            for autocast in ["none"] + dtypes:
                run(utt, autocast, 64)  # warm-up (kernels, the K/V self-check)
                t0 = time.perf_counter()
                res = run(utt, autocast, args.masks)
                rates[autocast] = res.n_masks / (time.perf_counter() - t0)
                maps[autocast] = res.saliency
            for autocast in dtypes:
                raw = float(np.corrcoef(maps[autocast].ravel(), maps["none"].ravel())[0, 1])
                spes = map_correlation(maps[autocast], maps["none"])
                ratio = rates[autocast] / rates["none"]
                ratios.setdefault((target, autocast), []).append((raw, spes, ratio))
                print(f"{target:8} {utt[0]:15} {len(utt[1]):>6} {len(utt[2]):>4} {autocast:6} {raw:>8.6f} {spes:>8.6f} "
                      f"{np.abs(maps[autocast] - maps['none']).max():>10.2e} {rates['none']:>9.1f} "
                      f"{rates[autocast]:>9.1f} {ratio:>5.2f}x", flush=True)
    print("\nmean over utterances: target, dtype: r raw, r SPES, speed dtype / float32")
    for (target, autocast), rows in ratios.items():
        raw, spes, ratio = np.mean(rows, axis=0)
        print(f"  {target:8} {autocast:5} r {raw:.6f}  r_SPES {spes:.6f}  speed {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
