"""``xattn whisper-import``: the folder it writes loads in fairseq and computes transformers' numbers;
bad sources get one clear error naming the file."""
import json

import pytest
import torch
import yaml

from fairseq_xattn import cli
from fairseq_xattn.models.whisper.importer import WhisperImportError, import_whisper

from .conftest import ALIGNMENT_HEADS, N_VOCAB
from .helpers import fairseq_batch, hf_batch, utterance_features


@pytest.fixture
def xattn_main(monkeypatch):
    """``xattn`` with the whisper-import subcommand (registered here until cli.py lists it)."""
    monkeypatch.setitem(cli.SUBCOMMANDS, "whisper-import",
                        ("fairseq_xattn.models.whisper.import_cli", "import a Whisper checkpoint"))
    return cli.main


def _load_fairseq(out, overrides=None):
    """fairseq's own loader, with a task that only supplies the imported dictionary."""
    from fairseq import checkpoint_utils
    from fairseq.tasks import FairseqTask

    from fairseq_xattn.models.whisper.vocabulary import DICTIONARY_FILE, WhisperDictionary

    class DictionaryTask(FairseqTask):
        def __init__(self, dictionary):
            super().__init__(None)
            self.dictionary = dictionary

        @property
        def target_dictionary(self):
            return self.dictionary

    task = DictionaryTask(WhisperDictionary.load(out / DICTIONARY_FILE))
    models, cfg, _ = checkpoint_utils.load_model_ensemble_and_task([str(out / "checkpoint.pt")], task=task,
                                                                   arg_overrides=overrides)
    return models[0].eval(), cfg, task.dictionary


def test_import_huggingface_folder_via_cli(hf_whisper_folder, hf_whisper_model, tmp_path, capsys, xattn_main):
    out = tmp_path / "imported"
    assert xattn_main(["whisper-import", str(hf_whisper_folder), str(out)]) == 0
    assert "(huggingface)" in capsys.readouterr().out
    model, cfg, dictionary = _load_fairseq(out)
    assert cfg.model._name == "whisper" and cfg.model.n_text_layer == 2 and cfg.model.n_audio_ctx == 50
    assert len(dictionary) == N_VOCAB + 1 and model.alignment_heads == [tuple(h) for h in ALIGNMENT_HEADS]
    heads = json.loads((out / "alignment_heads.json").read_text())
    assert heads["alignment_heads"] == ALIGNMENT_HEADS and heads["n_text_head"] == 4
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["features"] == "whisper" and config["input_feat_per_channel"] == 80
    assert config["whisper"] == {"language": None, "task": "transcribe", "n_mels": 80}
    assert (out / "vocab.json").is_file() and (out / "merges.txt").is_file()

    features = utterance_features()
    tokens = torch.tensor([[257, 265, 1, 2, 3], [257, 265, 4, 5, 6]])
    with torch.no_grad():
        expected = torch.log_softmax(hf_whisper_model(input_features=hf_batch(features),
                                                      decoder_input_ids=tokens).logits, -1)
        src, lengths = fairseq_batch(features)
        ours = model.get_normalized_probs(model(src, lengths, tokens), log_probs=True)
    torch.testing.assert_close(ours[..., :N_VOCAB], expected, atol=1e-4, rtol=0)
    assert model.encoder.pad_to_30s
    # the speed option as fairseq-generate sets it: --model-overrides "{'no_pad_to_30s': True}"
    fast, _, _ = _load_fairseq(out, overrides={"no_pad_to_30s": True})
    assert not fast.encoder.pad_to_30s


def test_import_openai_pt_needs_a_tokenizer(openai_whisper_pt, hf_whisper_folder, tmp_path):
    with pytest.raises(WhisperImportError, match=r"small\.pt: has no tokenizer.*--tokenizer"):
        import_whisper(str(openai_whisper_pt), tmp_path / "a")
    result = import_whisper(str(openai_whisper_pt), tmp_path / "b", tokenizer=str(hf_whisper_folder))
    assert result.format == "openai"
    # OpenAI files carry no alignment heads: Whisper's default (last half of the layers), with a warning
    assert result.alignment_heads == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert any("no alignment heads" in w for w in result.warnings)
    model, _, _ = _load_fairseq(tmp_path / "b")
    assert model.alignment_heads == [(1, 0), (1, 1), (1, 2), (1, 3)]
    result = import_whisper(str(openai_whisper_pt), tmp_path / "c", tokenizer=str(hf_whisper_folder),
                            alignment_heads="0:1,1:3")
    assert result.alignment_heads == [(0, 1), (1, 3)] and not result.warnings


def test_unknown_format_and_size_name_the_file(openai_whisper_pt, hf_whisper_folder, tmp_path, capsys, xattn_main):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    with pytest.raises(WhisperImportError, match=r"not_a_model: unknown Whisper checkpoint format"):
        import_whisper(str(folder), tmp_path / "o1")
    # through the CLI: one line, exit status 2
    assert xattn_main(["whisper-import", str(folder), str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xattn whisper-import: error:") and "not_a_model" in err and "\n" not in err

    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, str(other))
    with pytest.raises(WhisperImportError, match=r"other\.pt: not an OpenAI Whisper checkpoint"):
        import_whisper(str(other), tmp_path / "o2")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(WhisperImportError, match=r"garbage\.pt: not a readable PyTorch checkpoint"):
        import_whisper(str(garbage), tmp_path / "o3")

    content = torch.load(str(openai_whisper_pt), weights_only=True)
    content["dims"]["n_text_state"] = 96  # weights of d 64 under dims of d 96: another size
    content["dims"]["n_audio_state"] = 96
    wrong = tmp_path / "wrong_size.pt"
    torch.save(content, str(wrong))
    with pytest.raises(WhisperImportError, match=r"wrong_size\.pt: encoder\.conv1\.weight has shape \(64, 80, 3\)"):
        import_whisper(str(wrong), tmp_path / "o4", tokenizer=str(hf_whisper_folder))


def test_hub_name_without_network_fails_with_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never download in tests
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(WhisperImportError, match=r"openai/whisper-tiny\.en: cannot download .*give a local folder"):
        import_whisper("openai/whisper-tiny.en", tmp_path / "out")
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    with pytest.raises(WhisperImportError, match=r"needs the huggingface_hub package"):
        import_whisper("openai/whisper-tiny.en", tmp_path / "out")
    with pytest.raises(WhisperImportError, match=r"no/such/path\.pt/x: no such file or folder"):
        import_whisper("no/such/path.pt/x", tmp_path / "out")


def test_refuses_a_non_empty_output(hf_whisper_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(WhisperImportError, match=r"out: exists and is not empty"):
        import_whisper(str(hf_whisper_folder), out)


def test_import_ctranslate2_folder_made_by_ctranslate2(hf_whisper_folder, hf_whisper_model, tmp_path):
    """The CTranslate2 folder ctranslate2's own converter writes from the same weights imports to a
    model with transformers' log-probabilities (float32: exact weights)."""
    converters = pytest.importorskip("ctranslate2.converters")
    ct2 = tmp_path / "ct2"
    converters.TransformersConverter(str(hf_whisper_folder)).convert(str(ct2), quantization="float32")
    result = import_whisper(str(ct2), tmp_path / "out")
    assert result.format == "ctranslate2"
    model, _, _ = _load_fairseq(tmp_path / "out")
    features = utterance_features()
    tokens = torch.tensor([[257, 265, 9, 8, 7], [257, 265, 200, 100, 50]])
    with torch.no_grad():
        expected = torch.log_softmax(hf_whisper_model(input_features=hf_batch(features),
                                                      decoder_input_ids=tokens).logits, -1)
        src, lengths = fairseq_batch(features)
        ours = model.get_normalized_probs(model(src, lengths, tokens), log_probs=True)
    torch.testing.assert_close(ours[..., :N_VOCAB], expected, atol=1e-4, rtol=0)


def test_pytorch_model_bin_and_alignment_head_mask(hf_whisper_folder, hf_whisper_model, openai_whisper_pt, tmp_path):
    """A transformers folder saved as pytorch_model.bin reads to the same canonical weights; an OpenAI
    file carrying openai/whisper's boolean layers x heads mask gives those heads."""
    import shutil

    import numpy as np

    from fairseq_xattn.models.whisper.huggingface_format import read_huggingface_whisper
    from fairseq_xattn.models.whisper.openai_format import read_openai_checkpoint

    folder = tmp_path / "bin"
    shutil.copytree(hf_whisper_folder, folder)
    (folder / "model.safetensors").unlink()
    torch.save(hf_whisper_model.state_dict(), str(folder / "pytorch_model.bin"))
    from_bin, from_safetensors = read_huggingface_whisper(folder), read_huggingface_whisper(hf_whisper_folder)
    assert from_bin.dims == from_safetensors.dims and from_bin.state_dict.keys() == from_safetensors.state_dict.keys()
    for name, value in from_safetensors.state_dict.items():
        np.testing.assert_array_equal(from_bin.state_dict[name], value)

    content = torch.load(str(openai_whisper_pt), weights_only=True)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 3] = mask[1, 1] = True
    content["alignment_heads"] = mask
    path = tmp_path / "with_heads.pt"
    torch.save(content, str(path))
    assert read_openai_checkpoint(path).alignment_heads == [(0, 3), (1, 1)]
