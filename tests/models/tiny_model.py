"""Small model builders shared by the model and criterion tests (no task, no files)."""
from __future__ import annotations

import argparse
from typing import Iterable, Optional

import torch

import fairseq_xattn.plugin  # noqa: F401  (registers the model and the criterion)
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY

from fairseq_xattn.models import XattnConformerModel


def make_dictionary(n_symbols: int, extra: Iterable[str] = ()) -> Dictionary:
    """A fairseq Dictionary of exactly ``n_symbols`` entries (4 specials, ``extra``, then fillers)."""
    d = Dictionary()
    for symbol in extra:
        d.add_symbol(symbol)
    i = 0
    while len(d) < n_symbols:
        d.add_symbol(f"tok{i}")
        i += 1
    assert len(d) == n_symbols
    return d


class FakeTask:
    """What build_model and the criterion may read from a task."""

    def __init__(self, target_dictionary: Dictionary, source_dictionary: Optional[Dictionary] = None,
                 lang_tags=None):
        self.target_dictionary = target_dictionary
        self.source_dictionary = source_dictionary
        if lang_tags is not None:
            self.lang_tag_indices = lambda: set(lang_tags)


def arch_namespace(arch: str, **overrides) -> argparse.Namespace:
    ns = argparse.Namespace(**overrides)
    ARCH_CONFIG_REGISTRY[arch](ns)
    return ns


def build_small_model(task: FakeTask, seed: int = 0, **overrides) -> XattnConformerModel:
    """A 2-layer d-32 model: big enough to exercise every module, small enough for milliseconds."""
    config = dict(
        encoder_layers=2, decoder_layers=2, ctc_src_layer=1, conv_channels=32,
        encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
        decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4,
        depthwise_conv_kernel_size=7, input_feat_per_channel=20,
    )
    config.update(overrides)
    torch.manual_seed(seed)
    return XattnConformerModel.build_model(arch_namespace("xattn_conformer_base", **config), task)
