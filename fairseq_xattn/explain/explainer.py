"""The explanation engine: SM^X (``input``) or SM^H (``encoder``) of one utterance.

For one utterance and its hypothesis: forced decoding gives the reference log-probabilities; then
``n_masks`` masks (deterministic per utterance, see :mod:`.masks`) go through the model in batches of
``mask_batch_size``; each mask's per-token scores (KL) are accumulated per occluded unit
(:mod:`.accumulator`); an optional early stop ends when the map has converged (:mod:`.convergence`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .accumulator import SaliencyAccumulator
from .convergence import ConvergenceMonitor
from .mask_batching import BUDGET_LOGITS, BUDGET_MASK_FRAMES, auto_mask_batch_size
from .masks import MaskSampler
from .perturbations import TARGETS, build_perturbation
from .scorers import get_scorer

logger = logging.getLogger(__name__)

#: METHOD.md defaults per target.
DEFAULT_P = {"input": 0.5, "encoder": 0.7}


@dataclass
class ExplainSettings:
    """Everything that defines a saliency map (all but the speed knobs go into the store's meta)."""

    target: str = "input"
    n_masks: int = 20000
    p: Optional[float] = None                 # None: 0.5 for input, 0.7 for encoder
    seed: int = 1
    scorer: str = "kl"
    perturbation: Optional[str] = None        # None: input_slic / encoder_frames
    patches_per_second: Sequence[float] = (400, 500, 600)
    compactness: float = 0.1
    sigma: float = 0.0
    threshold_seconds: float = 7.5
    frame_shift_seconds: float = 0.01
    early_stop: float = 0.0                   # predicted r with the converged map (convergence.py); 0 = off
    early_stop_interval: int = 500
    early_stop_min_masks: int = 2000
    # speed knobs (do not change the map beyond float rounding)
    mask_batch_size: int = 0                  # 0 = automatic (memory budgets below, mask_batching.py)
    budget_mask_frames: int = BUDGET_MASK_FRAMES  # masks x frames (T or T')
    budget_logits: int = BUDGET_LOGITS        # masks x tokens x vocabulary (N x I x V log-probs)
    kv_reuse: bool = True

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown explanation target {self.target!r}; choose from {sorted(TARGETS)}")
        if self.p is None:
            self.p = DEFAULT_P[self.target]
        if self.perturbation is None:
            self.perturbation = TARGETS[self.target]
        if self.n_masks < 1:
            raise ValueError(f"n_masks must be >= 1 (got {self.n_masks})")
        self.patches_per_second = [float(x) for x in self.patches_per_second]

    def store_meta(self) -> Dict:
        """Settings that define the maps (recorded in the store; a resumed run must match them)."""
        meta = {k: getattr(self, k) for k in (
            "target", "n_masks", "p", "seed", "scorer", "perturbation", "early_stop",
            "early_stop_interval", "early_stop_min_masks")}
        if self.target == "input":
            meta.update({k: getattr(self, k) for k in (
                "patches_per_second", "compactness", "sigma", "threshold_seconds", "frame_shift_seconds")})
        return meta

    def perturbation_kwargs(self) -> Dict:
        if self.perturbation == "input_slic":
            return dict(patches_per_second=self.patches_per_second, compactness=self.compactness,
                        sigma=self.sigma, threshold_seconds=self.threshold_seconds,
                        frame_shift_seconds=self.frame_shift_seconds)
        return {}


@dataclass
class Explanation:
    saliency: np.ndarray                  # I x T x F (input) or I x T' (encoder), float32
    ref_logprobs: np.ndarray              # I: log P(y_i | y_<i, X) of the forced hypothesis
    n_masks: int
    seconds: float
    snapshots: Dict[int, np.ndarray] = field(default_factory=dict)
    units_per_level: List[int] = field(default_factory=list)
    n_encoder_frames: int = 0
    vocab_size: int = 0


class Explainer:
    """Explains utterances with one adapter (see :mod:`.forced_decoder`) and one settings object."""

    def __init__(self, adapter, settings: ExplainSettings, progress: bool = False):
        self.adapter = adapter
        self.settings = settings
        self.perturbation = build_perturbation(settings.perturbation, **settings.perturbation_kwargs())
        self.scorer = get_scorer(settings.scorer)
        self.progress = progress

    def mask_batch_size(self, n_cells: int, n_tokens: int = 1, vocab_size: int = 0) -> int:
        """Masks per forward for ``n_cells`` frames (T or T') and ``I x V`` = ``n_tokens x vocab_size``
        output log-probabilities per mask (``vocab_size`` 0: not counted)."""
        s = self.settings
        if s.mask_batch_size > 0:
            return s.mask_batch_size
        return auto_mask_batch_size(self.perturbation.target, n_cells, s.budget_mask_frames,
                                    n_tokens, vocab_size, s.budget_logits)

    @torch.no_grad()
    def explain(self, utt_id: str, features: torch.Tensor, target_tokens: torch.Tensor,
                eos: int, snapshots: Sequence[int] = (), vocab_size: Optional[int] = None) -> Explanation:
        """``features`` T x F (no padding), ``target_tokens`` I (hypothesis + EOS).

        Forced decoding uses ``prev_output_tokens = [EOS] + target_tokens[:-1]``.  ``snapshots``: mask
        counts at which to also return the map so far (convergence curves).  ``vocab_size``: the
        hypotheses' dictionary size, checked against the model's output before any mask is run.
        """
        s = self.settings
        start_time = time.perf_counter()
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"utterance {utt_id!r}: expected non-empty T x F features, got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise ValueError(f"utterance {utt_id!r}: the features contain NaN or inf")
        if target_tokens.numel() == 0:
            raise ValueError(f"utterance {utt_id!r}: empty hypothesis (it needs at least EOS)")
        target_tokens = target_tokens.to(features.device).long()
        prev = torch.cat([target_tokens.new_tensor([eos]), target_tokens[:-1]]).unsqueeze(0)  # 1 x I
        ctx = self.perturbation.setup(self.adapter, features, prev)
        ref = ctx.ref_logprobs  # I x V
        if vocab_size is not None and ref.shape[-1] != vocab_size:
            raise ValueError(f"utterance {utt_id!r}: the model predicts {ref.shape[-1]} symbols but the target "
                             f"dictionary has {vocab_size}: model and dictionary do not match")
        if int(target_tokens.max()) >= ref.shape[-1]:
            raise ValueError(f"utterance {utt_id!r}: token id {int(target_tokens.max())} is outside the model's "
                             f"vocabulary ({ref.shape[-1]} symbols)")
        if (torch.isnan(ref) | torch.isposinf(ref)).any():  # -inf is fine: probability 0
            raise ValueError(f"utterance {utt_id!r}: the model's reference log-probabilities (unperturbed input) "
                             "contain NaN or +inf: nothing to compare the perturbed outputs with")
        positional = ref.gather(-1, target_tokens.unsqueeze(-1)).squeeze(-1)
        # Two accumulators, masks of even and odd index: the split-half early-stop estimate needs them.
        halves = [SaliencyAccumulator(target_tokens.numel(), ctx.labels, ctx.units_per_level) for _ in range(2)]
        # Masks are drawn on the CPU and delivered to the features' device: maps do not depend on it.
        sampler = MaskSampler(ctx.units_per_level, s.p, s.seed, utt_id, device=features.device)
        monitor = ConvergenceMonitor(s.early_stop, s.early_stop_interval, s.early_stop_min_masks)
        batch = self.mask_batch_size(ctx.n_cells, *ref.shape)
        stops = sorted({int(n) for n in snapshots if 0 < n <= s.n_masks})
        taken: Dict[int, np.ndarray] = {}
        bar = self._progress_bar(utt_id, s.n_masks)
        done = 0
        while done < s.n_masks:
            # Cut batches at snapshot and early-stop check points (masks do not depend on the cut).
            limit = min(s.n_masks, done + batch)
            for n in stops:
                if done < n < limit:
                    limit = n
            if monitor.enabled:
                limit = min(limit, (done // s.early_stop_interval + 1) * s.early_stop_interval)
            masks = sampler.batch(done, limit - done)
            scores = self.scorer(ref, self.perturbation.logprobs(self.adapter, ctx, masks, prev))  # N x I
            for level, rows in masks.rows.items():
                parity = (rows + done) % 2
                for half in (0, 1):
                    sel = (parity == half).nonzero().flatten()
                    halves[half].add(level, scores[rows[sel]], masks.occluded[level][sel])
            if bar is not None:
                bar.update(limit - done)
            done = limit
            if done in stops:
                taken[done] = halves[0].saliency(halves[1]).cpu().numpy().astype(np.float32)
            if monitor.is_check_point(done) and monitor.converged(halves[0].saliency().cpu().numpy(),
                                                                  halves[1].saliency().cpu().numpy()):
                logger.info("utterance %s: converged after %d masks (predicted r with the converged map "
                            "%.4f)", utt_id, done, monitor.last_estimate)
                break
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start_time
        return Explanation(halves[0].saliency(halves[1]).cpu().numpy().astype(np.float32),
                           positional.cpu().numpy().astype(np.float32), done, seconds, taken,
                           list(ctx.units_per_level), ctx.n_encoder_frames, int(ref.shape[-1]))

    def _progress_bar(self, utt_id: str, total: int):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="mask", desc=f"{self.settings.target} {utt_id}", leave=False,
                    dynamic_ncols=True, mininterval=1.0)
