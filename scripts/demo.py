#!/usr/bin/env python
"""The main job, end to end, on our synthetic espeak-ng corpus (``make demo``).

corpus -> features -> train xattn_conformer_tiny (fairseq-hydra-train, ctc_multi_loss) -> average
-> decode test sets with fairseq-generate while recording cross-attention -> score -> explain with
speech_explain (input SPES and encoder occlusion) -> correlate, faithfulness, figures -> report.

Every stage runs a real command (the ``xattn`` CLI or a stock fairseq command with --user-dir), logs
to ``<work>/logs/<stage>.log`` and leaves a marker when it has finished, so a rerun skips finished
stages (``--force STAGE`` redoes one and everything after it).  ``--quick`` is the shortened
pipeline the tests run: a tiny corpus, a few updates, a few masks.
"""
import argparse
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "fairseq_xattn"
BIN = Path(sys.executable).parent


@dataclass
class Budget:
    """What the demo spends; the defaults fit 30 minutes on 2 CPU cores (see README)."""
    corpus_size: int = 8000          # distinct sentence pairs (train + dev + test)
    eval_size: int = 100             # sentences in dev, test, test_voices
    vocab_size: int = 200
    st_vocab_size: int = 400          # --with-st: one SentencePiece model for English and Italian targets
    max_update: int = 3000
    train_minutes: float = 19.0       # fairseq's --stop-time-hours: whichever comes first
    st_max_update: int = 5000         # --with-st: two tasks to learn, outside the 30-minute budget
    st_train_minutes: float = 30.0
    save_interval_updates: int = 100
    average_last: int = 2
    max_tokens: int = 5000
    explain_utterances: int = 12      # test utterances explained (both targets)
    input_masks: int = 1500          # N_X per utterance (paper: 20000)
    encoder_masks: int = 3000        # N_H per utterance (paper: 20000)
    estimator: str = "regression"    # of the same map as the paper's, with fewer masks (docs/explain.md)
    faithfulness_utterances: int = 12
    figures: int = 3                  # utterances drawn
    max_len_b: int = 200              # fairseq's default; a few-update model would babble to it
    timestamp_heads: tuple = ("all", "layers", "heads", "auto")  # auto: chosen on dev (needs matched words)


QUICK = Budget(corpus_size=60, eval_size=6, vocab_size=60, st_vocab_size=90, max_update=12, train_minutes=10.0,
               st_max_update=12, st_train_minutes=10.0, save_interval_updates=6,
               average_last=2, max_tokens=6000, explain_utterances=3, input_masks=24,
               encoder_masks=24, faithfulness_utterances=2, figures=1, max_len_b=12,
               timestamp_heads=("all", "layers"))


class Pipeline:
    def __init__(self, work: Path, out: Path, budget: Budget, force: Optional[str], quiet: bool):
        self.work, self.out, self.budget, self.quiet = work, out, budget, quiet
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        self.force = force
        self.forcing = False
        self.ran_any = False
        self.timings: Dict[str, float] = {}
        timings_file = work / "stage_seconds.json"
        if timings_file.exists():
            self.timings = json.loads(timings_file.read_text())

    # -- running ----------------------------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[], None], always_after_changes: bool = False) -> None:
        """Run ``fn`` unless its marker says it finished before; a stage marked
        ``always_after_changes`` (the report) also reruns whenever an earlier stage of this run ran."""
        marker = self.work / "done" / name
        if name == self.force:
            self.forcing = True
        if marker.exists() and not self.forcing and not (always_after_changes and self.ran_any):
            print(f"[demo] {name}: done before, skipped")
            return
        print(f"[demo] {name} ...", flush=True)
        self.ran_any = True
        start = time.time()
        fn()
        self.timings[name] = round(time.time() - start, 1)
        (self.work / "stage_seconds.json").write_text(json.dumps(self.timings, indent=1))
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
        print(f"[demo] {name}: {self.timings[name]:.0f} s", flush=True)

    def run(self, name: str, cmd: List, stdout: Optional[Path] = None, cwd: Optional[Path] = None) -> None:
        """Run a command, its stderr (progress) teed to the log; stdout to a file when given."""
        cmd = [str(c) for c in cmd]
        log = self.logs / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log, "a") as log_f:
            log_f.write("$ " + " ".join(cmd) + "\n")
            log_f.flush()
            out_f = open(stdout, "w") if stdout else log_f
            proc = subprocess.Popen(cmd, stdout=out_f, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
            for line in proc.stderr:
                log_f.write(line)
                if not self.quiet and _is_progress(line):
                    sys.stderr.write(line)
            proc.wait()
            if stdout:
                out_f.close()
        if proc.returncode != 0:
            tail = log.read_text().splitlines()[-25:]
            raise SystemExit(f"[demo] {name} failed (exit {proc.returncode}); last lines of {log}:\n"
                             + "\n".join(tail))


def _is_progress(line: str) -> bool:
    return any(k in line for k in ("it/s", "s/it", "masks/s", "| epoch", "| loss", "num_updates", "%|"))


def xattn(*args) -> List:
    return [BIN / "xattn", *args]


def fairseq(cmd: str, *args) -> List:
    return [BIN / f"fairseq-{cmd}", *args]


# -- stages -------------------------------------------------------------------------------------------
@dataclass
class Track:
    """One model of the demo and everything computed from it.

    The main job is English ASR, like the paper's base model (prefix ""); ``--with-st`` adds a
    multitask ASR+ST en->it model with language tags, like the paper's small/large models ("st_").
    Stage names, work files and result files carry the prefix; the ST results go to ``<out>/st``.
    """
    prefix: str
    data: Path
    ckpt: Path
    results: Path
    splits: List[str]                 # decoded and scored test sets
    gen_args: List                    # extra fairseq-generate options of the explained task
    metrics: List[str]                # xattn score metrics of gen_args' output
    normaliser: str                   # text normaliser of the scores
    faithfulness_scorer: str          # wer_max (ASR) or bleu (ST)
    train_overrides: List[str]        # fairseq-hydra-train overrides beyond the common ones
    max_update: int
    train_minutes: float
    aggregations: List[str]           # SM^X poolings correlated (the first also in faithfulness)
    extra_decodes: Dict[str, List] = None  # name -> fairseq-generate options: more decodes to score with WER
    timestamps: bool = False          # word timestamps study (ASR: the hypotheses are transcripts)
    raw: Path = None                  # the raw manifests prep read (audio for the explorer)

    def work(self, p: "Pipeline", name: str) -> Path:
        return p.work / f"{self.prefix}{name}"

    @property
    def model(self) -> Path:
        return self.ckpt / "averaged.pt"


EXPLAIN_SPLIT = "test_explain"


def build_corpus(p: Pipeline) -> Path:
    corpus = p.work / "corpus"
    p.stage("corpus", lambda: p.run("corpus", xattn(
        "corpus", corpus, "--size", p.budget.corpus_size, "--eval-size", p.budget.eval_size, "--seed", 1)))
    return corpus


def asr_track(p: Pipeline, corpus: Path) -> Track:
    """English ASR: the transcript is the target (manifests without tgt_text), no language tags."""
    W, raw = p.work, p.work / "asr_raw"
    track = Track(prefix="", data=W / "data_asr", ckpt=W / "ckpt_asr", results=p.out,
                  splits=["test", "test_voices"], gen_args=[], metrics=["wer"], normaliser="whisper_english",
                  faithfulness_scorer="wer_max", train_overrides=["task.multitask_asr_prob=1.0"],
                  max_update=p.budget.max_update, train_minutes=p.budget.train_minutes,
                  aggregations=["max2d", "avg2d", "maxfreq_avgtime"], timestamps=True, raw=raw)

    def asr_manifests():
        raw.mkdir(parents=True, exist_ok=True)
        for split in ["train", "dev", *track.splits]:
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
    p.stage("asr_manifests", asr_manifests)
    prep(p, track, raw, ["--vocab-size", p.budget.vocab_size, "--lang-tags", "no"])
    return track


def st_track(p: Pipeline, corpus: Path) -> Track:
    """Multitask ASR + en->it ST on the English audio, with <lang:xx> tags: each training sample's
    target is the transcript with probability 0.5, else the translation (paper Appendix B).  The
    explained and faithfulness-scored task is ST; the same model's ASR is scored too."""
    track = Track(prefix="st_", data=p.work / "data_st", ckpt=p.work / "ckpt_st", results=p.out / "st",
                  splits=["test", "test_voices"], gen_args=["--infer-tgt-lang", "it", "--prefix-size", 1],
                  metrics=["bleu", "chrf"], normaliser="none", faithfulness_scorer="bleu",
                  train_overrides=["task.multitask_asr_prob=0.5", "++criterion.ignore_prefix_size=1"],
                  max_update=p.budget.st_max_update, train_minutes=p.budget.st_train_minutes,
                  aggregations=["max2d"],
                  extra_decodes={"asr": ["--infer-tgt-lang", "en", "--prefix-size", 1]}, raw=corpus)
    prep(p, track, corpus, ["--vocab-size", p.budget.st_vocab_size, "--lang-tags", "yes",
                            "--splits", "train,dev,test,test_voices"])
    return track


def prep(p: Pipeline, t: Track, raw: Path, options: List) -> None:
    def run():
        p.run(f"{t.prefix}prep", xattn("prep", raw, t.data, *options))
        # the explained subset: the first utterances of test, as its own split
        lines = (t.data / "test.tsv").read_text().splitlines()
        (t.data / f"{EXPLAIN_SPLIT}.tsv").write_text("\n".join(lines[: 1 + p.budget.explain_utterances]) + "\n")
    p.stage(f"{t.prefix}prep", run)


def train_decode_explain(p: Pipeline, t: Track) -> None:
    """train -> average -> decode + record -> score -> explain (both targets) -> correlate ->
    faithfulness -> figures, for one track."""
    b, W, R, pre = p.budget, p.work, t.results, t.prefix
    R.mkdir(parents=True, exist_ok=True)

    p.stage(f"{pre}train", lambda: p.run(f"{pre}train", fairseq(
        "hydra-train", "--config-dir", REPO / "examples" / "configs", "--config-name", "tiny_asr",
        f"task.data={t.data}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={t.ckpt}",
        f"optimization.max_update={t.max_update}", f"dataset.max_tokens={b.max_tokens}",
        f"optimization.stop_time_hours={t.train_minutes / 60:.4f}",
        f"checkpoint.save_interval_updates={b.save_interval_updates}",
        f"checkpoint.keep_interval_updates={max(b.average_last, 2)}", *t.train_overrides,
        "dataset.valid_subset=dev"), cwd=W))

    p.stage(f"{pre}average", lambda: p.run(f"{pre}average", xattn(
        "average", t.ckpt, "--last", b.average_last, "--output", t.model)))

    common_gen = ["--user-dir", USER_DIR, "--task", "speech_to_text_ctc", "--config-yaml", "config.yaml",
                  "--path", t.model, "--max-tokens", 40000, "--cpu", "--beam", 5, "--no-repeat-ngram-size", 5,
                  "--max-len-b", b.max_len_b]
    attention = t.work(p, f"attention_{EXPLAIN_SPLIT}")

    def decode():
        for split in t.splits + [EXPLAIN_SPLIT]:
            store = t.work(p, f"attention_{split}")
            shutil.rmtree(store, ignore_errors=True)
            p.run(f"{pre}generate_{split}", fairseq(
                "generate", t.data, *common_gen, *t.gen_args, "--gen-subset", split, "--record-cross-attn", store),
                stdout=t.work(p, f"generate_{split}.txt"))
        for name, args in (t.extra_decodes or {}).items():
            for split in t.splits:
                p.run(f"{pre}generate_{name}_{split}", fairseq(
                    "generate", t.data, *common_gen, *args, "--gen-subset", split),
                    stdout=t.work(p, f"generate_{name}_{split}.txt"))
    p.stage(f"{pre}decode_and_record", decode)

    def score():
        for split in t.splits:
            p.run(f"{pre}score_{split}", xattn(
                "score", "--generate-output", t.work(p, f"generate_{split}.txt"), "--metrics", *t.metrics,
                "--normaliser", t.normaliser, "--json", R / f"score_{split}.json"))
            for name in t.extra_decodes or {}:
                p.run(f"{pre}score_{name}_{split}", xattn(
                    "score", "--generate-output", t.work(p, f"generate_{name}_{split}.txt"), "--metrics", "wer",
                    "--json", R / f"score_{name}_{split}.json"))
    p.stage(f"{pre}score", score)

    def explain(target: str, masks: int):
        def run():
            # a rerun of this stage (e.g. after retraining) starts over; resuming is for interrupted runs
            shutil.rmtree(t.work(p, f"saliency_{target}"), ignore_errors=True)
            p.run(f"{pre}explain_{target}", fairseq(
                "generate", t.data, "--user-dir", USER_DIR, "--task", "speech_explain", "--config-yaml",
                "config.yaml", "--path", t.model, "--gen-subset", EXPLAIN_SPLIT, "--max-tokens", 40000,
                "--cpu", *t.gen_args, "--explain-target", target, "--explain-masks", masks,
                "--explain-estimator", p.budget.estimator,
                "--explain-hypotheses", attention, "--explain-store", t.work(p, f"saliency_{target}")),
                stdout=t.work(p, f"explain_{target}.txt"))
        return run
    p.stage(f"{pre}explain_encoder", explain("encoder", b.encoder_masks))
    p.stage(f"{pre}explain_input", explain("input", b.input_masks))

    def correlate():
        runs = [(f"input_{agg}", "input", agg) for agg in t.aggregations] + [("encoder", "encoder", None)]
        for name, target, agg in runs:
            args = ["correlate", "--attention", attention, "--saliency", t.work(p, f"saliency_{target}"),
                    "--json", R / f"correlation_{name}.json", "--csv", R / f"correlation_{name}.csv"]
            if agg:
                args += ["--aggregation", agg]
            p.run(f"{pre}correlate_{name}", xattn(*args), stdout=R / f"correlation_{name}.md")
    p.stage(f"{pre}correlate", correlate)

    def faithfulness():
        sal_x, sal_h = t.work(p, "saliency_input"), t.work(p, "saliency_encoder")
        prefix_size = t.gen_args[t.gen_args.index("--prefix-size") + 1] if "--prefix-size" in t.gen_args else 0
        p.run(f"{pre}faithfulness", xattn(
            "faithfulness", "--checkpoint", t.model, "--data", t.data, "--split", EXPLAIN_SPLIT,
            "--user-dir", USER_DIR, "--cpu", "--beam", 5, "--no-repeat-ngram-size", 5, "--max-len-b", b.max_len_b,
            "--prefix-size", prefix_size, "--scorer", t.faithfulness_scorer,
            "--max-utterances", b.faithfulness_utterances, "--aggregation", t.aggregations[0],
            "--explanation", f"SM^X=saliency_input:{sal_x}",
            "--explanation", f"SM^X aggregated=saliency_input_aggregated:{sal_x}",
            "--explanation", f"CA=attention:{attention}",
            "--explanation", f"SM^H=saliency_encoder:{sal_h}",
            "--json", R / "faithfulness.json", "--csv", R / "faithfulness.csv"),
            stdout=R / "faithfulness.md")
    p.stage(f"{pre}faithfulness", faithfulness)

    def figures():
        fig = R / "figures"
        fig.mkdir(exist_ok=True)
        ids = [json.loads(l)["id"] for l in (attention / "index.jsonl").open()]
        for utt in ids[: b.figures]:
            p.run(f"{pre}plot", xattn("plot", "utterance", "--attention", attention,
                                      "--saliency-input", t.work(p, "saliency_input"), "--saliency-encoder",
                                      t.work(p, "saliency_encoder"), "--id", utt, "--out", fig / f"utterance_{utt}"))
        p.run(f"{pre}plot", xattn("plot", "grid", "--json", R / "correlation_input_max2d.json", "--title",
                                  "CA vs SM^X (2D max)", "--out", fig / "grid_input"))
        p.run(f"{pre}plot", xattn("plot", "grid", "--json", R / "correlation_encoder.json", "--title",
                                  "CA vs SM^H", "--out", fig / "grid_encoder"))
        p.run(f"{pre}plot", xattn("plot", "curves", "--json", R / "faithfulness.json", "--out", fig / "deletion"))
    p.stage(f"{pre}figures", figures)

    if t.timestamps:
        word_timestamps(p, t, attention, common_gen)

    def explorer():
        words = R / "timestamps" / "words.jsonl"
        p.run(f"{pre}view", xattn(
            "view", "--attention", attention, "--saliency-input", t.work(p, "saliency_input"),
            "--saliency-encoder", t.work(p, "saliency_encoder"), "--features-from", t.data,
            "--audio-from", t.raw / "test.tsv", *(["--timestamps", words] if words.exists() else []),
            "--out", R / "explorer.html"), stdout=t.work(p, "view.txt"))
    p.stage(f"{pre}explorer", explorer)


def word_timestamps(p: Pipeline, t: Track, attention: Path, common_gen: List) -> None:
    """Word times from cross-attention (every head, every layer, their average, heads chosen on dev),
    from SM^X and SM^H, and from the CTC head, scored against the corpus's exact word times."""
    R, timings = t.results, p.work / "corpus" / "timings"

    def run():
        dev_store = t.work(p, "attention_dev")  # the development split's attention, for choosing heads
        shutil.rmtree(dev_store, ignore_errors=True)
        p.run(f"{t.prefix}generate_dev", fairseq(
            "generate", t.data, *common_gen, *t.gen_args, "--gen-subset", "dev", "--record-cross-attn", dev_store),
            stdout=t.work(p, "generate_dev.txt"))
        reference = ["--reference", timings / "test.jsonl"]
        methods = ["--method", "dtw", "argmax", "mass"]
        # the whole test set: attention (every head and layer, their average, heads chosen on dev) and CTC
        p.run(f"{t.prefix}timestamps_test", xattn(
            "timestamps", "evaluate", *reference, "--attention", t.work(p, "attention_test"), *methods,
            "--heads", *p.budget.timestamp_heads, "--dev-attention", dev_store,
            "--dev-reference", timings / "dev.jsonl", "--ctc", t.model, "--data", t.data, "--split", "test",
            "--user-dir", USER_DIR, "--markdown", R / "timestamps_test.md", "--json", R / "timestamps_test.json"))
        # the explained utterances: attention against both saliency maps on the same hypotheses, and the
        # word times of the full attention average as files (JSON for the explorer, CTM, WebVTT)
        sources = ["--attention", attention, "--saliency", t.work(p, "saliency_input"),
                   "--saliency", t.work(p, "saliency_encoder"), *methods, "--heads", "all", "layers",
                   "--ctc", t.model, "--data", t.data, "--split", EXPLAIN_SPLIT, "--user-dir", USER_DIR]
        p.run(f"{t.prefix}timestamps_explained", xattn(
            "timestamps", "evaluate", *reference, *sources, "--markdown", R / "timestamps_explained.md",
            "--json", R / "timestamps_explained.json"))
        p.run(f"{t.prefix}timestamps_files", xattn(
            "timestamps", "--attention", attention, "--method", "dtw", "--heads", "all",
            "--out-dir", R / "timestamps", "--format", "json", "ctm", "vtt"))
    p.stage(f"{t.prefix}timestamps", run)


def build(p: Pipeline, with_st: bool) -> None:
    corpus = build_corpus(p)
    train_decode_explain(p, asr_track(p, corpus))
    if with_st:
        train_decode_explain(p, st_track(p, corpus))
    p.stage("report", lambda: write_report(p, with_st), always_after_changes=True)


def write_report(p: Pipeline, with_st: bool) -> None:
    from report import render_report  # scripts/report.py

    (p.out / "report.md").write_text(render_report(p.work, p.out, p.budget, p.timings, with_st))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "demo", help="report and figures")
    parser.add_argument("--work", type=Path, default=None, help="intermediate files (default: work/<out name>)")
    parser.add_argument("--quick", action="store_true", help="the shortened pipeline of the tests")
    parser.add_argument("--force", default=None, help="redo this stage and all after it")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on the terminal")
    parser.add_argument("--with-st", action="store_true",
                        help="also train and explain a multitask ASR + en->it ST model (results in <out>/st; "
                        "about 33 more minutes)")
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="training time guard (default 19 minutes: the 30-minute budget on 2 free cores); "
                             "raise it on a slower or shared machine so that training still reaches its updates")
    args = parser.parse_args(argv)
    work = args.work or REPO / "work" / args.out.name
    budget = QUICK if args.quick else Budget()
    if args.train_minutes is not None:
        budget = dataclasses.replace(budget, train_minutes=args.train_minutes)
    p = Pipeline(work.resolve(), args.out.resolve(), budget, args.force, args.quiet)
    (p.work / "budget.json").write_text(json.dumps(budget.__dict__, indent=1))
    start = time.time()
    build(p, args.with_st)
    print(f"[demo] finished in {time.time() - start:.0f} s: {p.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
