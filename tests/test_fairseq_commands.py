"""The plugin in the stock fairseq commands: fairseq-train and fairseq-hydra-train write checkpoints of
our task, model and criterion that fairseq-generate loads back under torch >= 2.6 and decodes.
"""
import os
import re
import subprocess
from pathlib import Path


from tests.fixtures.tiny_s2t import REPO, USER_DIR, fairseq_cli

CONFIGS = REPO / "examples" / "configs"

# A micro xattn_conformer: the point is the plumbing, not the accuracy.
MICRO_MODEL = dict(encoder_layers=2, decoder_layers=1, encoder_embed_dim=48, decoder_embed_dim=48,
                   encoder_ffn_embed_dim=96, decoder_ffn_embed_dim=96, encoder_attention_heads=2,
                   decoder_attention_heads=2, conv_channels=48, depthwise_conv_kernel_size=7,
                   ctc_src_layer=1)
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _run(cmd, cwd=None):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd[:3]))} failed:\n{proc.stderr[-3000:]}"
    return proc


def _generate(data: Path, checkpoint: Path, *extra, user_dir=USER_DIR, cwd=None) -> str:
    proc = _run(fairseq_cli("generate") + [
        data, "--user-dir", user_dir, "--task", "speech_to_text_ctc", "--config-yaml", "config.yaml",
        "--gen-subset", "test", "--path", checkpoint, "--beam", "2", "--max-tokens", "4000", "--cpu",
        *extra], cwd=cwd)
    return proc.stdout


def test_fairseq_train_then_generate(tiny_data, tmp_path):
    model_args = []
    for k, v in MICRO_MODEL.items():
        model_args += [f"--{k.replace('_', '-')}", str(v)]
    _run(fairseq_cli("train") + [
        tiny_data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc", "--config-yaml", "config.yaml",
        "--train-subset", "train", "--valid-subset", "test", "--arch", "xattn_conformer_tiny", *model_args,
        "--criterion", "ctc_multi_loss", "--optimizer", "adam", "--lr", "1e-3", "--max-update", "4",
        "--max-tokens", "4000", "--save-dir", tmp_path / "ckpt", "--no-epoch-checkpoints", "--cpu",
        "--required-batch-size-multiple", "8", "--num-workers", "0"])
    # the README's form from the repository root: a relative --user-dir
    out = _generate(tiny_data, tmp_path / "ckpt" / "checkpoint_last.pt", user_dir="fairseq_xattn", cwd=REPO)
    assert len(re.findall(r"^H-\d+\t", out, flags=re.M)) == 10  # every test utterance


def test_fairseq_hydra_train_then_generate(tiny_data, tmp_path):
    overrides = [f"model.{k}={v}" for k, v in MICRO_MODEL.items()]
    checkpoint = tmp_path / "ckpt" / "checkpoint_last.pt"
    _run(fairseq_cli("hydra-train") + [
        "--config-dir", CONFIGS, "--config-name", "tiny_asr", f"task.data={tiny_data}",
        f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
        "optimization.max_update=4", "dataset.valid_subset=test", *overrides], cwd=tmp_path)
    out = _generate(tiny_data, checkpoint)
    assert len(re.findall(r"^H-\d+\t", out, flags=re.M)) == 10

    # The same checkpoint without the plugin: fairseq must fail (not decode garbage) with the error
    # that README.md's troubleshooting section explains.
    proc = subprocess.run([str(c) for c in fairseq_cli("generate") + [
        tiny_data, "--task", "speech_to_text", "--config-yaml", "config.yaml", "--gen-subset", "test",
        "--path", checkpoint, "--cpu"]], capture_output=True, text=True, env=ENV)
    assert proc.returncode != 0
    assert "KeyError: \"'_name'\"" in proc.stderr, proc.stderr[-2000:]
    assert "KeyError: \"'_name'\"" in (REPO / "README.md").read_text()


def test_checkpoint_of_an_unknown_arch_is_named(tiny_data, tiny_checkpoint, tmp_path):
    import torch

    state = torch.load(tiny_checkpoint, weights_only=False)
    state["cfg"]["model"].arch = "someone_elses_arch"
    state["cfg"]["model"]._name = "someone_elses_arch"
    torch.save(state, tmp_path / "foreign.pt")
    proc = subprocess.run([str(c) for c in fairseq_cli("generate") + [
        tiny_data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc", "--config-yaml", "config.yaml",
        "--gen-subset", "test", "--path", tmp_path / "foreign.pt", "--cpu"]], capture_output=True, text=True, env=ENV)
    assert proc.returncode != 0
    assert "unknown model architecture 'someone_elses_arch'" in proc.stderr and "--user-dir" in proc.stderr
