"""The paper's hydra recipes (examples/configs) pass fairseq's config validation and build their
models at the paper's sizes (on the meta device: nothing is allocated)."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import fairseq_xattn  # noqa: F401  (registers our components)
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
