"""The large model's piece-wise warm-up: known values at the piece boundaries, built by fairseq."""
import pytest
from omegaconf import OmegaConf

import fairseq_xattn.plugin  # noqa: F401
from fairseq.optim import FairseqOptimizer
from fairseq.optim.lr_scheduler import build_lr_scheduler
from fairseq_xattn.optim.piecewise_warmup_inverse_sqrt import piecewise_warmup_inverse_sqrt_lr


def test_known_values():
    f = lambda u: piecewise_warmup_inverse_sqrt_lr(u, 2e-4, 2e-5, 25000, 25000)  # noqa: E731
    assert f(0) == 0
    assert f(12500) == pytest.approx(1e-5)
    assert f(25000) == pytest.approx(2e-5)
    assert f(37500) == pytest.approx(1.1e-4)
    assert f(50000) == pytest.approx(2e-4)
    assert f(200000) == pytest.approx(1e-4)  # 2e-4 * sqrt(50k / 200k)


class _Opt(FairseqOptimizer):
    def __init__(self):
        self.lr = None

    def set_lr(self, lr):
        self.lr = lr

    def get_lr(self):
        return self.lr


def test_fairseq_builds_it_from_its_dataclass():
    cfg = OmegaConf.create({"_name": "piecewise_warmup_inverse_sqrt", "first_warmup_updates": 10,
                            "first_warmup_lr": 1e-3, "second_warmup_updates": 10, "lr": [1e-2]})
    opt = _Opt()
    sched = build_lr_scheduler(cfg, opt)
    assert sched.step_update(10) == pytest.approx(1e-3)
    assert sched.step_update(20) == pytest.approx(1e-2)
    assert sched.step_update(80) == pytest.approx(5e-3)
