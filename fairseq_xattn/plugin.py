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

import os  # noqa: E402
import sys  # noqa: E402

from . import compat  # noqa: E402
from .errors import report_user_errors_in_one_line  # noqa: E402

compat.apply()
# a user error in fairseq-generate/-train (a bad --explain-* flag, a store of another run) is one line
report_user_errors_in_one_line(os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fairseq")

# Registration happens on import; order follows the pipeline.
from . import models  # noqa: E402,F401
from . import criterions  # noqa: E402,F401
from . import tasks  # noqa: E402,F401
from . import optim  # noqa: E402,F401


def _print_task_options_after_help(argv) -> None:
    """``fairseq-generate --task speech_explain --help`` lists only fairseq's own options: fairseq parses
    ``--help`` before it adds the task's.  When our task is named, its options follow fairseq's help
    (printed at exit, after fairseq's, without touching fairseq's parser)."""
    if not ({"-h", "--help"} & set(argv)):
        return
    names = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--task"] + \
        [a.split("=", 1)[1] for a in argv if a.startswith("--task=")]
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    ours = [n for n in names if n in TASK_DATACLASS_REGISTRY
            and TASK_DATACLASS_REGISTRY[n].__module__.startswith("fairseq_xattn")]
    if not ours:
        return
    import argparse
    import atexit

    from fairseq.dataclass.utils import gen_parser_from_dataclass

    def show():
        parser = argparse.ArgumentParser(prog=f"--task {ours[0]}", add_help=False, usage=argparse.SUPPRESS)
        gen_parser_from_dataclass(parser, TASK_DATACLASS_REGISTRY[ours[0]]())
        sys.stdout.write(f"\ntask {ours[0]} (fairseq_xattn) options:\n")
        sys.stdout.write(parser.format_help().split("\n", 1)[-1] if parser.format_help().startswith("\n") else
                         parser.format_help())
        sys.stdout.flush()

    atexit.register(show)


_print_task_options_after_help(sys.argv)
