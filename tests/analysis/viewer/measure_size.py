"""File size and time to first draw of ``xattn view`` for N demo-like utterances (not a test: a measurement).

    .venv/bin/python -m tests.analysis.viewer.measure_size --n 100 --out /tmp/viewer100

Each utterance: 3 s, 80 bins, 2 layers x 4 heads, 15 tokens, SPES-like SM^X with --masks masks per SLIC level
(the paper: 20000 over 3 levels = 6667 each), SM^H, spectrogram, Opus audio, word times.  Prints the size per
part and the page's own time to first draw (``performance.now()`` at the end of the first draw, i.e. from
navigation start, including reading and parsing the file) in headless Chromium, median of --loads loads.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from tests.analysis.viewer.browser import headless_chromium, open_and_time, wait_for
from tests.analysis.viewer.runner import run_view
from tests.analysis.viewer.synthetic import write_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--masks", type=int, default=6667, help="masks per SLIC level of the synthetic SM^X")
    parser.add_argument("--out", required=True)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more xattn view flags")
    args = parser.parse_args()
    out = Path(args.out)
    run_dir = out / "run"
    t0 = time.time()
    if not (run_dir / "timestamps" / "words.jsonl").exists():
        write_run(run_dir, n_utterances=args.n, seed=0, n_masks=args.masks)
    print(f"synthetic run: {time.time() - t0:.0f} s")
    html = out / "explorer.html"
    t0 = time.time()
    result = run_view("--attention", run_dir / "attention", "--saliency-input", run_dir / "sx",
                      "--saliency-encoder", run_dir / "sh", "--features-from", run_dir / "data",
                      "--audio-from", run_dir / "raw" / "test.tsv",
                      "--timestamps", run_dir / "timestamps" / "words.jsonl",
                      "--max-utterances", args.n, "--out", html, *args.extra)
    assert result.returncode == 0, result.stderr
    build_s = time.time() - t0
    text = html.read_text()
    start = text.index('id="xattn-data">') + len('id="xattn-data">')
    data = json.loads(text[start: text.index("</script>", start)])
    parts = {"maps (base64)": sum(len(u["blob"]) for u in data["utterances"]),
             "audio (base64)": sum(len(u["audio"]["b64"]) for u in data["utterances"] if u["audio"])}
    parts["everything else"] = len(text.encode()) - sum(parts.values())
    size = html.stat().st_size
    print(f"{html}: {len(data['utterances'])} utterances, {size / 1e6:.2f} MB "
          f"({size / len(data['utterances']) / 1e3:.1f} kB each), built in {build_s:.1f} s")
    for name, n in parts.items():
        print(f"  {name}: {n / 1e6:.2f} MB")
    with headless_chromium() as driver:
        first = [open_and_time(driver, html) for _ in range(args.loads)]
        # switching to the last utterance: decode + draw
        switch = []
        for _ in range(args.loads):
            ms = driver.execute_script(
                "const t = performance.now(); return window.xattnViewer.select({u: arguments[0]})"
                ".then(() => performance.now() - t);", len(data["utterances"]) - 1 - len(switch))
            switch.append(ms)
        wait_for(driver, "document.body.dataset.drawCount >= 2")
    print(f"time to first draw: median {statistics.median(first):.0f} ms of {first}")
    print(f"switching utterance (decode + draw): median {statistics.median(switch):.0f} ms of "
          f"{[round(s) for s in switch]}")


if __name__ == "__main__":
    main()
