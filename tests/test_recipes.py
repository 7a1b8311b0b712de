"""The paper's hydra recipes (examples/configs) pass fairseq's config validation, build their models
at the paper's sizes (on the meta device: nothing is allocated) and hold the paper's hyper-parameters;
the per-recipe READMEs (examples/<recipe>/README.md) agree with them, their commands parse and their
data preparation runs."""
import ast
import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import fairseq_xattn.plugin  # noqa: F401  (registers our components)
from fairseq.dataclass.initialize import add_defaults, hydra_init
from fairseq.dataclass.utils import omegaconf_no_object_check
from fairseq.models import build_model
from tests.models.tiny_model import FakeTask, make_dictionary

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"

# recipe -> (vocabulary of the paper's model, paper's parameter count)
RECIPES = {
    "base_asr_en": (8000, 125e6),
    "small_asr_pretrain": (16002, 474e6),
    "small_asr_st": (16002, 474e6),
    "large_asr_pretrain": (16002, 878e6),
    "large_asr_st": (16002, 878e6),
    "tiny_asr": (200, None),
}


def load_recipe(name: str):
    """Compose the recipe as fairseq-hydra-train does (FairseqConfig schema, dataclass defaults)."""
    hydra_init(name)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name=name, overrides=["task.data=/nonexistent", "common.user_dir=/x"])
    add_defaults(cfg)
    with omegaconf_no_object_check():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    return cfg


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_validates_and_builds_at_the_paper_size(name, capsys):
    cfg = load_recipe(name)
    assert cfg.task._name == "speech_to_text_ctc" and cfg.criterion._name == "ctc_multi_loss"
    assert (cfg.criterion.ce_weight, cfg.criterion.ctc_src_weight, cfg.criterion.ctc_tgt_weight) == (5.0, 1.0, 2.0)
    vocab, paper = RECIPES[name]
    with torch.device("meta"):
        model = build_model(cfg.model, FakeTask(make_dictionary(vocab)))
    n = sum(p.numel() for p in model.parameters())
    with capsys.disabled():
        print(f"\n  {name}: {n / 1e6:.1f}M parameters" + (f" (paper {paper / 1e6:.0f}M)" if paper else ""))
    if paper:
        assert abs(n - paper) / paper < 0.05


def test_stage_two_recipes_differ_from_stage_one_only_where_the_paper_says():
    for size in ("small", "large"):
        one, two = load_recipe(f"{size}_asr_pretrain"), load_recipe(f"{size}_asr_st")
        assert one.model == two.model
        assert one.task.multitask_asr_prob == 1.0 and two.task.multitask_asr_prob == 0.5
        assert two.lr_scheduler._name == "fixed"
        assert two.optimization.lr[0] == {"small": 1e-4, "large": 1e-5}[size]
    assert load_recipe("large_asr_pretrain").lr_scheduler._name == "piecewise_warmup_inverse_sqrt"


# --- the paper's hyper-parameters (docs/method.md section 7, paper Appendix B) ------------------------
EXAMPLES = CONFIGS.parent
USER_DIR = EXAMPLES.parent / "fairseq_xattn"
PAPER_RECIPES = ["base_asr_en", "small_asr_pretrain", "small_asr_st", "large_asr_pretrain", "large_asr_st"]
MULTILINGUAL = [name for name in PAPER_RECIPES if name != "base_asr_en"]
#: README of each recipe folder -> the configs it documents
READMES = {
    "base_asr_en": ["base_asr_en"],
    "multilingual_small": ["small_asr_pretrain", "small_asr_st"],
    "multilingual_large": ["large_asr_pretrain", "large_asr_st"],
}
#: rows every README table must have (the hyper-parameters of docs/method.md section 7)
REQUIRED_TABLE_KEYS = {
    "model.encoder_layers", "model.decoder_layers", "model.encoder_attention_heads", "model.encoder_embed_dim",
    "model.encoder_ffn_embed_dim", "model.ctc_src_layer", "model.dropout", "criterion.ce_weight",
    "criterion.ctc_src_weight", "criterion.ctc_tgt_weight", "criterion.label_smoothing", "optimizer._name",
    "optimizer.adam_betas", "optimizer.weight_decay", "optimization.clip_norm", "optimization.lr",
    "lr_scheduler._name", "optimization.max_update", "dataset.max_tokens", "optimization.update_freq",
    "distributed_training.distributed_world_size", "dataset.train_subset", "dataset.valid_subset",
}


def readme(folder: str) -> str:
    return (EXAMPLES / folder / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str, lang: str) -> List[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def prep_splits(folder: str) -> List[str]:
    """The splits the README's `xattn prep ... --splits A,B,...` writes."""
    found = re.findall(r"^xattn prep .*--splits (\S+)", "\n".join(code_blocks(readme(folder), "bash")), flags=re.M)
    assert len(found) == 1, f"examples/{folder}/README.md: expected one xattn prep --splits command, got {found}"
    return found[0].split(",")


def folder_of(name: str) -> str:
    return next(folder for folder, names in READMES.items() if name in names)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_recipe_holds_the_paper_hyper_parameters(name):
    cfg = load_recipe(name)
    large = name.startswith("large")
    # AdamW (0.9, 0.98), weight decay 0.001 (fairseq's adam decouples it: see the next test)
    assert cfg.optimizer._name == "adam"
    assert tuple(ast.literal_eval(cfg.optimizer.adam_betas)) == (0.9, 0.98)
    assert cfg.optimizer.weight_decay == 0.001
    assert cfg.model.dropout == 0.1 and cfg.optimization.clip_norm == 10.0
    assert cfg.criterion.label_smoothing == 0.1
    assert cfg.model.ctc_src_layer == (16 if large else 8)
    assert cfg.model.depthwise_conv_kernel_size == 31
    assert cfg.task.max_source_positions == 3000  # segments over 30 s filtered
    if name == "base_asr_en":
        assert cfg.optimization.max_update == 200000
        assert (cfg.dataset.max_tokens, cfg.optimization.update_freq) == (40000, [2])
        assert cfg.distributed_training.distributed_world_size == 4
        # no language tag in the base model's targets: ignoring a first token would drop a real word
        assert cfg.criterion.ignore_prefix_size == 0
        assert (cfg.dataset.train_subset, cfg.dataset.valid_subset) == ("train", "dev")
    else:
        assert cfg.optimization.max_update == 1000000 and cfg.distributed_training.distributed_world_size == 16
        assert (cfg.dataset.max_tokens, cfg.optimization.update_freq) == ((4500, [6]) if large else (10000, [2]))
        # stage 1 pre-trains on transcripts; stage 2 draws the transcript with p 0.5, the translation otherwise
        assert cfg.task.multitask_asr_prob == (0.5 if name.endswith("_st") else 1.0)
        # targets start with <lang:xx>, given at inference by --prefix-size 1 (the task refuses anything else)
        assert cfg.criterion.ignore_prefix_size == 1
        # the splits that the README's preparation writes (xattn prep --splits ...)
        splits = prep_splits(folder_of(name))
        assert cfg.dataset.train_subset.split(",") == [s for s in splits if s.startswith("train")]
        assert cfg.dataset.valid_subset.split(",") == [s for s in splits if s.startswith("dev")]


def _optimizer_and_scheduler(cfg, params):
    from fairseq.optim import build_optimizer
    from fairseq.optim.lr_scheduler import build_lr_scheduler

    optimizer = build_optimizer(cfg.optimizer, params)
    return optimizer, build_lr_scheduler(cfg.lr_scheduler, optimizer)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_weight_decay_is_decoupled_as_in_adamw(name):
    """fairseq's adam (fairseq.optim.adam.Adam, used on CPU and on GPUs without apex) shrinks the
    weights by lr * wd directly, not through the gradient (L2): with a zero gradient one step
    multiplies them by 1 - lr * wd.  (apex's FusedAdam, used instead when installed, decouples too.)"""
    from fairseq.optim.adam import Adam

    cfg = load_recipe(name)
    p = torch.nn.Parameter(torch.full((4,), 2.0))
    optimizer, _ = _optimizer_and_scheduler(cfg, [p])
    assert isinstance(optimizer.optimizer, Adam)
    lr = 0.1
    optimizer.set_lr(lr)
    p.grad = torch.zeros_like(p)
    optimizer.step()
    # coupled L2 would give Adam a gradient wd * p and move p by about lr (to ~1.9)
    assert torch.allclose(p.detach(), torch.full((4,), 2.0 * (1 - lr * 0.001)), rtol=0, atol=1e-6)


# learning rate after u updates (paper: Noam peak 2e-3 with 25k warm-up for base and small stage 1;
# large stage 1: linear to 2e-5 over 25k, to 2e-4 over 25k more, then 1/sqrt; stage 2 constant)
NOAM = {0: 0.0, 12500: 1e-3, 25000: 2e-3, 100000: 1e-3}
SCHEDULES = {
    "base_asr_en": NOAM,
    "small_asr_pretrain": NOAM,
    "small_asr_st": {0: 1e-4, 25000: 1e-4, 500000: 1e-4},
    "large_asr_pretrain": {0: 0.0, 12500: 1e-5, 25000: 2e-5, 37500: 1.1e-4, 50000: 2e-4, 200000: 1e-4},
    "large_asr_st": {0: 1e-5, 25000: 1e-5, 500000: 1e-5},
}


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_learning_rate_schedule_is_the_papers(name):
    cfg = load_recipe(name)
    _, scheduler = _optimizer_and_scheduler(cfg, [torch.nn.Parameter(torch.zeros(1))])
    for update, lr in SCHEDULES[name].items():
        assert scheduler.step_update(update) == pytest.approx(lr, rel=1e-9, abs=1e-12), (name, update)


# --- the per-recipe READMEs --------------------------------------------------------------------
def readme_tables(folder: str) -> Dict[str, Dict[str, str]]:
    """``| hyper-parameter | yaml key | <config> | ... |`` tables: config -> yaml key -> value text."""
    values: Dict[str, Dict[str, str]] = {}
    columns = None
    for line in readme(folder).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            columns = None
        elif len(cells) > 2 and cells[1] == "yaml key":
            columns = cells[2:]
            for c in columns:
                values.setdefault(c, {})
        elif columns and not set(cells[1]) <= set("-: "):
            key = cells[1].strip("`")
            for config, value in zip(columns, cells[2:]):
                if value:
                    values[config][key] = value.strip("`")
    return values


@pytest.mark.parametrize("folder", sorted(READMES))
def test_readme_hyper_parameter_tables_match_the_yamls(folder):
    tables = readme_tables(folder)
    assert sorted(tables) == sorted(READMES[folder])
    for name, rows in tables.items():
        cfg = load_recipe(name)
        assert REQUIRED_TABLE_KEYS <= set(rows), f"{folder}/README.md misses {REQUIRED_TABLE_KEYS - set(rows)}"
        for key, text in rows.items():
            got = OmegaConf.select(cfg, key, throw_on_missing=True)
            if OmegaConf.is_config(got):
                got = OmegaConf.to_container(got)
            assert got == yaml.safe_load(text), f"examples/{folder}/README.md: {key} is {text}, {name}.yaml has {got}"


def _shell_commands(folder: str, env: Optional[Dict[str, str]] = None) -> List[List[str]]:
    """The commands of the README's bash blocks as shlex words: continuation lines joined, cut at a
    redirection; ``NAME=value`` lines are remembered and ``$NAME`` replaced (unknown names by
    ``VAR_NAME``; ``env`` pins values), ``$(xattn user-dir)`` by the plugin's folder."""
    pinned = dict(env or {})  # not overridden by the README's own assignments
    env = dict(pinned)
    commands = []
    for block in code_blocks(readme(folder), "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.replace("$(xattn user-dir)", str(USER_DIR))
            line = line.replace("$(which fairseq-hydra-train)", "fairseq-hydra-train")
            substitute = functools.partial(re.sub, r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                                           lambda m: env.get(m.group(1), f"VAR_{m.group(1)}"))
            pieces = [p.strip() for p in line.split(";") if p.strip()]
            if pieces and all(re.fullmatch(r"[A-Za-z_]\w*=\S*", p) for p in pieces):  # D=...; M=...
                for piece in pieces:
                    name, value = piece.split("=", 1)
                    env[name] = pinned.get(name, substitute(value))
                continue
            words = shlex.split(substitute(line), comments=True)
            for stop in (">", "|", "&&"):
                if stop in words:
                    words = words[: words.index(stop)]
            if words:
                commands.append(words)
    return commands


def _parse_xattn(words: List[str]) -> None:
    import argparse
    import importlib

    from fairseq_xattn.cli import SUBCOMMANDS

    module = importlib.import_module(SUBCOMMANDS[words[1]][0])
    parser = argparse.ArgumentParser(prog=f"xattn {words[1]}")
    module.add_arguments(parser)
    parser.parse_args(words[2:])


def _parse_fairseq_generate(words: List[str]) -> None:
    from fairseq import options

    args = options.parse_args_and_arch(options.get_generation_parser(), input_args=words[1:])
    assert args.task in ("speech_to_text_ctc", "speech_explain")
    if args.task == "speech_to_text_ctc":  # the paper's decoding
        assert (args.beam, args.no_repeat_ngram_size) == (5, 5)
    else:  # the paper's explanation settings
        p = {"input": 0.5, "encoder": 0.7}[args.explain_target]
        assert (args.explain_masks, args.explain_p) == (20000, p)


def _parse_hydra_train(words: List[str]) -> None:
    assert words[1:5:2] == ["--config-dir", "--config-name"] and words[2] == "examples/configs", words
    name, overrides = words[4], words[5:]
    hydra_init(name)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        compose(config_name=name, overrides=overrides)  # an unknown key or bad value raises


@pytest.mark.parametrize("folder", sorted(READMES))
def test_readme_commands_parse(folder, capsys):
    """Every xattn, fairseq-generate and (torchrun) fairseq-hydra-train command of the README is parsed by
    the real CLI: no invented flag, no bad value, no unknown hydra key."""
    from torch.distributed.run import get_args_parser

    checked = {"xattn": 0, "fairseq-generate": 0, "fairseq-hydra-train": 0}
    for words in _shell_commands(folder):
        line = shlex.join(words)
        try:
            if words[0] == "xattn":
                _parse_xattn(words)
            elif words[0] == "fairseq-generate":
                _parse_fairseq_generate(words)
            elif words[0] == "torchrun":
                launcher = get_args_parser().parse_args(words[1:])
                assert launcher.training_script == "fairseq-hydra-train"
                _parse_hydra_train([launcher.training_script] + launcher.training_script_args)
            elif words[0] == "fairseq-hydra-train":
                _parse_hydra_train(words)
            else:
                continue
        except SystemExit as e:  # argparse's way of refusing
            pytest.fail(f"examples/{folder}/README.md: {line}\n  refused ({e}): {capsys.readouterr().err[-500:]}")
        checked["fairseq-hydra-train" if words[0] == "torchrun" else words[0]] += 1
    assert checked["xattn"] >= 10 and checked["fairseq-generate"] >= 4 and checked["fairseq-hydra-train"] >= 1, checked


# A miniature EuroParl-ST v1.1 tree: <root>/<src>/audios/<talk>.wav, <root>/<src>/<tgt>/<split>/...
EPST_WORDS = {"en": "the parliament votes on the report today with a large majority".split(),
              "it": "il parlamento vota sulla relazione oggi con una grande maggioranza".split()}


def write_mini_europarl_st(root: Path) -> Dict[str, List[str]]:
    """Two directions, train/dev/test; talks at 16 kHz and 44.1 kHz, segments out of time order, texts
    with quotes.  Returns the expected source texts per (direction, split) in segments.lst order."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    expected = {}
    for src, tgt in (("en", "it"), ("it", "en")):
        (root / src / "audios").mkdir(parents=True, exist_ok=True)
        for split, talks in (("train", 3), ("dev", 1), ("test", 2)):
            d = root / src / tgt / split
            d.mkdir(parents=True)
            files = {"segments.lst": [], f"segments.{src}": [], f"segments.{tgt}": [], "speeches.lst": [],
                     "speakers.lst": []}
            for k in range(talks):
                talk = f"{src}.2009{split}.{k}-{100 + k}"
                sr = 44100 if k % 2 else 16000
                audio = np.zeros(sr * 6, dtype=np.float32)
                audio[int(0.5 * sr):int(2.75 * sr)] = 0.25  # segment 2 is a constant block: its cut is checkable
                audio[int(3.2 * sr):int(5.5 * sr)] = 0.1 * rng.standard_normal(int(5.5 * sr) - int(3.2 * sr))
                sf.write(root / src / "audios" / f"{talk}.wav", audio, sr)
                files["speeches.lst"].append(talk)
                files["speakers.lst"].append(f"{talk}_{5000 + k}")
                for start, end in ((3.2, 5.5), (0.5, 2.75)):
                    files["segments.lst"].append(f"{talk} {start} {end}")
                    files[f"segments.{src}"].append(" ".join(rng.choice(EPST_WORDS[src], 5)) + ' "quoted"')
                    files[f"segments.{tgt}"].append(" ".join(rng.choice(EPST_WORDS[tgt], 5)))
            for name, lines in files.items():
                (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
            expected[f"{src}-{tgt}/{split}"] = files[f"segments.{src}"]
    return expected


def test_readme_data_preparation_runs_and_feeds_the_recipes(tmp_path, monkeypatch):
    """The README's EuroParl-ST script and commands, run on a miniature tree: one wav per segment, texts
    and speakers carried over, then `xattn prep` and the task loading the yamls' train/valid splits."""
    import soundfile as sf

    from fairseq_xattn.cli import main as xattn
    from fairseq_xattn.tasks import SpeechToTextCtcTask

    scripts = {folder: code_blocks(readme(folder), "python") for folder in READMES}
    assert scripts["base_asr_en"] and scripts["multilingual_small"] == scripts["base_asr_en"]
    (tmp_path / "europarl_st_manifests.py").write_text(scripts["base_asr_en"][0], encoding="utf-8")
    expected = write_mini_europarl_st(tmp_path / "epst")
    monkeypatch.chdir(tmp_path)
    for folder, names in READMES.items():
        data = None
        for words in _shell_commands(folder, env={"EPST": str(tmp_path / "epst")}):
            if words[:2] == ["python", "europarl_st_manifests.py"]:
                subprocess.run([sys.executable] + words[1:], check=True, capture_output=True)
            elif words[:2] == ["xattn", "prep"]:
                assert xattn(words[1:] + ["--workers", "1", "--no-progress"]) == 0
                data = tmp_path / words[3]
        assert data is not None, folder
        for name in names:
            cfg = load_recipe(name)
            cfg.task.data = str(data)
            task = SpeechToTextCtcTask.setup_task(cfg.task)
            for subset in (cfg.dataset.train_subset, cfg.dataset.valid_subset):
                task.load_dataset(subset)
                assert len(task.dataset(subset)) > 0
    # what the script wrote, checked once: ids, texts, speakers, audio cut at the segment times
    rows = [line.split("\t") for line in (tmp_path / "raw_multi" / "test_en.tsv").read_text().splitlines()]
    header, rows = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
    assert header == ["id", "audio", "src_text", "speaker", "src_lang", "tgt_text", "tgt_lang"]
    assert [r["src_text"] for r in rows] == expected["en-it/test"]
    assert [r["id"] for r in rows] == ["en.2009test.0-100_0", "en.2009test.0-100_1", "en.2009test.1-101_0",
                                       "en.2009test.1-101_1"]
    assert [r["speaker"] for r in rows] == ["5000", "5000", "5001", "5001"]
    assert {r["tgt_lang"] for r in rows} == {"it"}
    audio, sr = sf.read(tmp_path / "raw_multi" / rows[3]["audio"])  # 44.1 kHz talk, segment 0.5-2.75 s
    assert sr == 44100 and len(audio) == round(2.75 * sr) - round(0.5 * sr)
    assert abs(audio - 0.25).max() < 1e-3  # exactly the constant block of the talk
    asr = (tmp_path / "raw_asr_en" / "test.tsv").read_text().splitlines()
    assert asr[0].split("\t") == ["id", "audio", "src_text", "speaker", "src_lang"]


def test_index_points_to_every_recipe_and_states_the_tiny_budget():
    import importlib.util

    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for folder in READMES:
        assert f"({folder}/README.md)" in index and (EXAMPLES / folder / "README.md").is_file()
    tiny = load_recipe("tiny_asr")
    spec = importlib.util.spec_from_file_location("demo", EXAMPLES.parent / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    budget = demo.Budget()
    assert f"`max_update: {tiny.optimization.max_update}`" in index
    assert f"to {budget.max_update} updates with a {budget.train_minutes:g}-minute limit" in index
