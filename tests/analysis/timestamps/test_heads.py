"""Head selection specs: all, layers, heads, layer:N, pairs, whisper (store meta), FILE.json; errors."""
import json

import pytest

from fairseq_xattn.analysis.timestamps.heads import HeadSelectionError, parse_selection


def names_pairs(selections):
    return [(s.name, list(s.pairs)) for s in selections]


def test_selection_specs():
    assert names_pairs(parse_selection("all", 2, 2)) == [("average of all layers and heads", [(1, 1), (1, 2), (2, 1), (2, 2)])]
    assert names_pairs(parse_selection("layers", 2, 2)) == [("layer 1, head average", [(1, 1), (1, 2)]),
                                                            ("layer 2, head average", [(2, 1), (2, 2)])]
    assert [s.pairs for s in parse_selection("heads", 2, 2)] == [((1, 1),), ((1, 2),), ((2, 1),), ((2, 2),)]
    assert names_pairs(parse_selection("layer:2", 2, 2)) == [("layer 2, head average", [(2, 1), (2, 2)])]
    assert names_pairs(parse_selection("2:1,1:2", 2, 2)) == [("1:2 2:1", [(1, 2), (2, 1)])]


def test_whisper_heads_from_store_meta_or_file_are_zero_based(tmp_path):
    meta = {"alignment_heads": [[1, 0], [0, 1]]}
    assert list(parse_selection("whisper", 2, 2, meta)[0].pairs) == [(1, 2), (2, 1)]
    path = tmp_path / "alignment_heads.json"
    path.write_text(json.dumps([[1, 1]]))
    assert names_pairs(parse_selection(str(path), 2, 2)) == [("alignment_heads", [(2, 2)])]
    with pytest.raises(HeadSelectionError, match="meta.json has no 'alignment_heads'"):
        parse_selection("whisper", 2, 2, {})
    path.write_text(json.dumps([[1, -1]]))
    with pytest.raises(HeadSelectionError, match="0-based"):
        parse_selection(str(path), 2, 2)
    with pytest.raises(HeadSelectionError, match="outside the stored 2 layers x 2 heads"):
        parse_selection("whisper", 2, 2, {"alignment_heads": [[2, 0]]})
    with pytest.raises(HeadSelectionError, match="--heads nonsense"):
        parse_selection("nonsense", 2, 2)
