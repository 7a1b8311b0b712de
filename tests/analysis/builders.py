"""Hand-built attention and saliency stores for the analysis tests."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from fairseq_xattn.stores import KIND_CROSS_ATTENTION, KIND_SALIENCY, StoreWriter


def write_attention_store(path, records: Dict[str, np.ndarray], tokens: Optional[Dict[str, Sequence[int]]] = None,
                          prefix_len: int = 0, subsampling: int = 4, n_frames: Optional[Dict[str, int]] = None):
    """records: id -> L x H x I x T' attention."""
    with StoreWriter(path, KIND_CROSS_ATTENTION, {"beam": 5}) as w:
        for utt, att in records.items():
            n_rows = att.shape[2]
            toks = list(tokens[utt]) if tokens else list(range(4, 4 + n_rows - 1)) + [2]
            meta = {"tokens": toks, "token_strings": [f"w{t}" for t in toks], "text": "x", "reference": "x",
                    "n_frames": (n_frames or {}).get(utt, att.shape[3] * subsampling),
                    "n_encoder_frames": att.shape[3], "subsampling": subsampling, "prefix_len": prefix_len,
                    "score": -1.0}
            w.write(utt, {"attention": att}, meta)
    return path


def write_saliency_store(path, records: Dict[str, np.ndarray], target: str,
                         tokens: Optional[Dict[str, Sequence[int]]] = None, prefix_len: int = 0,
                         subsampling: int = 4, extra_meta: Optional[Dict[str, Dict]] = None):
    """records: id -> I x T x F (target input) or I x T' (target encoder) saliency; ``extra_meta``: id ->
    more record meta (e.g. reliability)."""
    with StoreWriter(path, KIND_SALIENCY, {"target": target, "n_masks": 8}) as w:
        for utt, sal in records.items():
            n_rows = sal.shape[0]
            toks = list(tokens[utt]) if tokens else list(range(4, 4 + n_rows - 1)) + [2]
            t = sal.shape[1]
            meta = {"tokens": toks, "token_strings": [f"w{t_}" for t_ in toks],
                    "n_frames": t if target == "input" else t * subsampling,
                    "n_encoder_frames": -(-t // subsampling) if target == "input" else t,
                    "subsampling": subsampling, "prefix_len": prefix_len, "n_masks": 8,
                    **(extra_meta or {}).get(utt, {})}
            w.write(utt, {"saliency": sal}, meta)
    return path


def write_oracle_stores(data_dir, out_dir, split: str = "test", seed: int = 0):
    """Saliency (input and encoder) and attention stores for a tiny_s2t split, from its word timings.

    Each content token's map is 1 on its word's frames (encoder frames: the windows they fall in),
    EOS gets noise.  Returns the paths of (input saliency, encoder saliency, attention) stores.
    """
    import csv
    import math
    from pathlib import Path

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    rows = list(csv.DictReader(open(data_dir / f"{split}.tsv"), delimiter="\t"))
    words = list(csv.DictReader(open(data_dir / f"{split}.words.tsv"), delimiter="\t"))
    rng = np.random.default_rng(seed)
    sx, sh, ca, toks = {}, {}, {}, {}
    for r in rows:
        u, T = r["id"], int(r["n_frames"])
        Tp = math.ceil(T / 4)
        spans = [(int(w["start_frame"]), int(w["end_frame"])) for w in words if w["id"] == u]
        I = len(spans) + 1
        m, e, a = np.zeros((I, T, 80)), np.zeros((I, Tp)), np.full((2, 2, I, Tp), 1e-3)
        for i, (s, t) in enumerate(spans):
            m[i, s:t] = 1.0
            e[i, s // 4:(t + 3) // 4] = 1.0
            a[:, :, i, s // 4:(t + 3) // 4] = 1.0
        m[-1], e[-1] = rng.random((T, 80)), rng.random(Tp)
        sx[u], sh[u], ca[u] = m + 0.01 * rng.random(m.shape), e, a / a.sum(-1, keepdims=True)
        toks[u] = list(range(4, 4 + I - 1)) + [2]
    return (write_saliency_store(out_dir / "sx", sx, "input", tokens=toks),
            write_saliency_store(out_dir / "sh", sh, "encoder", tokens=toks),
            write_attention_store(out_dir / "ca", ca, tokens=toks))
