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
                         subsampling: int = 4):
    """records: id -> I x T x F (target input) or I x T' (target encoder) saliency."""
    with StoreWriter(path, KIND_SALIENCY, {"target": target, "n_masks": 8}) as w:
        for utt, sal in records.items():
            n_rows = sal.shape[0]
            toks = list(tokens[utt]) if tokens else list(range(4, 4 + n_rows - 1)) + [2]
            t = sal.shape[1]
            meta = {"tokens": toks, "token_strings": [f"w{t_}" for t_ in toks],
                    "n_frames": t if target == "input" else t * subsampling,
                    "n_encoder_frames": -(-t // subsampling) if target == "input" else t,
                    "subsampling": subsampling, "prefix_len": prefix_len, "n_masks": 8}
            w.write(utt, {"saliency": sal}, meta)
    return path
