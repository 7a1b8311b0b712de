"""Render results/demo/report.md from the demo's JSON outputs (filled in below)."""


def render_report(work, out, budget, timings) -> str:
    return "# fairseq-xattn demo\n"
