"""Which token rows of a stored map take part in the analysis (numpy only).

Rows of an attention or saliency map are the forced-decoded/generated tokens, in order:
``[lang tag]*prefix_len + content tokens + EOS`` (docs/ARCHITECTURE.md; there is no BOS row,
since BOS/EOS is only fed as the first decoder input).  The analysis drops the language-tag
rows and the EOS row (paper section 3.3).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


class RowError(ValueError):
    """A record's rows do not match its token metadata."""


def content_rows(n_rows: int, prefix_len: int = 0, drop_eos: bool = True, where: str = "") -> slice:
    """Slice of the rows to keep: drop the first ``prefix_len`` rows and, if asked, the last (EOS)."""
    end = n_rows - 1 if drop_eos else n_rows
    if prefix_len < 0 or prefix_len >= end:
        raise RowError(
            f"{where}: {n_rows} token rows with prefix_len={prefix_len}"
            f"{' and the EOS row' if drop_eos else ''} leave no content row"
        )
    return slice(int(prefix_len), int(end))


def record_content_rows(meta: Mapping, n_rows: int, drop_eos: bool = True, where: str = "") -> slice:
    """:func:`content_rows` for a store record, checking that ``tokens`` has one id per row."""
    tokens: Sequence[int] = meta.get("tokens", [])
    if tokens is not None and len(tokens) and len(tokens) != n_rows:
        raise RowError(f"{where}: the map has {n_rows} token rows but meta 'tokens' lists {len(tokens)} ids")
    return content_rows(n_rows, int(meta.get("prefix_len", 0) or 0), drop_eos, where)


def drop_rows(x: np.ndarray, meta: Mapping, drop_eos: bool = True, where: str = "") -> np.ndarray:
    """Keep the content rows of ``x`` (token axis first: ``I x ...``)."""
    return np.asarray(x)[record_content_rows(meta, np.shape(x)[0], drop_eos, where)]
