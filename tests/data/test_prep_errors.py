"""``xattn prep`` user errors: one line naming the file, row and column or the flag (and the fix);
the CLI prints them without a traceback and exits with status 2."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fairseq_xattn.data.manifest import ManifestError, read_s2t_manifest
from fairseq_xattn.data.prep import PrepError, prepare
from fairseq_xattn.errors import UserError


def _raw(corpus: Path, dst: Path, n_rows: int = 3) -> Path:
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


def _set_audio(raw: Path, row: int, audio: Path) -> str:
    lines = (raw / "train.tsv").read_text(encoding="utf-8").splitlines()
    fields = lines[row].split("\t")
    fields[1] = str(audio)
    lines[row] = "\t".join(fields)
    (raw / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return fields[0]


def test_nan_and_infinite_audio_are_named_with_file_row_and_time(tiny_corpus_and_data, tmp_path):
    import soundfile as sf

    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    audio = (0.1 * np.sin(np.arange(16000) / 7)).astype(np.float32)
    audio[8000] = np.nan
    sf.write(raw / "nan.wav", audio, 16000, subtype="FLOAT")
    utt = _set_audio(raw, 2, raw / "nan.wav")
    for workers in (1, 2):
        with pytest.raises(ManifestError) as e:
            prepare(raw, tmp_path / "out", vocab_size=60, workers=workers)
        assert str(e.value) == (f"{raw / 'train.tsv'}, line 3 (id {utt!r}): audio file {raw / 'nan.wav'} holds 1 NaN "
                                "or infinite sample(s), the first at 0.500 s")
    audio[8000] = 0.0
    audio[[4000, 12000]] = np.inf  # stereo at 8 kHz: downmixed, resampled, still caught
    sf.write(raw / "inf.wav", np.stack([audio, audio], 1), 8000, subtype="FLOAT")
    _set_audio(raw, 2, raw / "inf.wav")
    with pytest.raises(ManifestError, match=rf"line 3 \(id {utt!r}\): audio file .*inf.wav holds \d+ NaN or infinite "
                                            r"sample\(s\), the first at 0\.\d+ s"):
        prepare(raw, tmp_path / "out", vocab_size=60)
    assert not (tmp_path / "out").exists()


def test_a_utf8_bom_in_the_header_is_stripped(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    text = (raw / "train.tsv").read_text(encoding="utf-8")
    (raw / "train.tsv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    prepare(raw, tmp_path / "out", vocab_size=60)
    m = read_s2t_manifest(tmp_path / "out" / "train.tsv")
    assert m.column("id") == [line.split("\t")[0] for line in text.splitlines()[1:]]


def test_bad_inputs_are_one_line_naming_file_row_and_column(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    manifest = raw / "train.tsv"
    text = manifest.read_text(encoding="utf-8")
    with pytest.raises(PrepError, match=rf"^input folder not found: {tmp_path / 'nope'}$"):
        prepare(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PrepError, match=r"^input .*afile is not a folder"):
        prepare(tmp_path / "afile", tmp_path / "out")
    # a missing column
    lines = text.splitlines()
    header = lines[0].split("\t")
    keep = [i for i, c in enumerate(header) if c != "src_text"]
    manifest.write_text("\n".join("\t".join(line.split("\t")[i] for i in keep) for line in lines) + "\n")
    with pytest.raises(ManifestError, match=rf"^{manifest}: missing column\(s\) src_text in the header \(found: id, "):
        prepare(raw, tmp_path / "out")
    # not UTF-8 (a Latin-1 editor): the line is named
    manifest.write_bytes(text.replace("\n", "\ncaf\xe9\t", 1).encode("latin-1"))
    with pytest.raises(ManifestError, match=rf"^{manifest}, line 2: not UTF-8 text \(byte 0xe9 at offset \d+\); save "
                                            r"the manifest as UTF-8$"):
        prepare(raw, tmp_path / "out")
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(PrepError, match=r"^--specaugment 'xx': choose from lb, ld, sm, ss or none$"):
        prepare(raw, tmp_path / "out", specaugment="xx")
    assert not (tmp_path / "out").exists()


def test_a_vocabulary_size_sentencepiece_cannot_honour_names_the_size_that_works(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    with pytest.raises(PrepError) as e:
        prepare(raw, tmp_path / "out", vocab_size=10)
    match = re.fullmatch(r"--vocab-size 10 is too small: SentencePiece needs at least (\d+) pieces for the characters "
                         r"of the training texts and the special symbols; pass --vocab-size \1 or more \(an upper "
                         r"bound: small corpora get fewer pieces\)", str(e.value))
    assert match, str(e.value)
    need = int(match.group(1))
    with pytest.raises(PrepError, match=rf"--vocab-size {need - 1} is too small: .* at least {need} pieces"):
        prepare(raw, tmp_path / "out", vocab_size=need - 1)
    prepare(raw, tmp_path / "out", vocab_size=need)  # what the message says works, works
    with pytest.raises(PrepError, match=r"^--src-vocab-size 5 is too small: .*; pass --src-vocab-size \d+ or more"):
        prepare(raw, tmp_path / "out2", vocab_size=need, src_vocab_size=5)
    with pytest.raises(PrepError, match=r"^--vocab-size 0: must be a positive number of pieces$"):
        prepare(raw, tmp_path / "out2", vocab_size=0)
    assert not (tmp_path / "out2").exists()


def _xattn(*args):
    return subprocess.run([sys.executable, "-m", "fairseq_xattn.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_prep_cli_user_errors_are_one_line_with_exit_status_2(tiny_corpus_and_data, tmp_path):
    corpus, data = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    only_test = tmp_path / "only_test"
    only_test.mkdir()
    (only_test / "test.tsv").write_text((raw / "train.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    cases = [
        (("prep", raw, raw), f"xattn prep: error: the output folder {raw} is the input folder {raw}: prep would "
                             "overwrite its raw manifests with fairseq ones; give a new output folder"),
        (("prep", tmp_path / "nope", tmp_path / "out"), f"xattn prep: error: input folder not found: {tmp_path / 'nope'}"),
        (("prep", only_test, tmp_path / "out", "--like", data, "--vocab-size", "100"),
         f"xattn prep: error: --vocab-size: not with --like (the vocabularies and config.yaml are those of {data})"),
        (("prep", only_test, tmp_path / "out", "--no-progress"),
         f"xattn prep: error: {only_test}: no training split (a 'train*.tsv' raw manifest) among test: to prepare "
         "evaluation audio for a trained model, pass --like DATA"),
        (("prep", raw, tmp_path / "out", "--vocab-size", "10", "--no-progress"),
         "xattn prep: error: --vocab-size 10 is too small: SentencePiece needs at least"),
    ]
    for args, start in cases:
        result = _xattn(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
        assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    assert not (tmp_path / "out").exists()
    # and the run the messages lead to
    ok = _xattn("prep", only_test, tmp_path / "out", "--like", data, "--no-progress", "--workers", "1")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("prepared {'test': 3} (") and f"vocabulary and config.yaml of {data}" in ok.stdout
    assert isinstance(PrepError("x"), UserError) and isinstance(ManifestError("x"), UserError)
