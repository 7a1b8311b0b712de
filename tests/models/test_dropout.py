"""Our dropout: the same distribution as F.dropout (kept with probability 1 - p, scaled by 1/(1 - p)),
a faster CPU path, and fairseq's decoder dropout modules replaced without losing their settings."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fairseq.modules.fairseq_dropout import FairseqDropout

from fairseq_xattn.models import dropout as dropout_module
from fairseq_xattn.models.dropout import Dropout, FastFairseqDropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
def test_kept_share_scale_and_gradient(p):
    torch.manual_seed(0)
    x = (torch.rand(200, 500) + 0.5).requires_grad_()
    y = dropout(x, p)
    kept = y != 0
    n = kept.numel()
    share = kept.float().mean().item()
    assert abs(share - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))


def test_identity_when_off_and_zeros_at_p_one():
    x = torch.randn(3, 4)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.3).eval()
    assert module(x) is x and module.state_dict() == {}
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)


def test_other_devices_use_torch_dropout(monkeypatch):
    calls = []
    monkeypatch.setattr(dropout_module.F, "dropout", lambda x, p, training: calls.append(p) or x)
    x = torch.empty(3, 4, device="meta")
    dropout(x, 0.2)
    assert calls == [0.2]
    dropout(torch.ones(3, 4), 0.2)  # the CPU path does not call it
    assert calls == [0.2]


def _tiny_model():
    from tests.models.tiny_model import FakeTask, build_small_model, make_dictionary

    return build_small_model(FakeTask(make_dictionary(20)))


def test_decoder_dropouts_are_replaced_with_their_settings():
    model = _tiny_model()
    modules = [m for m in model.decoder.modules() if isinstance(m, FairseqDropout)]
    assert modules and all(type(m) is FastFairseqDropout for m in modules)
    assert {m.p for m in modules} == {0.1}
    # --retain-dropout (fairseq's prepare_for_inference_) still reaches them
    model.eval()
    model.make_generation_fast_(retain_dropout=True)
    assert all(m.apply_during_inference for m in modules)
    x = torch.ones(1000)
    assert (modules[0](x) == 0).any()
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.encoder.modules())
