"""Run the `xattn` entry point in-process (a subprocess would re-import fairseq, ~10 s each here)."""
import contextlib
import io
from dataclasses import dataclass

from fairseq_xattn.cli import main as cli_main


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_xattn(*args) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())
