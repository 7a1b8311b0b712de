"""Selections of cross-attention heads: which (layer, head) pairs to average (numpy only).

Pairs are 1-based ``(layer, head)`` everywhere a user sees them (CLI, tables, JSON); ``head = -1``
stands for every head of the layer until :func:`expand_pairs` resolves it against the stored
``L x H``.  Whisper's alignment heads come 0-based from its checkpoints: :func:`from_zero_based`.
"""
from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import numpy as np

from ..errors import UserError

Pair = Tuple[int, int]  # (layer, head), 1-based; head -1 = all heads of the layer
ALL_HEADS = -1


class HeadSelectionError(UserError, ValueError):
    """A head selection that is malformed or outside the stored layers and heads."""


def parse_pairs(text: str) -> List[Pair]:
    """``"5:1,6:3"`` -> ``[(5, 1), (6, 3)]``; ``"6:*"`` -> every head of layer 6 (expanded later)."""
    pairs = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        try:
            layer, head = item.split(":")
            pairs.append((int(layer), ALL_HEADS if head == "*" else int(head)))
        except ValueError:
            raise HeadSelectionError(f"bad (layer, head) pair {item!r} in {text!r}; write LAYER:HEAD, e.g. 6:3 or 6:*") from None
    if not pairs:
        raise HeadSelectionError(f"empty head selection {text!r}")
    return pairs


def expand_pairs(pairs: Sequence[Pair], n_layers: int, n_heads: int, name: str = "selection") -> List[Pair]:
    """Resolve ``ALL_HEADS`` and check every pair against ``n_layers x n_heads``; sorted, unique."""
    out: List[Pair] = []
    for layer, head in pairs:
        heads = range(1, n_heads + 1) if head == ALL_HEADS else [head]
        for h in heads:
            if not (1 <= layer <= n_layers and 1 <= h <= n_heads):
                raise HeadSelectionError(
                    f"{name}: pair ({layer}, {h}) is outside the stored {n_layers} layers x {n_heads} heads (1-based)")
            out.append((int(layer), int(h)))
    return sorted(set(out))


def all_pairs(n_layers: int, n_heads: int) -> List[Pair]:
    return [(l + 1, h + 1) for l in range(n_layers) for h in range(n_heads)]


def from_zero_based(pairs: Iterable[Sequence[int]]) -> List[Pair]:
    """``[[layer, head], ...]`` 0-based (Whisper's alignment heads) -> 1-based pairs."""
    return sorted({(int(l) + 1, int(h) + 1) for l, h in pairs})


def subset_average(attention: np.ndarray, pairs: Sequence[Pair]) -> np.ndarray:
    """Mean of the selected matrices: ``L x H x I x T'`` and 1-based pairs -> ``I x T'`` (float64)."""
    if not pairs:
        raise ValueError("empty head selection")
    idx_l = np.array([p[0] - 1 for p in pairs])
    idx_h = np.array([p[1] - 1 for p in pairs])
    return np.asarray(attention, dtype=np.float64)[idx_l, idx_h].mean(axis=0)


def selection_label(pairs: Sequence[Pair], n_layers: int, n_heads: int) -> str:
    """A short human label: 'all layers and heads', 'layer 2, head average', 'layer 1, head 3', or the pairs."""
    pairs = sorted(set(pairs))
    if len(pairs) == n_layers * n_heads:
        return "average of all layers and heads"
    layers = sorted({p[0] for p in pairs})
    if len(pairs) == len(layers) * n_heads:
        return f"layer {','.join(map(str, layers))}, head average"
    if len(pairs) == 1:
        return f"layer {pairs[0][0]}, head {pairs[0][1]}"
    return " ".join(f"{l}:{h}" for l, h in pairs)
