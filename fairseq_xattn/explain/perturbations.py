"""Perturbation kinds (registry ``PERTURBATIONS``): what a mask occludes and how the model is re-run.

A perturbation is set up once per utterance (:meth:`Perturbation.setup`) and returns a
:class:`PerturbationContext`: the *units* a mask occludes per level, the ``labels`` mapping every
cell of the saliency map to its unit, and the reference log-probabilities.  Then
:meth:`Perturbation.logprobs` runs the model on one :class:`~fairseq_xattn.explain.masks.MaskBatch`.

* ``input_slic`` (target ``input``): units are SLIC segments of the ``T x F`` spectrogram, one
  level per patches-per-second value; an occluded segment is set to 0 (the CMVN mean).
  Cells: ``T x F``.  Each mask is a full encoder + decoder pass.
* ``encoder_frames`` (target ``encoder``): units are the ``T'`` encoder states; an occluded state is
  set to 0 (all D features).  Cells: ``T'``.  The encoder runs once; masks re-run the decoder only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Type

import torch

from ..registry import Registry
from .masks import MaskBatch
from .segmentation import multi_level_labels

PERTURBATIONS: "Registry[Type[Perturbation]]" = Registry("perturbation")


def register_perturbation(name: str):
    def wrap(cls):
        cls.name = name
        return PERTURBATIONS.register(name)(cls)

    return wrap


def build_perturbation(name: str, **kwargs) -> "Perturbation":
    return PERTURBATIONS.get(name)(**kwargs)


@dataclass
class PerturbationContext:
    """What one utterance's explanation needs between mask batches."""

    units_per_level: List[int]
    labels: List[torch.Tensor]          # per level: cell shape (T x F or T') -> unit id
    ref_logprobs: torch.Tensor          # I x V
    n_cells: int                        # cells per mask forward (frames for the memory budget)
    n_encoder_frames: int               # T' of the unperturbed utterance
    state: Dict[str, Any] = field(default_factory=dict)


class Perturbation:
    name = ""
    #: "input" or "encoder": what the saliency map is over.
    target = ""

    def setup(self, adapter, features: torch.Tensor, prev_output_tokens: torch.Tensor) -> PerturbationContext:
        """``features`` T x F (unpadded), ``prev_output_tokens`` 1 x I."""
        raise NotImplementedError

    def logprobs(self, adapter, ctx: PerturbationContext, masks: MaskBatch,
                 prev_output_tokens: torch.Tensor) -> torch.Tensor:
        """``N x I x V`` log-probabilities of the ``masks.size`` perturbed copies."""
        raise NotImplementedError


@register_perturbation("input_slic")
class InputSlicPerturbation(Perturbation):
    target = "input"

    def __init__(self, patches_per_second: Sequence[float] = (400, 500, 600), compactness: float = 0.1,
                 sigma: float = 0.0, threshold_seconds: float = 7.5, frame_shift_seconds: float = 0.01,
                 fill_value: float = 0.0):
        self.patches_per_second = list(patches_per_second)
        self.compactness = compactness
        self.sigma = sigma
        self.threshold_seconds = threshold_seconds
        self.frame_shift_seconds = frame_shift_seconds
        self.fill_value = fill_value

    def setup(self, adapter, features, prev_output_tokens):
        labels_np = multi_level_labels(features.detach().cpu().numpy(), self.patches_per_second,
                                       self.compactness, self.sigma, self.threshold_seconds,
                                       self.frame_shift_seconds)
        labels = [torch.from_numpy(lab).to(features.device) for lab in labels_np]
        lengths = torch.tensor([features.shape[0]], device=features.device)
        encoded = adapter.encode(features.unsqueeze(0), lengths)
        ref = adapter.decode_logprobs(encoded, prev_output_tokens)[0]
        return PerturbationContext([int(lab.max()) + 1 for lab in labels], labels, ref,
                                   n_cells=int(features.shape[0]),
                                   n_encoder_frames=adapter.n_encoder_frames(encoded),
                                   state={"features": features})

    def logprobs(self, adapter, ctx, masks, prev_output_tokens):
        features = ctx.state["features"]  # T x F
        occluded = torch.zeros(masks.size, *features.shape, dtype=torch.bool, device=features.device)
        for level, rows in masks.rows.items():
            # k x S_l segment bits -> k x T x F cell bits through the level's label map.
            occluded[rows] = masks.occluded[level][:, ctx.labels[level]]
        perturbed = features.masked_fill(occluded, self.fill_value)  # N x T x F
        lengths = torch.full((masks.size,), features.shape[0], device=features.device)
        return adapter.logprobs_for_inputs(perturbed, lengths, prev_output_tokens)


@register_perturbation("encoder_frames")
class EncoderFramesPerturbation(Perturbation):
    target = "encoder"

    def setup(self, adapter, features, prev_output_tokens):
        lengths = torch.tensor([features.shape[0]], device=features.device)
        encoded = adapter.encode(features.unsqueeze(0), lengths)
        ref = adapter.decode_logprobs(encoded, prev_output_tokens)[0]
        t = adapter.n_encoder_frames(encoded)
        labels = [torch.arange(t, device=features.device)]
        return PerturbationContext([t], labels, ref, n_cells=t, n_encoder_frames=t,
                                   state={"zeroing": adapter.prepare_frame_zeroing(encoded)})

    def logprobs(self, adapter, ctx, masks, prev_output_tokens):
        (level, rows), = masks.rows.items()
        zeroed = torch.zeros(masks.size, ctx.units_per_level[0], dtype=torch.bool, device=rows.device)
        zeroed[rows] = masks.occluded[level]
        return adapter.logprobs_with_frames_zeroed(ctx.state["zeroing"],
                                                   zeroed, prev_output_tokens)


#: Explanation target -> default perturbation.
TARGETS = {"input": "input_slic", "encoder": "encoder_frames"}
