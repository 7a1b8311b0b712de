"""The compatibility shims: checkpoints load under weights_only, batching drops no sample."""
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import fairseq_xattn.plugin  # noqa: F401  (applies the shims)
from fairseq.data import data_utils


@pytest.mark.parametrize("n,bsz_mult,max_tokens", [(10, 8, 5000), (100, 8, 300), (37, 3, 64), (5, 8, 10)])
def test_batch_by_size_keeps_every_index_once(n, bsz_mult, max_tokens):
    rng = np.random.default_rng(n)
    sizes = np.sort(rng.integers(1, 10, size=n))
    indices = np.argsort(sizes, kind="stable")
    batches = data_utils.batch_by_size(indices, lambda i: sizes[i], max_tokens=max_tokens,
                                       required_batch_size_multiple=bsz_mult)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n))
    assert flat.tolist() == indices.tolist()  # order kept
    for b in batches:
        assert len(b) * max(sizes[b]) <= max_tokens
    # every batch but the last respects the multiple, as fairseq intends
    for b in batches[:-1]:
        assert len(b) % bsz_mult == 0 or len(b) < bsz_mult


def test_batch_by_size_same_as_fairseq_when_nothing_is_dropped():
    sizes = np.arange(1, 17)
    ours = data_utils.batch_by_size(np.arange(16), lambda i: sizes[i], max_tokens=5000,
                                    required_batch_size_multiple=8)
    original = data_utils.batch_by_size.__wrapped__(np.arange(16), lambda i: sizes[i],
                                                    max_tokens=5000, required_batch_size_multiple=8)
    assert [b.tolist() for b in ours] == [b.tolist() for b in original]


def test_fairseq_checkpoint_loads_with_weights_only(tiny_checkpoint):
    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(str(tiny_checkpoint))
    assert "model" in state and state["cfg"]["model"].arch == "s2t_transformer_s"


class _NotAllowed:
    pass


def test_weights_only_is_still_on_for_other_types():
    buf = io.BytesIO()
    torch.save({"x": _NotAllowed()}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf)


def test_numpy_aliases_fairseq_still_uses():
    assert np.int is int and np.float is float


def test_missing_fairseq_gives_a_clear_message():
    code = "import sys; sys.modules['fairseq'] = None\nimport fairseq_xattn.plugin"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "fairseq-fixed==0.12.3.1" in proc.stderr and "scripts/install.sh" in proc.stderr


@pytest.mark.parametrize("torch_has_allow_list", [True, False])
def test_checkpoint_state_loads_with_and_without_torch_allow_list(tiny_checkpoint, monkeypatch, torch_has_allow_list):
    """torch 2.1-2.3 (admitted by setup.py) has no add_safe_globals: loading must not insist on
    weights_only there, where fairseq's pickled Namespace would be refused."""
    import torch.serialization as ts

    from fairseq_xattn.compat import load_checkpoint_state

    seen = {}
    real_load = torch.load

    def spy_load(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    if not torch_has_allow_list:
        monkeypatch.delattr(ts, "add_safe_globals")
    state = load_checkpoint_state(tiny_checkpoint)
    assert "model" in state and state["cfg"]["model"].arch == "s2t_transformer_s"
    assert seen.get("weights_only") is (True if torch_has_allow_list else None)
