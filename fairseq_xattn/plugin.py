"""The fairseq plugin: importing this module applies the compatibility shims and registers every
fairseq component of the package.

* tasks ``speech_to_text_ctc`` (train / generate / record cross-attention) and ``speech_explain``
* criterion ``ctc_multi_loss``
* model ``xattn_conformer`` and its archs ``xattn_conformer_{tiny,base,small,large}``
* lr scheduler ``piecewise_warmup_inverse_sqrt`` (the large model's warm-up)

fairseq's ``--user-dir fairseq_xattn`` imports the package root, which imports this module because
fairseq is loaded by then (``fairseq_xattn/__init__.py``).  Code that loads checkpoints itself imports
``fairseq_xattn.plugin``.
"""
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
