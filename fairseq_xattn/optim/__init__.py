"""Learning-rate schedules of the paper's recipes that fairseq does not ship."""
from . import piecewise_warmup_inverse_sqrt  # noqa: F401
