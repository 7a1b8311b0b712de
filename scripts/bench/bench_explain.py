#!/usr/bin/env python
"""Benchmark of the explainer (issue 6) on the demo-size model.

Prints masks/s for the ``input`` target (full passes) and the ``encoder`` target (decoder-only passes
with key/value reuse, and without it), batched vs one mask per forward, and convergence curves: the
Pearson r (after SPES per-token normalisation) between the N-mask map and the reference map for
N = 500 .. 10000, and what the early stop (split-half criterion) saves, with the actual correlation of
the early-stopped map with the reference.

The model is ``xattn_conformer_tiny`` (6 Conformer / 2 decoder layers, d 144, 200 symbols), randomly
initialised, on one synthetic 4.1 s utterance (410 x 80 frames) and a 20-token hypothesis; or a
trained checkpoint (--checkpoint CKPT --data DATA) on the first test utterance and its reference.  Numbers vary with the load of the machine.

    .venv/bin/python scripts/bench/bench_explain.py [--threads 2] [--reference-masks 20000]
"""
from __future__ import annotations

import argparse
import time

import torch

import fairseq_xattn.plugin  # noqa: F401  (registers the models)
from fairseq_xattn.explain.convergence import map_correlation
from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder

CURVE = (500, 1000, 2000, 5000, 10000)


class _Task:
    def __init__(self, dictionary):
        self.target_dictionary = dictionary
        self.source_dictionary = dictionary


#: docs/method.md section 8b: the 4.3M-parameter stock Transformer (6 encoder / 2 decoder layers, d 192).
S2T_TRANSFORMER_DEMO = dict(encoder_layers=6, decoder_layers=2, encoder_embed_dim=192, decoder_embed_dim=192,
                            encoder_ffn_embed_dim=768, decoder_ffn_embed_dim=768, encoder_attention_heads=4,
                            decoder_attention_heads=4, dropout=0.0)


def demo_model(arch: str = "xattn_conformer_tiny", vocab: int = 200, seed: int = 0):
    """A randomly initialised demo-size model: ``xattn_conformer_tiny`` or ``s2t_transformer`` (docs/method.md section 8b)."""
    from fairseq.data import Dictionary
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    d = Dictionary()
    while len(d) < vocab:
        d.add_symbol(f"tok{len(d)}")
    ns = argparse.Namespace(input_feat_per_channel=80, input_channels=1, max_source_positions=6000,
                            max_target_positions=1024)
    if arch == "s2t_transformer":
        ns.__dict__.update(S2T_TRANSFORMER_DEMO)
        arch = "s2t_transformer_s"
    ARCH_CONFIG_REGISTRY[arch](ns)
    torch.manual_seed(seed)
    model = ARCH_MODEL_REGISTRY[arch].build_model(ns, _Task(d)).eval()
    return model, d


def checkpoint_model(path: str, data: str):
    """A trained model and the first test utterance of its data (features after transforms, reference)."""
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data})
    task.load_dataset("test")
    item = task.datasets["test"][0]
    return models[0].eval(), task.target_dictionary, (item.source, item.target.long())


def rate(adapter, settings, features, tokens, eos):
    res = Explainer(adapter, settings).explain("bench", features, tokens, eos)
    return res.n_masks / res.seconds, res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (on a shared CPU, 1: more threads than free cores slows OpenMP down badly)")
    p.add_argument("--arch", default="xattn_conformer_tiny", choices=["xattn_conformer_tiny", "s2t_transformer"])
    p.add_argument("--frames", type=int, default=410)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--input-masks", type=int, default=192, help="masks timed for the input target")
    p.add_argument("--encoder-masks", type=int, default=2048, help="masks timed for the encoder target")
    p.add_argument("--reference-masks", type=int, default=20000, help="masks of the convergence reference map")
    p.add_argument("--input-reference-masks", type=int, default=None,
                   help="reference for the input-target curve (default: --reference-masks)")
    p.add_argument("--skip-input-curve", action="store_true")
    p.add_argument("--checkpoint")
    p.add_argument("--data")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    if args.checkpoint:
        model, d, (features, tokens) = checkpoint_model(args.checkpoint, args.data)
        args.frames, args.tokens = len(features), len(tokens)
    else:
        model, d = demo_model(args.arch)
        features = torch.randn(args.frames, 80, generator=g)
        tokens = torch.cat([torch.randint(4, len(d), (args.tokens - 1,), generator=g), torch.tensor([d.eos()])])
    eos = d.eos()
    print(f"model: {'checkpoint ' + args.checkpoint if args.checkpoint else args.arch + ' (random init)'}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {args.threads} threads; "
          f"utterance {args.frames} frames, {args.tokens} tokens")

    fast, plain = FairseqForcedDecoder(model, kv_reuse=True), FairseqForcedDecoder(model, kv_reuse=False)
    rows = []
    for name, adapter, target, n, batch in [
        ("input, auto batch", fast, "input", args.input_masks, 0),
        ("input, 1 mask/forward", fast, "input", max(8, args.input_masks // 8), 1),
        ("encoder K/V reuse, auto batch", fast, "encoder", args.encoder_masks, 0),
        ("encoder K/V reuse, 1 mask/forward", fast, "encoder", max(64, args.encoder_masks // 8), 1),
        ("encoder plain decoder, auto batch", plain, "encoder", args.encoder_masks, 0),
        ("encoder plain decoder, 1 mask/forward", plain, "encoder", max(64, args.encoder_masks // 8), 1),
    ]:
        settings = ExplainSettings(target=target, n_masks=n, mask_batch_size=batch)
        r, _ = rate(adapter, settings, features, tokens, eos)
        n_cells = args.frames if target == "input" else -(-args.frames // 4)
        used = batch or Explainer(adapter, settings).mask_batch_size(n_cells, len(tokens), len(d))
        rows.append((name, r, used))
        print(f"  {name:<40} {r:9.1f} masks/s   (batch {used})")
    rates = {name: r for name, r, _ in rows}
    print(f"encoder (K/V reuse) / input per mask: {rates['encoder K/V reuse, auto batch'] / rates['input, auto batch']:.1f}x "
          f"(goal >= 5x); K/V reuse vs plain decoder: "
          f"{rates['encoder K/V reuse, auto batch'] / rates['encoder plain decoder, auto batch']:.2f}x")
    print(f"batched vs one mask/forward: input {rates['input, auto batch'] / rates['input, 1 mask/forward']:.1f}x, "
          f"encoder {rates['encoder K/V reuse, auto batch'] / rates['encoder K/V reuse, 1 mask/forward']:.1f}x")

    targets = [("encoder", args.reference_masks)]
    if not args.skip_input_curve:
        targets.append(("input", args.input_reference_masks or args.reference_masks))
    for target, ref_n in targets:
        step = 500
        snaps = [n for n in CURVE if n < ref_n]
        t0 = time.perf_counter()
        res = Explainer(fast, ExplainSettings(target=target, n_masks=ref_n)).explain(
            "bench", features, tokens, eos, snapshots=snaps)
        full = res.saliency
        print(f"convergence, {target} target, reference = {ref_n} masks ({time.perf_counter() - t0:.0f} s):")
        print("  N      " + "  ".join(f"{n:>6}" for n in CURVE if n < ref_n))
        print("  r      " + "  ".join(f"{map_correlation(res.snapshots[n], full):6.4f}" for n in CURVE if n < ref_n))
        # Early stop (split-half criterion, checks every 500 masks from 1000 on): masks used and the
        # actual correlation of the early-stopped map with the reference.
        for tau in (0.98, 0.99, 0.995):
            early = Explainer(fast, ExplainSettings(target=target, n_masks=ref_n, early_stop=tau,
                                                    early_stop_interval=step, early_stop_min_masks=2 * step)
                              ).explain("bench", features, tokens, eos)
            print(f"  early stop at predicted r >= {tau}: {early.n_masks} masks "
                  f"({100 * (1 - early.n_masks / ref_n):.0f}% saved), actual r with the reference "
                  f"{map_correlation(early.saliency, full):.4f}")

if __name__ == "__main__":
    main()
