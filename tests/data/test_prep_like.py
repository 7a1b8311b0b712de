"""``xattn prep --like DATA``: evaluation audio for a trained model, prepared with the model's own
vocabularies and config.yaml, from a folder that holds only a test.tsv (any sample rate, stereo)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fairseq_xattn.data.manifest import ManifestError, read_s2t_manifest
from fairseq_xattn.data.prep import PrepError, extract_features, like_zip_name, prepare

COPIED = ("spm_unigram_tgt.txt", "spm_unigram_tgt.model", "spm_unigram_src.txt", "spm_unigram_src.model")


def _recordings(corpus: Path, dst: Path) -> Path:
    """A user's folder: test.tsv only, three clips of different lengths: a 16 kHz mono wav as the corpus
    has it, the same speech as a stereo 44.1 kHz float wav, and another clip at 8 kHz."""
    import soundfile as sf
    import soxr

    dst.mkdir()
    (dst / "clips").mkdir()
    header, *lines = (corpus / "test.tsv").read_text(encoding="utf-8").splitlines()
    cols = header.split("\t")
    rows = [dict(zip(cols, line.split("\t"))) for line in lines]
    a, rate = sf.read(corpus / rows[0]["audio"], dtype="float32")
    assert rate == 16000
    shutil.copyfile(corpus / rows[0]["audio"], dst / "clips" / "mono16k.wav")
    hi = soxr.resample(a, 16000, 44100, quality="HQ").astype(np.float32)
    sf.write(dst / "clips" / "stereo44k.wav",
             np.stack([hi, hi], axis=1), 44100, subtype="FLOAT")
    b, _ = sf.read(corpus / rows[1]["audio"], dtype="float32")
    sf.write(dst / "clips" / "other8k.wav", soxr.resample(b, 16000, 8000, quality="HQ"), 8000, subtype="PCM_16")
    out = ["id\taudio\tsrc_text\ttgt_text\tsrc_lang\ttgt_lang"]
    for utt, clip, row in (("rec_a", "mono16k.wav", rows[0]), ("rec_b", "stereo44k.wav", rows[0]),
                           ("rec_c", "other8k.wav", rows[1])):
        out.append("\t".join([utt, f"clips/{clip}", row["src_text"], row["tgt_text"], "en", "it"]))
    (dst / "test.tsv").write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def prepared_like(tiny_corpus_and_data, tmp_path_factory):
    corpus, data = tiny_corpus_and_data
    root = tmp_path_factory.mktemp("like")
    raw = _recordings(corpus, root / "my_recordings")
    summary = prepare(raw, root / "my_data", like=data)
    return raw, data, root / "my_data", summary


def test_like_writes_a_self_contained_folder_with_the_models_vocabulary(prepared_like):
    raw, data, out, summary = prepared_like
    assert summary["splits"] == {"test": 3} and summary["lang_tags"] == ["<lang:en>", "<lang:it>"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["config.yaml", like_zip_name("test"), "test.tsv", *COPIED])
    for name in COPIED:  # the model's files, byte for byte
        assert (out / name).read_bytes() == (data / name).read_bytes(), name
    mine = yaml.safe_load((out / "config.yaml").read_text())
    theirs = yaml.safe_load((data / "config.yaml").read_text())
    assert mine.pop("audio_root") == str(out.resolve())
    theirs.pop("audio_root")
    assert mine == theirs
    m = read_s2t_manifest(out / "test.tsv")
    assert all(r["audio"].startswith(like_zip_name("test") + ":") for r in m.rows)


def test_like_features_any_rate_and_stereo_equal_the_mono_16k_ones(prepared_like):
    from fairseq.data.audio.audio_utils import get_features_or_waveform

    raw, data, out, _ = prepared_like
    m = read_s2t_manifest(out / "test.tsv")
    feats = {r["id"]: get_features_or_waveform(str(out / r["audio"])) for r in m.rows}
    for r in m.rows:
        assert feats[r["id"]].shape == (int(r["n_frames"]), 80)
    np.testing.assert_array_equal(feats["rec_a"], extract_features(raw / "clips" / "mono16k.wav")[0])
    # the stereo 44.1 kHz copy of rec_a: downmixed and resampled back to 16 kHz, the same filterbanks
    # below ~6 kHz (the first 60 mel bins; the resampler's anti-aliasing filter touches the top ones)
    assert feats["rec_b"].shape == feats["rec_a"].shape
    np.testing.assert_allclose(feats["rec_b"][:, :60], feats["rec_a"][:, :60], atol=0.05)
    assert feats["rec_c"].shape[0] != feats["rec_a"].shape[0]  # another clip, another length


def test_like_split_loads_with_the_models_dictionaries_in_the_task(prepared_like):
    from omegaconf import OmegaConf

    import fairseq_xattn.plugin  # noqa: F401
    from fairseq_xattn.tasks import SpeechToTextCtcTask
    from fairseq_xattn.tasks.speech_to_text_ctc import SpeechToTextCtcConfig

    raw, data, out, _ = prepared_like

    def task_of(folder):
        cfg = OmegaConf.structured(SpeechToTextCtcConfig(data=str(folder), seed=1, train_subset="train"))
        return SpeechToTextCtcTask.setup_task(cfg)

    model_task, task = task_of(data), task_of(out)
    assert task.target_dictionary.symbols == model_task.target_dictionary.symbols
    assert task.source_dictionary.symbols == model_task.source_dictionary.symbols
    task.load_dataset("test")
    ds = task.datasets["test"]
    m = read_s2t_manifest(out / "test.tsv")
    assert len(ds) == 3
    tgt = task.target_dictionary
    for i, row in enumerate(m.rows):
        item = ds[i]
        assert tgt[item.target[0]] == "<lang:it>" and item.target[-1] == tgt.eos()
        text = tgt.string(item.target[1:]).replace(" ", "").replace("\u2581", " ").strip()
        assert text == row["tgt_text"]
        assert tgt.unk() not in item.target.tolist()


def test_like_refuses_a_language_the_model_does_not_know(tiny_corpus_and_data, tmp_path):
    corpus, data = tiny_corpus_and_data
    raw = _recordings(corpus, tmp_path / "raw")
    text = (raw / "test.tsv").read_text(encoding="utf-8")
    (raw / "test.tsv").write_text(text.replace("\ten\tit\n", "\ten\tfr\n", 1), encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"test.tsv, line 2 \(id 'rec_a'\): the model's dictionary "
                                            rf"{data / 'spm_unigram_tgt.txt'} has no <lang:fr> \(its language tags: "
                                            r"<lang:en>, <lang:it>\)"):
        prepare(raw, tmp_path / "out", like=data)
    assert not (tmp_path / "out").exists()


def test_like_needs_a_data_folder_with_its_config(tiny_corpus_and_data, tmp_path):
    corpus, data = tiny_corpus_and_data
    raw = _recordings(corpus, tmp_path / "raw")
    with pytest.raises(PrepError, match=rf"^--like {tmp_path / 'nothing'}: folder not found"):
        prepare(raw, tmp_path / "out", like=tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(data, broken, ignore=shutil.ignore_patterns("*.zip", "*.tsv", "spm_unigram_src.*"))
    with pytest.raises(PrepError, match=rf"^{broken / 'config.yaml'}: src_vocab_filename names spm_unigram_src.txt, "
                                        rf"which is not in {broken}$"):
        prepare(raw, tmp_path / "out", like=broken)
    with pytest.raises(PrepError, match=r"the output folder .* is --like .*: prep would replace the model's data folder"):
        prepare(raw, data, like=data)
    assert not (tmp_path / "out").exists()


def test_without_like_an_evaluation_only_folder_points_to_like(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _recordings(corpus, tmp_path / "raw")
    with pytest.raises(PrepError, match=r"no training split .* among test: to prepare evaluation audio for a trained "
                                        r"model, pass --like DATA"):
        prepare(raw, tmp_path / "out")
