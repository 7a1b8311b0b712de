"""``xattn average``: average the parameters of the last N fairseq checkpoints.

The paper averages the last 7 (base) or 25 (small, large) checkpoints.  fairseq's own
``scripts/average_checkpoints.py`` is not part of the installed fairseq package, so this is ours:
same selection rules (``checkpoint{E}.pt`` by epoch, ``checkpoint_{E}_{U}.pt`` by update), the
result is a regular fairseq checkpoint (cfg and task state of the newest input, no optimizer
state) that fairseq-generate loads.
"""
import argparse
import collections
import re
from pathlib import Path
from typing import Dict, List, Sequence

import torch

_BY_EPOCH = re.compile(r"^checkpoint(\d+)\.pt$")
_BY_UPDATE = re.compile(r"^checkpoint_\d+_(\d+)\.pt$")


def last_checkpoints(directory: Path, n: int, by: str = "update") -> List[Path]:
    """The ``n`` newest checkpoints of ``directory``, newest first, by update or epoch number."""
    pattern = _BY_UPDATE if by == "update" else _BY_EPOCH
    found = []
    for path in Path(directory).iterdir():
        m = pattern.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    if len(found) < n:
        hint = ("save them with --save-interval-updates and --keep-interval-updates"
                if by == "update" else "keep them by not passing --no-epoch-checkpoints")
        raise FileNotFoundError(
            f"{directory}: asked for the last {n} checkpoints by {by}, found {len(found)} "
            f"({', '.join(p.name for _, p in sorted(found)) or 'none'}); {hint}"
        )
    return [p for _, p in sorted(found, reverse=True)[:n]]


def average_checkpoints(paths: Sequence[Path]) -> Dict:
    """Average the ``model`` state of fairseq checkpoints; keep the rest of the newest one."""
    from fairseq import checkpoint_utils  # noqa: F401  (fairseq_xattn import applied the shims)
    import fairseq_xattn  # noqa: F401

    if not paths:
        raise ValueError("no checkpoint to average")
    summed: "collections.OrderedDict[str, torch.Tensor]" = collections.OrderedDict()
    newest = None
    for path in paths:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
        if newest is None:
            newest = state
        params = state["model"]
        if summed and set(params) != set(summed):
            diff = sorted(set(params) ^ set(summed))[:5]
            raise ValueError(f"{path}: parameters differ from {paths[0]} (e.g. {diff}); "
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
    parser.add_argument("--last", type=int, default=None,
                        help="average the last N checkpoints of the directory given as input")
    parser.add_argument("--by", choices=["update", "epoch"], default="update",
                        help="how --last picks checkpoints: checkpoint_E_U.pt (update) or checkpointE.pt")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")


def main(args: argparse.Namespace) -> int:
    if args.last is not None:
        if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
            raise SystemExit("xattn average: --last needs exactly one directory as input")
        paths = last_checkpoints(Path(args.inputs[0]), args.last, args.by)
    else:
        paths = [Path(p) for p in args.inputs]
        for p in paths:
            if not p.is_file():
                raise SystemExit(f"xattn average: no checkpoint at {p}")
    state = average_checkpoints(paths)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {args.output}")
    return 0
