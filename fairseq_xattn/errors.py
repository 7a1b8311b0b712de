"""The one error type for user mistakes (pure Python).

A :class:`UserError` is something the user can fix: a bad flag, a file that is missing or malformed,
stores that do not belong together.  Its message is one line naming the culprit (file and line, flag,
store and utterance) and the fix.  The ``xattn`` dispatcher and our fairseq tasks print it as one line
and exit with status 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A user mistake; ``str(error)`` is the one-line message shown to the user."""


class OptionError(UserError, ValueError):
    """Options (flags, config keys) that are missing, malformed or do not go together."""


def report_user_errors_in_one_line(program: str) -> None:
    """For commands we do not own (fairseq-generate, fairseq-train): an uncaught :class:`UserError` is
    printed as ``PROGRAM: error: MESSAGE`` and the process exits with status 2; anything else keeps
    Python's traceback.  Installed once, by :mod:`fairseq_xattn.plugin`."""
    import atexit
    import logging
    import os
    import sys

    if getattr(sys.excepthook, "_xattn_user_errors", False):
        return
    previous = sys.excepthook
    failed = []

    def hook(exc_type, exc, tb):
        if isinstance(exc, UserError):
            failed.append(exc)
            sys.stderr.write(f"{program}: error: {exc}\n")
        else:
            previous(exc_type, exc, tb)

    def exit_status_2():  # registered first, so it runs after every later atexit handler (stores close)
        if failed:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)

    hook._xattn_user_errors = True
    sys.excepthook = hook
    atexit.register(exit_status_2)


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a named folder must hold) does not exist."""


class InputDataError(UserError, ValueError):
    """Input data that cannot be used as it is (NaN audio, a model and a dictionary that do not match)."""
