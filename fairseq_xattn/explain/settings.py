"""The settings of an explanation: ONE definition of every option, its default and its help.

:class:`ExplainSettings` holds what is common to every target; the chosen perturbation's own options
(its ``Options`` dataclass in :mod:`.perturbations`) ride along in ``options``.  The fairseq task's
``--explain-*`` flags are generated from these dataclasses (:func:`explain_config_fields`) and read back
by :func:`settings_from_config`: a new setting or perturbation option is one field, here or on the
perturbation.  Field metadata: ``help``; ``flag`` when the flag's name differs from the field's
(``--explain-FLAG``); ``invert`` for a boolean shown as its negation (``--explain-no-kv-reuse``);
``speed`` for knobs that do not change the map (kept out of the store's meta).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import OptionError
from .autocast import AUTOCAST_DTYPES, NO_AUTOCAST
from .mask_batching import BUDGET_LOGITS, BUDGET_MASK_FRAMES
from .perturbations import PERTURBATIONS, perturbation_options
from .targets import TARGETS

FLAG_PREFIX = "explain_"


@dataclass
class ExplainSettings:
    """Everything that defines a saliency map (all but the speed knobs go into the store's meta)."""

    target: str = field(default="input", metadata={"help": "what the map is over (registry TARGETS)"})
    n_masks: int = field(default=20000, metadata={"flag": "masks", "help": "masks per utterance (N_X / N_H)"})
    p: Optional[float] = field(default=None, metadata={
        "help": "occlusion probability of a unit (default: the target's, 0.5 input, 0.7 encoder)"})
    seed: int = field(default=1, metadata={
        "help": "mask seed; masks of an utterance depend only on (seed, utterance id, mask index)"})
    scorer: str = field(default="kl", metadata={"help": "score of a perturbation (registry SCORERS)"})
    perturbation: Optional[str] = field(default=None, metadata={
        "help": "perturbation kind (registry PERTURBATIONS); default: the target's (input_slic / encoder_frames)"})
    early_stop: float = field(default=0.0, metadata={
        "help": "stop an utterance when the predicted correlation of its map with the converged map (split-half "
                "estimate, docs/explain.md) reaches this value (0: off; e.g. 0.99)"})
    early_stop_interval: int = field(default=500, metadata={"help": "masks between early-stop checks"})
    early_stop_min_masks: int = field(default=2000, metadata={"help": "never stop before this many masks"})
    # speed knobs: they do not change the map beyond float rounding
    mask_batch_size: int = field(default=0, metadata={"speed": True, "help": (
        "masked copies per forward pass (0: automatic, bounded by --explain-budget and --explain-budget-logits)")})
    budget_mask_frames: int = field(default=BUDGET_MASK_FRAMES, metadata={"speed": True, "flag": "budget", "help": (
        "automatic mask batch: at most this many mask x frame cells (T for input, T' for encoder)")})
    budget_logits: int = field(default=BUDGET_LOGITS, metadata={"speed": True, "help": (
        "automatic mask batch: at most this many mask x token x vocabulary elements (the N x I x V output "
        "log-probabilities, float32; the default is 128 MB per copy)")})
    kv_reuse: bool = field(default=True, metadata={"speed": True, "flag": "no_kv_reuse", "invert": True, "help": (
        "encoder target: re-project keys/values of every masked copy (slower; for checking)")})
    #: the perturbation's options (its Options dataclass fields); defaults filled in
    options: Dict[str, Any] = field(default_factory=dict, metadata={"internal": True})
    estimator: str = field(default="paper", metadata={"omit_default": True, "choices": "ESTIMATORS", "help": (
        "estimator of the map from the masks' scores (registry ESTIMATORS: paper, difference, regression); "
        "all target the paper's map, docs/explain.md")})
    mask_design: str = field(default="bernoulli", metadata={"omit_default": True, "choices": "MASK_DESIGNS", "help": (
        "how the masks of a block are drawn (registry MASK_DESIGNS: bernoulli, balanced, antithetic); "
        "every design occludes each unit of a mask independently with probability p")})
    autocast: str = field(default=NO_AUTOCAST, metadata={"omit_default": True, "choices": "AUTOCAST_DTYPES", "help": (
        "run the masked forward passes under torch.autocast with this dtype (none, bf16, fp16) on the model's "
        "device; the reference pass, the scores and the maps stay float32. Changes the maps by the dtype's "
        "rounding (docs/explain.md), so it is recorded in the store")})

    def __post_init__(self):
        target = TARGETS.get(self.target)
        if self.p is None:
            self.p = target.p
        if self.perturbation is None:
            self.perturbation = target.perturbation
        perturbation = PERTURBATIONS.get(self.perturbation)
        if perturbation.target != self.target:
            raise OptionError(f"perturbation {self.perturbation!r} explains target {perturbation.target!r}, "
                             f"not {self.target!r}")
        if self.n_masks < 1:
            raise OptionError(f"--explain-masks must be >= 1 (got {self.n_masks})")
        AUTOCAST_DTYPES.get(self.autocast)  # an unknown value names the flag and the choices
        self.options = dataclasses.asdict(perturbation_options(self.perturbation, self.options))

    def store_meta(self) -> Dict[str, Any]:
        """Settings that define the maps (recorded in the store; a resumed run must match them)."""
        # settings added after stores were first written are left out at their default, so that those
        # stores (which did not record them) resume with the same maps
        meta = {f.name: getattr(self, f.name) for f in fields(self)
                if not f.metadata.get("speed") and not f.metadata.get("internal")
                and not (f.metadata.get("omit_default") and getattr(self, f.name) == f.default)}
        meta.update(self.options)
        return meta


# ------------------------------------------------------------------- fairseq flags from the dataclasses

def _is_sequence(tp) -> bool:
    return getattr(tp, "__origin__", None) in (list, tuple, Sequence, List, Tuple) or \
        str(tp).startswith(("Sequence[", "typing.Sequence[", "List[", "typing.List["))


def _option_fields() -> List[Tuple[dataclasses.Field, str]]:
    """(field, owner) for ExplainSettings' user fields and every perturbation's options, each once."""
    out = [(f, "settings") for f in fields(ExplainSettings) if not f.metadata.get("internal")]
    seen = {f.metadata.get("flag", f.name): "settings" for f, _ in out}
    for name, cls in sorted(PERTURBATIONS.items()):
        for f in fields(cls.Options):
            flag = f.metadata.get("flag", f.name)
            if flag in seen and seen[flag] != f"perturbation {name}":
                raise ValueError(f"--explain-{flag.replace('_', '-')} is declared twice ({seen[flag]} and "
                                 f"perturbation {name}): give one of them another flag name")
            seen[flag] = f"perturbation {name}"
            out.append((f, name))
    return out


def explain_config_fields(choice_enum) -> List[Tuple[str, Any, dataclasses.Field]]:
    """``(name, type, field)`` triples for ``dataclasses.make_dataclass``: one ``explain_*`` field per
    option.  Sequences become comma-separated strings; ``choice_enum`` (fairseq's ChoiceEnum) gives
    the registry-fed choices of ``target``."""
    import typing

    out, done = [], set()
    for f, owner in _option_fields():
        flag = FLAG_PREFIX + f.metadata.get("flag", f.name)
        if flag in done:
            continue
        done.add(flag)
        help_text = f.metadata.get("help", "") + ("" if owner == "settings" else f" (perturbation {owner})")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        tp = typing.get_type_hints(ExplainSettings if owner == "settings" else PERTURBATIONS[owner].Options)[f.name]
        if f.metadata.get("invert"):
            tp, default = bool, not default
        elif f.name == "target":
            tp = choice_enum(sorted(TARGETS))
        elif f.metadata.get("choices"):  # a registry of variants feeds the flag's choices
            tp = choice_enum(sorted(_registry(f.metadata["choices"])))
        elif _is_sequence(tp):
            tp, default = str, ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in default)
        out.append((flag, tp, field(default=default, metadata={"help": help_text})))
    return out


def _registry(name: str):
    from . import estimators, mask_designs

    return {"ESTIMATORS": estimators.ESTIMATORS, "MASK_DESIGNS": mask_designs.MASK_DESIGNS,
            "AUTOCAST_DTYPES": AUTOCAST_DTYPES}[name]


def settings_from_config(cfg) -> ExplainSettings:
    """Read the ``explain_*`` fields of a fairseq task config back into :class:`ExplainSettings`."""
    common: Dict[str, Any] = {}
    options: Dict[str, Any] = {}
    perturbation = getattr(cfg, FLAG_PREFIX + "perturbation", None) or \
        TARGETS.get(str(getattr(cfg, FLAG_PREFIX + "target", "input"))).perturbation
    for f, owner in _option_fields():
        if owner not in ("settings", perturbation):
            continue
        flag = FLAG_PREFIX + f.metadata.get("flag", f.name)
        if not hasattr(cfg, flag):
            continue
        value = getattr(cfg, flag)
        if f.metadata.get("invert"):
            value = not value
        elif isinstance(value, str) and f.name != "target" and isinstance(f.default, (list, tuple)):
            try:
                value = [float(x) for x in value.split(",") if x.strip()]
            except ValueError:
                raise OptionError(f"--{flag.replace('_', '-')} {value!r}: expected comma-separated numbers, "
                                 f"e.g. {','.join(f'{x:g}' for x in f.default)}") from None
        if owner == "settings":
            common[f.name] = str(value) if f.name == "target" or f.metadata.get("choices") else value
        else:
            options[f.name] = value
    return ExplainSettings(**common, options=options)

