"""Which cross-attention heads time the words (numpy only).

A selection spec (``--heads``) names one or several :class:`HeadSelection` (1-based pairs):

* ``all``                 every head of every layer, averaged;
* ``layer:N``             the heads of layer N; ``layers``: one selection per layer;
* ``L:H``                 one head; ``L:H,L:H`` or ``6:*`` a named set (:func:`~fairseq_xattn.maps.heads.parse_pairs`);
  ``heads``: one selection per head;
* ``whisper``             the ``alignment_heads`` of the store's ``meta.json`` (0-based ``[layer, head]``
                          pairs, as Whisper's checkpoints give them);
* ``FILE.json``           a file holding such a 0-based list (``alignment_heads.json``);
* ``auto``                chosen on a development split by :func:`choose_heads`.

:func:`choose_heads`: every single head is scored on the development hypotheses (mean absolute boundary
error against the reference times, :mod:`.evaluate`); heads are then added best first, each kept only if
the average of the set so far lowers the error (greedy forward selection).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...maps.heads import HeadSelectionError, Pair, all_pairs, expand_pairs, from_zero_based, parse_pairs, selection_label
from .evaluate import score_system

AUTO = "auto"
WHISPER = "whisper"


@dataclass(frozen=True)
class HeadSelection:
    name: str
    pairs: Tuple[Pair, ...]


def load_alignment_heads(value, where: str) -> List[Pair]:
    """0-based ``[[layer, head], ...]`` (a list, or the text of a JSON file) -> 1-based pairs."""
    try:
        pairs = [tuple(p) for p in value]
        if not pairs or not all(len(p) == 2 and all(isinstance(x, int) and x >= 0 for x in p) for p in pairs):
            raise TypeError
    except TypeError:
        raise HeadSelectionError(f"{where}: alignment heads must be a non-empty list of 0-based [layer, head] "
                                 f"pairs, found {value!r}") from None
    return from_zero_based(pairs)


def parse_selection(spec: str, n_layers: int, n_heads: int, store_meta: Optional[Mapping] = None) -> List[HeadSelection]:
    """The selections named by ``spec`` (see the module docstring; ``auto`` is resolved by the caller)."""
    def one(name: Optional[str], pairs: Sequence[Pair]) -> HeadSelection:
        """``name`` None: the label the correlation tables use (``layer 2, head 1``)."""
        try:
            resolved = tuple(expand_pairs(pairs, n_layers, n_heads, f"--heads {spec}"))
        except ValueError as e:
            raise HeadSelectionError(str(e)) from None
        return HeadSelection(name or selection_label(resolved, n_layers, n_heads), resolved)

    if spec == "all":
        return [one(None, all_pairs(n_layers, n_heads))]
    if spec == "layers":
        return [one(None, [(l, -1)]) for l in range(1, n_layers + 1)]
    if spec == "heads":
        return [one(None, [p]) for p in all_pairs(n_layers, n_heads)]
    if spec.startswith("layer:"):
        try:
            layer = int(spec.split(":", 1)[1])
        except ValueError:
            raise HeadSelectionError(f"--heads {spec}: write layer:N with a 1-based layer number") from None
        return [one(None, [(layer, -1)])]
    if spec == WHISPER:
        heads = (store_meta or {}).get("alignment_heads")
        if heads is None:
            raise HeadSelectionError("--heads whisper: the attention store's meta.json has no 'alignment_heads' "
                                     "(a store of an imported Whisper model has); give --heads alignment_heads.json")
        return [one("whisper alignment heads", load_alignment_heads(heads, "meta.json 'alignment_heads'"))]
    if spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise HeadSelectionError(f"--heads {spec}: no such file")
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise HeadSelectionError(f"--heads {spec}: not JSON ({e})") from None
        if isinstance(value, dict) and "alignment_heads" in value:
            value = value["alignment_heads"]
        return [one(path.stem, load_alignment_heads(value, str(path)))]
    try:
        pairs = parse_pairs(spec)
    except ValueError as e:
        raise HeadSelectionError(f"--heads {spec}: not all, layers, heads, layer:N, L:H[,L:H], whisper, auto or a "
                                 f"JSON file ({e})") from None
    return [one(None, pairs)]


def choose_heads(items: Sequence, references: Mapping, method: str = "dtw", scheme: str = "auto",
                 max_heads: Optional[int] = None, **score_options) -> Tuple[HeadSelection, List[Dict]]:
    """Greedy forward selection of heads on development hypotheses (``items``: attention
    :class:`~.sources.MapItem` of one store, every one with a reference).

    Returns the chosen selection and the rows of every single head (sorted by mean error).
    """
    if not items:
        raise HeadSelectionError("--heads auto: the development store has no hypothesis")
    n_layers, n_heads = items[0].n_layers, items[0].n_heads

    def error(pairs: Sequence[Pair], name: str) -> Dict:
        hyps = {it.utt_id: it.timestamps(method, pairs, scheme) for it in items}
        return score_system(name, hyps, references, **score_options)

    singles = [error([p], selection_label([p], n_layers, n_heads)) | {"pairs": [p]} for p in all_pairs(n_layers, n_heads)]
    singles = [r for r in singles if not np.isnan(r["mean_ms"])]
    if not singles:
        raise HeadSelectionError("--heads auto: no development word matched a reference word; check the references")
    singles.sort(key=lambda r: r["mean_ms"])
    chosen = list(singles[0]["pairs"])
    best = singles[0]["mean_ms"]
    for row in singles[1:]:
        if max_heads is not None and len(chosen) >= max_heads:
            break
        trial = chosen + row["pairs"]
        err = error(trial, "trial")["mean_ms"]
        if err < best:
            chosen, best = trial, err
    chosen = sorted(chosen)
    return HeadSelection(f"auto ({' '.join(f'{l}:{h}' for l, h in chosen)})", tuple(chosen)), singles
