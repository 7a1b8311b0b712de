"""The explanation engine: SM^X (``input``) or SM^H (``encoder``) of one utterance.

For one utterance and its hypothesis: forced decoding gives the reference log-probabilities; then
``n_masks`` masks (deterministic per utterance, see :mod:`.masks`) go through the model in batches of
``mask_batch_size`` (drawn by the mask design, :mod:`.mask_designs`); each mask's per-token scores
(KL) feed the estimator of the map (:mod:`.estimators`, default ``paper``: the mean score over the
masks that occluded a cell), one accumulator per split-half; the halves give the map's reliability
(:mod:`fairseq_xattn.maps.reliability`) and the optional early stop (:mod:`.convergence`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputDataError
from ..maps.reliability import map_reliability, per_token_reliability, spes_view
from .autocast import NO_AUTOCAST, masked_pass_context, reference_pass_context
from .convergence import ConvergenceMonitor
from .estimators import build_estimator
from .mask_batching import DEFAULT_MODEL_SIZE, auto_mask_batch_size, device_free_bytes
from .masks import MaskSampler
from .perturbations import build_perturbation
from .scorers import get_scorer
from .settings import ExplainSettings

logger = logging.getLogger(__name__)

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
    #: split-half reliability of the whole map (SPES-normalised, all I rows), Spearman-Brown corrected
    reliability: float = float("nan")
    #: I: the same per token row (NaN for a constant row)
    reliability_per_token: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: the maps of the two independent halves of the masks (float32, the saliency's shape)
    half_maps: Tuple[np.ndarray, ...] = ()

    def reliability_of_rows(self, start: int = 0, stop: Optional[int] = None, pool: Optional[str] = None,
                            subsampling: Optional[int] = None) -> float:
        """Reliability of the rows ``start:stop`` as the analysis sees them: SPES per token, then (input
        maps, ``pool`` given, e.g. ``max2d``) pooled to ``I x T'`` with ``subsampling``.  The analysis
        view drops the forced prefix and EOS rows: ``reliability_of_rows(prefix_len, -1, ...)``."""
        if len(self.half_maps) != 2:
            return float("nan")
        a, b = (h[start:stop] for h in self.half_maps)
        if a.shape[0] == 0:
            return float("nan")
        if pool is None:
            return map_reliability(a, b)
        from ..maps.pooling import aggregate

        return map_reliability(a, b, view=lambda x: aggregate(spes_view(x), pool, subsampling))


class Explainer:
    """Explains utterances with one adapter (see :mod:`.forced_decoder`) and one settings object."""

    def __init__(self, adapter, settings: ExplainSettings, progress: bool = False):
        self.adapter = adapter
        self.settings = settings
        self.perturbation = build_perturbation(settings.perturbation, settings.options)
        self.scorer = get_scorer(settings.scorer)
        self.progress = progress

    def mask_batch_size(self, n_cells: int, n_tokens: int = 1, vocab_size: int = 0,
                        device: Optional[torch.device] = None) -> int:
        """Masks per forward for ``n_cells`` frames (T or T') and ``I x V`` = ``n_tokens x vocab_size``
        output log-probabilities per mask (``vocab_size`` 0: not counted); on a CUDA ``device`` also
        bounded by its free memory (queried now: after the reference pass, before the masks)."""
        s = self.settings
        if s.mask_batch_size > 0:
            return s.mask_batch_size
        free = device_free_bytes(device) if device is not None else None
        model_size = getattr(self.adapter, "model_size", None)
        return auto_mask_batch_size(self.perturbation.target, n_cells, s.budget_mask_frames,
                                    n_tokens, vocab_size, s.budget_logits, free_bytes=free,
                                    model=model_size() if (free is not None and model_size) else DEFAULT_MODEL_SIZE)

    @torch.no_grad()
    def explain(self, utt_id: str, features: torch.Tensor, target_tokens: torch.Tensor,
                first_input: int, snapshots: Sequence[int] = (), vocab_size: Optional[int] = None) -> Explanation:
        """``features`` T x F (no padding), ``target_tokens`` I (hypothesis + EOS).

        Forced decoding uses ``prev_output_tokens = [first_input] + target_tokens[:-1]``; ``first_input``
        is the decoder's first input (``generation.teacher_forced.decoder_first_input``: EOS for
        fairseq models, ``<|startoftranscript|>`` for Whisper).  ``snapshots``: mask
        counts at which to also return the map so far (convergence curves).  ``vocab_size``: the
        hypotheses' dictionary size, checked against the model's output before any mask is run.
        """
        s = self.settings
        start_time = time.perf_counter()
        if features.ndim != 2 or features.shape[0] == 0:
            raise InputDataError(f"utterance {utt_id!r}: expected non-empty T x F features, got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise InputDataError(f"utterance {utt_id!r}: the features contain NaN or inf")
        if target_tokens.numel() == 0:
            raise InputDataError(f"utterance {utt_id!r}: empty hypothesis (it needs at least EOS)")
        target_tokens = target_tokens.to(features.device).long()
        prev = torch.cat([target_tokens.new_tensor([first_input]), target_tokens[:-1]]).unsqueeze(0)  # 1 x I
        device = getattr(self.adapter, "device", features.device)  # the model's (oracles: the features')
        # --explain-autocast: the masked passes only (refused here, before any pass, if the device lacks
        # it); the reference stays float32, as do the scores (float32 input) and the sums (float64).
        masked_pass = masked_pass_context(s.autocast, device)
        with reference_pass_context(s.autocast, device):
            ctx = self.perturbation.setup(self.adapter, features, prev)
        ref = ctx.ref_logprobs  # I x V
        if vocab_size is not None and ref.shape[-1] != vocab_size:
            raise InputDataError(f"utterance {utt_id!r}: the model predicts {ref.shape[-1]} symbols but the target "
                             f"dictionary has {vocab_size}: model and dictionary do not match")
        if int(target_tokens.max()) >= ref.shape[-1]:
            raise InputDataError(f"utterance {utt_id!r}: token id {int(target_tokens.max())} is outside the model's "
                             f"vocabulary ({ref.shape[-1]} symbols)")
        if (torch.isnan(ref) | torch.isposinf(ref)).any():  # -inf is fine: probability 0
            raise InputDataError(f"utterance {utt_id!r}: the model's reference log-probabilities (unperturbed input) "
                             "contain NaN or +inf: nothing to compare the perturbed outputs with")
        positional = ref.gather(-1, target_tokens.unsqueeze(-1)).squeeze(-1)
        # One accumulator per split-half (the design says which masks form independent halves): the
        # reliability and the early stop need them; the map pools both.
        halves = [build_estimator(s.estimator, target_tokens.numel(), ctx.labels, ctx.units_per_level, s.p)
                  for _ in range(2)]
        # Masks are drawn on the CPU and delivered to the features' device: maps do not depend on it.
        sampler = MaskSampler(ctx.units_per_level, s.p, s.seed, utt_id, device=features.device,
                              design=s.mask_design)
        monitor = ConvergenceMonitor(s.early_stop, s.early_stop_interval, s.early_stop_min_masks)
        batch = self.mask_batch_size(ctx.n_cells, *ref.shape, device)
        stops = sorted({int(n) for n in snapshots if 0 < n <= s.n_masks})
        taken: Dict[int, np.ndarray] = {}
        bar = self._progress_bar(utt_id, s.n_masks)
        done, warned_non_finite = 0, False
        while done < s.n_masks:
            # Cut batches at snapshot and early-stop check points (masks do not depend on the cut).
            limit = min(s.n_masks, done + batch)
            for n in stops:
                if done < n < limit:
                    limit = n
            if monitor.enabled:
                limit = min(limit, (done // s.early_stop_interval + 1) * s.early_stop_interval)
            masks = sampler.batch(done, limit - done)
            with masked_pass:
                logprobs = self.perturbation.logprobs(self.adapter, ctx, masks, prev)  # N x I x V
            logprobs = logprobs.float()
            if s.autocast != NO_AUTOCAST and not warned_non_finite and \
                    (torch.isnan(logprobs) | torch.isposinf(logprobs)).any():
                # the scorer counts them as the largest change, as in float32; in float16 they may be overflows
                warned_non_finite = True
                logger.warning("utterance %s: non-finite log-probabilities under --explain-autocast %s (an "
                               "overflow?); they score as the largest change: compare with --explain-autocast none",
                               utt_id, s.autocast)
            scores = self.scorer(ref, logprobs)  # N x I
            for level, rows in masks.rows.items():
                for half in (0, 1):
                    sel = (masks.halves[level] == half).nonzero().flatten()
                    if len(sel):
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
        half_maps = tuple(h.saliency().cpu().numpy().astype(np.float32) for h in halves)
        seconds = time.perf_counter() - start_time
        return Explanation(halves[0].saliency(halves[1]).cpu().numpy().astype(np.float32),
                           positional.cpu().numpy().astype(np.float32), done, seconds, taken,
                           list(ctx.units_per_level), ctx.n_encoder_frames, int(ref.shape[-1]),
                           reliability=map_reliability(*half_maps),
                           reliability_per_token=per_token_reliability(*half_maps),
                           half_maps=half_maps)

    def _progress_bar(self, utt_id: str, total: int):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="mask", desc=f"{self.settings.target} {utt_id}", leave=False,
                    dynamic_ncols=True, mininterval=1.0)
