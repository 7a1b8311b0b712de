"""SPES saliency: input (SM^X, SLIC segments of the spectrogram) and encoder output (SM^H).

Layers, each in its own module: segmentation -> masks -> perturbations (registry) -> scorers
(registry) -> accumulator -> explainer; forced_decoder adapts fairseq models; convergence holds the
early-stop criterion; targets and settings define each option once (the task's flags come from them).  See docs/explain.md.
"""
from .accumulator import SaliencyAccumulator  # noqa: F401
from .explainer import Explainer, Explanation  # noqa: F401
from .forced_decoder import FairseqForcedDecoder  # noqa: F401
from .masks import MaskSampler  # noqa: F401
from .perturbations import PERTURBATIONS, register_perturbation  # noqa: F401
from .scorers import SCORERS, register_scorer  # noqa: F401
from .settings import ExplainSettings  # noqa: F401
from .targets import TARGETS  # noqa: F401
