"""The page in a real headless Chromium (file:// URL): clicks change what is drawn, and what is drawn is the
stores' data.  Screenshots and the time to first draw go to $XATTN_TEST_ARTIFACTS (default <tmp>/xattn-test-artifacts).

Skipped, with the reason, only where no Chromium (or selenium) can be had; scripts/install_browser.sh installs it.
"""
import json

import numpy as np
import pytest

from fairseq_xattn.maps.normalisers import normalise
from tests.analysis.viewer.browser import artefact_dir, headless_chromium, open_and_time, wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def browser():
    try:
        with headless_chromium() as driver:
            yield driver
    except RuntimeError as e:
        pytest.skip(f"no headless browser: {e}")


def _row(driver, key):
    return np.array(json.loads(driver.execute_script(f"return document.getElementById('row').dataset.{key};")))


def _row_state(driver):
    return driver.execute_script(
        "const d = document.getElementById('row').dataset; return [d.utterance, d.token, d.layer, d.head];")


def _click(driver, selector):
    driver.find_element("css selector", selector).click()


def _bound(rows):
    """Half a quantisation step of each averaged row (8 bits per layer/head/token row), plus float32."""
    return np.max([(r.max() - r.min()) / 255 / 2 for r in rows]) + 1e-6


def test_clicks_change_the_drawn_row_to_the_stores_values(browser, report_html, synthetic_run):
    first_draw_ms = open_and_time(browser, report_html)
    utt = "test_00000_en"
    att = synthetic_run.utterances[utt].attention.astype(np.float64)[:, :, 1:-1]  # content rows: no tag, no EOS
    sh = normalise(synthetic_run.utterances[utt].saliency_encoder[1:-1], "spes")

    assert _row_state(browser) == [utt, "0", "avg", "avg"]
    initial = _row(browser, "caRow")
    expected = att[:, :, 0].mean(axis=(0, 1))
    assert np.abs(initial - expected).max() <= _bound(att[:, :, 0].reshape(-1, 75))

    _click(browser, '#tokens button[data-token-index="3"]')
    wait_for(browser, "document.getElementById('row').dataset.token === '3'")
    row = _row(browser, "caRow")
    assert np.abs(row - initial).max() > 0.01  # the drawn row changed
    assert np.abs(row - att[:, :, 3].mean(axis=(0, 1))).max() <= _bound(att[:, :, 3].reshape(-1, 75))
    assert np.abs(_row(browser, "shRow") - sh[3]).max() <= (sh[3].max() - sh[3].min()) / 510 + 1e-6

    _click(browser, '#layer-buttons button[data-layer="2"]')
    wait_for(browser, "document.getElementById('row').dataset.layer === '2'")
    layer_row = _row(browser, "caRow")
    assert np.abs(layer_row - row).max() > 0.001
    assert np.abs(layer_row - att[1, :, 3].mean(axis=0)).max() <= _bound(att[1, :, 3])

    _click(browser, '#head-buttons button[data-head="3"]')
    wait_for(browser, "document.getElementById('row').dataset.head === '3'")
    assert _row_state(browser) == [utt, "3", "2", "3"]
    assert np.abs(_row(browser, "caRow") - att[1, 2, 3]).max() <= _bound([att[1, 2, 3]])
    pressed = browser.find_element("css selector", '#head-buttons button[data-head="3"]').get_attribute("aria-pressed")
    assert pressed == "true"

    # a cell of the correlation table selects its layer and head
    _click(browser, 'table.corr[data-symbol="SM^X"] td[data-layer="1"][data-head="avg"]')
    wait_for(browser, "document.getElementById('row').dataset.layer === '1' && "
                      "document.getElementById('row').dataset.head === 'avg'")
    assert np.abs(_row(browser, "caRow") - att[0, :, 3].mean(axis=0)).max() <= _bound(att[0, :, 3])

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    shots = artefact_dir()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "viewer_token3_layer1.png"))
    (shots / "viewer_timing.json").write_text(json.dumps(
        {"file": str(report_html), "bytes": report_html.stat().st_size, "utterances": 3,
         "first_draw_ms": first_draw_ms}))


def test_index_sorts_by_clicked_column_and_opens_utterances(browser, report_html):
    open_and_time(browser, report_html)

    def column(key):
        return browser.execute_script(
            "const k = [...document.querySelectorAll('#index th')].findIndex(th => th.dataset.key === arguments[0]);"
            "return [...document.querySelectorAll('#index tbody tr')].map(tr => tr.cells[k].dataset.value);", key)

    _click(browser, '#index th[data-key="wer"]')
    wers = [float(v) for v in column("wer")]
    assert wers == sorted(wers) and wers[0] < wers[-1]  # utterance 2 has a substitution
    assert browser.find_element("css selector", '#index th[data-key="wer"]').get_attribute("aria-sort") == "ascending"
    _click(browser, '#index th[data-key="wer"]')
    assert [float(v) for v in column("wer")] == sorted(wers, reverse=True)
    _click(browser, '#index th[data-key="r SM^H"]')
    rs = [float(v) for v in column("r SM^H")]
    assert rs == sorted(rs)

    _click(browser, '#index tbody tr[data-id="test_00002_en"]')
    wait_for(browser, "document.getElementById('row').dataset.utterance === 'test_00002_en'")
    assert browser.find_element("id", "utt-title").text == "test_00002_en"
    assert browser.execute_script("return location.hash") == "#test_00002_en"


def test_audio_plays_the_utterance_and_the_selected_word(browser, report_html, synthetic_run):
    open_and_time(browser, report_html)
    utt = synthetic_run.utterances["test_00000_en"]
    _click(browser, "#play-all")
    seconds = float(wait_for(browser, "document.getElementById('play-all').dataset.audioSeconds"))
    assert seconds == pytest.approx(len(utt.audio) / 16000, abs=0.03)  # Opus decoded by Chromium
    _click(browser, "#stop")
    _click(browser, '#tokens button[data-token-index="5"]')
    wait_for(browser, "document.getElementById('row').dataset.token === '5'")
    _click(browser, "#play-word")
    playing = wait_for(browser, "document.body.dataset.playing")
    word = utt.words[utt.token_word[5]]
    start, end = (float(x) for x in playing.split("-"))
    assert (start, end) == pytest.approx((word[1] + 0.02, word[2] + 0.02), abs=2e-3)  # the --timestamps span
