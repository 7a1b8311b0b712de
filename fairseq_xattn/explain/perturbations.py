"""Perturbation kinds (registry ``PERTURBATIONS``): what a mask occludes and how the model is re-run.

A perturbation is set up once per utterance (:meth:`Perturbation.setup`) and returns a
:class:`PerturbationContext`: the *units* a mask occludes per level, the ``labels`` mapping every
cell of the saliency map to its unit, and the reference log-probabilities.  Then
:meth:`Perturbation.logprobs` runs the model on one :class:`~fairseq_xattn.explain.masks.MaskBatch`.

* ``input_slic`` (target ``input``): units are SLIC segments of the ``T x F`` spectrogram, one
  level per patches-per-second value; an occluded segment is set to the model's "no signal" value
  (:func:`input_fill_value`: 0, the CMVN mean, for our models; the utterance's log-mel of silence
  for Whisper).  Cells: ``T x F`` (the real frames).  Each mask is a full encoder + decoder pass.
* ``encoder_frames`` (target ``encoder``): units are the ``T'`` encoder states; an occluded state is
  set to 0 (all D features).  Cells: ``T'``.  The encoder runs once; masks re-run the decoder only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type

import torch

from ..errors import OptionError
from ..geometry import FRAME_SHIFT_SECONDS
from ..registry import Registry
from .masks import MaskBatch
from .segmentation import multi_level_labels

PERTURBATIONS: "Registry[Type[Perturbation]]" = Registry("perturbation")


register_perturbation = PERTURBATIONS.register_class


def perturbation_options(name: str, values: Mapping[str, Any] = ()) -> Any:
    """The perturbation's options (its ``Options`` dataclass), defaults overridden by ``values``."""
    options_cls = PERTURBATIONS.get(name).Options
    known = {f.name for f in fields(options_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OptionError(f"perturbation {name!r} has no option(s) {unknown}; it takes {sorted(known)}")
    return options_cls(**dict(values))


def build_perturbation(name: str, options: Mapping[str, Any] = ()) -> "Perturbation":
    return PERTURBATIONS.get(name)(perturbation_options(name, options))


@dataclass
class NoOptions:
    """A perturbation without options."""


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
    #: "input" or "encoder": what the saliency map is over (registry ``targets.TARGETS``).
    target = ""
    #: its options: a dataclass whose fields (with ``help`` metadata) become ``--explain-*`` flags
    Options: type = NoOptions

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    def setup(self, adapter, features: torch.Tensor, prev_output_tokens: torch.Tensor) -> PerturbationContext:
        """``features`` T x F (unpadded), ``prev_output_tokens`` 1 x I."""
        raise NotImplementedError

    def logprobs(self, adapter, ctx: PerturbationContext, masks: MaskBatch,
                 prev_output_tokens: torch.Tensor) -> torch.Tensor:
        """``N x I x V`` log-probabilities of the ``masks.size`` perturbed copies."""
        raise NotImplementedError


def input_fill_value(adapter, features: torch.Tensor) -> Optional[float]:
    """The value occluded input cells of ``features`` (``T x F``) take, from the adapter (the model)
    when it says (``input_fill_value``; Whisper: log-mel of silence), else None (0, the CMVN mean)."""
    own = getattr(adapter, "input_fill_value", None)
    return float(own(features)) if own is not None else None


@dataclass
class InputSlicOptions:
    """Options of ``input_slic`` (SPES / MFPP defaults)."""

    patches_per_second: Sequence[float] = field(default=(400.0, 500.0, 600.0), metadata={
        "help": "SLIC levels (MFPP): segments per second of audio, one level per value"})
    compactness: float = field(default=0.1, metadata={"help": "SLIC compactness"})
    sigma: float = field(default=0.0, metadata={"help": "SLIC Gaussian smoothing sigma"})
    threshold_seconds: float = field(default=7.5, metadata={
        "help": "audio longer than this gets the segment count of this duration"})
    frame_shift_seconds: float = field(default=FRAME_SHIFT_SECONDS, metadata={
        "flag": "frame_shift", "help": "seconds per input frame"})

    def __post_init__(self):
        self.patches_per_second = [float(x) for x in self.patches_per_second]


@register_perturbation("input_slic")
class InputSlicPerturbation(Perturbation):
    target = "input"
    Options = InputSlicOptions
    fill_value = 0.0  # an occluded segment takes the CMVN mean, unless the model says otherwise

    def setup(self, adapter, features, prev_output_tokens):
        o = self.options
        labels_np = multi_level_labels(features.detach().cpu().numpy(), o.patches_per_second, o.compactness,
                                       o.sigma, o.threshold_seconds, o.frame_shift_seconds)
        labels = [torch.from_numpy(lab).to(features.device) for lab in labels_np]
        lengths = torch.tensor([features.shape[0]], device=features.device)
        model_fill = input_fill_value(adapter, features)
        # the unperturbed utterance's value goes back to the encoder with every perturbed copy
        fill_kwargs = {} if model_fill is None else {"fill_value": model_fill}
        encoded = adapter.encode(features.unsqueeze(0), lengths, **fill_kwargs)
        ref = adapter.decode_logprobs(encoded, prev_output_tokens)[0]
        frames_per_pass = getattr(adapter, "input_frames_per_pass", None)
        return PerturbationContext([int(lab.max()) + 1 for lab in labels], labels, ref,
                                   n_cells=int(frames_per_pass(features.shape[0]) if frames_per_pass
                                               else features.shape[0]),
                                   n_encoder_frames=adapter.n_encoder_frames(encoded),
                                   state={"features": features, "fill_kwargs": fill_kwargs,
                                          "fill": self.fill_value if model_fill is None else model_fill})

    def logprobs(self, adapter, ctx, masks, prev_output_tokens):
        features = ctx.state["features"]  # T x F
        occluded = torch.zeros(masks.size, *features.shape, dtype=torch.bool, device=features.device)
        for level, rows in masks.rows.items():
            # k x S_l segment bits -> k x T x F cell bits through the level's label map.
            occluded[rows] = masks.occluded[level][:, ctx.labels[level]]
        perturbed = features.masked_fill(occluded, ctx.state["fill"])  # N x T x F
        lengths = torch.full((masks.size,), features.shape[0], device=features.device)
        return adapter.logprobs_for_inputs(perturbed, lengths, prev_output_tokens, **ctx.state["fill_kwargs"])


@register_perturbation("encoder_frames")
class EncoderFramesPerturbation(Perturbation):
    target = "encoder"

    def setup(self, adapter, features, prev_output_tokens):
        lengths = torch.tensor([features.shape[0]], device=features.device)
        encoded = adapter.encode(features.unsqueeze(0), lengths)
        ref = adapter.decode_logprobs(encoded, prev_output_tokens)[0]
        t = adapter.n_encoder_frames(encoded)  # real-audio frames: the map's cells and the mask units
        labels = [torch.arange(t, device=features.device)]
        # the decoder attends every state (Whisper's window: 1500): that is the memory per mask
        n_states = int(adapter.encoder_states(encoded).shape[0]) if hasattr(adapter, "encoder_states") else t
        return PerturbationContext([t], labels, ref, n_cells=max(t, n_states), n_encoder_frames=t,
                                   state={"zeroing": adapter.prepare_frame_zeroing(encoded)})

    def logprobs(self, adapter, ctx, masks, prev_output_tokens):
        (level, rows), = masks.rows.items()
        zeroed = torch.zeros(masks.size, ctx.units_per_level[0], dtype=torch.bool, device=rows.device)
        zeroed[rows] = masks.occluded[level]
        return adapter.logprobs_with_frames_zeroed(ctx.state["zeroing"],
                                                   zeroed, prev_output_tokens)
