"""Demo-like synthetic inputs for the viewer: stores, a fairseq data folder, audio, word times.

Every utterance is ``seconds`` of "speech" (voiced harmonic words with their own pitch and formant
band, pauses between them, light noise), its 80-bin filterbank computed like ``xattn prep`` does,
``n_words`` words cut into ``n_tokens`` subword tokens, and maps shaped the way the real ones are:

* CA ``L x H x I' x T'`` (``I'`` = language tag + tokens + EOS): each token's softmax row peaks on its
  word's encoder frames; deeper layers sharper, each head a little shifted;
* SM^X ``I' x T x F``: SPES-like, i.e. the mean "KL" of random masks of SLIC segments (3 levels) that
  occlude each cell, the KL of token i growing with the occluded energy of its word's region;
* SM^H ``I' x T'``: the same with encoder frames zeroed with probability 0.7.

So sizes and compressibility are those of real maps, not of white noise.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from fairseq_xattn.data.feature_zip import FeatureZipWriter, zip_manifest
from fairseq_xattn.data.features import SAMPLE_RATE, compute_fbank
from fairseq_xattn.analysis.timestamps.formats import json_lines
from fairseq_xattn.analysis.timestamps.timing import TimedWord, UtteranceTimestamps
from fairseq_xattn.data.manifest import write_tsv
from fairseq_xattn.geometry import encoder_length
from fairseq_xattn.stores import (KIND_CROSS_ATTENTION, KIND_SALIENCY, StoreWriter, attention_record_meta,
                                  saliency_record_meta)

SUBSAMPLING = 4
PROVENANCE = {"model_sha256": "m" * 8, "data_sha256": "d" * 8, "gen_subset": "test"}


@dataclass
class SyntheticUtterance:
    utt_id: str
    audio: np.ndarray          # N float32 at 16 kHz
    features: np.ndarray       # T x 80
    words: List[Tuple[str, float, float]]
    tokens: List[str]          # content tokens (SentencePiece pieces)
    token_word: List[int]
    attention: np.ndarray      # L x H x I' x T'  (I' = 1 lang tag + I tokens + EOS)
    saliency_input: np.ndarray  # I' x T x F
    saliency_encoder: np.ndarray  # I' x T'


REFERENCE_WORD = "zebra"  # not in VOCAB: a sure substitution
VOCAB = ["the", "black", "cat", "sees", "a", "dog", "in", "garden", "teacher", "builds", "house", "red",
         "boy", "not", "wolf", "sheep", "river", "green", "eats", "bread"]


def _speech(rng, n_words: int, seconds: float):
    """Audio and word spans: words of harmonic sound separated by short pauses."""
    n = int(seconds * SAMPLE_RATE)
    audio = 0.003 * rng.standard_normal(n)
    # word durations and the pauses before them, scaled to fill the utterance but 0.1 s at each end
    durations, pauses = rng.uniform(0.08, 0.3, n_words), rng.uniform(0.02, 0.15, n_words)
    scale = (seconds - 0.2) / (durations.sum() + pauses.sum())
    t = np.arange(n) / SAMPLE_RATE
    words = []
    end = 0.1
    for k in range(n_words):
        start = end + scale * pauses[k]
        end = start + scale * durations[k]
        words.append((start, end))
        inside = (t >= start) & (t < end)
        tt = t[inside] - start
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * tt / max(end - start, 1e-3)))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        formant = rng.uniform(2, 12)
        wave = sum(np.sin(h * phase) / h * math.exp(-((h - formant) / 4) ** 2) for h in range(1, 25))
        envelope = np.sin(np.pi * tt / (end - start)) ** 0.5
        audio[inside] += 0.3 * envelope * wave
    return audio.astype(np.float32), words


def _spes_like(rng, spectrogram: np.ndarray, token_frames: List[Tuple[int, int]], n_masks: int) -> np.ndarray:
    """``I' x T x F``: mean over random SLIC-segment masks of a per-token KL, for the cells each mask occludes."""
    from skimage.segmentation import slic

    T, F = spectrogram.shape
    x = (spectrogram - spectrogram.min()) / max(np.ptp(spectrogram), 1e-9)
    energy = x / x.sum(axis=1, keepdims=True).clip(1e-9)
    out_num = np.zeros((len(token_frames), T, F))
    out_den = np.zeros((T, F))
    for pps in (400, 500, 600):
        labels = slic(x, n_segments=max(1, round(pps * T / 100)), compactness=0.1, sigma=0, channel_axis=None,
                      start_label=0)
        n_seg = labels.max() + 1
        occluded = rng.random((n_masks, n_seg)) < 0.5            # masks x segments
        # importance of each segment for each token: energy of the token's frames inside the segment
        weight = np.zeros((len(token_frames), n_seg))
        for i, (a, b) in enumerate(token_frames):
            cells = np.zeros((T, F))
            cells[a:b] = energy[a:b]
            weight[i] = np.bincount(labels.ravel(), cells.ravel(), minlength=n_seg)
        kl = occluded @ weight.T + 0.02 * rng.random((n_masks, len(token_frames)))  # masks x tokens
        seg_num = kl.T @ occluded                                   # tokens x segments
        seg_den = occluded.sum(axis=0)
        out_num += seg_num[:, labels]
        out_den += seg_den[labels]
    return (out_num / out_den.clip(1)).astype(np.float32)


def make_utterance(utt_id: str, rng: np.random.Generator, seconds: float = 3.0, n_tokens: int = 15,
                   n_layers: int = 2, n_heads: int = 4, n_masks: int = 200) -> SyntheticUtterance:
    n_words = max(1, round(n_tokens * 2 / 3))
    audio, spans = _speech(rng, n_words, seconds)
    features = compute_fbank(audio)
    T = features.shape[0]
    Tp = encoder_length(T, SUBSAMPLING)
    # cut words into tokens: the first n_tokens - n_words words get two pieces
    long_words = [w for w in VOCAB if len(w) >= 4]
    n_split = n_tokens - n_words  # the first n_split words (all long) get two pieces
    names = []
    for k in range(n_words):
        choices = long_words if k < n_split else VOCAB
        names.append(choices[int(rng.integers(len(choices)))])
    tokens, token_word = [], []
    for k, name in enumerate(names):
        pieces = [name] if k >= n_split else [name[: len(name) // 2], name[len(name) // 2:]]
        for p, piece in enumerate(pieces):
            tokens.append(("\u2581" if p == 0 else "") + piece)
            token_word.append(k)
    I = len(tokens)
    rows = I + 2  # language tag + tokens + EOS
    frames = [(int(spans[w][0] * 100), max(int(spans[w][0] * 100) + 1, int(math.ceil(spans[w][1] * 100))))
              for w in token_word]
    row_frames = [(0, T)] + frames + [(T - 10, T)]
    centres = np.array([(a + b) / 2 / SUBSAMPLING for a, b in row_frames])
    j = np.arange(Tp)
    attention = np.empty((n_layers, n_heads, rows, Tp), dtype=np.float32)
    for l in range(n_layers):
        for h in range(n_heads):
            sharp = 0.5 + 1.5 * l + 0.3 * h
            shift = rng.normal(0, 1.5)
            logits = -sharp * ((j[None, :] - centres[:, None] - shift) / 4) ** 2 + 0.7 * rng.standard_normal((rows, Tp))
            logits[:, 0] += 1.5 * (l == 0)  # an attention sink on the first frame in layer 1
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            attention[l, h] = e / e.sum(axis=1, keepdims=True)
    saliency_input = _spes_like(rng, features, row_frames, n_masks)
    enc_mask = rng.random((n_masks, Tp)) < 0.7
    weight = np.zeros((rows, Tp))
    for i, (a, b) in enumerate(row_frames):
        weight[i, a // SUBSAMPLING: max(a // SUBSAMPLING + 1, b // SUBSAMPLING)] = 1.0
    kl = enc_mask @ weight.T + 0.05 * rng.random((n_masks, rows))
    saliency_encoder = ((kl.T @ enc_mask) / enc_mask.sum(axis=0).clip(1)).astype(np.float32)
    words = [(names[k], float(spans[k][0]), float(spans[k][1])) for k in range(n_words)]
    return SyntheticUtterance(utt_id, audio, features, words, tokens, token_word, attention, saliency_input,
                              saliency_encoder)


@dataclass
class SyntheticRun:
    root: Path
    attention: Path
    saliency_input: Path
    saliency_encoder: Path
    data_dir: Path
    raw_manifest: Path
    timestamps: Path
    utterances: Dict[str, SyntheticUtterance]


def write_run(root, n_utterances: int = 3, seed: int = 0, provenance: Optional[Dict] = None,
              **utterance_options) -> SyntheticRun:
    """Stores, ``data/`` (fbank80.zip + test.tsv + timings/test.jsonl), ``raw/test.tsv`` + wavs, and
    ``timestamps/words.jsonl`` (hypothesis word times 20 ms after the reference ones) under ``root``."""
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(seed)
    utts = {f"test_{k:05d}_en": make_utterance(f"test_{k:05d}_en", rng, **utterance_options)
            for k in range(n_utterances)}
    meta = dict(PROVENANCE if provenance is None else provenance)
    ids_of = {}
    with StoreWriter(root / "attention", KIND_CROSS_ATTENTION, meta) as att, \
            StoreWriter(root / "sx", KIND_SALIENCY, {**meta, "target": "input"}) as sx, \
            StoreWriter(root / "sh", KIND_SALIENCY, {**meta, "target": "encoder"}) as sh:
        for k, (utt, u) in enumerate(utts.items()):
            ids = [9] + [10 + k for k in range(len(u.tokens))] + [2]
            strings = ["<lang:en>"] + u.tokens + ["</s>"]
            ids_of[utt] = ids
            T, Tp = u.features.shape[0], u.attention.shape[-1]
            words = [w for w, _, _ in u.words]
            text = " ".join(words)
            # every second utterance: the reference differs in its last word (one substitution)
            reference = " ".join(words[:-1] + [REFERENCE_WORD]) if k % 2 else text
            L, H = u.attention.shape[:2]
            att.write(utt, {"attention": u.attention},
                      attention_record_meta(ids, strings, text, reference, T, Tp, L, H, prefix_len=1, score=-0.5,
                                            source="beam", subsampling=SUBSAMPLING))
            common = dict(n_masks=200, units_per_level=[1, 1, 1], positional_scores=[0.0] * len(ids),
                          subsampling=SUBSAMPLING)
            sx.write(utt, {"saliency": u.saliency_input},
                     saliency_record_meta(ids, strings, T, Tp, prefix_len=1, **common))
            sh.write(utt, {"saliency": u.saliency_encoder},
                     saliency_record_meta(ids, strings, T, Tp, prefix_len=1, **common))
    data = root / "data"
    (data / "timings").mkdir(parents=True, exist_ok=True)
    with FeatureZipWriter(data / "fbank80.zip") as z:
        for utt, u in utts.items():
            z.add(f"test/{utt}", u.features)
    refs = zip_manifest(data / "fbank80.zip", "fbank80.zip")
    write_tsv(data / "test.tsv", ["id", "audio", "n_frames", "tgt_text"],
              [{"id": utt, "audio": refs[f"test/{utt}"], "n_frames": str(u.features.shape[0]),
                "tgt_text": " ".join(w for w, _, _ in u.words)} for utt, u in utts.items()])
    with open(data / "timings" / "test.jsonl", "w") as f:
        for utt, u in utts.items():
            f.write(json.dumps({"id": utt, "duration": len(u.audio) / SAMPLE_RATE,
                                "words": [{"word": w, "start": s, "end": e} for w, s, e in u.words]}) + "\n")
    raw = root / "raw"
    (raw / "audio").mkdir(parents=True, exist_ok=True)
    for utt, u in utts.items():
        sf.write(raw / "audio" / f"{utt}.wav", u.audio, SAMPLE_RATE, subtype="PCM_16")
    write_tsv(raw / "test.tsv", ["id", "audio", "src_text"],
              [{"id": utt, "audio": f"audio/{utt}.wav", "src_text": " ".join(w for w, _, _ in u.words)}
               for utt, u in utts.items()])
    # hypothesis word times as `xattn timestamps` writes them (words.jsonl), 20 ms after the true ones
    timestamps = root / "timestamps" / "words.jsonl"
    timestamps.parent.mkdir()
    timestamps.write_text(json_lines(
        UtteranceTimestamps(utt, [TimedWord(w, round(s + 0.02, 3), round(e + 0.02, 3), 0.9) for w, s, e in u.words],
                            system="synthetic") for utt, u in utts.items()))
    return SyntheticRun(root, root / "attention", root / "sx", root / "sh", data, raw / "test.tsv", timestamps, utts)
