#!/usr/bin/env python
"""Training updates per second: our ``xattn_conformer`` against fairseq's stock ``s2t_conformer``
(relative-position ESPnet attention, the closest stock model) at the same width and depth.

Both models train on the same random batch with the same objective (label-smoothed CE on the
decoder) and the same optimiser; updates of the two models are interleaved in rounds (A B, then
B A, ...) so that load from other processes on a shared machine hits both alike.  Printed: updates
per second of each and the ratio ours / stock (goal: >= 1.0).  ``--with-ctc`` times ours with the
full ctc_multi_loss objective instead (its two CTC heads are extra work the stock model lacks).

Example:  python scripts/bench/bench_train_speed.py --arch xattn_conformer_tiny --rounds 6
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import fairseq_xattn.plugin  # noqa: F401  (registers model and criterion)
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY
from fairseq.models.speech_to_text.s2t_conformer import S2TConformerModel, conformer_base_architecture

from fairseq_xattn.criterions import CtcMultiLossCriterion
from fairseq_xattn.models import XattnConformerModel


class _Task:
    def __init__(self, dictionary):
        self.target_dictionary = dictionary
        self.source_dictionary = None


def build_models(arch: str, vocab: int):
    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f"tok{i}")
    task = _Task(dictionary)
    ours_cfg = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[arch](ours_cfg)
    ours = XattnConformerModel.build_model(ours_cfg, task)

    c = ours.cfg
    stock_args = argparse.Namespace(
        attn_type="espnet", pos_enc_type="rel_pos", input_feat_per_channel=c.input_feat_per_channel,
        input_channels=1, conv_channels=c.conv_channels, conv_kernel_sizes=f"{c.conv_kernel_size},{c.conv_kernel_size}",
        encoder_embed_dim=c.encoder_embed_dim, encoder_ffn_embed_dim=c.encoder_ffn_embed_dim,
        encoder_layers=c.encoder_layers, encoder_attention_heads=c.encoder_attention_heads,
        depthwise_conv_kernel_size=c.depthwise_conv_kernel_size,
        decoder_embed_dim=c.decoder_embed_dim, decoder_ffn_embed_dim=c.decoder_ffn_embed_dim,
        decoder_layers=c.decoder_layers, decoder_attention_heads=c.decoder_attention_heads,
        dropout=c.dropout, attention_dropout=c.attention_dropout, activation_dropout=c.activation_dropout,
        share_decoder_input_output_embed=c.share_decoder_input_output_embed,
        max_source_positions=c.max_source_positions, max_target_positions=c.max_target_positions,
        fp16=False, encoder_freezing_updates=0, load_pretrained_encoder_from=None,
    )
    conformer_base_architecture(stock_args)
    stock = S2TConformerModel.build_model(stock_args, task)
    return ours, stock, dictionary, task


def make_batch(dictionary, batch_size: int, frames: int, tokens: int, feat_dim: int):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(batch_size, frames, feat_dim, generator=g)
    lengths = torch.linspace(frames, frames * 0.6, batch_size).long()
    target = torch.randint(dictionary.nspecial, len(dictionary), (batch_size, tokens), generator=g)
    target[:, -1] = dictionary.eos()
    prev = torch.cat([torch.full((batch_size, 1), dictionary.eos()), target[:, :-1]], dim=1)
    return {
        "id": torch.arange(batch_size), "utt_id": [str(i) for i in range(batch_size)],
        "net_input": {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": prev},
        "target": target, "target_lengths": torch.full((batch_size,), tokens),
        "ctc_src": target[:, :-1], "ctc_src_lengths": torch.full((batch_size,), tokens - 1),
        "ntokens": batch_size * tokens, "nsentences": batch_size,
    }


def ce_step_fn(model, sample, pad):
    def step():
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True).view(-1, net_output[0].size(-1))
        loss, _ = label_smoothed_nll_loss(lprobs, sample["target"].view(-1), 0.1, ignore_index=pad)
        return loss
    return step


def timed_updates(step, optimizer, n: int):
    """Updates per second of wall-clock time and of this process's CPU time.

    On a shared machine other processes steal cores and inflate wall time at random; the process
    CPU time (with --threads 1) counts only our own work, so its ratio is the steadier number."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        optimizer.zero_grad(set_to_none=True)
        step().backward()
        optimizer.step()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="xattn_conformer_tiny", help="our arch; the stock model copies its sizes")
    parser.add_argument("--vocab", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=400, help="input frames of the longest utterance")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--updates-per-round", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--with-ctc", action="store_true", help="time ours with the full ctc_multi_loss objective")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours, stock, dictionary, task = build_models(args.arch, args.vocab)
    sample = make_batch(dictionary, args.batch_size, args.frames, args.tokens, ours.cfg.input_feat_per_channel)
    if args.with_ctc:
        criterion = CtcMultiLossCriterion(task, sentence_avg=False, label_smoothing=0.1)
        ours_step = lambda: criterion(ours, sample)[0]  # noqa: E731
    else:
        ours_step = ce_step_fn(ours, sample, dictionary.pad())
    runs = {
        "xattn_conformer": (ours_step, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
        "s2t_conformer": (ce_step_fn(stock, sample, dictionary.pad()), torch.optim.AdamW(stock.parameters(), lr=1e-4)),
    }
    ours.train(), stock.train()
    n_params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("xattn_conformer", ours), ("s2t_conformer", stock))}
    for step, optimizer in runs.values():  # warm-up (allocator, kernels)
        timed_updates(step, optimizer, 1)

    wall = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            step, optimizer = runs[name]
            w, c = timed_updates(step, optimizer, args.updates_per_round)
            wall[name].append(w)
            cpu[name].append(c)

    print(f"arch {args.arch}: batch {args.batch_size} x {args.frames} frames, {args.tokens} tokens, "
          f"{args.threads} thread(s), objective {'ctc_multi_loss' if args.with_ctc else 'label-smoothed CE'} for ours, "
          f"{args.rounds} interleaved rounds of {args.updates_per_round} updates")
    for name in runs:
        print(f"{name:16s} {n_params[name] / 1e6:6.2f}M params  "
              f"{statistics.median(wall[name]):.3f} updates/s wall  {statistics.median(cpu[name]):.3f} updates/s CPU")
    for label, rates in (("wall", wall), ("CPU", cpu)):
        per_round = [a / b for a, b in zip(rates["xattn_conformer"], rates["s2t_conformer"])]
        print(f"ratio xattn_conformer / s2t_conformer ({label} time): {statistics.median(per_round):.2f}x "
              f"(per round {', '.join(f'{x:.2f}' for x in per_round)})")


if __name__ == "__main__":
    main()
