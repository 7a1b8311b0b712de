"""Shared helpers of the generation tests: a test-local recording task over fairseq's stock
``speech_to_text`` (argparse) task, batches, and random tiny models of each supported architecture."""
from __future__ import annotations

import copy
import math
from argparse import Namespace
from typing import List

import torch
from fairseq import checkpoint_utils
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.tasks.speech_to_text import SpeechToTextTask

import fairseq_xattn.plugin  # noqa: F401  (compat shims, registrations)
from fairseq_xattn.generation import RecordingTaskMixin, teacher_forced_pass
from fairseq_xattn.models import XattnConformerConfig, XattnConformerModel


class _RecTask(RecordingTaskMixin, SpeechToTextTask):
    """fairseq's legacy speech_to_text task plus recording (the mixin must work on argparse tasks too)."""


def load_recording_task(checkpoint, data, **options):
    models, _, stock = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)], arg_overrides={"data": str(data)})
    task = make_task(stock.args, stock.tgt_dict, **options)
    task.load_dataset("test")
    return models[0].eval(), task


def make_task(args, tgt_dict, **options) -> _RecTask:
    """A recording task on ``args`` with recording options (record_cross_attn, teacher_forced, ...)."""
    args = copy.copy(args)
    for name in ("record_cross_attn", "record_float16", "teacher_forced"):
        setattr(args, name, options.pop(name, None if name != "record_float16" else False))
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    return _RecTask(args, tgt_dict)


def generation_args(**overrides) -> Namespace:
    """What fairseq-generate passes to build_generator (cfg.generation), as a Namespace."""
    values = dict(beam=5, nbest=1, max_len_a=0, max_len_b=200, min_len=1, unnormalized=False, lenpen=1,
                  unkpen=0, temperature=1.0, match_source_len=False, no_repeat_ngram_size=0, prefix_size=0,
                  print_alignment=None, score_reference=False, sampling=False, eos_token=None)
    values.update(overrides)
    return Namespace(**values)


def batches(task, split="test", max_sentences=None, max_tokens=100000, required_batch_size_multiple=1):
    """The batches of a split, read ahead of any inference step (so without the recording run's
    end-of-data step, which would close the store before the tests write to it)."""
    itr = task.get_batch_iterator(task.dataset(split), max_tokens=max_tokens, max_sentences=max_sentences,
                                  required_batch_size_multiple=required_batch_size_multiple)
    return list(getattr(itr, "wrapped", itr).next_epoch_itr(shuffle=False))


def one_batch(task, split="test"):
    (batch,) = batches(task, split, max_sentences=len(task.dataset(split)))
    return batch


def subsampled(n_frames: int, n_convs: int = 2) -> int:
    """T' of fairseq's stride-2 kernel-5 padding-2 convolution stack: ceil(T / 2) per convolution."""
    for _ in range(n_convs):
        n_frames = math.ceil(n_frames / 2)
    return n_frames


def max_difference_to_teacher_forced(model, sample, hypos, tgt_dict) -> float:
    """Largest |beam-search attention - teacher-forced attention| over every recorded hypothesis."""
    worst = 0.0
    n_ranks = max(len(h) for h in hypos)
    for rank in range(n_ranks):
        recorded = [h[rank] for h in hypos]
        forced = record_teacher_forced(model, sample["net_input"], [h["tokens"] for h in recorded],
                                       tgt_dict.pad(), tgt_dict.eos())
        for hypo, expected in zip(recorded, forced):
            assert hypo["cross_attention"].shape == expected.shape
            worst = max(worst, (hypo["cross_attention"] - expected).abs().max().item())
    return worst


def random_xattn_conformer(task, seed=0):
    torch.manual_seed(seed)
    cfg = XattnConformerConfig(
        encoder_layers=2, decoder_layers=3, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
        decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4, conv_channels=32,
        ctc_src_layer=1, depthwise_conv_kernel_size=7, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    return XattnConformerModel.build_model(cfg, task).eval()


def random_s2t_conformer(task, seed=0):
    torch.manual_seed(seed)
    args = Namespace(arch="s2t_conformer", encoder_layers=2, decoder_layers=2, encoder_embed_dim=32,
                     encoder_ffn_embed_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
                     decoder_embed_dim=32, decoder_ffn_embed_dim=64, conv_channels=32, input_feat_per_channel=80,
                     input_channels=1, dropout=0.0, depthwise_conv_kernel_size=7, max_source_positions=6000,
                     max_target_positions=1024, fp16=False)
    ARCH_CONFIG_REGISTRY["s2t_conformer"](args)
    return ARCH_MODEL_REGISTRY["s2t_conformer"].build_model(args, task).eval()


def all_hypotheses(hypos) -> List[dict]:
    return [h for per_utt in hypos for h in per_utt]


def data_copy(tiny_data, dest, replace_words=None):
    """A copy of the tiny data folder (config.yaml, dict.txt, test.tsv; features shared by absolute path),
    with ``replace_words`` ({old: new}) applied to the test manifest's ``tgt_text`` column."""
    dest.mkdir(parents=True)
    for name in ("config.yaml", "dict.txt"):
        (dest / name).write_text((tiny_data / name).read_text())
    lines = (tiny_data / "test.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    col = header.index("tgt_text")
    rows = []
    for line in lines[1:]:
        fields = line.split("\t")
        fields[col] = " ".join((replace_words or {}).get(w, w) for w in fields[col].split())
        rows.append("\t".join(fields))
    (dest / "test.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    return dest


def record_teacher_forced(model, net_input, token_sequences, pad: int = 1, eos: int = 2):
    """Cross-attention ``L x H x I x T'`` of each token sequence (ending with EOS) under teacher forcing."""
    return teacher_forced_pass(model, net_input, token_sequences, pad, eos).cross_attention
