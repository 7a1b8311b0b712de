"""Render ``<out>/report.md`` from the demo's outputs: our numbers beside the paper's (base model).

Every number comes from a JSON file the demo's commands wrote; the paper's figures are quoted from
its Tables 1, 3, 4 and 5 (docs/method.md sections 5 and 6).
"""
import json
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

# Paper, English base model (Table 1: CA vs SM^X 2D max; Table 3: CA vs SM^H; Table 4: aggregations
# on dev; Table 5 / Section 5: deletion and size).
PAPER = {
    "sm_x_layers": [None, None, None, None, None, 0.588],  # Table 1 h-AVG per layer: best layer 6
    "sm_x_full": 0.577,
    "sm_x_single_heads": "-0.02 .. 0.52",
    "sm_h_best_layer": (5, 0.745),
    "sm_h_full": 0.752,
    "agg_full": {"max2d": 0.572, "avg2d": None, "maxfreq_avgtime": 0.565},
    "deletion": {"SM^X": 91.3, "SM^X aggregated": 52.9, "CA": 41.2},
    "size": 29.7,
}
# Paper, multitask multilingual small model, en audio (Table 2: CA vs SM^X layer average; Table 3:
# CA vs SM^H; Table 5: quality, ST deletion with BLEU, size).
PAPER_SMALL_EN_IT = {"sm_x_full": 0.485, "sm_h_full": 0.519, "asr_sm_x_full": 0.633, "asr_sm_h_full": 0.706,
                     "asr_wer": 11.7, "comet": 0.854, "deletion_bleu": 2.4, "size": 30.0}


def _load(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _commit(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def _trained_updates(work: Path, ckpt: str = "ckpt_asr") -> str:
    last = Path(work) / ckpt / "checkpoint_last.pt"
    if not last.exists():
        return "?"
    from fairseq_xattn.checkpoint_average import checkpoint_updates

    return str(checkpoint_updates(last))


def trends(corr_input: dict, corr_encoder: dict, corr_avg2d: Optional[dict],
           paper_h_x=(PAPER["sm_h_full"], PAPER["sm_x_full"])) -> List[str]:
    """One line per trend of the paper: does it hold on the demo model?  ``paper_h_x``: the paper's
    full-average r of CA vs SM^H and vs SM^X for the comparable model."""
    lines = []
    grid = corr_input["grid"]  # layers x heads
    single = [c["mean"] for layer in grid for c in layer if c["mean"] is not None]
    head_avg = [c["mean"] for c in corr_input["head_avg"]]
    better = sum(h > max(c["mean"] for c in layer) for h, layer in zip(head_avg, grid))
    mean_single = sum(single) / len(single)
    lines.append(
        f"- Heads averaged beat single heads: {'holds' if min(head_avg) > mean_single else 'does not hold'} "
        f"(head-average r {', '.join(_fmt(h) for h in head_avg)} per layer vs mean single-head r "
        f"{_fmt(mean_single)}; the head-average beats the best head of its layer in {better} of {len(grid)} layers).")
    first, last = head_avg[0], head_avg[-1]
    lines.append(f"- Last layers beat first layers: {'holds' if last > first else 'does not hold'} "
                 f"(layer 1 {_fmt(first)}, layer {len(head_avg)} {_fmt(last)}).")
    x, h = corr_input["full_avg"]["mean"], corr_encoder["full_avg"]["mean"]
    lines.append(f"- SM^H correlates higher than SM^X: {'holds' if h > x else 'does not hold'} "
                 f"(full average {_fmt(h)} vs {_fmt(x)}; paper {paper_h_x[0]} vs {paper_h_x[1]}).")
    if corr_avg2d is not None:
        a = corr_avg2d["full_avg"]["mean"]
        lines.append(f"- 2D max beats 2D average: {'holds' if x > a else 'does not hold'} "
                     f"(full average {_fmt(x)} vs {_fmt(a)}).")
    return lines


def st_section(work: Path, out: Path, budget, asr_corr: Dict[str, Optional[dict]]) -> List[str]:
    """The multitask ASR + en->it ST model of ``demo.py --with-st`` (results in ``out/st``)."""
    st, paper = out / "st", PAPER_SMALL_EN_IT
    parts = ["## Speech translation: a multitask ASR + en->it ST model (`--with-st`)", "",
             f"The same `xattn_conformer_tiny`, trained on the English audio with language tags "
             f"(`<lang:en>` transcript with probability 0.5, else `<lang:it>` translation; training stopped "
             f"after {_trained_updates(work, 'ckpt_st')} updates, limits {budget.st_max_update} updates or "
             f"{budget.st_train_minutes:g} minutes), decoded with `--prefix-size 1 "
             "--infer-tgt-lang it` (ST) and `--infer-tgt-lang en` (ASR of the same model). The explained "
             "and deleted task is ST.", "",
             "| test set | utterances | ST BLEU | ST chrF | ASR WER (same model) |", "|---|---|---|---|---|"]
    for split, label in [("test", "unseen sentences, training voices"), ("test_voices", "same sentences, unseen voices")]:
        s, a = _load(st / f"score_{split}.json"), _load(st / f"score_asr_{split}.json")
        if s:
            wer = _fmt(a["scores"]["wer"], 1) if a else "n/a"
            parts.append(f"| {label} | {s['n']} | {_fmt(s['scores']['bleu'], 1)} | {_fmt(s['scores']['chrf'], 1)} "
                         f"| {wer} |")
    parts += ["", f"Paper, small model on EuroParl-ST: en ASR WER {paper['asr_wer']}, en-it COMET {paper['comet']} "
              "(COMET needs a local model here: `xattn score --metrics comet --comet-model PATH`).", ""]
    corr_x, corr_h = _load(st / "correlation_input_max2d.json"), _load(st / "correlation_encoder.json")
    if corr_x and corr_h:
        parts += ["### CA vs SM^X (2D max) and CA vs SM^H, en->it ST", "",
                  (st / "correlation_input_max2d.md").read_text().strip(), "",
                  (st / "correlation_encoder.md").read_text().strip(), "",
                  f"Paper (small, en-it, layer average): SM^X {paper['sm_x_full']}, SM^H {paper['sm_h_full']} "
                  f"(en ASR of the same model: {paper['asr_sm_x_full']}, {paper['asr_sm_h_full']}).", "",
                  "Trends on the ST model:", "",
                  *trends(corr_x, corr_h, None, (paper["sm_h_full"], paper["sm_x_full"]))]
        if asr_corr.get("input_max2d"):
            a, t = asr_corr["input_max2d"]["full_avg"]["mean"], corr_x["full_avg"]["mean"]
            parts.append(f"- ST correlates lower than ASR (paper: en-it {paper['sm_x_full']} vs en "
                         f"{paper['asr_sm_x_full']}): {'holds' if t < a else 'does not hold'} (SM^X full average: "
                         f"ST {_fmt(t)}, the ASR model above {_fmt(a)}).")
        parts.append("")
    faith = st / "faithfulness.md"
    if faith.exists():
        parts += ["### Deletion (BLEU) and size, en->it ST", "", faith.read_text().strip(), "",
                  f"Paper (small, en-it): deletion {paper['deletion_bleu']}, size {paper['size']}. For ST, lower "
                  "deletion is better (BLEU falls faster when the most relevant parts are removed first).", ""]
    figs = sorted((st / "figures").glob("*.png")) if (st / "figures").exists() else []
    parts += [f"![st_{f.stem}](st/figures/{f.name})" for f in figs] + ([""] if figs else [])
    return parts


def _best(rows: List[dict], predicate) -> Optional[dict]:
    """The row with the lowest mean boundary error among those ``predicate`` accepts."""
    chosen = [r for r in rows if predicate(r["system"]) and r.get("mean_ms") is not None]
    return min(chosen, key=lambda r: r["mean_ms"]) if chosen else None


def _ts(row: Optional[dict], key: str = "mean_ms", digits: int = 0) -> str:
    return "n/a" if row is None or row.get(key) is None else f"{row[key]:.{digits}f}"


def timestamps_verdict(rows: List[dict]) -> List[str]:
    """Whether averaging heads beats single heads and layers for word timestamps (the paper's
    prediction), and how far the best attention method is from the best saliency method and from CTC."""
    is_ca = lambda s: s.startswith("CA ")  # noqa: E731
    single_head = _best(rows, lambda s: is_ca(s) and ", head " in s and "average" not in s)
    layer = _best(rows, lambda s: is_ca(s) and "head average" in s)
    full = _best(rows, lambda s: is_ca(s) and "all layers and heads" in s)
    auto = _best(rows, lambda s: is_ca(s) and "auto" in s)
    attention = _best(rows, is_ca)
    saliency = _best(rows, lambda s: s.startswith("SM"))
    ctc = _best(rows, lambda s: s.startswith("CTC"))
    lines = []
    if single_head and full:
        better = full["mean_ms"] < single_head["mean_ms"]
        lines.append(f"- Averaging all heads and layers {'beats' if better else 'does not beat'} the best single head "
                     f"({_ts(full)} vs {_ts(single_head)} ms mean boundary error: {full['system']} vs "
                     f"{single_head['system']}); best head-averaged layer: {_ts(layer)} ms"
                     + (f"; heads chosen on dev: {_ts(auto)} ms" if auto else "") + ".")
    if attention and saliency:
        lines.append(f"- The best attention method ({attention['system']}, {_ts(attention)} ms) "
                     f"{'trails' if attention['mean_ms'] > saliency['mean_ms'] else 'beats'} the best saliency "
                     f"method ({saliency['system']}, {_ts(saliency)} ms) by "
                     f"{abs(attention['mean_ms'] - saliency['mean_ms']):.0f} ms.")
    if attention and ctc:
        lines.append(f"- CTC forced alignment: {_ts(ctc)} ms ({'better' if ctc['mean_ms'] < attention['mean_ms'] else 'worse'} "
                     f"than the best attention method by {abs(attention['mean_ms'] - ctc['mean_ms']):.0f} ms).")
    return lines


def timestamps_section(out: Path) -> List[str]:
    test = _load(out / "timestamps_test.json")
    explained = _load(out / "timestamps_explained.json")
    if not test and not explained:
        return []
    parts = ["## Word timestamps against the corpus's exact word times", "",
             "Word start and end times from cross-attention (`xattn timestamps`: DTW over the z-normalised, "
             "median-filtered token x frame matrix as Whisper does, per-token argmax, and attention mass; every "
             "head, every layer, their average, and heads chosen on the dev split), from SM^X and SM^H through "
             "the same alignment, and from the model's CTC head (forced alignment), scored on the hypothesis "
             "words that match the reference (edit-distance alignment). Errors in ms; `<=100` is the share of "
             "boundaries within 100 ms; F1 at a 50 ms collar.", ""]
    if test:
        best_ca = _best(test, lambda s: s.startswith("CA "))
        table = (out / "timestamps_test.md").read_text().strip().splitlines()
        parts += [f"### Test set, unseen sentences ({len(test)} systems; the 15 best, all in timestamps_test.md)", "",
                  *table[:2 + 15], "",
                  *timestamps_verdict(test), ""]
        if best_ca is not None:
            parts += [f"Goal: the best cross-attention method within 40 ms mean start error and 90% of word starts "
                      f"within 100 ms. Measured: {best_ca['system']}, {_ts(best_ca, 'start_mean_ms')} ms mean start "
                      f"error, {_ts(best_ca, 'start_within_100ms')}% of starts within 100 ms.", ""]
    if explained:
        parts += ["### The explained utterances: attention, saliency and CTC on the same hypotheses", "",
                  (out / "timestamps_explained.md").read_text().strip(), "", *timestamps_verdict(explained), ""]
    return parts


def render_report(work: Path, out: Path, budget, timings: Dict[str, float], with_st: bool = False) -> str:
    repo = Path(__file__).resolve().parents[1]
    b = budget
    parts = [
        "# fairseq-xattn demo: cross-attention vs. saliency on a small model trained on synthetic speech",
        "",
        f"Commit `{_commit(repo)}`. Everything below was produced by `make demo{'-st' if with_st else ''}` "
        "(scripts/demo.py) on "
        "our synthetic espeak-ng corpus: a `xattn_conformer_tiny` English ASR model trained with "
        "`ctc_multi_loss` through fairseq-hydra-train, decoded with beam 5 / no-repeat-ngram 5 while "
        "recording cross-attention, explained with `speech_explain`.",
        "",
        f"Budget: corpus {b.corpus_size} sentence pairs; training stopped after {_trained_updates(work)} "
        f"updates (limits: {b.max_update} updates or {b.train_minutes:g} minutes; last {b.average_last} "
        f"checkpoints averaged); {b.explain_utterances} test utterances explained with "
        f"N_X = {b.input_masks} input masks and N_H = {b.encoder_masks} encoder masks and the "
        f"`{getattr(b, 'estimator', 'paper')}` estimator of the paper's map (the paper uses 20000 masks each; "
        f"docs/explain.md has the convergence curves; each correlation table below states the maps' split-half "
        f"reliability and how much of the gap to 1 is sampling noise), deletion on "
        f"{b.faithfulness_utterances} utterances.",
        "",
        "## Quality",
        "",
        "| test set | utterances | WER (Whisper normaliser) | goal |",
        "|---|---|---|---|",
    ]
    for split, label, goal in [("test", "unseen sentences, training voices", "< 8"),
                               ("test_voices", "same sentences, unseen voices", "< 20")]:
        s = _load(out / f"score_{split}.json")
        if s:
            parts.append(f"| {label} | {s['n']} | {_fmt(s['scores']['wer'], 1)} | {goal} |")
    parts += ["", "Paper, base model on EuroParl-ST en: WER 9.5.", ""]

    corr = {name: _load(out / f"correlation_{name}.json")
            for name in ("input_max2d", "input_avg2d", "input_maxfreq_avgtime", "encoder")}
    if corr["input_max2d"] and corr["encoder"]:
        parts += ["## CA vs SM^X, head x layer (paper Table 1)", "",
                  (out / "correlation_input_max2d.md").read_text().strip(), "",
                  f"Paper (base, 6 layers x 8 heads): single heads {PAPER['sm_x_single_heads']}, best "
                  f"head-average layer 6 {PAPER['sm_x_layers'][5]}, full average {PAPER['sm_x_full']}.", "",
                  "## CA vs SM^H, head x layer (paper Table 3 is its layer-wise row)", "",
                  (out / "correlation_encoder.md").read_text().strip(), "",
                  f"Paper (base): best layer {PAPER['sm_h_best_layer'][0]} {PAPER['sm_h_best_layer'][1]}, "
                  f"full average {PAPER['sm_h_full']}.", "",
                  "## Aggregation of SM^X to the encoder grid (paper Table 4)", "",
                  "| aggregation | full-average r (ours) | layer-average r (paper, dev) |", "|---|---|---|"]
        for name, label in [("input_max2d", "max2d"), ("input_avg2d", "avg2d"),
                            ("input_maxfreq_avgtime", "maxfreq_avgtime")]:
            if corr[name]:
                parts.append(f"| {label} | {_fmt(corr[name]['full_avg']['mean'])} | "
                             f"{_fmt(PAPER['agg_full'][label])} |")
        parts += ["", "## Do the paper's trends hold on the demo model?", "",
                  *trends(corr["input_max2d"], corr["encoder"], corr["input_avg2d"]), ""]
    faith = out / "faithfulness.md"
    if faith.exists():
        parts += ["## Deletion and size (paper Section 5, Table 5)", "", faith.read_text().strip(), "",
                  "Paper (base): deletion " + ", ".join(f"{k} {v}" for k, v in PAPER["deletion"].items())
                  + f"; size of SM^X {PAPER['size']}. Higher deletion is better (WER rises faster when the "
                  "most relevant parts are removed first); lower size is more compact.", ""]
    parts += timestamps_section(out)
    whisper = out / "whisper" / "summary.md"
    if whisper.exists():  # `make demo-whisper` (scripts/demo_whisper.py)
        parts += ["## Whisper tiny.en on the same test speech (`make demo-whisper`)", "",
                  whisper.read_text().strip().replace("\n# ", "\n### ").lstrip("# ").split("\n", 1)[-1].strip(), "",
                  "Tables: `whisper/correlation_*.md`; the bench against ctranslate2: "
                  "`scripts/bench/bench_whisper.py`.", ""]
    explorer = out / "explorer.html"
    if explorer.exists():
        parts += ["## Interactive explorer", "",
                  f"[explorer.html](explorer.html) ({explorer.stat().st_size / 1e6:.1f} MB, one self-contained file, "
                  "`xattn view`): per explained utterance the spectrogram, the tokens (click one), cross-attention "
                  "of any layer and head or their averages, SM^X and SM^H of the token, word times against the "
                  "reference, the per-utterance correlations and audio playback of the utterance and of a word.", ""]
    figs = sorted((out / "figures").glob("*.png")) if (out / "figures").exists() else []
    if figs:
        parts += ["## Figures", ""]
        for f in figs:
            parts.append(f"![{f.stem}](figures/{f.name})")
        parts.append("")
    if with_st:
        parts += st_section(work, out, budget, corr)
    parts += ["## Time per stage (seconds, 2 CPU cores)", "", "| stage | seconds |", "|---|---|"]
    parts += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    parts += [f"| total | {sum(timings.values()):.0f} |", ""]
    return "\n".join(parts)
