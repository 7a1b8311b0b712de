"""Build the synthetic bilingual corpus: English and Italian audio for every sentence pair of the
template grammar, word timings, and raw manifests that ``xattn prep`` consumes.

Layout (see docs/corpus.md)::

    <out>/audio/{en,it}/<id>.wav        16 kHz mono 16-bit
    <out>/<split>.tsv                   English audio: id audio duration src_text tgt_text speaker src_lang tgt_lang
    <out>/<split>_it.tsv                Italian audio (it -> en), same columns
    <out>/timings/<split>[_it].jsonl    one line per utterance: id, lang, duration, words [{word,start,end,merged}],
                                        translation_id, alignment [[source word, translation word], ...]
    <out>/corpus.json                   seed, sizes, voices per split

Splits: ``train``; ``dev`` and ``test`` (sentences never in train, training voices); ``test_voices``
(the test sentences spoken by voices kept out of training).

Determinism: sentences, voices, rates, pitches and noise come from numpy generators seeded by
(seed, split, index); every synthesis runs in a freshly forked child of a worker that has never
synthesised (espeak-ng drifts across syntheses in one process), with espeak's random source
seeded per utterance.  Same seed -> same bytes, whatever the number of workers.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ...errors import OptionError
from .grammar import Phrase, SentenceGrammar
from .worker_pool import LeanWorkerPool

logger = logging.getLogger(__name__)

OUTPUT_SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test", "test_voices")

# Human-sounding espeak-ng English voices: accent + voice variant.  Held-out voices use variants
# that never occur in training.
EN_TRAIN_VOICES = (
    "en-us", "en-us+f3", "en-us+m3", "en-us+klatt", "en-gb-scotland+m3", "en-gb-scotland+f2",
    "en-029+m5", "en-029+f1", "en+f3", "en+m1", "en+klatt2", "en-gb-x-rp+m2", "en-gb-x-rp+f1",
    "en-gb-x-gbclan+m4", "en-gb-x-gbclan+f2", "en-gb-x-gbcwmd+m5", "en-gb-x-gbcwmd+f3",
    "en-us-nyc+m1", "en-us-nyc+f1", "en-us+m2", "en+m4", "en-gb-scotland+klatt", "en-029+klatt2",
    "en-us+f2",
)
EN_HELDOUT_VOICES = ("en-us+m6", "en-gb-x-rp+f4", "en-gb-scotland+m7", "en+klatt3")
IT_TRAIN_VOICES = ("it", "it+m1", "it+m2", "it+m3", "it+f1", "it+f2", "it+f3", "it+klatt", "it+m4", "it+klatt2")
IT_HELDOUT_VOICES = ("it+m6", "it+f4")

BASE_RATE = 175  # words per minute
RATE_JITTER = 0.15  # +-15 %
PITCH_RANGE = (38, 62)
SNR_DB_RANGE = (30.0, 45.0)  # light white noise: pauses are digital zeros otherwise


@dataclass
class UtteranceJob:
    """Everything a worker needs to synthesise one utterance (picklable)."""

    utt_id: str
    text: str
    lang: str
    voice: str
    rate: int
    pitch: int
    snr_db: float
    noise_seed: List[int]
    espeak_seed: int  # espeak's own random source (breathy voice variants)
    wav_path: str


def synthesize_utterance(job: UtteranceJob) -> Dict:
    """Synthesise ``job.text``, add light noise, resample to 16 kHz, write the wav; return its timings."""
    import soundfile as sf
    import soxr

    from .espeak import SAMPLE_RATE, synthesize_in_fresh_process
    from .timings import check_word_timings, word_timings

    syn = synthesize_in_fresh_process(job.text, job.voice, job.rate, job.pitch, seed=job.espeak_seed)
    if len(syn.audio) == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {job.utt_id} ({job.text!r}, voice {job.voice})")
    audio = syn.audio.astype(np.float64) / 32768.0
    audio = soxr.resample(audio, SAMPLE_RATE, OUTPUT_SAMPLE_RATE, quality="HQ")
    voiced = audio[np.abs(audio) > 1e-4]
    rms = float(np.sqrt(np.mean(voiced ** 2))) if voiced.size else 0.05
    rng = np.random.default_rng(job.noise_seed)
    audio = audio + rng.normal(0.0, rms * 10 ** (-job.snr_db / 20.0), size=audio.shape)
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
    Path(job.wav_path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(job.wav_path, pcm, OUTPUT_SAMPLE_RATE, subtype="PCM_16", format="WAV")
    duration = round(len(pcm) / OUTPUT_SAMPLE_RATE, 5)
    # timings on espeak's sample grid, limited to the espeak samples the resampled audio covers
    # (resampling may shorten it by a fraction of a sample); clamping seconds afterwards could
    # collapse a short final word to zero length
    words = word_timings(job.text, syn, SAMPLE_RATE, n_samples=len(pcm) * SAMPLE_RATE // OUTPUT_SAMPLE_RATE)
    check_word_timings(words, duration, f"{job.utt_id} ({job.text!r}, voice {job.voice})")
    return {"id": job.utt_id, "duration": duration, "words": words}


def _init_worker() -> None:
    from .espeak import Espeak

    Espeak.get()  # initialise once per worker, before any forked synthesis


def draw_sentences(n: int, seed: int, max_attempts_factor: int = 50) -> List[Phrase]:
    """``n`` distinct sentence pairs (distinct English text), in a seed-determined order."""
    grammar = SentenceGrammar(np.random.default_rng([seed, 0]))
    seen, out = set(), []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > max_attempts_factor * n + 1000:
            raise RuntimeError(f"the grammar could not produce {n} distinct sentences")
        p = grammar.sentence()
        key = " ".join(p.en)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def split_sizes(size: int, eval_size: Optional[int] = None) -> Dict[str, int]:
    """Number of sentence pairs per split; ``test_voices`` re-speaks the ``test`` sentences."""
    n_eval = max(1, size // 40) if eval_size is None else eval_size
    if n_eval < 1:
        raise OptionError(f"--eval-size must be at least 1 (got {n_eval})")
    n_train = size - 2 * n_eval
    if n_train < 1:
        raise OptionError(f"--size {size} is too small for dev/test splits of {n_eval} sentences each")
    return {"train": n_train, "dev": n_eval, "test": n_eval, "test_voices": n_eval}


def _voice_settings(seed: int, split_index: int, k: int, lang_index: int, voices: Sequence[str]) -> Dict:
    rng = np.random.default_rng([seed, 1, split_index, k, lang_index])
    return {
        "voice": voices[int(rng.integers(len(voices)))],
        "rate": int(round(BASE_RATE * (1.0 + rng.uniform(-RATE_JITTER, RATE_JITTER)))),
        "pitch": int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        "snr_db": float(rng.uniform(*SNR_DB_RANGE)),
        "noise_seed": [seed, 2, split_index, k, lang_index],
        "espeak_seed": int(rng.integers(1, 2 ** 31 - 1)),
    }


def plan_corpus(out: Path, size: int, seed: int, eval_size: Optional[int] = None) -> Dict[str, List[Dict]]:
    """Per split, the sentence pairs with the English and Italian utterance jobs (no synthesis yet)."""
    sizes = split_sizes(size, eval_size)
    sentences = draw_sentences(sizes["train"] + sizes["dev"] + sizes["test"], seed)
    chunks = {"train": sentences[: sizes["train"]]}
    chunks["dev"] = sentences[sizes["train"]: sizes["train"] + sizes["dev"]]
    chunks["test"] = sentences[sizes["train"] + sizes["dev"]:]
    chunks["test_voices"] = chunks["test"]
    plan: Dict[str, List[Dict]] = {}
    for split_index, split in enumerate(SPLITS):
        held_out = split == "test_voices"
        en_voices = EN_HELDOUT_VOICES if held_out else EN_TRAIN_VOICES
        it_voices = IT_HELDOUT_VOICES if held_out else IT_TRAIN_VOICES
        items = []
        for k, pair in enumerate(chunks[split]):
            base = f"{split}_{k:05d}"
            jobs = {}
            for lang_index, (lang, words, voices) in enumerate((("en", pair.en, en_voices), ("it", pair.it, it_voices))):
                utt_id = f"{base}_{lang}"
                jobs[lang] = UtteranceJob(
                    utt_id=utt_id, text=" ".join(words), lang=lang,
                    wav_path=str(out / "audio" / lang / f"{utt_id}.wav"),
                    **_voice_settings(seed, split_index, k, lang_index, voices))
            items.append({"pair": pair, "jobs": jobs})
        plan[split] = items
    return plan


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="utt")


def _tsv_escape(text: str) -> str:
    if any(c in text for c in "\t\n\r"):
        raise ValueError(f"text contains a tab or newline: {text!r}")
    return text


def build_corpus(out, size: int = 8000, seed: int = 1, workers: Optional[int] = None,
                 eval_size: Optional[int] = None, progress: bool = False) -> Dict:
    """Synthesise the corpus into ``out`` (created) and return its summary (also in corpus.json).

    ``size`` is the number of distinct sentence pairs (train + dev + test); ``test_voices`` adds
    the test sentences again with held-out voices.  Every sentence pair gives one English and one
    Italian utterance.
    """
    out = Path(out)
    if size < 3:
        raise OptionError(f"--size must be at least 3 (got {size})")
    split_sizes(size, eval_size)  # refuses impossible sizes before anything is written
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(out, size, seed, eval_size)
    jobs = [it["jobs"][lang] for split in SPLITS for it in plan[split] for lang in ("en", "it")]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    # lean worker processes (no torch) that only initialise espeak; each synthesis forks from them
    results: Dict[str, Dict] = {}
    with LeanWorkerPool(workers) as pool:
        for res in _progress(pool.map("synthesize_utterance", jobs), len(jobs), "synthesising", progress):
            results[res["id"]] = res

    (out / "timings").mkdir(exist_ok=True)
    header = ["id", "audio", "duration", "src_text", "tgt_text", "speaker", "src_lang", "tgt_lang"]
    summary = {"seed": seed, "size": size, "sample_rate": OUTPUT_SAMPLE_RATE, "splits": {}}
    for split in SPLITS:
        for src, tgt, suffix in (("en", "it", ""), ("it", "en", "_it")):
            rows, timing_lines = [], []
            for item in plan[split]:
                job, other = item["jobs"][src], item["jobs"][tgt]
                res = results[job.utt_id]
                pair: Phrase = item["pair"]
                links = pair.links if src == "en" else [(b, a) for a, b in pair.links]
                rows.append([job.utt_id, os.path.relpath(job.wav_path, out), f"{res['duration']:.5f}",
                             _tsv_escape(job.text), _tsv_escape(other.text), job.voice, src, tgt])
                timing_lines.append(json.dumps({
                    "id": job.utt_id, "lang": src, "duration": res["duration"], "text": job.text,
                    "words": res["words"], "translation_id": other.utt_id,
                    "alignment": sorted([int(a), int(b)] for a, b in links),
                }, ensure_ascii=False))
            with open(out / f"{split}{suffix}.tsv", "w", encoding="utf-8", newline="\n") as f:
                f.write("\t".join(header) + "\n")
                for r in rows:
                    f.write("\t".join(r) + "\n")
            with open(out / "timings" / f"{split}{suffix}.jsonl", "w", encoding="utf-8", newline="\n") as f:
                for line in timing_lines:
                    f.write(line + "\n")
        summary["splits"][split] = {
            "sentences": len(plan[split]),
            "hours_en": round(sum(results[i["jobs"]["en"].utt_id]["duration"] for i in plan[split]) / 3600, 4),
            "voices_en": sorted({i["jobs"]["en"].voice for i in plan[split]}),
            "voices_it": sorted({i["jobs"]["it"].voice for i in plan[split]}),
        }
    with open(out / "corpus.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return summary
