"""The main job, shortened (tiny corpus, a few updates, a few masks), through the real commands:
every artefact of results/demo exists and is well formed, and a rerun skips finished stages."""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from fairseq_xattn.stores import open_store

REPO = Path(__file__).resolve().parents[1]


def test_quick_demo_produces_every_artefact(tmp_path):
    out, work = tmp_path / "results", tmp_path / "work"
    cmd = [sys.executable, str(REPO / "scripts" / "demo.py"), "--quick", "--quiet", "--out", str(out),
           "--work", str(work), "--with-st"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = (out / "report.md").read_text()
    for section in ("## Quality", "head x layer (paper Table 1)", "paper Table 4", "trends hold",
                    "## Deletion and size", "## Figures"):
        assert section in report, section
    trends = report.split("trends hold on the demo model?")[1].split("##")[0]
    verdicts = [l for l in trends.splitlines() if l.startswith("- ")]
    assert len(verdicts) == 4 and all(("holds" in l) != ("does not hold" in l) for l in verdicts)
    for split in ("test", "test_voices"):
        score = json.loads((out / f"score_{split}.json").read_text())
        assert score["n"] == 6 and np.isfinite(score["scores"]["wer"])
    for name in ("input_max2d", "input_avg2d", "input_maxfreq_avgtime", "encoder"):
        corr = json.loads((out / f"correlation_{name}.json").read_text())
        assert corr["n_utterances"] == 3 and len(corr["grid"]) == 2  # 2 decoder layers
    faith = json.loads((out / "faithfulness.json").read_text())
    labels = {row["label"] for row in faith["rows"]}
    assert {"SM^X", "SM^X aggregated", "CA", "SM^H"} <= labels and any("random" in l for l in labels)
    assert all(np.isfinite(row["auc"]["deletion"]) for row in faith["rows"])
    for fig in ("grid_input", "grid_encoder", "deletion"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000
    assert len(list((out / "figures").glob("utterance_*.png"))) >= 1

    # word timestamps of the explained utterances and the explorer page
    assert (out / "timestamps_explained.json").exists() and (out / "timestamps" / "words.jsonl").exists()
    assert (out / "explorer.html").stat().st_size > 10000
    assert "explorer.html" in report and "Word timestamps" in report

    # the stores behind the tables: every explained utterance has attention and both saliency maps
    attn = open_store(work / "attention_test_explain", "cross_attention")
    sal_x, sal_h = open_store(work / "saliency_input"), open_store(work / "saliency_encoder")
    assert attn.ids() == sal_x.ids() == sal_h.ids() and len(attn) == 3
    for utt in attn.ids():
        a, x, h = attn[utt]["attention"], sal_x[utt]["saliency"], sal_h[utt]["saliency"]
        L, H, I, T1 = a.shape
        assert x.shape[0] == h.shape[0] == I and h.shape[1] == T1 and x.shape[2] == 80
        assert int(np.ceil(x.shape[1] / 4)) == T1

    # --with-st: the multitask model, decoded as ST (BLEU) and as ASR (WER), explained as ST
    st = out / "st"
    assert "## Speech translation" in report and "ST correlates lower than ASR" in report
    for split in ("test", "test_voices"):
        bleu = json.loads((st / f"score_{split}.json").read_text())["scores"]
        assert np.isfinite(bleu["bleu"]) and np.isfinite(bleu["chrf"])
        assert np.isfinite(json.loads((st / f"score_asr_{split}.json").read_text())["scores"]["wer"])
    with open(work / "data_st" / "test.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))

    def references(name):  # the T- lines fairseq-generate printed
        text = (work / name).read_text()
        return sorted(re.findall(r"^T-\d+\t(.*)$", text, flags=re.M))

    assert references("st_generate_test.txt") == sorted(r["tgt_text"] for r in rows)  # Italian
    assert references("st_generate_asr_test.txt") == sorted(r["src_text"] for r in rows)  # English
    st_attn = open_store(work / "st_attention_test_explain", "cross_attention")
    assert all(st_attn[u].meta["prefix_len"] == 1 for u in st_attn.ids())
    assert open_store(work / "st_saliency_input").ids() == st_attn.ids()
    for name in ("input_max2d", "encoder"):
        assert json.loads((st / f"correlation_{name}.json").read_text())["n_utterances"] == 3
    st_faith = json.loads((st / "faithfulness.json").read_text())
    assert all(np.isfinite(row["auc"]["deletion"]) for row in st_faith["rows"])
    assert (st / "figures" / "deletion.png").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0 and rerun.stdout.count("skipped") == rerun.stdout.count("[demo] ") - 1
