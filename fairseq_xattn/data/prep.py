"""``xattn prep``: audio files + transcripts [+ translations] -> a fairseq S2T data directory.

Input: a folder of raw manifests ``<split>.tsv`` (see :mod:`fairseq_xattn.data.manifest`; the
synthetic corpus of ``xattn corpus`` is one), optionally with ``timings/<split>.jsonl``.
Output (``<out>``)::

    fbank80.zip               80-dim Kaldi filterbanks, one stored .npy per utterance (<split>/<id>.npy)
    <split>.tsv               id audio n_frames tgt_text speaker src_text src_lang tgt_lang
    spm_unigram_tgt.{model,vocab,txt}   target SentencePiece model and fairseq dictionary
                                        (transcripts and translations; language tags as pieces)
    spm_unigram_src.{model,vocab,txt}   source (transcript) model and dictionary, for CTC
    config.yaml               read by the speech_to_text_ctc task (and by fairseq's speech_to_text)
    timings/<split>.jsonl     copied from the input when present

Without translations (ASR data) ``tgt_text`` is the transcript.  With translations the target
language tags ``<lang:xx>`` are prepended (``prepend_tgt_lang_tag``), so one model can be asked for
the transcript or the translation.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .feature_zip import FeatureZipWriter, zip_manifest
from .features import AudioError, audio_file_fbank
from .manifest import Manifest, ManifestError, read_raw_manifest, resolve_audio, write_tsv
from .vocabulary import lang_tag, train_sentencepiece

logger = logging.getLogger(__name__)

DEFAULT_SPLITS = ("train", "dev", "test", "test_voices")
S2T_COLUMNS = ["id", "audio", "n_frames", "tgt_text", "speaker", "src_text", "src_lang", "tgt_lang"]
ZIP_NAME = "fbank80.zip"
TGT_SPM, SRC_SPM = "spm_unigram_tgt", "spm_unigram_src"

# fairseq's SpecAugment policies (examples/speech_to_text/data_utils.py)
SPECAUGMENT_POLICIES = {
    "lb": {"time_wrap_W": 0, "freq_mask_N": 1, "freq_mask_F": 27, "time_mask_N": 1, "time_mask_T": 100, "time_mask_p": 1.0},
    "ld": {"time_wrap_W": 0, "freq_mask_N": 2, "freq_mask_F": 27, "time_mask_N": 2, "time_mask_T": 100, "time_mask_p": 1.0},
    "sm": {"time_wrap_W": 0, "freq_mask_N": 2, "freq_mask_F": 15, "time_mask_N": 2, "time_mask_T": 70, "time_mask_p": 0.2},
    "ss": {"time_wrap_W": 0, "freq_mask_N": 2, "freq_mask_F": 27, "time_mask_N": 2, "time_mask_T": 70, "time_mask_p": 0.2},
}


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="utt")


def _languages(m: Manifest, i: int, src_lang: Optional[str], tgt_lang: Optional[str], has_translation: bool):
    r = m.rows[i]
    src = r.get("src_lang", "").strip() or src_lang
    tgt = r.get("tgt_lang", "").strip() or tgt_lang
    if not has_translation:
        tgt = src
    return src, tgt


def _features_job(job):
    key, wav, where = job
    try:
        feats, dur = audio_file_fbank(wav)
    except AudioError as e:
        raise ManifestError(f"{where}: {e}") from None
    return key, feats, dur


def check_specaugment(specaugment: Optional[str]) -> Optional[str]:
    """The SpecAugment policy name, or None for "none"/None; anything else is an error."""
    if specaugment is None or specaugment == "none":
        return None
    if specaugment not in SPECAUGMENT_POLICIES:
        raise ValueError(f"--specaugment {specaugment!r}: choose from {', '.join(SPECAUGMENT_POLICIES)} or none")
    return specaugment


def write_config_yaml(out: Path, lang_tags: bool, specaugment: Optional[str], has_source_vocab: bool = True) -> Path:
    import yaml

    cfg: Dict = {
        "audio_root": str(out.resolve()),
        "input_channels": 1,
        "input_feat_per_channel": 80,
        "sample_rate": 16000,
        "vocab_filename": f"{TGT_SPM}.txt",
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": f"{TGT_SPM}.model"},
        "prepend_tgt_lang_tag": bool(lang_tags),
    }
    if has_source_vocab:
        cfg["src_vocab_filename"] = f"{SRC_SPM}.txt"
        cfg["src_bpe_tokenizer"] = {"bpe": "sentencepiece", "sentencepiece_model": f"{SRC_SPM}.model"}
    train = ["utterance_cmvn"]
    specaugment = check_specaugment(specaugment)
    if specaugment:
        cfg["specaugment"] = dict(SPECAUGMENT_POLICIES[specaugment])
        train.append("specaugment")
    cfg["feature_transforms"] = {"_train": train, "*": ["utterance_cmvn"]}
    path = out / "config.yaml"
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
    return path


def prepare(input_dir, out_dir, splits: Optional[Sequence[str]] = None, vocab_size: int = 8000,
            src_vocab_size: Optional[int] = None, lang_tags: str = "auto", src_lang: Optional[str] = None,
            tgt_lang: Optional[str] = None, specaugment: Optional[str] = "lb", progress: bool = False,
            workers: Optional[int] = 1) -> Dict:
    """Prepare ``out_dir`` from the raw manifests ``<input_dir>/<split>.tsv``; returns a summary.

    ``splits``: default every one of train, dev, test, test_voices that exists (train required;
    every split whose name starts with "train" trains the SentencePiece models).
    ``lang_tags``: "auto" (on when there are translations), "yes" or "no".
    ``workers``: processes computing filterbanks (None: CPU count).
    """
    # options first: a typo must not cost the minutes of feature extraction before config.yaml
    specaugment = check_specaugment(specaugment)
    if lang_tags not in ("auto", "yes", "no"):
        raise ValueError(f"lang_tags must be auto, yes or no, got {lang_tags!r}")
    input_dir, out = Path(input_dir), Path(out_dir)
    if splits is None:
        splits = [s for s in DEFAULT_SPLITS if (input_dir / f"{s}.tsv").is_file()]
    splits = list(splits)
    if not any(s.startswith("train") for s in splits):
        raise ManifestError(f"{input_dir}: no training split (a '<train...>.tsv' raw manifest) among {splits or 'nothing'}")
    manifests = {s: read_raw_manifest(input_dir / f"{s}.tsv") for s in splits}
    has_translation = any("tgt_text" in m.columns for m in manifests.values())
    if has_translation:
        for s, m in manifests.items():
            if "tgt_text" not in m.columns:
                raise ManifestError(f"{m.path}: missing column tgt_text (other splits have translations)")
    use_tags = has_translation if lang_tags == "auto" else lang_tags == "yes"

    # 1. rows and languages, checked before the expensive part
    plan: Dict[str, List[Dict]] = {}
    for s, m in manifests.items():
        rows = []
        for i, r in enumerate(m.rows):
            src, tgt = _languages(m, i, src_lang, tgt_lang, has_translation)
            if use_tags and (not src or not tgt):
                raise ManifestError(f"{m.where(i)}: language tags need src_lang and tgt_lang "
                                    f"(add the columns or pass --src-lang/--tgt-lang)")
            rows.append({"id": r["id"], "wav": resolve_audio(m, i, m.path.parent), "where": m.where(i),
                         "src_text": r["src_text"].strip(),
                         "tgt_text": (r["tgt_text"] if has_translation else r["src_text"]).strip(),
                         "speaker": r.get("speaker", "").strip(), "src_lang": src or "", "tgt_lang": tgt or ""})
        plan[s] = rows

    out.mkdir(parents=True, exist_ok=True)
    # 2. features
    n_frames: Dict[str, int] = {}
    total = sum(len(v) for v in plan.values())
    zip_path = out / ZIP_NAME
    seconds = 0.0
    jobs = [(f"{s}/{row['id']}", row["wav"], row["where"]) for s in splits for row in plan[s]]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_features_job, jobs, chunksize=8) if pool else map(_features_job, jobs)
        with FeatureZipWriter(zip_path) as zw:
            for key, feats, dur in _progress(results, total, "filterbanks", progress):
                zw.add(key, feats)  # in job order: the zip is the same for any number of workers
                n_frames[key] = int(feats.shape[0])
                seconds += dur
    finally:
        if pool is not None:
            pool.terminate()
    refs = zip_manifest(zip_path, ZIP_NAME)

    # 3. vocabularies (from the training splits)
    train_rows = [row for s in splits if s.startswith("train") for row in plan[s]]
    langs = sorted({row["tgt_lang"] for rows in plan.values() for row in rows}
                   | ({row["src_lang"] for rows in plan.values() for row in rows} if has_translation else set()))
    tags = [lang_tag(lang) for lang in langs if lang] if use_tags else []
    tgt_sentences = [row["tgt_text"] for row in train_rows]
    if has_translation:  # the target vocabulary also serves the ASR share of multitask training
        tgt_sentences += [row["src_text"] for row in train_rows]
    train_sentencepiece(tgt_sentences, out / TGT_SPM, vocab_size, user_symbols=tags)
    train_sentencepiece([row["src_text"] for row in train_rows], out / SRC_SPM, src_vocab_size or vocab_size)

    # 4. manifests, config, timings
    summary = {"splits": {}, "lang_tags": tags, "hours": round(seconds / 3600, 4)}
    for s in splits:
        rows = []
        for row in plan[s]:
            key = f"{s}/{row['id']}"
            rows.append({"id": row["id"], "audio": refs[key], "n_frames": n_frames[key], "tgt_text": row["tgt_text"],
                         "speaker": row["speaker"], "src_text": row["src_text"], "src_lang": row["src_lang"],
                         "tgt_lang": row["tgt_lang"]})
        write_tsv(out / f"{s}.tsv", S2T_COLUMNS, rows)
        timings = input_dir / "timings" / f"{s}.jsonl"
        if timings.is_file():
            (out / "timings").mkdir(exist_ok=True)
            if not (out / "timings" / f"{s}.jsonl").exists() or not os.path.samefile(timings, out / "timings" / f"{s}.jsonl"):
                shutil.copyfile(timings, out / "timings" / f"{s}.jsonl")
        summary["splits"][s] = len(rows)
    write_config_yaml(out, use_tags, specaugment)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="folder with raw manifests <split>.tsv (id, audio, src_text[, tgt_text, "
                                      "speaker, src_lang, tgt_lang]), e.g. the output of xattn corpus")
    parser.add_argument("out", help="output data folder (pass it to fairseq-train as DATA)")
    parser.add_argument("--splits", default=None,
                        help=f"comma-separated splits (default: those of {','.join(DEFAULT_SPLITS)} that exist; "
                             "e.g. train_it,dev_it,test_it for the Italian audio of the corpus)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="target SentencePiece size (upper bound; default 8000)")
    parser.add_argument("--src-vocab-size", type=int, default=None, help="source (CTC) SentencePiece size (default: --vocab-size)")
    parser.add_argument("--lang-tags", choices=("auto", "yes", "no"), default="auto",
                        help="prepend <lang:xx> to targets (auto: when there are translations)")
    parser.add_argument("--src-lang", default=None, help="source language when the manifest has no src_lang column")
    parser.add_argument("--tgt-lang", default=None, help="target language when the manifest has no tgt_lang column")
    parser.add_argument("--specaugment", default="lb", choices=(*SPECAUGMENT_POLICIES, "none"),
                        help="training SpecAugment policy of fairseq (default lb: one frequency mask of up to "
                             "27 bins and one time mask of up to 100 frames; none: no SpecAugment)")
    parser.add_argument("--workers", type=int, default=None, help="filterbank processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.time()
    summary = prepare(args.input, args.out, splits=args.splits.split(",") if args.splits else None,
                      vocab_size=args.vocab_size, src_vocab_size=args.src_vocab_size, lang_tags=args.lang_tags,
                      src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                      specaugment=args.specaugment,
                      progress=not args.no_progress, workers=args.workers)
    print(f"prepared {summary['splits']} ({summary['hours']} h of audio, language tags {summary['lang_tags'] or 'none'}) "
          f"in {args.out} in {time.time() - t0:.1f} s")
    return 0
