"""``xattn average``: average the parameters of the last N fairseq checkpoints.

The paper averages the last 7 (base) or 25 (small, large) checkpoints.  fairseq's own
``scripts/average_checkpoints.py`` is not part of the installed fairseq package, so this is ours:
selection by epoch (``checkpoint{E}.pt``), by update (``checkpoint_{E}_{U}.pt``) or both, the
result is a regular fairseq checkpoint (cfg and task state of the newest input, no optimizer
state) that fairseq-generate loads.
"""
import argparse
import collections
import re
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from .analysis.decoding import check_readable_checkpoint
from .analysis.options import positive_int
from .compat import load_checkpoint_state
from .errors import UserError
from .files import check_output

_BY_EPOCH = re.compile(r"^checkpoint(\d+)\.pt$")
_BY_UPDATE = re.compile(r"^checkpoint_\d+_(\d+)\.pt$")


class AverageError(UserError, ValueError):
    """Checkpoints that cannot be averaged (of different models, or none given)."""


class MissingCheckpointsError(AverageError, FileNotFoundError):
    """Fewer checkpoints on disk than asked for."""


def checkpoint_updates(path: Path) -> int:
    """Number of updates a fairseq checkpoint was saved at (memory-mapped: tensors are not read)."""
    check_readable_checkpoint(path, "checkpoint")
    state = load_checkpoint_state(path, mmap=True)
    history = state.get("optimizer_history") or [{}]
    return int(history[-1].get("num_updates", -1))


def last_checkpoints(directory: Path, n: int, by: str = "any") -> List[Path]:
    """The ``n`` newest checkpoints of ``directory``, newest first.

    ``by="update"``: ``checkpoint_E_U.pt`` by U; ``by="epoch"``: ``checkpoint{E}.pt`` by E;
    ``by="any"`` (default): both kinds and ``checkpoint_last.pt``, ordered by the update count stored
    in them (a copy of the same update counts once).  fairseq writes
    an update checkpoint only when the update does not end an epoch (then it writes the epoch
    checkpoint), so "any" is what keeps a regular spacing.
    """
    found = []
    for path in Path(directory).iterdir():
        m_update, m_epoch = _BY_UPDATE.match(path.name), _BY_EPOCH.match(path.name)
        if by in ("update", "any") and m_update:
            found.append((int(m_update.group(1)), path))
        elif by in ("epoch", "any") and m_epoch:
            found.append((int(m_epoch.group(1)), path))
    if by == "any":
        last = Path(directory) / "checkpoint_last.pt"
        if last.exists():  # a run stopped by --stop-time-hours saves only this one
            found.append((-1, last))
        # an epoch number is not an update count: read the count from the checkpoints
        by_updates = {}
        for _, path in found:
            by_updates.setdefault(checkpoint_updates(path), path)
        found = list(by_updates.items())
    if len(found) < n:
        hint = {"update": "save them with --save-interval-updates and --keep-interval-updates",
                "epoch": "keep them by not passing --no-epoch-checkpoints",
                "any": "keep more with --keep-interval-updates / --keep-last-epochs"}[by]
        raise MissingCheckpointsError(
            f"{directory}: asked for the last {n} checkpoints by {by}, found {len(found)} "
            f"({', '.join(p.name for _, p in sorted(found)) or 'none'}); {hint}"
        )
    return [p for _, p in sorted(found, reverse=True)[:n]]


def average_checkpoints(paths: Sequence[Path]) -> Dict:
    """Average the ``model`` state of fairseq checkpoints; keep the rest of the newest one."""
    if not paths:
        raise ValueError("no checkpoint to average")
    summed: "collections.OrderedDict[str, torch.Tensor]" = collections.OrderedDict()
    newest = None
    for path in paths:
        # raw load, not checkpoint_utils.load_checkpoint_to_cpu: that turns cfg into a DictConfig,
        # which a re-saved checkpoint would then pickle (and weights_only loading refuses)
        state = load_checkpoint_state(path)
        if newest is None:
            newest = state
        params = state["model"]
        if summed and set(params) != set(summed):
            diff = sorted(set(params) ^ set(summed))[:5]
            raise AverageError(f"{path}: parameters differ from {paths[0]} (e.g. {diff}); "
                             "checkpoints of different models cannot be averaged")
        for key, value in params.items():
            value = value.double() if value.is_floating_point() else value.clone()
            if key in summed:
                summed[key] += value
            else:
                summed[key] = value
    n = len(paths)
    averaged = collections.OrderedDict()
    for key, value in summed.items():
        ref = newest["model"][key]
        averaged[key] = (value / n).to(ref.dtype) if ref.is_floating_point() else torch.div(
            value, n, rounding_mode="floor").to(ref.dtype)
    out = dict(newest)
    out["model"] = averaged
    out.pop("last_optimizer_state", None)
    out["extra_state"] = {**newest.get("extra_state", {}), "averaged_from": [str(p) for p in paths]}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="checkpoint files, or one directory with --last")
    parser.add_argument("--last", type=positive_int, default=None,
                        help="average the last N checkpoints of the directory given as input")
    parser.add_argument("--by", choices=["any", "update", "epoch"], default="any",
                        help="how --last picks checkpoints: checkpoint_E_U.pt and checkpointE.pt by the "
                        "update count stored in them (any, default), or only one kind by its file name")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")


def main(args: argparse.Namespace) -> int:
    if args.last is not None:
        if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
            raise AverageError(f"--last needs exactly one directory as input, got {' '.join(args.inputs)}")
        paths = last_checkpoints(Path(args.inputs[0]), args.last, args.by)
    else:
        paths = [Path(p) for p in args.inputs]
        for p in paths:
            if not p.is_file():
                raise MissingCheckpointsError(f"no checkpoint at {p}")
            check_readable_checkpoint(p, "checkpoint")
    check_output(args.output, "--output")  # beside the checkpoints is fine: --last never picks averaged files
    if any(Path(args.output).resolve() == p.resolve() for p in paths):
        raise AverageError(f"--output {args.output} is one of the checkpoints to average; write the average elsewhere")
    state = average_checkpoints(paths)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {args.output}")
    return 0
