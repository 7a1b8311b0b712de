"""The plugin registers its components, with dataclass configs fairseq's argparse bridge accepts."""
import dataclasses
import subprocess
import sys
from pathlib import Path


import fairseq_xattn.plugin
from fairseq.criterions import CRITERION_DATACLASS_REGISTRY, CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY
from fairseq.tasks import TASK_DATACLASS_REGISTRY, TASK_REGISTRY

from tests.fixtures.tiny_s2t import fairseq_cli

XATTN = str(Path(sys.executable).parent / "xattn")


def test_components_are_registered_with_dataclass_configs():
    for name in ("speech_to_text_ctc", "speech_explain"):
        assert name in TASK_REGISTRY and name in TASK_DATACLASS_REGISTRY, name
    assert "ctc_multi_loss" in CRITERION_REGISTRY and "ctc_multi_loss" in CRITERION_DATACLASS_REGISTRY
    assert "xattn_conformer" in MODEL_DATACLASS_REGISTRY
    for arch in ("xattn_conformer_tiny", "xattn_conformer_base", "xattn_conformer_small",
                 "xattn_conformer_large"):
        assert arch in ARCH_MODEL_REGISTRY, arch


def _our_dataclasses():
    for registry in (TASK_DATACLASS_REGISTRY, CRITERION_DATACLASS_REGISTRY, MODEL_DATACLASS_REGISTRY):
        for name, dc in registry.items():
            if dc.__module__.startswith("fairseq_xattn"):
                yield name, dc


def test_dataclass_fields_have_real_types():
    # `from __future__ import annotations` turns field types into strings, which fairseq's
    # argparse bridge (interpret_dc_type) rejects with "field should be a type".
    found = list(_our_dataclasses())
    assert found, "no fairseq_xattn dataclass registered"
    for name, dc in found:
        for f in dataclasses.fields(dc):
            assert not isinstance(f.type, str), f"{dc.__name__}.{f.name} ({name}) has a string type"


def test_xattn_help_lists_subcommands():
    out = subprocess.run([XATTN, "--help"], capture_output=True, text=True, check=True).stdout
    from fairseq_xattn.cli import SUBCOMMANDS

    assert set(SUBCOMMANDS) >= {"corpus", "prep", "average", "score", "correlate", "faithfulness", "plot",
                                "store", "user-dir"}
    lines = out.splitlines()
    for sub in SUBCOMMANDS:  # each listed once, as the first word of its line
        assert sum(1 for line in lines if line.split()[:1] == [sub]) == 1, (sub, out)


def test_user_dir_points_at_the_importable_package():
    out = subprocess.run([XATTN, "user-dir"], capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()) == Path(fairseq_xattn.__file__).parent


def test_user_dir_pointing_nowhere_names_the_path(tmp_path):
    missing = tmp_path / "no_such_plugin"
    proc = subprocess.run(fairseq_cli("train") + [str(tmp_path), "--user-dir", str(missing)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr


def test_generate_help_lists_the_task_options():
    """fairseq parses --help before adding task options; the plugin lists ours after fairseq's help."""
    generate = str(Path(sys.executable).parent / "fairseq-generate")
    user_dir = str(Path(fairseq_xattn.__file__).parent)
    sections = {}
    for task in ("speech_explain", "speech_to_text_ctc"):
        proc = subprocess.run([generate, "DATA", "--user-dir", user_dir, "--task", task, "--help"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"task {task} (fairseq_xattn) options:" in proc.stdout, proc.stdout[-2000:]
        sections[task] = proc.stdout.split(f"task {task} (fairseq_xattn) options:")[-1]
    for flag in ("--explain-masks", "--explain-target", "--explain-patches-per-second", "--explain-hypotheses",
                 "--config-yaml"):
        assert flag in sections["speech_explain"], flag
    for flag in ("--record-cross-attn", "--teacher-forced", "--infer-tgt-lang", "--config-yaml"):
        assert flag in sections["speech_to_text_ctc"], flag
    # each task takes only the options that apply to it
    assert "--record-cross-attn RECORD_CROSS_ATTN" not in sections["speech_explain"]
    assert "--teacher-forced" not in sections["speech_explain"]
    assert "--explain-masks" not in sections["speech_to_text_ctc"]
