"""The analysis reads what the real pipeline writes: a recording run and two explain runs
(fairseq-generate in-process, tiny cached checkpoint) joined by xattn correlate and plotted."""
import json

import numpy as np

from tests.explain.generate_runner import explain_argv, generate_in_process
from tests.fixtures.tiny_s2t import USER_DIR
from .cli_runner import run_xattn


def test_correlate_and_plot_real_stores(tiny_data, tiny_checkpoint, tmp_path):
    attn = tmp_path / "attn"
    generate_in_process([str(tiny_data), "--user-dir", str(USER_DIR), "--task", "speech_to_text_ctc",
                         "--gen-subset", "test", "--path", str(tiny_checkpoint), "--max-tokens", "4000",
                         "--beam", "5", "--no-repeat-ngram-size", "5", "--cpu", "--record-cross-attn", str(attn)])
    sh, sx = tmp_path / "sh", tmp_path / "sx"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, attn, sh, "--explain-target", "encoder",
                                     "--explain-masks", "64", "--max-tokens", "4000"))
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, attn, sx, "--explain-target", "input",
                                     "--explain-masks", "16", "--explain-patches-per-second", "100,200",
                                     "--max-tokens", "4000"))
    for sal, name in ((sx, "x"), (sh, "h")):
        out = run_xattn("correlate", "--attention", attn, "--saliency", sal, "--json", tmp_path / f"{name}.json")
        assert out.returncode == 0, out.stderr
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert summary["n_utterances"] == 10
        full = summary["full_avg"]
        # every utterance with more than one content token has a defined r in [-1, 1]
        assert full["n"] + full["n_undefined"] == 10 and full["n"] >= 5
        assert -1 <= full["mean"] <= 1 and np.isfinite(full["mean"])
    utt = json.loads((attn / "index.jsonl").read_text().splitlines()[0])["id"]
    out = run_xattn("plot", "utterance", "--id", utt, "--attention", attn, "--saliency-input", sx,
                    "--saliency-encoder", sh, "--out", tmp_path / "fig", "--formats", "png")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fig.png").stat().st_size > 5000 and (tmp_path / "fig_tokens.png").exists()
