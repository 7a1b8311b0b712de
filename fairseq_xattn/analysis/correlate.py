"""Pearson correlation between cross-attention (CA) and saliency (SM) stores, per utterance.

For every utterance (joined by id, hypothesis rank 0):

1. rows: drop the language-tag rows (``prefix_len``) and the EOS row of both maps (:mod:`.rows`);
2. saliency: normalise per token at its native resolution (default chain ``spes`` =
   single_mean_std then paired_min_max), then, for input saliency ``I x T x F``, pool to ``I x T'``
   (default ``max2d``, windows of s frames lined up with the encoder's subsampling);
3. attention: average the selected (layer, head) matrices ``L x H x I x T'`` -> ``I x T'``, then
   normalise frame-wise (mean-variance, population std, std 0 counts as 1);
4. Pearson r of the flattened maps (:func:`fairseq_xattn.maps.correlation.pearson`).

Views (1-based layers and heads in every output): every single head, the head average of each
layer (paper "h-AVG" row), the layer average of each head ("l-AVG" column), the full average, and
any explicit subsets of (layer, head) pairs.  The mean over utterances is reported with the
sample std (ddof 1) and n; an undefined r (a constant map, e.g. one content token) is left out of
the mean and counted in ``n_undefined``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import UserError
from ..maps.correlation import pearson
from ..maps.reliability import disattenuate
from ..maps.heads import Pair, expand_pairs, subset_average
from ..maps.normalisers import normalise, resolve_chain
from ..stores import (KIND_CROSS_ATTENTION, KIND_SALIENCY, SALIENCY_GRIDS, check_same_provenance, natural_key,
                      open_store, read_view)


class CorrelationError(UserError, ValueError):
    """The attention and saliency stores cannot be joined."""


@dataclass
class CorrelationConfig:
    aggregation: str = "max2d"
    saliency_norm: Sequence[str] = ("spes",)
    attention_norm: Sequence[str] = ("frame_mean_variance",)
    drop_eos: bool = True
    #: encoder subsampling; None: read it from the records' meta (``subsampling``), else 4
    subsampling: Optional[int] = None
    #: named subsets of (layer, head) pairs, 1-based
    subsets: Mapping[str, Sequence[Pair]] = field(default_factory=dict)
    #: True: correlate only ids present in both stores; False: a missing id is an error
    intersect: bool = False
    #: True: the saliency store may come from another model than the attention store (a warning)
    allow_other_model: bool = False


@dataclass
class UtterancePair:
    """The two maps of one utterance, rows already dropped: CA ``L x H x I x T'``, SM ``I x T'``."""

    utt_id: str
    attention: np.ndarray
    saliency: np.ndarray
    tokens: List[str]
    #: split-half reliability of the saliency map as correlated (NaN when the store did not record it)
    reliability: float = float("nan")


def saliency_reliability(meta: Mapping, target: str, aggregation: str) -> float:
    """The split-half reliability a saliency record stores for the map as the analysis correlates it:
    pooled with ``aggregation`` for targets pooled to the encoder grid, else at its own resolution."""
    if SALIENCY_GRIDS[target].pooled:
        value = (meta.get("reliability_pooled") or {}).get(aggregation)
    else:
        value = meta.get("reliability")
    return float("nan") if value is None else float(value)


class StorePairing:
    """Joins an attention store and a saliency store by utterance id and prepares the maps."""

    def __init__(self, attention_store: str, saliency_store: str, cfg: CorrelationConfig):
        self.cfg = cfg
        self.attn = open_store(attention_store, KIND_CROSS_ATTENTION, flag="--attention")
        self.sal = open_store(saliency_store, KIND_SALIENCY, flag="--saliency")
        self.sal_target = self.sal.meta["target"]
        self.warnings = check_same_provenance([self.attn, self.sal], cfg.allow_other_model)
        resolve_chain(list(cfg.saliency_norm))
        resolve_chain(list(cfg.attention_norm))
        self.ids = self._join_ids()

    def _join_ids(self) -> List[str]:
        a_ids, s_ids = self.attn.ids(), self.sal.ids()
        s_set, a_set = set(s_ids), set(a_ids)
        only_a = [u for u in a_ids if u not in s_set]
        only_s = [u for u in s_ids if u not in a_set]
        if (only_a or only_s) and not self.cfg.intersect:
            parts = []
            if only_a:
                parts.append(f"{len(only_a)} utterance(s) of {self.attn.path} are not in {self.sal.path}: "
                             f"{', '.join(map(repr, only_a[:5]))}{' ...' if len(only_a) > 5 else ''}")
            if only_s:
                parts.append(f"{len(only_s)} utterance(s) of {self.sal.path} are not in {self.attn.path}: "
                             f"{', '.join(map(repr, only_s[:5]))}{' ...' if len(only_s) > 5 else ''}")
            raise CorrelationError("; ".join(parts) + " (pass --intersect to use the common ids only)")
        ids = [u for u in a_ids if u in s_set]
        if not ids:
            raise CorrelationError(f"{self.attn.path} and {self.sal.path} have no utterance id in common")
        return sorted(ids, key=natural_key)

    def get(self, utt_id: str) -> UtterancePair:
        cfg = self.cfg
        att = read_view(self.attn, utt_id, drop_eos=cfg.drop_eos, subsampling=cfg.subsampling)
        sal = read_view(self.sal, utt_id, drop_eos=cfg.drop_eos, subsampling=cfg.subsampling,
                        normalisation=list(cfg.saliency_norm), pool=cfg.aggregation)
        where = f"utterance {utt_id!r}"
        a_tok, s_tok = list(att.meta.get("tokens", [])), list(sal.meta.get("tokens", []))
        if a_tok != s_tok:
            raise CorrelationError(
                f"{where}: the stores hold different token sequences (attention {a_tok} in {self.attn.path}, "
                f"saliency {s_tok} in {self.sal.path}); explain the same hypotheses that were recorded"
            )
        a_pre, s_pre = int(att.meta.get("prefix_len", 0) or 0), int(sal.meta.get("prefix_len", 0) or 0)
        if a_pre != s_pre:
            raise CorrelationError(f"{where}: prefix_len differs (attention {a_pre}, saliency {s_pre})")
        if sal.values.shape[0] != att.values.shape[2]:
            raise CorrelationError(f"{where}: attention has {att.values.shape[2]} content token rows, "
                                   f"saliency {sal.values.shape[0]}")
        if sal.values.shape[-1] != att.values.shape[-1]:
            detail = (f" (input saliency of {sal.n_frames} frames pooled by {sal.subsampling})"
                      if SALIENCY_GRIDS[self.sal_target].pooled else "")
            raise CorrelationError(
                f"{where}: different T': attention has {att.values.shape[-1]} encoder frames, saliency "
                f"{sal.values.shape[-1]}{detail}"
            )
        return UtterancePair(utt_id, att.values, sal.values, att.tokens,
                             saliency_reliability(sal.meta, self.sal_target, cfg.aggregation))

    def __iter__(self) -> Iterable[UtterancePair]:
        for utt_id in self.ids:
            yield self.get(utt_id)


@dataclass
class Summary:
    mean: float
    std: float
    n: int
    n_undefined: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        v = np.asarray(values, dtype=np.float64)
        ok = v[np.isfinite(v)]
        n = int(ok.size)
        mean = float(ok.mean()) if n else float("nan")
        std = float(ok.std(ddof=1)) if n > 1 else (0.0 if n == 1 else float("nan"))
        return cls(mean, std, n, int(v.size - n))

    def as_dict(self) -> Dict[str, float]:
        return {"mean": _clean(self.mean), "std": _clean(self.std), "n": self.n, "n_undefined": self.n_undefined}


def _clean(x: float):
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class CorrelationResult:
    """Per-utterance r: ``grid`` N x L x H, ``head_avg`` N x L, ``layer_avg`` N x H, ``full`` N."""

    ids: List[str]
    grid: np.ndarray
    head_avg: np.ndarray
    layer_avg: np.ndarray
    full: np.ndarray
    subsets: Dict[str, np.ndarray]
    subset_pairs: Dict[str, List[Pair]]
    config: Dict
    #: N split-half reliabilities of the saliency maps (cross-attention is deterministic: 1)
    reliability: np.ndarray = None

    @property
    def n_layers(self) -> int:
        return self.grid.shape[1]

    @property
    def n_heads(self) -> int:
        return self.grid.shape[2]

    def summary(self) -> Dict:
        L, H = self.n_layers, self.n_heads
        return {
            "n_utterances": len(self.ids),
            "config": self.config,
            "grid": [[Summary.of(self.grid[:, l, h]).as_dict() for h in range(H)] for l in range(L)],
            "head_avg": [Summary.of(self.head_avg[:, l]).as_dict() for l in range(L)],
            "layer_avg": [Summary.of(self.layer_avg[:, h]).as_dict() for h in range(H)],
            "full_avg": Summary.of(self.full).as_dict(),
            "subsets": {name: {"pairs": [list(p) for p in self.subset_pairs[name]],
                               **Summary.of(v).as_dict()} for name, v in self.subsets.items()},
            **self._reliability_summary(),
        }

    def _reliability_summary(self) -> Dict:
        """Reliability of the saliency maps and the attenuation-corrected r of every view (per utterance
        ``r / sqrt(reliability)``, then the mean), when the saliency store recorded reliabilities."""
        rel = self.reliability if self.reliability is not None else np.full(len(self.ids), np.nan)
        if not np.isfinite(rel).any():
            return {"reliability": None}
        L, H = self.n_layers, self.n_heads
        fix = lambda r: disattenuate(r, rel.reshape((-1,) + (1,) * (np.ndim(r) - 1)))  # noqa: E731
        grid, head_avg, layer_avg, full = fix(self.grid), fix(self.head_avg), fix(self.layer_avg), fix(self.full)
        raw_full = Summary.of(self.full).mean
        corrected_full = Summary.of(full).mean
        return {
            "reliability": Summary.of(rel).as_dict(),
            "corrected": {
                "grid": [[Summary.of(grid[:, l, h]).as_dict() for h in range(H)] for l in range(L)],
                "head_avg": [Summary.of(head_avg[:, l]).as_dict() for l in range(L)],
                "layer_avg": [Summary.of(layer_avg[:, h]).as_dict() for h in range(H)],
                "full_avg": Summary.of(full).as_dict(),
                "subsets": {name: Summary.of(fix(v)).as_dict() for name, v in self.subsets.items()},
            },
            # share of the full average's distance from 1 that the saliency maps' sampling noise explains:
            # how far the corrected mean moves towards 1 (both means over the same utterances)
            "noise_share_of_gap": _clean(_gap_share(raw_full, corrected_full)),
        }


def correlate(pairing: StorePairing) -> CorrelationResult:
    """Every view for every utterance of the pairing."""
    cfg = pairing.cfg
    grids, head_avgs, layer_avgs, fulls, reliabilities = [], [], [], [], []
    subsets: Dict[str, List[float]] = {name: [] for name in cfg.subsets}
    subset_pairs: Dict[str, List[Pair]] = {}
    shape = None
    att_norm = list(cfg.attention_norm)
    for up in pairing:
        L, H = up.attention.shape[:2]
        if shape is None:
            shape = (L, H)
            for name, pairs in cfg.subsets.items():
                subset_pairs[name] = expand_pairs(pairs, L, H, f"--subset {name!r}")
        elif shape != (L, H):
            raise CorrelationError(f"utterance {up.utt_id!r}: attention has {L} layers x {H} heads, "
                                   f"earlier utterances {shape[0]} x {shape[1]}")
        sm = up.saliency

        def r_of(ca: np.ndarray) -> float:
            return pearson(normalise(ca, att_norm), sm)

        grids.append([[r_of(up.attention[l, h]) for h in range(H)] for l in range(L)])
        head_avgs.append([r_of(up.attention[l].mean(axis=0)) for l in range(L)])
        layer_avgs.append([r_of(up.attention[:, h].mean(axis=0)) for h in range(H)])
        fulls.append(r_of(up.attention.mean(axis=(0, 1))))
        reliabilities.append(up.reliability)
        for name, pairs in subset_pairs.items():
            subsets[name].append(r_of(subset_average(up.attention, pairs)))
    config = {
        "aggregation": cfg.aggregation if SALIENCY_GRIDS[pairing.sal_target].pooled else None,  # SM^H is not
        "saliency_norm": resolve_chain(list(cfg.saliency_norm)),
        "attention_norm": resolve_chain(list(cfg.attention_norm)),
        "drop_eos": cfg.drop_eos,
        "saliency_target": pairing.sal_target,
        "attention_store": str(pairing.attn.path),
        "saliency_store": str(pairing.sal.path),
    }
    return CorrelationResult(
        ids=list(pairing.ids), grid=np.asarray(grids, dtype=np.float64),
        head_avg=np.asarray(head_avgs, dtype=np.float64), layer_avg=np.asarray(layer_avgs, dtype=np.float64),
        full=np.asarray(fulls, dtype=np.float64),
        subsets={k: np.asarray(v, dtype=np.float64) for k, v in subsets.items()},
        subset_pairs=subset_pairs, config=config, reliability=np.asarray(reliabilities, dtype=np.float64),
    )


# --------------------------------------------------------------------------- output formats

def _fmt(s: Dict, digits: int = 3, spread: bool = False) -> str:
    if s["mean"] is None:
        return "n/a"
    text = f"{s['mean']:.{digits}f}"
    if spread and s["std"] is not None:
        text += f" ± {s['std']:.{digits}f}"
    return text


def markdown_grid(summary: Dict, spread: bool = False) -> str:
    """Paper Table 1 layout: rows = heads + h-AVG, columns = layers + l-AVG."""
    L = len(summary["grid"])
    H = len(summary["grid"][0])
    header = "| head | " + " | ".join(f"l={l + 1}" for l in range(L)) + " | l-AVG |"
    lines = [header, "|---" * (L + 2) + "|"]
    for h in range(H):
        cells = [_fmt(summary["grid"][l][h], spread=spread) for l in range(L)]
        lines.append(f"| h={h + 1} | " + " | ".join(cells) + f" | {_fmt(summary['layer_avg'][h], spread=spread)} |")
    cells = [_fmt(summary["head_avg"][l], spread=spread) for l in range(L)]
    lines.append("| h-AVG | " + " | ".join(cells) + f" | {_fmt(summary['full_avg'], spread=spread)} |")
    return "\n".join(lines)


def _gap_share(raw: float, corrected: float) -> float:
    """``(min(|corrected|, 1) - |raw|) / (1 - |raw|)``: the share of the distance from 1 that the
    correction removes (NaN when undefined, 0 for a perfect raw r)."""
    if not (np.isfinite(raw) and np.isfinite(corrected)):
        return float("nan")
    if abs(raw) >= 1:
        return 0.0
    return (min(abs(corrected), 1.0) - abs(raw)) / (1.0 - abs(raw))


def markdown_reliability(summary: Dict) -> str:
    """One paragraph: how reliable the saliency maps are and what the full average would be without their
    sampling noise (empty when the saliency store recorded no reliability)."""
    rel = summary.get("reliability")
    if not rel or rel.get("mean") is None:
        return ""
    corrected = summary["corrected"]["full_avg"]["mean"]
    raw = summary["full_avg"]["mean"]
    share = summary.get("noise_share_of_gap")
    text = (f"Saliency maps: split-half reliability {rel['mean']:.3f} (Spearman-Brown corrected, mean of {rel['n']} "
            f"maps; cross-attention is deterministic, reliability 1). Attenuation-corrected full-average r "
            f"(per utterance r / sqrt(reliability)): {_fmt(summary['corrected']['full_avg'])} against "
            f"{_fmt(summary['full_avg'])} raw"
            + (f": sampling noise in the saliency maps explains {share:.0%} of the gap between the raw r and 1."
               if share is not None and raw is not None and corrected is not None else "."))
    if summary.get("config", {}).get("aggregation"):
        text += (" For pooled input maps read the corrected r as a lower bound: pooling and per-token normalisation"
                 " pass on noise the classical correction does not model, and measured convergence curves rise"
                 " further (docs/explain.md, \"The attenuation correction is not enough for input maps\").")
    return text


def markdown_layers(summary: Dict, spread: bool = False) -> str:
    """Paper Tables 2/3 layout: one row, columns = layers (head-averaged) + l-AVG (full average)."""
    L = len(summary["head_avg"])
    header = "| | " + " | ".join(f"l={l + 1}" for l in range(L)) + " | l-AVG |"
    row = "| r | " + " | ".join(_fmt(s, spread=spread) for s in summary["head_avg"]) + \
          f" | {_fmt(summary['full_avg'], spread=spread)} |"
    return "\n".join([header, "|---" * (L + 2) + "|", row])


def markdown_subsets(summary: Dict) -> str:
    lines = ["| subset | (layer, head) pairs | mean | std | n |", "|---|---|---|---|---|"]
    for name, s in summary["subsets"].items():
        pairs = " ".join(f"{l}:{h}" for l, h in s["pairs"])
        std = "n/a" if s["std"] is None else f"{s['std']:.3f}"
        mean = "n/a" if s["mean"] is None else f"{s['mean']:.3f}"
        lines.append(f"| {name} | {pairs} | {mean} | {std} | {s['n']} |")
    return "\n".join(lines)


def csv_rows(summary: Dict) -> List[Dict]:
    """Long format: view, layer, head ('avg' for averaged axes, '' for subsets), mean, std, n."""
    out = []

    def add(view, layer, head, s, subset=""):
        out.append({"view": view, "subset": subset, "layer": layer, "head": head, "mean": s["mean"],
                    "std": s["std"], "n": s["n"], "n_undefined": s["n_undefined"]})

    for l, row in enumerate(summary["grid"]):
        for h, s in enumerate(row):
            add("head", l + 1, h + 1, s)
    for l, s in enumerate(summary["head_avg"]):
        add("layer", l + 1, "avg", s)
    for h, s in enumerate(summary["layer_avg"]):
        add("head_over_layers", "avg", h + 1, s)
    add("full", "avg", "avg", summary["full_avg"])
    for name, s in summary["subsets"].items():
        add("subset", "", "", s, subset=name)
    return out
