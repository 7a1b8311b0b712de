"""``xattn prep`` never writes over its input and writes its output atomically: a failed rerun leaves a
good output folder byte-identical; a successful one replaces prep's files consistently and keeps the
user's."""
from pathlib import Path

import pytest

from fairseq_xattn.data.feature_zip import parse_zip_reference
from fairseq_xattn.data.manifest import ManifestError, read_s2t_manifest
from fairseq_xattn.data.prep import PrepError, prepare


def _raw(corpus: Path, dst: Path, n_rows: int = 4) -> Path:
    """train.tsv with the first ``n_rows`` corpus rows, audio paths made absolute."""
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


def _snapshot(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _siblings(folder: Path):
    return sorted(p.name for p in folder.parent.iterdir())


def test_prep_into_its_own_input_is_refused_and_the_manifests_stay(tiny_corpus_and_data, tmp_path):
    # the repro of issue 18, point 3: `xattn prep IN IN` overwrote the raw manifests
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    before = _snapshot(raw)
    with pytest.raises(PrepError) as e:
        prepare(raw, raw, vocab_size=60)
    assert str(e.value) == (f"the output folder {raw} is the input folder {raw}: prep would overwrite its raw "
                            "manifests with fairseq ones; give a new output folder")
    with pytest.raises(PrepError, match="is the input folder"):
        prepare(raw, tmp_path / "." / "raw" / ".." / "raw", vocab_size=60)  # the same folder, spelled otherwise
    with pytest.raises(PrepError, match=rf"^the input folder {raw} is inside the output folder {tmp_path}, which "
                                        r"prep replaces as a whole"):
        prepare(raw, tmp_path, vocab_size=60)
    assert _snapshot(raw) == before


def test_a_failed_rerun_leaves_a_good_output_folder_byte_identical(tiny_corpus_and_data, tmp_path):
    # the repro of issue 18, point 4: a failed rerun rewrote fbank80.zip (fewer entries) under the old TSVs
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw")
    out = tmp_path / "data"
    prepare(raw, out, vocab_size=60)
    (out / "notes.txt").write_text("mine")
    good = _snapshot(out)
    siblings = _siblings(out)
    # the third row's audio is now unreadable: the features of rows 1-2 are written, then the run fails
    lines = (raw / "train.tsv").read_text(encoding="utf-8").splitlines()
    bad = raw / "bad.wav"
    bad.write_bytes(b"RIFF not really" * 10)
    fields = lines[3].split("\t")
    fields[1] = str(bad)
    lines[3] = "\t".join(fields)
    (raw / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for workers in (1, 2):
        with pytest.raises(ManifestError, match=r"train.tsv, line 4 \(id '.*'\): cannot read audio file .*bad.wav"):
            prepare(raw, out, vocab_size=60, workers=workers)
        assert _snapshot(out) == good
        assert _siblings(out) == siblings  # no staging folder left behind


def test_a_successful_rerun_replaces_prep_files_consistently_and_keeps_the_users(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw", n_rows=4)
    (raw / "dev.tsv").write_text((raw / "train.tsv").read_text(encoding="utf-8").replace("\ntrain_", "\ndev_"),
                                 encoding="utf-8")
    out = tmp_path / "data"
    prepare(raw, out, vocab_size=60)
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "checkpoint_last.pt").write_bytes(b"weights")
    # rerun with fewer rows and without the dev split
    (raw / "dev.tsv").unlink()
    _raw(corpus, tmp_path / "raw2", n_rows=2)
    summary = prepare(tmp_path / "raw2", out, vocab_size=60)
    assert summary["splits"] == {"train": 2}
    assert (out / "checkpoints" / "checkpoint_last.pt").read_bytes() == b"weights"
    assert not (out / "dev.tsv").exists()  # its features were in the replaced zip
    m = read_s2t_manifest(out / "train.tsv")
    size = (out / "fbank80.zip").stat().st_size
    for row in m.rows:  # every reference lies inside the new zip
        _, offset, length = parse_zip_reference(row["audio"])
        assert offset + length <= size
    assert len(m.rows) == 2
    assert _siblings(out) == ["data", "raw", "raw2"]


def test_a_killed_run_leaves_nothing_that_blocks_the_next(tiny_corpus_and_data, tmp_path):
    corpus, _ = tiny_corpus_and_data
    raw = _raw(corpus, tmp_path / "raw", n_rows=2)
    out = tmp_path / "data"
    prepare(raw, out, vocab_size=60)
    good = _snapshot(out)
    # what a SIGKILL leaves: a half-built staging folder, and (killed mid-swap) the previous output set
    # aside with no output folder; pid 999999999 is not running
    (tmp_path / ".data.prep-new-999999999").mkdir()
    (tmp_path / ".data.prep-new-999999999" / "fbank80.zip").write_bytes(b"half")
    out.rename(tmp_path / ".data.prep-old-999999999")
    with pytest.raises(PrepError):  # any run (here: refused options) first puts the previous output back
        prepare(raw, out, vocab_size=0)
    assert _snapshot(out) == good
    assert _siblings(out) == ["data", "raw"]
