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


def disk_full(error: BaseException):
    """A full disk (or an exhausted quota) met anywhere, as a :class:`UserError` saying what to do; None
    for any other error.  (A store's writer says more: which store, and how many records it keeps.)"""
    import errno

    if isinstance(error, UserError) or not isinstance(error, OSError) or error.errno not in (errno.ENOSPC,
                                                                                             errno.EDQUOT):
        return None
    where = f" while writing {error.filename}" if error.filename else ""
    return UserError(f"no space left on the device{where}: free some space and run the same command again "
                     "(finished work is kept: stores resume, outputs are written anew)")


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
        exc = disk_full(exc) or exc
        if isinstance(exc, UserError):
            failed.append(exc)
            sys.stderr.write(f"{program}: error: {exc}\n")
        else:
            previous(exc_type, exc, tb)

    def exit_status_2():  # registered first, so it runs after every later atexit handler (stores close)
        if failed:
            _stop_child_processes()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)

    hook._xattn_user_errors = True
    sys.excepthook = hook
    atexit.register(exit_status_2)


def _stop_child_processes() -> None:
    """Stop this process's multiprocessing children (fairseq's data-loader workers) before ``os._exit``.

    ``os._exit`` skips multiprocessing's own exit handler, which would have stopped them; a worker left
    running while its parent vanishes prints a traceback of its own (``ConnectionResetError`` while it
    hands a batch over), so the one-line message would not be the only one."""
    import sys

    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    import signal

    children = multiprocessing.active_children()
    if not children:
        return
    if hasattr(signal, "SIGCHLD"):  # torch's data loader reports a worker's death from its SIGCHLD handler
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=5)


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a named folder must hold) does not exist."""


class InputDataError(UserError, ValueError):
    """Input data that cannot be used as it is (NaN audio, a model and a dictionary that do not match)."""
