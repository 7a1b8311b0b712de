"""SPES saliency: input (SM^X, SLIC segments of the spectrogram) and encoder output (SM^H).

Layers, each in its own module: segmentation -> masks -> perturbations (registry) -> scorers
(registry) -> accumulator -> explainer; forced_decoder adapts fairseq models; convergence holds the
early-stop criterion; normalisers re-exports the analysis normalisers.  See docs/explain.md.
"""
from .accumulator import SaliencyAccumulator  # noqa: F401
from .explainer import Explainer, ExplainSettings, Explanation  # noqa: F401
from .forced_decoder import FairseqForcedDecoder  # noqa: F401
from .masks import MaskSampler  # noqa: F401
from .perturbations import PERTURBATIONS, register_perturbation  # noqa: F401
from .scorers import SCORERS, register_scorer  # noqa: F401
