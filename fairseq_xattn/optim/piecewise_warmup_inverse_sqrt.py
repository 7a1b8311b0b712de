"""``piecewise_warmup_inverse_sqrt``: Noam with a two-piece linear warm-up (the paper's large model).

Paper, Appendix B.2: "the learning rate first increasing linearly to 2e-5 for 25k steps and then to
2e-4 for an additional 25k steps, followed by the standard inverse square root function"
(a piece-wise warm-up against divergence, after Peng et al. 2024).

    u <= w1:        lr = peak1 * u / w1
    w1 < u <= w:    lr = peak1 + (peak - peak1) * (u - w1) / (w - w1)      (w = w1 + w2)
    u > w:          lr = peak * sqrt(w / u)
"""
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import List

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler
from omegaconf import II


@dataclass
class PiecewiseWarmupInverseSqrtConfig(FairseqDataclass):
    first_warmup_updates: int = field(default=25000, metadata={"help": "updates of the first warm-up piece"})
    first_warmup_lr: float = field(default=2e-5, metadata={"help": "learning rate reached by the first piece"})
    second_warmup_updates: int = field(
        default=25000, metadata={"help": "updates of the second piece, which reaches --lr (the peak)"})
    lr: List[float] = II("optimization.lr")


def piecewise_warmup_inverse_sqrt_lr(update: int, peak: float, first_lr: float, w1: int, w2: int) -> float:
    """The learning rate after ``update`` updates (see the module docstring)."""
    w = w1 + w2
    if update <= w1:
        return first_lr * update / max(w1, 1)
    if update <= w:
        return first_lr + (peak - first_lr) * (update - w1) / max(w2, 1)
    return peak * (w / update) ** 0.5


@register_lr_scheduler("piecewise_warmup_inverse_sqrt", dataclass=PiecewiseWarmupInverseSqrtConfig)
class PiecewiseWarmupInverseSqrtSchedule(FairseqLRScheduler):
    def __init__(self, cfg: PiecewiseWarmupInverseSqrtConfig, optimizer):
        super().__init__(cfg, optimizer)
        if isinstance(cfg.lr, Collection) and len(cfg.lr) > 1:
            raise ValueError("--lr must be a single value (the peak) for piecewise_warmup_inverse_sqrt")
        self.peak = cfg.lr[0] if isinstance(cfg.lr, Collection) else cfg.lr
        if not 0 <= cfg.first_warmup_lr <= self.peak:
            raise ValueError(f"--first-warmup-lr {cfg.first_warmup_lr} must lie in [0, --lr {self.peak}]")
        self.optimizer.set_lr(self.lr_at(0))

    def lr_at(self, update: int) -> float:
        return piecewise_warmup_inverse_sqrt_lr(update, self.peak, self.cfg.first_warmup_lr,
                                                self.cfg.first_warmup_updates, self.cfg.second_warmup_updates)

    def step(self, epoch, val_loss=None):
        super().step(epoch, val_loss)
        return self.optimizer.get_lr()

    def step_update(self, num_updates):
        self.optimizer.set_lr(self.lr_at(num_updates))
        return self.optimizer.get_lr()
