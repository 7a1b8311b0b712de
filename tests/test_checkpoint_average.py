"""`xattn average` gives the element-wise mean of the inputs and a checkpoint fairseq-generate loads."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_xattn.checkpoint_average import average_checkpoints, last_checkpoints

XATTN = str(Path(sys.executable).parent / "xattn")


def _perturbed_copy(src: Path, dst: Path, delta: float) -> None:
    state = torch.load(src, weights_only=False)
    for k, v in state["model"].items():
        if v.is_floating_point():
            state["model"][k] = v + delta
    torch.save(state, dst)


def test_average_is_elementwise_mean(tiny_checkpoint, tmp_path):
    a, b = tmp_path / "checkpoint_1_10.pt", tmp_path / "checkpoint_1_20.pt"
    shutil.copy(tiny_checkpoint, a)
    _perturbed_copy(tiny_checkpoint, b, 0.5)
    avg = average_checkpoints([a, b])
    ref = torch.load(tiny_checkpoint, weights_only=False)["model"]
    for k, v in ref.items():
        if v.is_floating_point():
            torch.testing.assert_close(avg["model"][k], v + 0.25, rtol=0, atol=1e-6)
    assert "last_optimizer_state" not in avg


def test_last_picks_newest_by_update_and_complains_when_short(tmp_path):
    for u in (10, 200, 30):
        (tmp_path / f"checkpoint_1_{u}.pt").write_bytes(b"")
    assert [p.name for p in last_checkpoints(tmp_path, 2, by="update")] == [
        "checkpoint_1_200.pt", "checkpoint_1_30.pt"]
    with pytest.raises(FileNotFoundError, match="found 3"):
        last_checkpoints(tmp_path, 5, by="update")


def test_any_orders_epoch_and_update_checkpoints_by_their_update_count(tiny_checkpoint, tmp_path):
    # fairseq writes checkpoint{E}.pt instead of checkpoint_E_U.pt when update U ends epoch E
    for name, updates in [("checkpoint_2_50.pt", 50), ("checkpoint3.pt", 100), ("checkpoint_4_120.pt", 120),
                          ("checkpoint_1_20.pt", 20), ("checkpoint_last.pt", 120)]:
        state = torch.load(tiny_checkpoint, weights_only=False)
        state["optimizer_history"][-1]["num_updates"] = updates
        torch.save(state, tmp_path / name)
    assert [p.name for p in last_checkpoints(tmp_path, 3)] == [
        "checkpoint_4_120.pt", "checkpoint3.pt", "checkpoint_2_50.pt"]


def test_cli_output_decodes_with_fairseq_generate(tiny_data, tiny_checkpoint, tmp_path):
    shutil.copy(tiny_checkpoint, tmp_path / "checkpoint_1_10.pt")
    _perturbed_copy(tiny_checkpoint, tmp_path / "checkpoint_1_20.pt", 0.0)
    out = tmp_path / "avg.pt"
    subprocess.run([XATTN, "average", str(tmp_path), "--last", "2", "--by", "update", "--output", str(out)], check=True,
                   capture_output=True)
    from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli

    proc = subprocess.run(fairseq_cli("generate") + [
        str(tiny_data), "--user-dir", str(USER_DIR), "--task", "speech_to_text", "--config-yaml",
        "config.yaml", "--gen-subset", "test", "--path", str(out), "--beam", "2", "--max-tokens",
        "4000", "--cpu"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sum(line.startswith("H-") for line in proc.stdout.splitlines()) == 10
