"""fairseq-xattn: cross-attention and perturbation saliency for fairseq speech-to-text models.

Importing the package has no side effects of its own: the stores (:mod:`fairseq_xattn.stores`), the
map maths (:mod:`fairseq_xattn.maps`) and the analysis import neither fairseq nor torch.  When fairseq
is already loaded -- fairseq's ``--user-dir`` imports this package from inside fairseq -- the fairseq
components are registered (:mod:`fairseq_xattn.plugin`); anything else that needs them imports
``fairseq_xattn.plugin``.
"""
import sys as _sys

__version__ = "0.1.0"

if "fairseq" in _sys.modules:
    from . import plugin  # noqa: F401,E402
