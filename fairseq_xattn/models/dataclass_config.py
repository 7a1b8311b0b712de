"""Model configs as fairseq hands them to ``build_model``."""
from __future__ import annotations

from dataclasses import fields
from typing import Type, TypeVar

from fairseq.utils import safe_getattr

C = TypeVar("C")


def complete_dataclass_config(config_class: Type[C], cfg) -> C:
    """Every field of ``config_class`` from ``cfg`` (argparse Namespace, DictConfig or dataclass), the
    missing ones at their defaults: fairseq applies arch functions to partial configs (``_name:
    xattn_conformer_tiny`` in a hydra yaml), so ``build_model`` cannot assume the dataclass was merged."""
    if isinstance(cfg, config_class):
        return cfg
    values = {}
    for f in fields(config_class):
        if f.name.startswith("_"):
            continue
        value = safe_getattr(cfg, f.name, None)
        values[f.name] = f.default if value is None else value
    return config_class(**values)


def set_default(cfg, name: str, value) -> None:
    """An arch function's value for ``name``, unless the config already sets it (Namespace or DictConfig)."""
    from omegaconf import OmegaConf, open_dict

    if safe_getattr(cfg, name, None) is None:
        if OmegaConf.is_config(cfg):
            with open_dict(cfg):
                setattr(cfg, name, value)
        else:
            setattr(cfg, name, value)
