"""fairseq-xattn: cross-attention and perturbation saliency for fairseq speech-to-text models.

Importing the package (directly, or through fairseq's ``--user-dir``) applies the compatibility
shims of :mod:`fairseq_xattn.compat` and registers every component in fairseq's registries:

* tasks ``speech_to_text_ctc`` and ``speech_explain``
* criterion ``ctc_multi_loss``
* model ``xattn_conformer`` and its archs ``xattn_conformer_{tiny,base,small,large}``
* the cross-attention recording generator (chosen by the tasks' ``--record-cross-attn``)
* lr scheduler ``piecewise_warmup_inverse_sqrt`` (the large model's warm-up)
"""
__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by tests in a separate interpreter
    raise ImportError(
        "fairseq_xattn needs fairseq (the 'fairseq-fixed==0.12.3.1' distribution, installed with "
        "--no-deps --no-build-isolation). Run scripts/install.sh, or see README.md 'Installation'. "
        f"(import error: {e})"
    ) from e

from . import compat

compat.apply()

# Registration happens on import; order follows the pipeline.
from . import models  # noqa: E402,F401
from . import criterions  # noqa: E402,F401
from . import tasks  # noqa: E402,F401
from . import optim  # noqa: E402,F401
