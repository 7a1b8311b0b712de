"""The one error type for user mistakes (pure Python).

A :class:`UserError` is something the user can fix: a bad flag, a file that is missing or malformed,
stores that do not belong together.  Its message is one line naming the culprit (file and line, flag,
store and utterance) and the fix.  The ``xattn`` dispatcher and our fairseq tasks print it as one line
and exit with status 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A user mistake; ``str(error)`` is the one-line message shown to the user."""
