"""Argument types of the analysis commands: a bad value is refused by argparse itself, before any work,
as one line ``xattn CMD: error: argument --FLAG: ...`` naming the flag and the value (exit status 2)."""
from __future__ import annotations

import argparse

from ..maps.normalisers import resolve_chain


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A count that must be at least 1 (masks, beam, tokens, subsampling)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An index or a count where 0 is meaningful (a hypothesis rank)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A duration or a tolerance (a collar in seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def normaliser_chain(text: str) -> str:
    """One item of ``--saliency-norm`` / ``--attention-norm``: a normaliser, a chain name or a '+' chain."""
    try:
        resolve_chain(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
