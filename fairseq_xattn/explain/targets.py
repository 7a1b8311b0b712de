"""Explanation targets (registry ``TARGETS``): what a saliency map explains the output with.

A target names its default perturbation (:mod:`.perturbations`, which owns its options) and its
default occlusion probability; the grid its maps live on, as the analysis sees it, is
``fairseq_xattn.stores.schema.SALIENCY_GRIDS[name]``.  Adding a target: register it here, register its
perturbation, add its grid to the schema.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry
from ..stores.schema import SALIENCY_GRIDS


@dataclass(frozen=True)
class ExplanationTarget:
    name: str
    perturbation: str   # default perturbation (registry PERTURBATIONS)
    p: float            # default occlusion probability of a unit
    help: str


TARGETS: "Registry[ExplanationTarget]" = Registry("explanation target")


def register_target(target: ExplanationTarget) -> ExplanationTarget:
    if target.name not in SALIENCY_GRIDS:
        raise ValueError(f"target {target.name!r} has no analysis grid in stores.schema.SALIENCY_GRIDS")
    return TARGETS.register(target.name)(target)


register_target(ExplanationTarget("input", "input_slic", 0.5,
                                  "SM^X over the spectrogram (I x T x F): SLIC segments occluded with p 0.5"))
register_target(ExplanationTarget("encoder", "encoder_frames", 0.7,
                                  "SM^H over encoder states (I x T'): states zeroed with p 0.7"))
