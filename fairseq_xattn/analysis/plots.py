"""Figures: one utterance's explanations side by side, SM^X per token, correlation grids, curves.

All functions build a matplotlib ``Figure`` with the object API (no pyplot global state) and
:func:`save` writes it as PNG and/or PDF.

* :func:`utterance_figure`  paper Figure 2: SM^X pooled to the encoder grid, SM^H and CA (any layer
  / head or an average), tokens on the y axis, time in seconds on the x axis;
* :func:`token_spectrogram_figure`  paper Figure 3: SM^X per token, time x frequency bins;
* :func:`grid_figure`  the head x layer correlation grid with h-AVG / l-AVG (``xattn correlate --json``);
* :func:`curves_figure`  deletion/insertion curves (``xattn faithfulness --json``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import UserError
from ..geometry import FRAME_SHIFT_SECONDS
from ..maps.heads import Pair, selection_label
from ..maps.pooling import aggregate
from ..stores import KIND_CROSS_ATTENTION, KIND_SALIENCY, StoreError, open_store, read_view


class PlotError(UserError, ValueError):
    """The stores given for a figure do not fit together."""


@dataclass
class UtteranceMaps:
    """Content-row maps of one utterance; ``None`` for what was not given."""

    utt_id: str
    tokens: List[str]
    subsampling: int
    n_frames: Optional[int] = None
    sm_x: Optional[np.ndarray] = None        # I x T x F, normalised per token
    sm_x_pooled: Optional[np.ndarray] = None  # I x T'
    sm_h: Optional[np.ndarray] = None         # I x T'
    ca: Optional[np.ndarray] = None           # I x T'
    ca_label: str = "CA"
    text: str = ""
    extra: Dict[str, str] = field(default_factory=dict)



def _title_lines(text: str, width: int = 120, max_lines: int = 2) -> str:
    """Wrap a long title (a hypothesis can be long) to at most ``max_lines`` lines, with an ellipsis."""
    import textwrap

    lines = textwrap.wrap(text, width)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 3] + "..."
    return "\n".join(lines)

def load_utterance_maps(utt_id: str, attention: Optional[str] = None, saliency_input: Optional[str] = None,
                        saliency_encoder: Optional[str] = None, pairs: Optional[Sequence[Pair]] = None,
                        saliency_norm: Sequence[str] = ("spes",), attention_norm: Sequence[str] = ("none",),
                        aggregation: str = "max2d", drop_eos: bool = True) -> UtteranceMaps:
    """Read one utterance from any of the three stores, with the rows and normalisation of the analysis."""
    found = {}
    for name, path, kind, target in (("attention", attention, KIND_CROSS_ATTENTION, None),
                                     ("saliency_input", saliency_input, KIND_SALIENCY, "input"),
                                     ("saliency_encoder", saliency_encoder, KIND_SALIENCY, "encoder")):
        if path is None:
            continue
        try:
            reader = open_store(path, kind, target, flag=f"--{name.replace('_', '-')}")
        except StoreError as e:
            raise PlotError(str(e)) from None
        if utt_id not in reader:
            raise PlotError(f"utterance {utt_id!r} is not in {path}")
        options = dict(drop_eos=drop_eos)
        if kind == KIND_SALIENCY:
            options.update(normalisation=list(saliency_norm))
        else:
            options.update(pairs=pairs or "all", normalisation=list(attention_norm))
        found[name] = (path, read_view(reader, utt_id, **options))
    if not found:
        raise PlotError("give at least one store (--attention, --saliency-input, --saliency-encoder)")
    first_path, first = next(iter(found.values()))
    for path, view in found.values():
        if view.meta.get("tokens") != first.meta.get("tokens"):
            raise PlotError(f"utterance {utt_id!r}: {path} and {first_path} hold different token sequences")
    maps = UtteranceMaps(utt_id, first.tokens, first.subsampling, text=str(first.meta.get("text", "")))
    if "saliency_input" in found:
        sx = found["saliency_input"][1].values
        maps.sm_x = sx
        maps.n_frames = sx.shape[1]
        maps.sm_x_pooled = aggregate(sx, aggregation, first.subsampling)
    if "saliency_encoder" in found:
        maps.sm_h = found["saliency_encoder"][1].values
    if "attention" in found:
        view = found["attention"][1]
        maps.ca = view.values
        maps.ca_label = f"CA ({selection_label(view.pairs, view.n_layers, view.n_heads)})"
        maps.n_frames = maps.n_frames or view.n_frames
        maps.text = str(view.meta.get("text", maps.text))
    widths = {k: v.shape[-1] for k, v in (("SM^X pooled", maps.sm_x_pooled), ("SM^H", maps.sm_h), ("CA", maps.ca))
              if v is not None}
    if len(set(widths.values())) > 1:
        raise PlotError(f"utterance {utt_id!r}: different T' across stores: {widths}")
    return maps


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=150, layout="constrained")


def utterance_figure(maps: UtteranceMaps, cmap: str = "viridis"):
    """Side-by-side I x T' panels (tokens on y, seconds on x), like the paper's Figure 2."""
    panels = [(n, m) for n, m in (("SM$^X$ (max-pooled to T')", maps.sm_x_pooled), ("SM$^H$", maps.sm_h),
                                  (maps.ca_label.replace("CA", "CA", 1), maps.ca)) if m is not None]
    if not panels:
        raise PlotError("nothing to draw")
    n_tok, t_enc = panels[0][1].shape
    step = maps.subsampling * FRAME_SHIFT_SECONDS
    width = min(22.0, 1.6 + len(panels) * max(3.2, 0.09 * t_enc))
    height = min(14.0, 1.6 + 0.32 * n_tok)
    fig = _figure(width, height)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, m) in zip(axes, panels):
        im = ax.imshow(m, aspect="auto", interpolation="nearest", cmap=cmap,
                       extent=(0, m.shape[1] * step, n_tok - 0.5, -0.5))
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("time (s)", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    axes[0].set_yticks(range(n_tok))
    axes[0].set_yticklabels(maps.tokens, fontsize=10)
    axes[0].set_ylabel("output token", fontsize=10)
    fig.suptitle(_title_lines(f"{maps.utt_id}: {maps.text}" if maps.text else maps.utt_id), fontsize=12)
    return fig


def token_spectrogram_figure(maps: UtteranceMaps, max_tokens: int = 12, cmap: str = "magma"):
    """SM^X per token as time x frequency maps (one panel per token), like the paper's Figure 3.

    The last panel is the sum over all content tokens (the sentence-level map whose cells
    ``xattn faithfulness`` ranks for full-resolution deletion), rescaled to [0, 1].
    """
    if maps.sm_x is None:
        raise PlotError("the per-token spectrogram figure needs --saliency-input")
    n = min(len(maps.tokens), max_tokens)
    total = maps.sm_x.sum(axis=0)
    span = float(total.max() - total.min())
    total = (total - total.min()) / span if span > 0 else np.zeros_like(total)
    panels = [(repr(maps.tokens[k]), maps.sm_x[k]) for k in range(n)] + [("all tokens (sum)", total)]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    T, F = maps.sm_x.shape[1:]
    fig = _figure(3.4 * cols + 0.8, 2.4 * rows + 0.8)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    im = None
    for k, ax in enumerate(axes.ravel()):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        title, m = panels[k]
        im = ax.imshow(m.T, origin="lower", aspect="auto", interpolation="nearest", cmap=cmap,
                       extent=(0, T * FRAME_SHIFT_SECONDS, 0, F), vmin=0, vmax=1)
        ax.set_title(title, fontsize=11, fontweight="bold" if k == len(panels) - 1 else "normal")
        if k % cols == 0:
            ax.set_ylabel("mel bin", fontsize=10)
        if k + cols >= len(panels):
            ax.set_xlabel("time (s)", fontsize=10)
    fig.colorbar(im, ax=list(axes.ravel()[:len(panels)]), fraction=0.02, pad=0.01, label="normalised saliency")
    fig.suptitle(f"SM$^X$ per token: {maps.utt_id}" + (f" ({len(maps.tokens) - n} more tokens not shown)"
                                                       if len(maps.tokens) > n else ""), fontsize=12)
    return fig


def grid_figure(summary: Dict, title: str = "Pearson r, CA vs SM", cmap: str = "RdBu_r"):
    """Heatmap of a ``xattn correlate --json`` summary: heads (+h-AVG) x layers (+l-AVG)."""
    L, H = len(summary["grid"]), len(summary["grid"][0])
    val = np.full((H + 1, L + 1), np.nan)
    for l in range(L):
        for h in range(H):
            val[h, l] = _mean(summary["grid"][l][h])
        val[H, l] = _mean(summary["head_avg"][l])
    for h in range(H):
        val[h, L] = _mean(summary["layer_avg"][h])
    val[H, L] = _mean(summary["full_avg"])
    fig = _figure(1.6 + 0.85 * (L + 1), 1.2 + 0.5 * (H + 1))
    ax = fig.subplots()
    lim = max(0.05, float(np.nanmax(np.abs(val)))) if np.isfinite(val).any() else 1.0
    im = ax.imshow(val, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for (h, l), v in np.ndenumerate(val):
        text = "n/a" if not np.isfinite(v) else f"{v:.2f}"
        bold = h == H or l == L
        ax.text(l, h, text, ha="center", va="center", fontsize=9, fontweight="bold" if bold else "normal",
                color="white" if np.isfinite(v) and abs(v) > 0.6 * lim else "black")
    ax.set_xticks(range(L + 1))
    ax.set_xticklabels([f"l={l + 1}" for l in range(L)] + ["l-AVG"], fontsize=10)
    ax.set_yticks(range(H + 1))
    ax.set_yticklabels([f"h={h + 1}" for h in range(H)] + ["h-AVG"], fontsize=10)
    ax.axhline(H - 0.5, color="black", linewidth=1.2)
    ax.axvline(L - 0.5, color="black", linewidth=1.2)
    fig.colorbar(im, ax=ax, label="Pearson r")
    n = summary.get("n_utterances")
    ax.set_title(f"{title}" + (f" ({n} utterances)" if n else ""), fontsize=11)
    return fig


def _mean(cell: Dict) -> float:
    v = cell.get("mean")
    return float("nan") if v is None else float(v)


def curves_figure(result: Dict, mode: str = "deletion"):
    """Curves of a ``xattn faithfulness --json`` result for one mode; AUC in the legend."""
    rows = [r for r in result["rows"] if mode in r["curves"]]
    if not rows:
        raise PlotError(f"the faithfulness result has no {mode} curve")
    fig = _figure(9.0, 4.4)
    ax = fig.subplots()
    for r in rows:
        style = "--" if r["kind"] == "random" else "-"
        ax.plot(result["percents"], r["curves"][mode], style, marker="o", markersize=3,
                label=f"{r['label']} (AUC {r['auc'][mode]:.1f})")
    ax.set_xlabel(f"{'deleted' if mode == 'deletion' else 'inserted'} most relevant units (%)", fontsize=10)
    ax.set_ylabel(result["scorer"], fontsize=10)
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              title="explanation (dashed: random)", title_fontsize=9)
    ax.set_title(f"{mode.capitalize()} ({result['n_utterances']} utterances)", fontsize=11)
    return fig


def save(fig, out: str, formats: Sequence[str] = ("png", "pdf")) -> List[Path]:
    """Write ``out.<fmt>`` for each format (``out`` without extension, or its extension is dropped)."""
    base = Path(out)
    if base.suffix.lower() in (".png", ".pdf"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = base.with_suffix(f".{fmt}")
        fig.savefig(path, format=fmt)
        paths.append(path)
    return paths
