"""Manifest reading: every error names the file, the line and the id at fault."""
import pytest

from fairseq_xattn.data.manifest import ManifestError, read_raw_manifest, read_s2t_manifest, write_tsv

HEADER = "id\taudio\tn_frames\ttgt_text\tspeaker\n"


def _write(tmp_path, text, name="m.tsv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_rows_with_line_numbers(tmp_path):
    p = _write(tmp_path, HEADER + "u1\tf.zip:1:2\t10\tciao\ts\n\nu2\tf.zip:3:4\t7\tè vero\ts\n")
    m = read_s2t_manifest(p)
    assert m.column("id") == ["u1", "u2"] and m.column("tgt_text") == ["ciao", "è vero"]
    assert m.lines == [2, 4] and m.column("src_text") is None
    assert m.where(1) == f"{p}, line 4 (id 'u2')"


def test_missing_column(tmp_path):
    p = _write(tmp_path, "id\taudio\ttgt_text\nu1\tx.zip:1:2\tciao\n")
    with pytest.raises(ManifestError, match=r"m.tsv: missing column\(s\) n_frames"):
        read_s2t_manifest(p)


def test_bad_n_frames_empty_text_duplicates_and_field_count(tmp_path):
    cases = {
        "u1\tf.zip:1:2\tten\tciao\ts\n": r"line 2 \(id 'u1'\): n_frames 'ten' is not an integer",
        "u1\tf.zip:1:2\t0\tciao\ts\n": r"line 2 \(id 'u1'\): n_frames must be positive",
        "u1\tf.zip:1:2\t5\t  \ts\n": r"line 2 \(id 'u1'\): empty tgt_text",
        "u1\tf.zip:1:2\t5\tciao\ts\nu1\tf.zip:1:2\t5\tciao\ts\n": r"line 3 \(id 'u1'\): duplicate id \(first at line 2\)",
        "u1\tf.zip:1:2\t5\tciao\n": r"line 2: expected 5 tab-separated fields .* found 4",
        "\tf.zip:1:2\t5\tciao\ts\n": r"line 2: empty id",
    }
    for body, pattern in cases.items():
        with pytest.raises(ManifestError, match=pattern):
            read_s2t_manifest(_write(tmp_path, HEADER + body))


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_s2t_manifest(tmp_path / "nope.tsv")
    with pytest.raises(ManifestError, match="no rows after the header"):
        read_s2t_manifest(_write(tmp_path, HEADER))


def test_raw_manifest_needs_a_transcript(tmp_path):
    with pytest.raises(ManifestError, match=r"missing column\(s\) src_text"):
        read_raw_manifest(_write(tmp_path, "id\taudio\ttgt_text\nu\ta.wav\tciao\n"))
    with pytest.raises(ManifestError, match=r"line 2 \(id 'u'\): empty src_text"):
        read_raw_manifest(_write(tmp_path, "id\taudio\tsrc_text\nu\ta.wav\t\n"))


def test_write_refuses_tabs(tmp_path):
    with pytest.raises(ManifestError, match="field tgt_text of id 'u' contains a tab"):
        write_tsv(tmp_path / "o.tsv", ["id", "tgt_text"], [{"id": "u", "tgt_text": "a\tb"}])
