"""``xattn prep``: its output is what fairseq's own S2T loader reads, features equal a direct
filterbank of the audio, and bad input is named."""
import shutil
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from fairseq_xattn.data.features import compute_fbank, load_audio
from fairseq_xattn.data.manifest import ManifestError, read_s2t_manifest
from fairseq_xattn.data.prep import prepare


def _fairseq_dataset(data: Path, split: str):
    from fairseq.data import Dictionary, encoders
    from fairseq.data.audio.data_cfg import S2TDataConfig
    from fairseq.data.audio.speech_to_text_dataset import SpeechToTextDatasetCreator

    cfg = S2TDataConfig(data / "config.yaml")
    tgt_dict = Dictionary.load(str(data / cfg.vocab_filename))
    bpe = encoders.build_bpe(Namespace(**cfg.bpe_tokenizer))
    ds = SpeechToTextDatasetCreator.from_tsv(str(data), cfg, split, tgt_dict, None, bpe, is_train_split=False,
                                             epoch=1, seed=1)
    return ds, tgt_dict


def test_output_matches_fairseq_loader_and_direct_fbank(tiny_corpus_and_data):
    from fairseq.data.audio.audio_utils import get_features_or_waveform

    corpus, data = tiny_corpus_and_data
    for name in ("config.yaml", "fbank80.zip", "spm_unigram_tgt.model", "spm_unigram_tgt.txt",
                 "spm_unigram_src.model", "spm_unigram_src.txt", "timings/train.jsonl"):
        assert (data / name).is_file(), name
    with zipfile.ZipFile(data / "fbank80.zip") as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    for split in ("train", "test_voices"):
        ds, tgt_dict = _fairseq_dataset(data, split)
        m = read_s2t_manifest(data / f"{split}.tsv")
        assert len(ds) == len(m.rows)
        for i, row in enumerate(m.rows):
            feats = get_features_or_waveform(ds.audio_paths[i])  # fairseq's own reader, no torchaudio
            direct = compute_fbank(load_audio(corpus / "audio" / "en" / f"{row['id']}.wav"))
            np.testing.assert_array_equal(feats, direct)
            assert feats.shape == (int(row["n_frames"]), 80)
            item = ds[i]
            # fairseq's target: <lang:it> + SentencePiece pieces of the Italian translation + </s>
            assert tgt_dict[item.target[0]] == "<lang:it>" and item.target[-1] == tgt_dict.eos()
            assert tgt_dict.string(item.target[1:]).replace(" ", "").replace("\u2581", " ").strip() == row["tgt_text"]
            # utterance CMVN from config.yaml was applied by fairseq's transforms
            assert torch.allclose(item.source.mean(0), torch.zeros(80), atol=1e-4)


def test_lang_tags_and_languages(tiny_corpus_and_data):
    _, data = tiny_corpus_and_data
    symbols = (data / "spm_unigram_tgt.txt").read_text(encoding="utf-8").split("\n")
    assert "<lang:en> 1" in symbols and "<lang:it> 1" in symbols
    src_symbols = (data / "spm_unigram_src.txt").read_text(encoding="utf-8")
    assert "<lang:" not in src_symbols
    m = read_s2t_manifest(data / "train.tsv")
    assert set(m.column("src_lang")) == {"en"} and set(m.column("tgt_lang")) == {"it"}


def _raw_corpus_copy(corpus: Path, dst: Path, n_rows: int = 3) -> Path:
    dst.mkdir()
    lines = (corpus / "train.tsv").read_text(encoding="utf-8").splitlines()[: n_rows + 1]
    header = lines[0].split("\t")
    out = [lines[0]]
    for line in lines[1:]:
        f = line.split("\t")
        f[header.index("audio")] = str((corpus / f[header.index("audio")]).resolve())
        out.append("\t".join(f))
    (dst / "train.tsv").write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


def test_asr_only_input_without_translations(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw_corpus_copy(corpus, tmp_path / "raw")
    lines = (raw / "train.tsv").read_text(encoding="utf-8").splitlines()
    keep = [0, 1, 3]  # id, audio, src_text
    (raw / "train.tsv").write_text("\n".join("\t".join(line.split("\t")[k] for k in keep) for line in lines) + "\n")
    prepare(raw, tmp_path / "out", vocab_size=60)
    m = read_s2t_manifest(tmp_path / "out" / "train.tsv")
    assert m.column("tgt_text") == m.column("src_text")
    assert "prepend_tgt_lang_tag: false" in (tmp_path / "out" / "config.yaml").read_text()


def test_missing_and_unreadable_audio_are_named(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw_corpus_copy(corpus, tmp_path / "raw")
    text = (raw / "train.tsv").read_text(encoding="utf-8")
    first_wav = text.splitlines()[1].split("\t")[1]
    (raw / "train.tsv").write_text(text.replace(first_wav, "/nonexistent/x.wav"), encoding="utf-8")
    with pytest.raises(ManifestError, match=r"train.tsv, line 2 \(id 'train_00000_en'\): audio file not found: /nonexistent/x.wav"):
        prepare(raw, tmp_path / "out")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF garbage" * 20)
    (raw / "train.tsv").write_text(text.replace(first_wav, str(bad)), encoding="utf-8")
    for workers in (1, 2):  # the error crosses the process boundary intact
        with pytest.raises(ManifestError, match=r"line 2 \(id 'train_00000_en'\): cannot read audio file .*bad.wav"):
            prepare(raw, tmp_path / "out", workers=workers)


def test_language_tags_need_languages(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw_corpus_copy(corpus, tmp_path / "raw")
    lines = (raw / "train.tsv").read_text(encoding="utf-8").splitlines()
    (raw / "train.tsv").write_text("\n".join("\t".join(line.split("\t")[:6]) for line in lines) + "\n")
    with pytest.raises(ManifestError, match=r"line 2 \(id 'train_00000_en'\): language tags need src_lang and tgt_lang"):
        prepare(raw, tmp_path / "out")
    summary = prepare(raw, tmp_path / "out", src_lang="en", tgt_lang="it", vocab_size=80)
    assert summary["lang_tags"] == ["<lang:en>", "<lang:it>"]


def test_cli_runs(tiny_corpus_and_data, tmp_path):
    from fairseq_xattn.cli import main

    corpus, _ = tiny_corpus_and_data
    raw = _raw_corpus_copy(corpus, tmp_path / "raw")
    shutil.copytree(corpus / "timings", raw / "timings")
    assert main(["prep", str(raw), str(tmp_path / "out"), "--vocab-size", "80", "--no-progress", "--specaugment", "ld"]) == 0
    assert (tmp_path / "out" / "timings" / "train.jsonl").is_file()
    assert "freq_mask_N: 2" in (tmp_path / "out" / "config.yaml").read_text()


def test_specaugment_policy_is_checked_before_any_work(tmp_path, capsys):
    from fairseq_xattn.cli import main

    # the input folder does not even exist: the option is refused before manifests are read
    with pytest.raises(ValueError, match=r"--specaugment 'xx': choose from lb, ld, sm, ss or none"):
        prepare(tmp_path / "no_such_input", tmp_path / "out", specaugment="xx")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as e:
        main(["prep", str(tmp_path / "no_such_input"), str(tmp_path / "out"), "--specaugment", "xx"])
    assert e.value.code == 2
    assert "--specaugment: invalid choice: 'xx'" in capsys.readouterr().err
