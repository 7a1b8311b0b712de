"""Normalisers for explanation maps (numpy only: importable without fairseq or torch).

Every normaliser takes an array whose FIRST axis is the token axis (``I x ...``: ``I x T x F`` for
input saliency, ``I x T'`` for encoder saliency or cross-attention) and returns a float64 array of
the same shape.  Registry :data:`NORMALISERS` maps names to functions; :func:`normalise` applies a
chain of them in order.

* ``single_mean_std``  per token row: ``(x - mean) / std`` over every cell of the row, unbiased
  (n-1) std; NaN/inf (constant rows, single cells) become 0.  SPES (docs/method.md section 4).
* ``paired_min_max``   per token row: ``(x - min) / (max - min)``; a constant row becomes 0.
* ``frame_mean_variance``  per frame (axis 1), over tokens: ``(x - mean) / std`` with the
  population std, a zero std counting as 1.  Used for cross-attention (docs/method.md section 1).

Named chains (:data:`CHAINS`): ``spes`` = single_mean_std then paired_min_max (the default for
saliency), ``none`` = identity.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Union

import numpy as np

from ..registry import Registry

Normaliser = Callable[[np.ndarray], np.ndarray]

NORMALISERS: "Registry[Normaliser]" = Registry("normaliser")
register_normaliser = NORMALISERS.register


def _rows(x: np.ndarray) -> np.ndarray:
    """``I x ...`` -> ``I x N`` float64 view of each token's cells."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"expected a map with a token axis first (I x ...), got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


@register_normaliser("single_mean_std")
def single_mean_std(x: np.ndarray) -> np.ndarray:
    """Per token: z-score over all the row's cells with the unbiased (n-1) std; NaN/inf -> 0."""
    rows = _rows(x)
    n = rows.shape[1]
    mean = rows.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = rows.std(axis=1, ddof=1, keepdims=True) if n > 1 else np.zeros_like(mean)
        z = (rows - mean) / std
    z[~np.isfinite(z)] = 0.0
    return z.reshape(np.shape(x))


@register_normaliser("paired_min_max")
def paired_min_max(x: np.ndarray) -> np.ndarray:
    """Per token: ``(x - min) / (max - min)``; a row with max == min becomes all 0."""
    rows = _rows(x)
    lo = rows.min(axis=1, keepdims=True)
    span = rows.max(axis=1, keepdims=True) - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (rows - lo) / safe, 0.0)
    return out.reshape(np.shape(x))


@register_normaliser("frame_mean_variance")
def frame_mean_variance(x: np.ndarray) -> np.ndarray:
    """Per frame (column of an ``I x T'`` map), over tokens: population z-score; std 0 counts as 1.

    Why frame-wise: it removes attention sinks (a frame that every token attends to) before the
    correlation, as in the paper (section 3.3).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"frame_mean_variance expects an I x T' map, got shape {x.shape}")
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, ddof=0, keepdims=True)
    std = np.where(std == 0, 1.0, std)
    return (x - mean) / std


#: Named chains of normalisers.
CHAINS: Dict[str, List[str]] = {
    "spes": ["single_mean_std", "paired_min_max"],
    "none": [],
}


def resolve_chain(chain: Union[str, Sequence[str], None]) -> List[str]:
    """A chain given as a name (``spes``), a '+'-joined string, or a list -> list of normaliser names."""
    if chain is None:
        return []
    if isinstance(chain, str):
        if chain in CHAINS:
            return list(CHAINS[chain])
        names = [c for c in chain.split("+") if c]
    else:
        names = []
        for c in chain:
            names += resolve_chain(c)
        return names
    for name in names:
        if name not in NORMALISERS:
            raise ValueError(
                f"unknown normaliser {name!r}; choose from {sorted(NORMALISERS)} or a chain "
                f"{sorted(CHAINS)} (join several with '+')"
            )
    return names


def normalise(x: np.ndarray, chain: Union[str, Sequence[str], None]) -> np.ndarray:
    """Apply a chain of normalisers in order (float64 result)."""
    out = np.asarray(x, dtype=np.float64)
    for name in resolve_chain(chain):
        out = NORMALISERS[name](out)
    return out
