"""The written page: one self-contained file whose inlined data decode to the loaded maps."""
import base64
import json
import re
import zlib

import numpy as np

from fairseq_xattn.analysis.viewer.builder import build_html
from fairseq_xattn.analysis.viewer.encode import block_mean, dequantise, read_blob_map
from fairseq_xattn.analysis.viewer.load import ViewerInputs, load_report
from fairseq_xattn.analysis.viewer.model import UtteranceView


def page_data(html: str):
    m = re.search(r'<script type="application/json" id="xattn-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def decoded_maps(utterance):
    raw = zlib.decompress(base64.b64decode(utterance["blob"]))
    out = {}
    for name, entry in utterance["maps"].items():
        q, lo, hi = read_blob_map(raw, entry)
        out[name] = (dequantise(q, lo, hi, int(np.log2(entry["levels"] + 1))), lo, hi, entry)
    return out


def test_page_is_self_contained(report_html):
    html = report_html.read_text()
    assert html.count("<script") == 2 and "<script src" not in html and "<link" not in html
    # no URL of any scheme but data is referenced (no network, works from file://)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "http://" not in html.replace("http://www.w3.org/", "") and "https://" not in html
    assert "XATTN_" not in html  # every template marker was filled


def test_inlined_maps_decode_to_the_loaded_views(synthetic_run, report_html):
    data = page_data(report_html.read_text())
    report = load_report(ViewerInputs(
        attention=str(synthetic_run.attention), saliency_input=str(synthetic_run.saliency_input),
        saliency_encoder=str(synthetic_run.saliency_encoder), features_from=str(synthetic_run.data_dir)))
    assert [u["id"] for u in data["utterances"]] == report.ids
    for payload, view in zip(data["utterances"], report.views()):
        maps = decoded_maps(payload)
        for name, expected, group_axes in (("ca", view.attention, 3), ("sh", view.saliency_encoder, 1),
                                           ("sxp", view.saliency_input_pooled, 1)):
            values, lo, hi, entry = maps[name]
            assert entry["levels"] == 255 and values.shape == expected.shape
            # within half a quantisation step of each row's own range
            step = ((hi.astype(np.float64) - lo) / 255).reshape(lo.shape + (1,) * (expected.ndim - group_axes))
            assert np.all(np.abs(values - expected) <= step / 2 + 1e-6)
        # pictures: SM^X averaged over 2 frames x 4 bins, spectrogram full size, 32 levels each
        values, lo, hi, entry = maps["sx"]
        assert entry["block"] == [2, 4] and entry["levels"] == 31 and values.shape == (15, 149, 20)
        expected = block_mean(view.saliency_input, (2, 4))
        assert np.all(np.abs(values - expected) <= ((hi - lo) / 31 / 2)[:, None, None] + 1e-6)
        values, lo, hi, entry = maps["spec"]
        assert np.abs(values - view.spectrogram).max() <= (hi - lo) / 31 / 2 + 1e-5
        assert payload["tokens"] == view.tokens and payload["I"] == 15 and payload["Tp"] == 75
        assert payload["word_of_token"][:4] == [0, 0, 1, 1]  # the first words are cut in two pieces


def test_text_cannot_break_out_of_the_data_script():
    view = UtteranceView(utt_id="</script><b>x", tokens=["\u2581</script>", "<!--"],
                         attention=np.full((1, 1, 2, 3), 1 / 3, dtype=np.float32), subsampling=4, n_frames=12,
                         text="a </script> b", reference="<b>")
    html = build_html([view], title="t </title>")
    data = page_data(html)
    (u,) = data["utterances"]
    assert u["id"] == "</script><b>x" and u["tokens"] == ["\u2581</script>", "<!--"] and u["text"] == "a </script> b"
    assert "<title>t &lt;/title&gt;</title>" in html


def test_file_size_per_utterance_stays_small(report_html):
    """The synthetic 3 s utterances (15 tokens, 2 x 4 heads, SPES-like SM^X, audio, spectrogram) must stay
    well under 100 kB each: a file of 100 of them a few MB (the full figure: measure_size.py)."""
    data = page_data(report_html.read_text())
    per_utterance = report_html.stat().st_size / len(data["utterances"])
    assert per_utterance < 80_000, per_utterance
    u = data["utterances"][0]
    assert len(u["audio"]["b64"]) < 3.0 * 3000 * 4 / 3  # Opus at ~16 kbit/s: < 3 kB/s before base64
