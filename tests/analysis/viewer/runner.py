"""Run ``xattn view`` in-process through the ``xattn`` dispatcher (user errors become one line there)."""
from tests.analysis.cli_runner import CliResult, run_xattn


def run_view(*args) -> CliResult:
    return run_xattn("view", *args)
