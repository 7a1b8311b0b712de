"""The automatic mask batch size: fixed budgets, and the free-memory cap of CUDA devices (given as a
figure, so it is tested without a GPU)."""
import pytest
import torch

from fairseq_xattn.explain import explainer as explainer_module
from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
from fairseq_xattn.explain.mask_batching import (ACTIVATION_WIDTHS, FREE_MEMORY_SHARE, LOGIT_COPIES, ModelSize,
                                                 auto_mask_batch_size, bytes_per_mask, device_free_bytes)

from .oracles import RegionOracle

DEMO = ModelSize(model_dim=144, encoder_layers=6, decoder_layers=2)   # the demo conformer


def test_bytes_per_mask_by_hand():
    # input: (6 + 2) layers over T = 410 frames of width 144; 20 tokens x 200 symbols
    expected = 4 * ACTIVATION_WIDTHS["input"] * 410 * 144 * 8 + LOGIT_COPIES * 4 * 20 * 200
    assert bytes_per_mask("input", 410, 20, 200, DEMO) == expected
    # encoder: the 2 decoder layers over T' = 103 states
    assert bytes_per_mask("encoder", 103, 20, 200, DEMO) == \
        4 * ACTIVATION_WIDTHS["encoder"] * 103 * 144 * 2 + LOGIT_COPIES * 4 * 20 * 200


@pytest.mark.parametrize("target,frames,expected", [("input", 410, 64), ("input", 1000, 32), ("encoder", 103, 256),
                                                    ("encoder", 200, 128)])
def test_without_a_free_memory_figure_the_budgets_alone_decide(target, frames, expected):
    # 32768 // 410 = 79 -> cap 64; 32768 // 1000 = 32; 32768 // 103 = 318 -> cap 256; 32768 // 200 = 163 -> 128
    assert auto_mask_batch_size(target, frames, n_tokens=20, vocab_size=200) == expected
    assert auto_mask_batch_size(target, frames, n_tokens=20, vocab_size=200, free_bytes=None, model=DEMO) == expected


@pytest.mark.parametrize("target,frames", [("input", 410), ("encoder", 103)])
def test_small_free_memory_shrinks_the_batch_to_what_fits(target, frames):
    per_mask = bytes_per_mask(target, frames, 20, 200, DEMO)
    full = auto_mask_batch_size(target, frames, n_tokens=20, vocab_size=200)
    for fits in (1, 5, 17, 40):
        free = int(fits * per_mask / FREE_MEMORY_SHARE) + 1
        size = auto_mask_batch_size(target, frames, n_tokens=20, vocab_size=200, free_bytes=free, model=DEMO)
        assert size == min(fits, full)
        assert size * per_mask <= free * FREE_MEMORY_SHARE
    # plenty of memory: the budgets decide, as without a figure
    assert auto_mask_batch_size(target, frames, n_tokens=20, vocab_size=200, free_bytes=1 << 40, model=DEMO) == full


def test_the_size_never_falls_below_one_mask_and_never_grows_as_memory_shrinks():
    sizes = [auto_mask_batch_size("input", 410, n_tokens=20, vocab_size=200, free_bytes=free, model=DEMO)
             for free in (1 << 34, 1 << 30, 1 << 28, 1 << 25, 1 << 20, 1000, 0, -5)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 64 and sizes[-3:] == [1, 1, 1]


def test_a_larger_model_gets_a_smaller_batch_for_the_same_free_memory():
    free = 1 << 29
    small = auto_mask_batch_size("input", 410, n_tokens=20, vocab_size=200, free_bytes=free, model=DEMO)
    large = auto_mask_batch_size("input", 410, n_tokens=20, vocab_size=200, free_bytes=free,
                                 model=ModelSize(model_dim=1024, encoder_layers=24, decoder_layers=12))
    assert large < small


def test_the_cpu_reports_no_free_memory_figure():
    assert device_free_bytes(torch.device("cpu")) is None
    assert device_free_bytes("cpu") is None


def test_the_explainer_caps_its_batch_by_the_free_memory_of_the_device(monkeypatch):
    explainer = Explainer(RegionOracle(torch.zeros(60, 80, dtype=torch.bool)), ExplainSettings(target="encoder"))
    assert explainer.mask_batch_size(103, 20, 200, torch.device("cpu")) == 256       # CPU: budgets only
    per_mask = bytes_per_mask("encoder", 103, 20, 200)   # the oracle has no model_size(): the default size
    monkeypatch.setattr(explainer_module, "device_free_bytes", lambda device: int(3 * per_mask / FREE_MEMORY_SHARE))
    assert explainer.mask_batch_size(103, 20, 200, torch.device("cpu")) == 3
    # a size the user forces is kept
    forced = Explainer(explainer.adapter, ExplainSettings(target="encoder", mask_batch_size=100))
    assert forced.mask_batch_size(103, 20, 200, torch.device("cpu")) == 100


def test_the_fairseq_adapter_reports_the_model_size(tiny_model_and_task):
    from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder

    model, _task = tiny_model_and_task   # s2t_transformer, d 64, 2 encoder + 2 decoder layers
    assert FairseqForcedDecoder(model).model_size() == ModelSize(model_dim=64, encoder_layers=2, decoder_layers=2)
