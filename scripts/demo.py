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
    max_update: int = 3000
    train_minutes: float = 19.0       # fairseq's --stop-time-hours: whichever comes first
    save_interval_updates: int = 100
    average_last: int = 2
    max_tokens: int = 5000
    explain_utterances: int = 12      # test utterances explained (both targets)
    input_masks: int = 1500          # N_X per utterance (paper: 20000)
    encoder_masks: int = 3000        # N_H per utterance (paper: 20000)
    faithfulness_utterances: int = 12
    figures: int = 3                  # utterances drawn
    max_len_b: int = 200              # fairseq's default; a few-update model would babble to it


QUICK = Budget(corpus_size=60, eval_size=6, vocab_size=60, max_update=12, train_minutes=10.0, save_interval_updates=6,
               average_last=2, max_tokens=6000, explain_utterances=3, input_masks=24,
               encoder_masks=24, faithfulness_utterances=2, figures=1, max_len_b=12)


class Pipeline:
    def __init__(self, work: Path, out: Path, budget: Budget, force: Optional[str], quiet: bool):
        self.work, self.out, self.budget, self.quiet = work, out, budget, quiet
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        self.force = force
        self.forcing = False
        self.timings: Dict[str, float] = {}
        timings_file = work / "stage_seconds.json"
        if timings_file.exists():
            self.timings = json.loads(timings_file.read_text())

    # -- running ----------------------------------------------------------------------------------
    def stage(self, name: str, fn: Callable[[], None]) -> None:
        marker = self.work / "done" / name
        if name == self.force:
            self.forcing = True
        if marker.exists() and not self.forcing:
            print(f"[demo] {name}: done before, skipped")
            return
        print(f"[demo] {name} ...", flush=True)
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
def build(p: Pipeline) -> None:
    b, W, R = p.budget, p.work, p.out
    corpus, raw, data, ckpt = W / "corpus", W / "asr_raw", W / "data_asr", W / "ckpt_asr"
    model = ckpt / "averaged.pt"
    splits = ["test", "test_voices"]
    explain_split = "test_explain"

    p.stage("corpus", lambda: p.run("corpus", xattn(
        "corpus", corpus, "--size", b.corpus_size, "--eval-size", b.eval_size, "--seed", 1)))

    def asr_manifests():
        # English ASR, like the paper's base model: the transcript is the target (no tgt_text).
        raw.mkdir(parents=True, exist_ok=True)
        for split in ["train", "dev", *splits]:
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

    def prep():
        p.run("prep", xattn("prep", raw, data, "--vocab-size", b.vocab_size, "--lang-tags", "no"))
        # the explained subset: the first utterances of test, as its own split
        lines = (data / "test.tsv").read_text().splitlines()
        (data / f"{explain_split}.tsv").write_text("\n".join(lines[: 1 + b.explain_utterances]) + "\n")
    p.stage("prep", prep)

    p.stage("train", lambda: p.run("train", fairseq(
        "hydra-train", "--config-dir", REPO / "examples" / "configs", "--config-name", "tiny_asr",
        f"task.data={data}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={ckpt}",
        f"optimization.max_update={b.max_update}", f"dataset.max_tokens={b.max_tokens}",
        f"optimization.stop_time_hours={b.train_minutes / 60:.4f}",
        f"checkpoint.save_interval_updates={b.save_interval_updates}",
        f"checkpoint.keep_interval_updates={max(b.average_last, 2)}", "task.multitask_asr_prob=1.0",
        "dataset.valid_subset=dev"), cwd=W))

    p.stage("average", lambda: p.run("average", xattn(
        "average", ckpt, "--last", b.average_last, "--output", model)))

    common_gen = ["--user-dir", USER_DIR, "--task", "speech_to_text_ctc", "--config-yaml", "config.yaml",
                  "--path", model, "--max-tokens", 40000, "--cpu", "--beam", 5, "--no-repeat-ngram-size", 5, "--max-len-b", b.max_len_b]

    def decode():
        for split in splits + [explain_split]:
            store = W / f"attention_{split}"
            shutil.rmtree(store, ignore_errors=True)
            p.run(f"generate_{split}", fairseq(
                "generate", data, *common_gen, "--gen-subset", split, "--record-cross-attn", store),
                stdout=W / f"generate_{split}.txt")
    p.stage("decode_and_record", decode)

    def score():
        for split in splits:
            p.run(f"score_{split}", xattn("score", "--generate-output", W / f"generate_{split}.txt",
                                          "--metrics", "wer", "--json", R / f"score_{split}.json"))
    p.stage("score", score)

    def explain(target: str, masks: int):
        def run():
            p.run(f"explain_{target}", fairseq(
                "generate", data, "--user-dir", USER_DIR, "--task", "speech_explain", "--config-yaml",
                "config.yaml", "--path", model, "--gen-subset", explain_split, "--max-tokens", 40000,
                "--cpu", "--explain-target", target, "--explain-masks", masks,
                "--explain-hypotheses", W / f"attention_{explain_split}",
                "--explain-store", W / f"saliency_{target}"), stdout=W / f"explain_{target}.txt")
        return run
    p.stage("explain_encoder", explain("encoder", b.encoder_masks))
    p.stage("explain_input", explain("input", b.input_masks))

    def correlate():
        attn = W / f"attention_{explain_split}"
        for name, target, agg in [("input_max2d", "input", "max2d"), ("input_avg2d", "input", "avg2d"),
                                  ("input_maxfreq_avgtime", "input", "maxfreq_avgtime"),
                                  ("encoder", "encoder", None)]:
            args = ["correlate", "--attention", attn, "--saliency", W / f"saliency_{target}",
                    "--json", R / f"correlation_{name}.json", "--csv", R / f"correlation_{name}.csv"]
            if agg:
                args += ["--aggregation", agg]
            p.run(f"correlate_{name}", xattn(*args), stdout=R / f"correlation_{name}.md")
    p.stage("correlate", correlate)

    def faithfulness():
        attn = W / f"attention_{explain_split}"
        p.run("faithfulness", xattn(
            "faithfulness", "--checkpoint", model, "--data", data, "--split", explain_split,
            "--user-dir", USER_DIR, "--cpu", "--beam", 5, "--no-repeat-ngram-size", 5, "--max-len-b", b.max_len_b,
            "--max-utterances", b.faithfulness_utterances,
            "--explanation", f"SM^X=saliency_input:{W / 'saliency_input'}",
            "--explanation", f"SM^X aggregated=saliency_input_aggregated:{W / 'saliency_input'}",
            "--explanation", f"CA=attention:{attn}",
            "--explanation", f"SM^H=saliency_encoder:{W / 'saliency_encoder'}",
            "--json", R / "faithfulness.json", "--csv", R / "faithfulness.csv"),
            stdout=R / "faithfulness.md")
    p.stage("faithfulness", faithfulness)

    def figures():
        fig = R / "figures"
        fig.mkdir(exist_ok=True)
        ids = [json.loads(l)["id"] for l in (W / f"attention_{explain_split}" / "index.jsonl").open()]
        for utt in ids[: b.figures]:
            p.run("plot", xattn("plot", "utterance", "--attention", W / f"attention_{explain_split}",
                                "--saliency-input", W / "saliency_input", "--saliency-encoder",
                                W / "saliency_encoder", "--id", utt, "--out", fig / f"utterance_{utt}"))
        p.run("plot", xattn("plot", "grid", "--json", R / "correlation_input_max2d.json", "--title",
                            "CA vs SM^X (2D max)", "--out", fig / "grid_input"))
        p.run("plot", xattn("plot", "grid", "--json", R / "correlation_encoder.json", "--title",
                            "CA vs SM^H", "--out", fig / "grid_encoder"))
        p.run("plot", xattn("plot", "curves", "--json", R / "faithfulness.json", "--out", fig / "deletion"))
    p.stage("figures", figures)

    p.stage("report", lambda: write_report(p))


def write_report(p: Pipeline) -> None:
    from report import render_report  # scripts/report.py

    (p.out / "report.md").write_text(render_report(p.work, p.out, p.budget, p.timings))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "demo", help="report and figures")
    parser.add_argument("--work", type=Path, default=None, help="intermediate files (default: work/<out name>)")
    parser.add_argument("--quick", action="store_true", help="the shortened pipeline of the tests")
    parser.add_argument("--force", default=None, help="redo this stage and all after it")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on the terminal")
    args = parser.parse_args(argv)
    work = args.work or REPO / "work" / args.out.name
    budget = QUICK if args.quick else Budget()
    p = Pipeline(work.resolve(), args.out.resolve(), budget, args.force, args.quiet)
    (p.work / "budget.json").write_text(json.dumps(budget.__dict__, indent=1))
    start = time.time()
    build(p)
    print(f"[demo] finished in {time.time() - start:.0f} s: {p.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
