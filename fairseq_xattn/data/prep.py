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

**Features** (``--features``, :mod:`.feature_kinds`): ``fbank`` (default) writes 80-dim Kaldi
filterbanks into ``fbank80.zip``; ``whisper`` writes Whisper's log-mel (16 kHz audio of at most 30 s,
refused otherwise with the row named) into ``whisper<bins>.zip`` and ``features: whisper`` into
config.yaml, with ``n_frames`` = Whisper's frame count.  ``--like`` a folder made by
``xattn whisper-import`` prepares recordings for that Whisper model: its features (``features:
whisper``, its mel bins) are the default, and its dictionary, tokenizer files and config.yaml are copied.

**Evaluation audio for a trained model** (``--like DATA``, DATA the folder the model was trained
with): no vocabulary is trained and no training split is needed (a folder holding only ``test.tsv``
will do; every ``<split>.tsv`` of the input is prepared).  ``<out>`` is a self-contained data folder:
the new splits' manifests, one features zip per split, ``fbank80_<split>.zip`` (its own name, so that a
manifest never points into DATA's ``fbank80.zip`` by mistake), copies of the dictionaries and
SentencePiece models DATA's config.yaml names, and DATA's config.yaml with ``audio_root`` set to
``<out>``.  ``fairseq-generate <out> --path CHECKPOINT --gen-subset test ...`` then reads the new split
with exactly the model's vocabulary.  Language tags follow DATA's ``prepend_tgt_lang_tag``; each row's
tag must be in the model's dictionary.

**Safety**: prep never writes into its input (``IN == OUT`` is refused), and writes atomically: it
builds the output in a hidden sibling folder (``.<out>.prep-new-<pid>``) and swaps it into place at
the end, so a failed or interrupted run leaves a previous ``<out>`` exactly as it was.  The swap
replaces what prep writes (manifests, feature zips, vocabularies, config.yaml, timings); anything else
found in an existing ``<out>`` (e.g. a ``checkpoints/`` folder) is moved into the new one.

User errors (:class:`PrepError`, :class:`~fairseq_xattn.data.manifest.ManifestError`) are one line
naming the file, row and column or the flag; ``xattn prep`` prints them without a traceback.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import UserError
from ..language_tags import is_lang_tag, lang_tag
from .feature_kinds import FBANK, FEATURE_KINDS, WHISPER, FeatureKind
from .feature_zip import FeatureZipWriter, zip_manifest
from .features import SAMPLE_RATE, AudioError, compute_fbank, load_audio
from .manifest import Manifest, ManifestError, read_raw_manifest, resolve_audio, write_tsv
from .vocabulary import train_sentencepiece

logger = logging.getLogger(__name__)

DEFAULT_SPLITS = ("train", "dev", "test", "test_voices")
S2T_COLUMNS = ["id", "audio", "n_frames", "tgt_text", "speaker", "src_text", "src_lang", "tgt_lang"]
ZIP_NAME = "fbank80.zip"
TGT_SPM, SRC_SPM = "spm_unigram_tgt", "spm_unigram_src"
N_MEL_BINS = 80

# fairseq's SpecAugment policies (examples/speech_to_text/data_utils.py)
SPECAUGMENT_POLICIES = {
    "lb": {"time_wrap_W": 0, "freq_mask_N": 1, "freq_mask_F": 27, "time_mask_N": 1, "time_mask_T": 100, "time_mask_p": 1.0},
    "ld": {"time_wrap_W": 0, "freq_mask_N": 2, "freq_mask_F": 27, "time_mask_N": 2, "time_mask_T": 100, "time_mask_p": 1.0},
    "sm": {"time_wrap_W": 0, "freq_mask_N": 2, "freq_mask_F": 15, "time_mask_N": 2, "time_mask_T": 70, "time_mask_p": 0.2},
    "ss": {"time_wrap_W": 0, "freq_mask_N": 2, "freq_mask_F": 27, "time_mask_N": 2, "time_mask_T": 70, "time_mask_p": 0.2},
}


class PrepError(UserError, ValueError):
    """A prep option, input folder or reference data folder the user must fix (one line naming it)."""


def like_zip_name(split: str, features: str = FBANK, n_bins: int = N_MEL_BINS) -> str:
    """The features zip of one split prepared ``--like`` a model's data folder."""
    return FEATURE_KINDS.get(features).zip_name(n_bins, split)


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


# ------------------------------------------------------------------------------------------ features

def extract_features(path, features: str = FBANK, n_bins: int = N_MEL_BINS) -> Tuple[np.ndarray, float]:
    """The one place prep turns an audio file into model input, and the duration in seconds.

    ``fbank``: ``T x 80`` filterbanks (any sample rate and channel count: mixed to mono, resampled to
    16 kHz by ``load_audio``).  ``whisper``: Whisper's ``T x n_bins`` log-mel (mono mix; 16 kHz only,
    at most 30 s; ``T`` = ``whisper_features.num_frames``).

    Raises :class:`AudioError` for audio that holds NaN/infinite samples or is shorter than one frame
    (and, for Whisper, at another sample rate or over 30 s).
    """
    whisper = FEATURE_KINDS.get(features).name == WHISPER
    if whisper:
        from .whisper_features import read_audio

        audio = read_audio(path)  # no resampling: Whisper's features are defined at 16 kHz
    else:
        audio = load_audio(path)
    bad = np.flatnonzero(~np.isfinite(audio))
    if bad.size:  # (kaldi-native-fbank would fail with "mel energy is nan")
        raise AudioError(f"audio file {path} holds {bad.size} NaN or infinite sample(s), the first at "
                         f"{bad[0] / SAMPLE_RATE:.3f} s")
    if whisper:
        from .whisper_features import log_mel_spectrogram

        return log_mel_spectrogram(audio, n_mels=n_bins, source=str(path)), len(audio) / SAMPLE_RATE
    feats = compute_fbank(audio, SAMPLE_RATE, N_MEL_BINS)
    if feats.shape[0] == 0:
        raise AudioError(f"audio file {path} is shorter than one 25 ms frame ({len(audio)} samples at 16 kHz)")
    return feats, len(audio) / SAMPLE_RATE


def _features_job(job):
    key, wav, where, features, n_bins = job
    try:
        feats, dur = extract_features(wav, features, n_bins)
    except AudioError as e:
        raise ManifestError(f"{where}: {e}") from None
    return key, feats, dur


# ------------------------------------------------------------------------------------------ options

def check_specaugment(specaugment: Optional[str]) -> Optional[str]:
    """The SpecAugment policy name, or None for "none"/None; anything else is an error."""
    if specaugment is None or specaugment == "none":
        return None
    if specaugment not in SPECAUGMENT_POLICIES:
        raise PrepError(f"--specaugment {specaugment!r}: choose from {', '.join(SPECAUGMENT_POLICIES)} or none")
    return specaugment


def check_folders(input_dir: Path, out: Path, like: Optional[Path] = None) -> None:
    """Refuse, before any work, an input that is missing or that the output would overwrite or swallow."""
    if not input_dir.exists():
        raise PrepError(f"input folder not found: {input_dir}")
    if not input_dir.is_dir():
        raise PrepError(f"input {input_dir} is not a folder (give the folder that holds the <split>.tsv raw manifests)")
    if out.exists() and not out.is_dir():
        raise PrepError(f"output {out} exists and is not a folder")
    real_out = out.resolve()
    named = [("the input folder", input_dir, "prep would overwrite its raw manifests with fairseq ones")]
    if like is not None:
        named.append(("--like", like, "prep would replace the model's data folder"))
    for what, folder, damage in named:
        real = folder.resolve()
        if real == real_out:
            raise PrepError(f"the output folder {out} is {what} {folder}: {damage}; give a new output folder")
        if real_out in real.parents:
            raise PrepError(f"{what} {folder} is inside the output folder {out}, which prep replaces as a whole; "
                            "give an output folder outside it")


# ------------------------------------------------------------------------------------------ --like DATA

#: config.yaml keys that name files of the data folder (fairseq resolves them relative to it).
_FILE_KEYS = (("vocab_filename",), ("src_vocab_filename",), ("bpe_tokenizer", "sentencepiece_model"),
              ("src_bpe_tokenizer", "sentencepiece_model"), ("global_cmvn", "stats_npz_path"))


@dataclass
class ModelData:
    """The data folder a model was trained with (``--like``): its config.yaml and the files it names."""

    folder: Path
    config: Dict[str, Any]
    files: Dict[Tuple[str, ...], str] = field(default_factory=dict)  # config key -> path as written
    target_symbols: Set[str] = field(default_factory=set)

    @property
    def yaml_path(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def lang_tags(self) -> bool:
        return bool(self.config.get("prepend_tgt_lang_tag", False))

    @property
    def features(self) -> str:
        """The feature kind the model reads (config.yaml ``features:``, default fbank)."""
        return self.config.get("features") or FBANK

    @property
    def n_bins(self) -> int:
        return int(self.config.get("input_feat_per_channel", N_MEL_BINS))

    @property
    def is_whisper(self) -> bool:
        """A folder of ``xattn whisper-import`` (config.yaml has the ``whisper:`` prompt section)."""
        return self.config.get("whisper") is not None

    @classmethod
    def read(cls, folder) -> "ModelData":
        import yaml

        folder = Path(folder)
        if not folder.is_dir():
            raise PrepError(f"--like {folder}: folder not found (give the data folder the model was trained with)")
        yaml_path = folder / "config.yaml"
        if not yaml_path.is_file():
            raise PrepError(f"--like {folder}: no config.yaml there (give the data folder the model was trained with)")
        try:
            config = yaml.safe_load(yaml_path.read_text(encoding="utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise PrepError(f"{yaml_path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(config, dict):
            raise PrepError(f"{yaml_path}: not a fairseq S2T data config (a mapping of keys)")
        data = cls(folder, config)
        if data.features not in FEATURE_KINDS:
            raise PrepError(f"{yaml_path}: features: {data.features!r} is not a feature kind prep writes "
                            f"({', '.join(sorted(FEATURE_KINDS))})")
        if config.get("use_audio_input"):
            raise PrepError(f"{yaml_path}: use_audio_input is true (the model reads waveforms); prep writes "
                            f"{N_MEL_BINS}-dim filterbanks or Whisper log-mel")
        from .whisper_features import MEL_BIN_CHOICES

        bins = MEL_BIN_CHOICES if data.features == WHISPER else (N_MEL_BINS,)
        if data.n_bins not in bins:
            raise PrepError(f"{yaml_path}: input_feat_per_channel is {data.n_bins}, prep writes {data.features} features "
                            f"of {' or '.join(map(str, bins))} bins: this model needs other features")
        if int(config.get("input_channels", 1)) != 1:
            raise PrepError(f"{yaml_path}: input_channels is {config['input_channels']}, prep writes one channel: "
                            "this model needs other features")
        if not config.get("vocab_filename"):
            raise PrepError(f"{yaml_path}: no vocab_filename (the target dictionary)")
        for key in _FILE_KEYS:
            value = config
            for part in key:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                continue
            path = Path(str(value))
            if not (path if path.is_absolute() else folder / path).is_file():
                raise PrepError(f"{yaml_path}: {'.'.join(key)} names {value}, which is not in {folder}")
            data.files[key] = str(value)
        vocab = data.resolve(config["vocab_filename"])
        if data.is_whisper:
            # Whisper's JSON dictionary has no language tags of ours; its tokenizer files are beside it
            for extra in sorted(folder.glob("*.json")) + sorted(folder.glob("*.txt")):
                data.files.setdefault((extra.name,), extra.name)
            return data
        try:
            data.target_symbols = {line.split(" ")[0] for line in vocab.read_text(encoding="utf-8").splitlines()
                                   if line.strip()}
        except (OSError, UnicodeDecodeError) as e:
            raise PrepError(f"{vocab}: cannot read the target dictionary ({e})") from None
        return data

    def resolve(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.folder / path

    def check_language(self, tag: str, where: str) -> None:
        if tag not in self.target_symbols:
            known = sorted(s for s in self.target_symbols if is_lang_tag(s))
            raise ManifestError(f"{where}: the model's dictionary {self.resolve(self.config['vocab_filename'])} has no "
                                f"{tag} (its language tags: {', '.join(known) or 'none'})")

    def copy_into(self, staging: Path, out: Path) -> None:
        """Copy the named files (relative ones; absolute paths keep pointing where they point) and
        config.yaml with ``audio_root`` = ``out`` into the staging folder."""
        import yaml

        for value in self.files.values():
            if not Path(value).is_absolute():
                (staging / value).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.folder / value, staging / value)
        config = dict(self.config)
        config["audio_root"] = str(out.resolve())
        with open(staging / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)

    def unknown_characters(self, texts: Sequence[str]) -> List[str]:
        """Characters of ``texts`` the model's target SentencePiece model maps to <unk>."""
        model = self.files.get(("bpe_tokenizer", "sentencepiece_model"))
        if model is None:
            return []
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(self.resolve(model)))
        chars = {c for text in texts for c in text if not c.isspace()}
        return sorted(c for c in chars if sp.unk_id() in sp.encode(c))


# ------------------------------------------------------------------------------------------ vocabularies

_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def train_vocabulary(sentences: Sequence[str], prefix: Path, size: int, flag: str,
                     user_symbols: Sequence[str] = ()) -> Path:
    """:func:`train_sentencepiece`, with a size SentencePiece cannot honour turned into a :class:`PrepError`
    that names the flag and the smallest size that works."""
    if size < 1:
        raise PrepError(f"{flag} {size}: must be a positive number of pieces")
    try:
        return train_sentencepiece(sentences, prefix, size, user_symbols=user_symbols)
    except RuntimeError as e:  # sentencepiece's own error type for bad trainer settings
        match = _TOO_SMALL.search(str(e))
        if match is None:
            raise
        need = int(match.group(2))
        raise PrepError(f"{flag} {size} is too small: SentencePiece needs at least {need} pieces for the characters "
                        f"of the training texts and the special symbols; pass {flag} {need} or more (an upper bound: "
                        "small corpora get fewer pieces)") from None


def write_config_yaml(out: Path, lang_tags: bool, specaugment: Optional[str], has_source_vocab: bool = True,
                      audio_root: Optional[Path] = None, features: str = FBANK) -> Path:
    """Write ``out/config.yaml``; ``audio_root``: where the folder will live (default ``out``);
    ``features``: the feature kind written (``features: whisper`` for Whisper's log-mel)."""
    import yaml

    cfg: Dict = {
        "audio_root": str(Path(audio_root or out).resolve()),
        "input_channels": 1,
        "input_feat_per_channel": N_MEL_BINS,
        "sample_rate": 16000,
        "vocab_filename": f"{TGT_SPM}.txt",
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": f"{TGT_SPM}.model"},
        "prepend_tgt_lang_tag": bool(lang_tags),
    }
    if features != FBANK:
        cfg["features"] = features
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


# ------------------------------------------------------------------------------------------ atomic output

_STAGING = re.compile(r"^\.(?P<name>.+)\.prep-(?P<what>new|old)-(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_staging(out: Path) -> None:
    """Remove the staging folders of killed runs; put back a previous output a killed swap left aside."""
    if not out.parent.is_dir():
        return
    for entry in out.parent.iterdir():
        match = _STAGING.match(entry.name)
        if match is None or match["name"] != out.name or _alive(int(match["pid"])):
            continue
        if match["what"] == "old" and not out.exists():
            logger.warning(f"{out}: putting back the previous output that a killed run had set aside ({entry})")
            os.rename(entry, out)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _written_by_prep(entry: Path) -> bool:
    """Whether an entry of an existing output folder is prep's (replaced by a new run) rather than the user's."""
    name = entry.name
    if name in ("config.yaml", "timings") or name.startswith(TGT_SPM) or name.startswith(SRC_SPM):
        return True
    if re.fullmatch(r"(%s)\d+(_.+)?\.zip" % "|".join(FEATURE_KINDS), name):
        return True
    if name.endswith(".tsv") and entry.is_file():  # a fairseq manifest: it points into the replaced features
        with open(entry, encoding="utf-8", errors="replace") as f:
            return "n_frames" in f.readline().split("\t")
    return False


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of ``out`` to build in; on success it replaces ``out``
    (entries of an existing ``out`` that prep does not write are moved into it first), on failure it is
    removed and ``out`` is untouched."""
    out = Path(os.path.realpath(out))  # (a symlinked output: swap the folder it points to, not the link)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_staging(out)
    staging = out.with_name(f".{out.name}.prep-new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not out.exists():
        os.rename(staging, out)
        return
    kept, replaced = [], []
    for entry in sorted(out.iterdir()):
        if (staging / entry.name).exists() or _written_by_prep(entry):
            if not (staging / entry.name).exists():
                replaced.append(entry.name)
            continue
        os.rename(entry, staging / entry.name)
        kept.append(entry.name)
    old = out.with_name(f".{out.name}.prep-old-{os.getpid()}")
    os.rename(out, old)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    if kept:
        logger.info(f"{out}: kept {', '.join(kept)} of the previous folder (not written by prep)")
    if replaced:
        logger.warning(f"{out}: {', '.join(replaced)} of the previous run are gone (this run did not prepare them, "
                       "and their features were in the replaced zip)")


# ------------------------------------------------------------------------------------------ prepare

def _default_splits(input_dir: Path, like: bool) -> List[str]:
    if like:  # evaluation sets: every raw manifest of the folder
        return sorted(p.stem for p in input_dir.glob("*.tsv") if p.is_file())
    return [s for s in DEFAULT_SPLITS if (input_dir / f"{s}.tsv").is_file()]


def prepare(input_dir, out_dir, splits: Optional[Sequence[str]] = None, vocab_size: int = 8000,
            src_vocab_size: Optional[int] = None, lang_tags: str = "auto", src_lang: Optional[str] = None,
            tgt_lang: Optional[str] = None, specaugment: Optional[str] = "lb", progress: bool = False,
            workers: Optional[int] = 1, like=None, features: Optional[str] = None) -> Dict:
    """Prepare ``out_dir`` from the raw manifests ``<input_dir>/<split>.tsv``; returns a summary.

    ``splits``: default every one of train, dev, test, test_voices that exist (train required;
    every split whose name starts with "train" trains the SentencePiece models); with ``like``, every
    ``<split>.tsv`` of ``input_dir``, no training split needed.
    ``lang_tags``: "auto" (on when there are translations), "yes" or "no".
    ``workers``: processes computing filterbanks (None: CPU count).
    ``like``: the data folder of a trained model: reuse its vocabularies and config.yaml (then
    ``vocab_size``, ``src_vocab_size``, ``lang_tags`` and ``specaugment`` do not apply).
    ``features``: ``fbank`` or ``whisper`` (:mod:`.feature_kinds`); default the ``--like`` folder's
    (a whisper-import folder: whisper), else fbank; one that contradicts ``like`` is an error.
    The output is built beside ``out_dir`` and swapped into place at the end (see the module docstring).
    """
    # options and folders first: a typo must not cost the minutes of feature extraction
    specaugment = check_specaugment(specaugment)
    if lang_tags not in ("auto", "yes", "no"):
        raise PrepError(f"--lang-tags {lang_tags!r}: choose from auto, yes, no")
    input_dir, out = Path(input_dir), Path(out_dir)
    like = Path(like) if like is not None else None
    check_folders(input_dir, out, like)
    model_data = ModelData.read(like) if like is not None else None
    if features is not None:
        FEATURE_KINDS.get(features)  # unknown names: the registry's error lists the choices
    if model_data is not None:
        if features is not None and features != model_data.features:
            raise PrepError(f"--features {features}: the model of --like {like} reads {model_data.features} features "
                            f"(config.yaml features:); drop --features or give another --like")
        features, n_bins = model_data.features, model_data.n_bins
    else:
        features, n_bins = features or FBANK, N_MEL_BINS
    splits = list(splits) if splits is not None else _default_splits(input_dir, model_data is not None)
    if not splits:
        raise PrepError(f"{input_dir}: no raw manifest <split>.tsv "
                        f"({'any name' if model_data else ', '.join(DEFAULT_SPLITS)}) in the input folder")
    if model_data is None and not any(s.startswith("train") for s in splits):
        raise PrepError(f"{input_dir}: no training split (a 'train*.tsv' raw manifest) among {', '.join(splits)}: "
                        "to prepare evaluation audio for a trained model, pass --like DATA (the data folder the "
                        "model was trained with) to reuse its vocabulary and config.yaml")
    manifests = {s: read_raw_manifest(input_dir / f"{s}.tsv") for s in splits}
    has_translation = any("tgt_text" in m.columns for m in manifests.values())
    if has_translation:
        for s, m in manifests.items():
            if "tgt_text" not in m.columns:
                raise ManifestError(f"{m.path}: missing column tgt_text (other splits have translations)")
    if model_data is not None:
        use_tags = model_data.lang_tags
    else:
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
            if use_tags and model_data is not None:
                model_data.check_language(lang_tag(tgt), m.where(i))
            rows.append({"id": r["id"], "wav": resolve_audio(m, i, m.path.parent), "where": m.where(i),
                         "src_text": r["src_text"].strip(),
                         "tgt_text": (r["tgt_text"] if has_translation else r["src_text"]).strip(),
                         "speaker": r.get("speaker", "").strip(), "src_lang": src or "", "tgt_lang": tgt or ""})
        plan[s] = rows
    langs = sorted({row["tgt_lang"] for rows in plan.values() for row in rows}
                   | ({row["src_lang"] for rows in plan.values() for row in rows} if has_translation else set()))
    tags = [lang_tag(lang) for lang in langs if lang] if use_tags else []

    with staged_output(out) as staging:
        # 2. vocabularies: trained on the training splits (cheap, and their errors come before the features),
        #    or the model's, copied
        if model_data is None:
            train_rows = [row for s in splits if s.startswith("train") for row in plan[s]]
            tgt_sentences = [row["tgt_text"] for row in train_rows]
            if has_translation:  # the target vocabulary also serves the ASR share of multitask training
                tgt_sentences += [row["src_text"] for row in train_rows]
            train_vocabulary(tgt_sentences, staging / TGT_SPM, vocab_size, "--vocab-size", user_symbols=tags)
            train_vocabulary([row["src_text"] for row in train_rows], staging / SRC_SPM, src_vocab_size or vocab_size,
                             "--src-vocab-size" if src_vocab_size else "--vocab-size")
            write_config_yaml(staging, use_tags, specaugment, audio_root=out, features=features)
        else:
            model_data.copy_into(staging, out)
            unknown = model_data.unknown_characters([row["tgt_text"] for rows in plan.values() for row in rows])
            if unknown:
                logger.warning(f"the targets hold {len(unknown)} character(s) the model's SentencePiece model does "
                               f"not know ({''.join(unknown[:20])}): they become <unk> in the references")

        # 3. features: one zip (fbank80.zip / whisper80.zip), or --like one per split (fbank80_<split>.zip)
        kind = FEATURE_KINDS.get(features)
        zip_of = {s: kind.zip_name(n_bins, s if model_data is not None else None) for s in splits}
        n_frames: Dict[str, int] = {}
        seconds = 0.0
        jobs = [(f"{s}/{row['id']}", row["wav"], row["where"], features, n_bins) for s in splits for row in plan[s]]
        workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
        writers: Dict[str, FeatureZipWriter] = {}
        try:
            results = pool.imap(_features_job, jobs, chunksize=8) if pool else map(_features_job, jobs)
            for key, feats, dur in _progress(results, len(jobs), "features", progress):
                name = zip_of[key.split("/", 1)[0]]
                if name not in writers:
                    writers[name] = FeatureZipWriter(staging / name)
                writers[name].add(key, feats)  # in job order: the zip is the same for any number of workers
                n_frames[key] = int(feats.shape[0])
                seconds += dur
        finally:
            if pool is not None:
                pool.terminate()
            for writer in writers.values():
                writer.close()
        refs = {}
        for name in sorted(set(zip_of.values())):
            refs.update(zip_manifest(staging / name, name))

        # 4. manifests, timings
        summary = {"splits": {}, "lang_tags": tags, "hours": round(seconds / 3600, 4),
                   "like": str(like) if like is not None else None, "features": features}
        for s in splits:
            rows = []
            for row in plan[s]:
                key = f"{s}/{row['id']}"
                rows.append({"id": row["id"], "audio": refs[key], "n_frames": n_frames[key],
                             "tgt_text": row["tgt_text"], "speaker": row["speaker"], "src_text": row["src_text"],
                             "src_lang": row["src_lang"], "tgt_lang": row["tgt_lang"]})
            write_tsv(staging / f"{s}.tsv", S2T_COLUMNS, rows)
            timings = input_dir / "timings" / f"{s}.jsonl"
            if timings.is_file():
                (staging / "timings").mkdir(exist_ok=True)
                shutil.copyfile(timings, staging / "timings" / f"{s}.jsonl")
            summary["splits"][s] = len(rows)
    return summary


# ------------------------------------------------------------------------------------------ CLI

#: flags that shape the vocabularies and config.yaml: --like takes them from the model's data folder
_LIKE_IGNORES = ("vocab_size", "src_vocab_size", "lang_tags", "specaugment")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="folder with raw manifests <split>.tsv (id, audio, src_text[, tgt_text, "
                                      "speaker, src_lang, tgt_lang]), e.g. the output of xattn corpus")
    parser.add_argument("out", help="output data folder (pass it to fairseq-train / fairseq-generate as DATA); "
                                    "built beside it and swapped into place when complete")
    parser.add_argument("--like", metavar="DATA", default=None,
                        help="evaluation audio for a trained model: reuse the SentencePiece models, dictionaries "
                             "and config.yaml of DATA, the data folder the model was trained with (no training "
                             "split needed; every <split>.tsv of the input is prepared, each into its own "
                             "fbank80_<split>.zip)")
    parser.add_argument("--splits", default=None,
                        help=f"comma-separated splits (default: those of {','.join(DEFAULT_SPLITS)} that exist, or "
                             "with --like every <split>.tsv; e.g. train_it,dev_it,test_it for the Italian audio of "
                             "the corpus)")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="target SentencePiece size (upper bound; default 8000)")
    parser.add_argument("--src-vocab-size", type=int, default=None, help="source (CTC) SentencePiece size (default: --vocab-size)")
    parser.add_argument("--lang-tags", choices=("auto", "yes", "no"), default=None,
                        help="prepend <lang:xx> to targets (default auto: when there are translations)")
    parser.add_argument("--src-lang", default=None, help="source language when the manifest has no src_lang column")
    parser.add_argument("--tgt-lang", default=None, help="target language when the manifest has no tgt_lang column")
    parser.add_argument("--specaugment", default=None, choices=(*SPECAUGMENT_POLICIES, "none"),
                        help="training SpecAugment policy of fairseq (default lb: one frequency mask of up to "
                             "27 bins and one time mask of up to 100 frames; none: no SpecAugment)")
    parser.add_argument("--features", default=None, choices=sorted(FEATURE_KINDS),
                        help="input features: fbank (80-dim Kaldi filterbanks) or whisper (Whisper's log-mel: 16 kHz "
                             "audio of at most 30 s); default: those of --like DATA's model, else fbank")
    parser.add_argument("--workers", type=int, default=None, help="feature processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.like is not None:
        given = [f"--{name.replace('_', '-')}" for name in _LIKE_IGNORES if getattr(args, name) is not None]
        if given:
            raise PrepError(f"{', '.join(given)}: not with --like (the vocabularies and config.yaml are those of "
                            f"{args.like})")
    for flag, value in (("--vocab-size", args.vocab_size), ("--src-vocab-size", args.src_vocab_size),
                        ("--workers", args.workers)):
        if value is not None and value < 1:  # before any audio is read
            raise PrepError(f"{flag} {value}: must be a positive number")
    t0 = time.time()
    summary = prepare(args.input, args.out, splits=args.splits.split(",") if args.splits else None,
                      vocab_size=8000 if args.vocab_size is None else args.vocab_size,
                      src_vocab_size=args.src_vocab_size,
                      lang_tags=args.lang_tags or "auto", src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                      specaugment=args.specaugment or "lb", progress=not args.no_progress, workers=args.workers,
                      like=args.like, features=args.features)
    like = f", vocabulary and config.yaml of {args.like}" if args.like else ""
    print(f"prepared {summary['splits']} ({summary['hours']} h of audio, {summary['features']} features, language tags "
          f"{summary['lang_tags'] or 'none'}{like}) in {args.out} in {time.time() - t0:.1f} s")
    return 0
