"""The speech-to-text dataset of the ``speech_to_text_ctc`` task.

A subclass of fairseq's :class:`SpeechToTextDataset` that adds

* ``ctc_src``: the source transcript in the source (CTC) dictionary, without BOS/EOS/language tag;
* ``utt_id``: manifest ids in batch order;
* comma-joined splits (``--train-subset a,b``): fairseq batches a ConcatDataset with the first
  split's collater, so every item carries what the collater needs (utterance id, CTC source, target
  kind) and :class:`SpeechToTextCtcConcatDataset` numbers the items across the splits;
* multitask ASR+ST targets: on training splits each sample's target is the transcript
  (``src_text`` in ``src_lang``) with probability ``multitask_asr_prob`` and the translation
  otherwise, drawn from (seed, epoch, split, index) so runs are reproducible; on other splits the target
  is the translation.  ``infer_tgt_lang``, when set, fixes the target on every split (the
  transcript when it names the source language, else the translation): that is how
  fairseq-generate is asked for ASR or ST;
* features computed on the fly for manifests that point at wav/flac files, where fairseq would
  need torchaudio: Kaldi filterbanks (kaldi-native-fbank), or Whisper's log-mel when config.yaml
  says ``features: whisper`` (:mod:`.feature_kinds`; 16 kHz audio of at most 30 s, refused
  otherwise with the manifest row named; the manifest's ``n_frames`` is checked against the kind's
  frame count);
* validation with clear errors: n_frames against the stored features, missing/unreadable
  features, unknown language tags, config.yaml options that fairseq would apply but this dataset
  does not.

The batch (``collater``) is the ``sample`` dict of docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import logging
import zlib
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from fairseq.data import ConcatDataset, Dictionary, data_utils as fairseq_data_utils
from fairseq.data.audio.data_cfg import S2TDataConfig
from fairseq.data.audio.speech_to_text_dataset import SpeechToTextDataset, SpeechToTextDatasetItem

from .feature_zip import iter_npy_shapes, parse_zip_reference
from .feature_kinds import FBANK, FEATURE_KINDS, WHISPER, FeatureKind, feature_kind_of
from .features import SAMPLE_RATE, AudioError
from .manifest import AUDIO_EXTENSIONS, Manifest, ManifestError, read_s2t_manifest
from ..language_tags import lang_tag

logger = logging.getLogger(__name__)

TARGET_TRANSCRIPT, TARGET_TRANSLATION = "transcript", "translation"


@dataclass
class SpeechToTextCtcItem(SpeechToTextDatasetItem):
    """One utterance with everything the collater reads: with comma-joined splits the first split's
    collater batches items of every split, so nothing per-split may be looked up on the dataset."""

    ctc_src: Optional[torch.Tensor] = None  # S (source dictionary ids); None without src_text
    task: str = TARGET_TRANSLATION
    utt_id: str = ""
    where: str = ""  # manifest, line and id, for error messages


def config_yaml_path(cfg: S2TDataConfig) -> Path:
    """The config.yaml ``cfg`` was read from (the task records its name; fairseq keeps only the folder)."""
    return Path(getattr(cfg, "yaml_path", None) or Path(cfg.root) / "config.yaml")


class AudioRoots:
    """Where relative ``audio`` references (zips, .npy, audio files) live: the data folder when it
    holds the file, else config.yaml's ``audio_root``.  ``xattn prep`` writes an absolute
    ``audio_root``, so a copied data folder would otherwise read the original's features."""

    def __init__(self, cfg: S2TDataConfig, data_root: Path):
        self.data_root = Path(data_root)
        self.audio_root = Path(cfg.audio_root) if cfg.audio_root else None
        self._cache: Dict[str, Path] = {}

    def resolve(self, ref: str) -> Path:
        """Absolute ``ref`` as is; a relative one under the first root that has it (the data
        folder when neither has it, so errors name the relocatable place)."""
        p = Path(ref)
        if p.is_absolute():
            return p
        hit = self._cache.get(ref)
        if hit is None:
            hit = self.data_root / p
            if not hit.is_file() and self.audio_root is not None and (self.audio_root / p).is_file():
                hit = self.audio_root / p
            self._cache[ref] = hit
        return hit

    def also(self) -> str:
        """Suffix of not-found errors: the other place that was searched."""
        return f" (nor under config.yaml's audio_root {self.audio_root})" if self.audio_root is not None else ""


def check_audio(m: Manifest, roots: AudioRoots, feature_dim: int, kind: Optional[FeatureKind] = None) -> List[str]:
    """Resolve every ``audio`` field (:class:`AudioRoots`) and check it against ``n_frames``.

    Zip references and .npy files are checked by reading the npy header only; audio files by their
    length (features of ``kind``, default fbank, are computed on the fly).  Returns the resolved paths.
    """
    kind = kind or FEATURE_KINDS[FBANK]
    paths, zip_rows = [], []
    longest = kind.num_frames(kind.max_samples) if kind.max_samples is not None else None
    for i, r in enumerate(m.rows):
        if longest is not None and int(r["n_frames"]) > longest:
            raise ManifestError(f"{m.where(i)}: n_frames {r['n_frames']} is more than the {longest} frames of "
                                f"{kind.name} features (audio over {kind.max_samples // SAMPLE_RATE} s; split it, "
                                "we do not truncate)")
        ref = r["audio"]
        suffix = Path(ref).suffix.lower()
        if suffix in (".npy",) + AUDIO_EXTENSIONS:
            p = roots.resolve(ref)
            if not p.is_file():
                raise ManifestError(f"{m.where(i)}: audio/features file not found: {p}{roots.also()}")
            if suffix == ".npy":
                try:
                    shape = np.load(p, mmap_mode="r").shape
                except Exception as e:
                    raise ManifestError(f"{m.where(i)}: unreadable features {p}: {e}") from None
                _check_shape(m, i, shape, feature_dim, str(p))
            else:
                _check_audio_length(m, i, p, kind)
            paths.append(p.as_posix())
            continue
        try:
            zpath, off, length = parse_zip_reference(ref)
        except ValueError:
            raise ManifestError(f"{m.where(i)}: audio {ref!r} is neither '<zip>:<offset>:<length>' nor a "
                                f".npy/{'/'.join(AUDIO_EXTENSIONS)} file") from None
        zp = roots.resolve(zpath)
        if not zp.is_file():
            raise ManifestError(f"{m.where(i)}: features zip not found: {zp}{roots.also()}")
        if off + length > zp.stat().st_size:
            raise ManifestError(f"{m.where(i)}: byte range {off}+{length} lies beyond the end of {zp} "
                                f"({zp.stat().st_size} bytes)")
        paths.append(f"{zp.as_posix()}:{off}:{length}")
        zip_rows.append((i, zp.as_posix(), off, length))
    shapes = iter_npy_shapes((z, o, n) for _, z, o, n in zip_rows)
    for (i, z, off, _), shape in zip(zip_rows, _guarded(shapes, m, zip_rows)):
        _check_shape(m, i, shape, feature_dim, f"{z} at byte {off}")
    return paths


def _guarded(shapes, m, zip_rows):
    k = 0
    while True:
        try:
            shape = next(shapes)
        except StopIteration:
            return
        except Exception as e:
            i, z, off, _ = zip_rows[k]
            raise ManifestError(f"{m.where(i)}: no readable .npy features in {z} at byte {off}: {e}") from None
        k += 1
        yield shape


def _check_shape(m: Manifest, i: int, shape, feature_dim: int, what: str) -> None:
    n = int(m.rows[i]["n_frames"])
    if len(shape) != 2:
        raise ManifestError(f"{m.where(i)}: features in {what} have shape {tuple(shape)}, expected n_frames x {feature_dim}")
    if shape[0] != n:
        raise ManifestError(f"{m.where(i)}: n_frames is {n} but the features in {what} have {shape[0]} frames")
    if shape[1] != feature_dim:
        raise ManifestError(f"{m.where(i)}: features in {what} have {shape[1]} dimensions, "
                            f"config.yaml says input_feat_per_channel {feature_dim}")


def _check_audio_length(m: Manifest, i: int, path: Path, kind: FeatureKind) -> None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:
        raise ManifestError(f"{m.where(i)}: unreadable audio file {path}: {e}") from None
    try:
        n_samples = kind.check_audio(info.samplerate, info.frames, str(path))
    except AudioError as e:
        raise ManifestError(f"{m.where(i)}: {e}") from None
    expected, n = kind.num_frames(n_samples), int(m.rows[i]["n_frames"])
    tolerance = 0 if info.samplerate == SAMPLE_RATE else 1  # resampled length may differ by a sample
    if abs(expected - n) > tolerance:
        raise ManifestError(f"{m.where(i)}: n_frames is {n} but {path} gives {expected} frames")


class SpeechToTextCtcDataset(SpeechToTextDataset):
    def __init__(self, split: str, is_train_split: bool, cfg: S2TDataConfig, audio_paths: List[str],
                 n_frames: List[int], tgt_texts: List[str], tgt_dict: Dictionary,
                 src_texts: Optional[List[str]] = None, src_dict: Optional[Dictionary] = None,
                 speakers: Optional[List[str]] = None, src_langs: Optional[List[str]] = None,
                 tgt_langs: Optional[List[str]] = None, ids: Optional[List[str]] = None,
                 pre_tokenizer=None, bpe_tokenizer=None, src_bpe_tokenizer=None,
                 multitask_asr_prob: float = 0.0, infer_tgt_lang: Optional[str] = None, seed: int = 1,
                 where: Optional[List[str]] = None, manifest: Optional[str] = None):
        if not 0.0 <= multitask_asr_prob <= 1.0:
            raise ValueError(f"multitask_asr_prob must be in [0, 1], got {multitask_asr_prob}")
        self.manifest = manifest or f"{split}.tsv"
        check_supported_config(cfg, split, is_train_split)
        self.src_dict = src_dict
        self.src_bpe_tokenizer = src_bpe_tokenizer
        self.multitask_asr_prob = multitask_asr_prob if src_texts is not None else 0.0
        self.infer_tgt_lang = infer_tgt_lang
        self.seed = seed
        self._split_seed = zlib.crc32(split.encode("utf-8"))  # stable across processes, unlike hash()
        self.epoch = 1
        self._where = where or [f"{self.manifest}, row {i + 1}" for i in range(len(audio_paths))]
        if (is_train_split and 0.0 < self.multitask_asr_prob and not cfg.prepend_tgt_lang_tag
                and any(a != b for a, b in zip(src_texts, tgt_texts))):
            # without a language tag the decoder cannot know whether to transcribe or translate
            raise ValueError(f"{self.manifest}: multitask ASR+ST training (--multitask-asr-prob "
                             f"{multitask_asr_prob}) needs language tags: set prepend_tgt_lang_tag: true in config.yaml "
                             f"(xattn prep --lang-tags yes) or --multitask-asr-prob 0")
        self._check_lang_tags(cfg, tgt_dict, src_texts, src_langs, tgt_langs, is_train_split)
        if infer_tgt_lang is not None:
            self._check_infer_lang(src_texts, src_langs, tgt_langs)
        super().__init__(split, is_train_split, cfg, audio_paths, n_frames, src_texts=src_texts,
                         tgt_texts=tgt_texts, speakers=speakers, src_langs=src_langs, tgt_langs=tgt_langs,
                         ids=ids, tgt_dict=tgt_dict, pre_tokenizer=pre_tokenizer, bpe_tokenizer=bpe_tokenizer)

    # --- validation -------------------------------------------------------------------------
    def _check_lang_tags(self, cfg, tgt_dict, src_texts, src_langs, tgt_langs, is_train_split) -> None:
        if not cfg.prepend_tgt_lang_tag:
            return
        need_src = src_texts is not None and (
            (is_train_split and self.multitask_asr_prob > 0) or self.infer_tgt_lang is not None)
        for i in range(len(tgt_langs or [])):
            langs = [("tgt_lang", tgt_langs[i])] + ([("src_lang", src_langs[i] if src_langs else "")] if need_src else [])
            for col, lang in langs:
                if not lang:
                    raise ManifestError(f"{self._where[i]}: empty {col}, but config.yaml prepends language tags")
                if tgt_dict.index(lang_tag(lang)) == tgt_dict.unk():
                    raise ManifestError(f"{self._where[i]}: unknown language tag {lang_tag(lang)} ({col} {lang!r}) "
                                        f"is not in the target dictionary")
        if tgt_langs is None:
            raise ManifestError(f"{self.manifest}: config.yaml prepends language tags but the "
                                f"manifest has no tgt_lang column")

    def _check_infer_lang(self, src_texts, src_langs, tgt_langs) -> None:
        if tgt_langs is None:  # nothing to compare with: the flag would silently change nothing
            raise ManifestError(f"{self.manifest}: --infer-tgt-lang {self.infer_tgt_lang!r} needs the target "
                                f"language of every utterance, but the manifest has no tgt_lang column")
        for i in range(len(tgt_langs)):
            ok = tgt_langs[i] == self.infer_tgt_lang or (
                src_texts is not None and src_langs is not None and src_langs[i] == self.infer_tgt_lang)
            if not ok:
                raise ManifestError(f"{self._where[i]}: --infer-tgt-lang {self.infer_tgt_lang!r} is neither the "
                                    f"source nor the target language of this utterance")

    # --- targets ----------------------------------------------------------------------------
    def set_epoch(self, epoch):
        self.epoch = epoch

    def target_kind(self, index: int) -> str:
        """Which text is the target of sample ``index`` this epoch: transcript or translation."""
        if self.src_texts is None:
            return TARGET_TRANSLATION
        if self.infer_tgt_lang is not None:  # an explicit choice wins on every split
            if self.tgt_langs is not None and self.tgt_langs[index] != self.infer_tgt_lang:
                return TARGET_TRANSCRIPT
            return TARGET_TRANSLATION
        if self.is_train_split:
            p = self.multitask_asr_prob
            if p <= 0.0:
                return TARGET_TRANSLATION
            if p >= 1.0:
                return TARGET_TRANSCRIPT
            # the split is part of the seed: row i of train_en and of train_it are often the same
            # sentence pair, which should not always get the same kind of target in an epoch
            draw = np.random.default_rng([self.seed, self.epoch, self._split_seed, int(index)]).random()
            return TARGET_TRANSCRIPT if draw < p else TARGET_TRANSLATION
        return TARGET_TRANSLATION

    def _tokenize_target(self, text: str) -> str:
        return self.tokenize(self.bpe_tokenizer, self.tokenize(self.pre_tokenizer, text))

    def get_tgt_lens_and_check_oov(self):
        # sizes must bound either target the multitask draw can pick
        lens = []
        n_tokens = n_oov = 0
        texts = [self.tgt_texts] + ([self.src_texts] if self.src_texts is not None and (
            self.multitask_asr_prob > 0 or self.infer_tgt_lang is not None) else [])
        for i in range(self.n_samples):
            best = 0
            for t in texts:
                toks = self._tokenize_target(t[i]).split(" ")
                n_tokens += len(toks)
                n_oov += sum(self.tgt_dict.index(w) == self.tgt_dict.unk_index for w in toks)
                best = max(best, len(toks))
            lens.append(best + (1 if self.cfg.prepend_tgt_lang_tag else 0))
        logger.info(f"'{self.split}' has {n_oov / max(n_tokens, 1) * 100:.2f}% OOV")
        return lens

    def encode_target(self, index: int, kind: str) -> torch.Tensor:
        """``[lang tag] + tokens + EOS`` (``I``) for the transcript or the translation of ``index``."""
        text = self.src_texts[index] if kind == TARGET_TRANSCRIPT else self.tgt_texts[index]
        target = self.tgt_dict.encode_line(self._tokenize_target(text), add_if_not_exist=False,
                                           append_eos=True).long()
        if self.cfg.prepend_tgt_lang_tag:
            lang = self.src_langs[index] if kind == TARGET_TRANSCRIPT else self.tgt_langs[index]
            target = torch.cat((torch.LongTensor([self.get_lang_tag_idx(lang, self.tgt_dict)]), target), 0)
        return target

    def encode_ctc_source(self, index: int) -> Optional[torch.Tensor]:
        """Source transcript in the source dictionary, no BOS/EOS (``S``)."""
        if self.src_texts is None or self.src_dict is None:
            return None
        text = self.tokenize(self.src_bpe_tokenizer, self.tokenize(self.pre_tokenizer, self.src_texts[index]))
        return self.src_dict.encode_line(text, add_if_not_exist=False, append_eos=False).long()

    # --- features ---------------------------------------------------------------------------
    @property
    def feature_kind(self) -> FeatureKind:
        return feature_kind_of(self.cfg.config, str(config_yaml_path(self.cfg)))

    def _get_source_audio(self, index) -> torch.Tensor:
        path = self.audio_paths[index] if isinstance(index, (int, np.integer)) else None
        if path is not None and Path(path).suffix.lower() in AUDIO_EXTENSIONS and not self.cfg.use_audio_input:
            # fairseq would compute these with torchaudio; ours: kaldi-native-fbank or Whisper's log-mel
            try:
                feats, _ = self.feature_kind.compute(path, self.cfg.input_feat_per_channel)
            except AudioError as e:
                raise ManifestError(f"{self._where[index]}: {e}") from None
            if self.feature_transforms is not None:
                feats = self.feature_transforms(feats)
            return torch.from_numpy(np.ascontiguousarray(feats)).float()
        return super()._get_source_audio(index)

    # config.yaml options fairseq's __getitem__ applies (concat augmentation, BOS + trailing tag,
    # waveform transforms) are refused in __init__ (check_supported_config), not ignored here
    def __getitem__(self, index: int) -> SpeechToTextCtcItem:
        source = self.pack_frames(self._get_source_audio(index))
        kind = self.target_kind(index)
        speaker_id = self.speaker_to_id[self.speakers[index]] if self.speaker_to_id is not None else None
        return SpeechToTextCtcItem(index=index, source=source, target=self.encode_target(index, kind),
                                   speaker_id=speaker_id, ctc_src=self.encode_ctc_source(index), task=kind,
                                   utt_id=self.ids[index] if self.ids is not None else str(index),
                                   where=self._where[index])

    def collater(self, samples: List[SpeechToTextCtcItem], return_order: bool = False) -> Dict:
        """The batch dict of docs/ARCHITECTURE.md, sorted by descending source length.

        Reads per-utterance data from the items only (they may come from other splits, see
        :class:`SpeechToTextCtcConcatDataset`); dictionaries and config.yaml are the task's.
        """
        if len(samples) == 0:
            return {}
        out = super().collater(samples, return_order=True)
        order = out["order"]
        if not return_order:
            del out["order"]
        ordered = [samples[i] for i in order.tolist()]
        out["utt_id"] = [s.utt_id for s in ordered]
        out["target_kind"] = [s.task for s in ordered]
        with_src = [s for s in ordered if s.ctc_src is not None]
        if with_src and len(with_src) < len(ordered):  # a batch cannot have CTC source targets for only some rows
            lacking = next(s for s in ordered if s.ctc_src is None)
            raise ManifestError(f"{lacking.where or lacking.utt_id}: no src_text (CTC source target), but "
                                f"{with_src[0].where or with_src[0].utt_id} in the same batch has one: combine "
                                f"splits that all have src_text or none")
        if with_src:
            out["ctc_src"] = fairseq_data_utils.collate_tokens(
                [s.ctc_src for s in ordered], self.src_dict.pad(), left_pad=False)
            out["ctc_src_lengths"] = torch.tensor([s.ctc_src.numel() for s in ordered], dtype=torch.long)
        return out


class SpeechToTextCtcConcatDataset(ConcatDataset):
    """Comma-joined splits (``--train-subset a,b``, ``--valid-subset``, ``--gen-subset``) as one
    dataset.  fairseq batches it with the first split's collater, which reads only the items; here
    every item gets its index in the concatenation, so ``sample["id"]`` is unique across the splits
    and ``ids[sample["id"]]`` is its utterance id (as for a single split)."""

    def __init__(self, datasets: List[SpeechToTextCtcDataset]):
        check_src_text_all_or_none(datasets)
        super().__init__(datasets)
        self.split = ",".join(d.split for d in datasets)
        self.infer_tgt_lang = datasets[0].infer_tgt_lang  # a task option: the same for every split
        self.ids = [u for d in datasets for u in (d.ids if d.ids is not None else map(str, range(len(d))))]

    def __getitem__(self, idx) -> SpeechToTextCtcItem:
        item = super().__getitem__(idx)
        item.index = int(idx)  # the split's own row number would repeat across splits
        return item

    def num_tokens(self, index: int) -> int:
        i, j = self._get_dataset_and_sample_index(index)
        return self.datasets[i].num_tokens(j)

    def ordered_indices(self):
        """As :meth:`SpeechToTextDataset.ordered_indices`: descending length, ties in random order
        when config.yaml shuffles (ConcatDataset's own sorts by ascending length, never shuffles)."""
        order = [np.random.permutation(len(self))] if self.datasets[0].shuffle else [np.arange(len(self))]
        order.append(-np.asarray(self.sizes))
        return np.lexsort(order)


def check_src_text_all_or_none(datasets: List[SpeechToTextCtcDataset]) -> None:
    """Splits batched together must all have ``src_text`` (CTC source targets) or none."""
    with_src = [d for d in datasets if d.src_texts is not None]
    if with_src and len(with_src) < len(datasets):
        lacking = next(d for d in datasets if d.src_texts is None)
        raise ManifestError(f"{lacking.manifest}: no src_text column, but {with_src[0].manifest} has one; splits "
                            f"combined as {','.join(d.split for d in datasets)!r} must all have src_text (the CTC "
                            f"source targets) or none")


def check_supported_config(cfg: S2TDataConfig, split: str, is_train_split: bool) -> None:
    """Refuse config.yaml options that fairseq's SpeechToTextDataset applies but this dataset would
    ignore (its __getitem__ and feature path are its own)."""
    yaml = config_yaml_path(cfg)
    kind = feature_kind_of(cfg.config, str(yaml))
    if kind.name == WHISPER:
        if cfg.use_audio_input:
            raise ValueError(f"{yaml}: features: whisper and use_audio_input: true contradict each other: remove "
                             "use_audio_input (the task computes Whisper's log-mel from the audio)")
        transforms = cfg.get_transforms("feature_", split, is_train_split) or cfg.get_transforms("", split, is_train_split)
        if cfg.config.get("whisper") is not None and transforms:
            raise ValueError(f"{yaml}: feature_transforms {list(transforms)} (split {split}) would change the "
                             "log-mel a Whisper model reads (it takes Whisper's features as they are): remove them")
    dataset_transforms = cfg.get_transforms("dataset_", split, is_train_split)
    if dataset_transforms:
        raise ValueError(f"{yaml}: dataset_transforms {list(dataset_transforms)} (split {split}) are not "
                         f"supported by the speech_to_text_ctc task (concataugment, noisyoverlapaugment would "
                         f"be ignored): remove them")
    if cfg.prepend_bos_and_append_tgt_lang_tag:
        raise ValueError(f"{yaml}: prepend_bos_and_append_tgt_lang_tag is not supported by the speech_to_text_ctc "
                         f"task (its targets are [language tag] + tokens + EOS, see prepend_tgt_lang_tag): remove it")
    if not cfg.use_audio_input:  # filterbanks of audio files come from kaldi-native-fbank at 16 kHz
        waveform_transforms = cfg.get_transforms("waveform_", split, is_train_split)
        if waveform_transforms:
            raise ValueError(f"{yaml}: waveform_transforms {list(waveform_transforms)} (split {split}) would be "
                             f"ignored: the speech_to_text_ctc task computes filterbanks without them; remove them")
        if "use_sample_rate" in cfg.config and int(cfg.use_sample_rate) != SAMPLE_RATE:
            raise ValueError(f"{yaml}: use_sample_rate {cfg.use_sample_rate} would be ignored: the speech_to_text_ctc "
                             f"task computes filterbanks of audio files at {SAMPLE_RATE} Hz; remove it")


def build_tokenizer_from_config(tokenizer_cfg: Optional[Dict], kind: str = "bpe"):
    """fairseq encoder from a config.yaml tokenizer entry (``{"bpe": "sentencepiece", ...}``)."""
    from fairseq.data import encoders

    if not tokenizer_cfg or tokenizer_cfg.get(kind) is None:
        return None
    args = Namespace(**tokenizer_cfg)
    return encoders.build_bpe(args) if kind == "bpe" else encoders.build_tokenizer(args)


def load_s2t_ctc_dataset(data_root, split: str, cfg: S2TDataConfig, tgt_dict: Dictionary,
                         src_dict: Optional[Dictionary], is_train_split: bool, pre_tokenizer=None,
                         bpe_tokenizer=None, src_bpe_tokenizer=None, multitask_asr_prob: float = 0.0,
                         infer_tgt_lang: Optional[str] = None, seed: int = 1) -> SpeechToTextCtcDataset:
    """Read and validate ``<data_root>/<split>.tsv`` and build the dataset."""
    m = read_s2t_manifest(Path(data_root) / f"{split}.tsv")
    paths = check_audio(m, AudioRoots(cfg, Path(data_root)), cfg.input_feat_per_channel,
                        feature_kind_of(cfg.config, str(config_yaml_path(cfg))))
    return SpeechToTextCtcDataset(
        split, is_train_split, cfg, audio_paths=paths, n_frames=[int(x) for x in m.column("n_frames")],
        tgt_texts=m.column("tgt_text"), tgt_dict=tgt_dict, src_texts=m.column("src_text"), src_dict=src_dict,
        speakers=m.column("speaker"), src_langs=m.column("src_lang"), tgt_langs=m.column("tgt_lang"),
        ids=m.column("id"), pre_tokenizer=pre_tokenizer, bpe_tokenizer=bpe_tokenizer,
        src_bpe_tokenizer=src_bpe_tokenizer, multitask_asr_prob=multitask_asr_prob,
        infer_tgt_lang=infer_tgt_lang, seed=seed, where=[m.where(i) for i in range(len(m.rows))],
        manifest=str(m.path))
