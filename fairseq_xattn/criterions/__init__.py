"""Criteria (registered on import)."""
from .ctc_multi_loss import CtcMultiLossConfig, CtcMultiLossCriterion  # noqa: F401
