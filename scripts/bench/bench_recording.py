#!/usr/bin/env python
"""Cost of recording cross-attention: fairseq-generate with and without --record-cross-attn.

Runs the real fairseq-generate on the same model and data, interleaving the two variants (ABBA
order, so slow drifts of a shared machine hit both alike), repeats, and prints medians of

* generation time: fairseq's own "Translated ... in X s" timer, which spans task.inference_step,
  i.e. beam search plus our recording and store writing (process start-up and model loading,
  identical for both, are excluded);
* wall time of the whole process;
* peak resident memory of the process (ru_maxrss from wait4).

Example (a checkpoint and data folder of your own)::

    python scripts/bench/bench_recording.py --data DATA --path ckpt.pt --task speech_to_text_ctc \\
        --subset test --repeats 5 -- --beam 5 --max-tokens 20000

or, with nothing at hand, ``--tiny WORKDIR`` builds a small synthetic espeak corpus (with
``--tiny-utterances`` test utterances) and trains an xattn_conformer_tiny on it (a few minutes; cached).
Goal of issue 5: recording costs at most 15% more generation time.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
TRANSLATED = re.compile(r"Translated [\d,]+ sentences \(([\d,]+) tokens\) in ([\d.]+)s")


def run_generate(cmd: List[str]) -> Dict[str, float]:
    """Run one fairseq-generate; return generation seconds, wall seconds, peak RSS (MiB), hypotheses."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"fairseq-generate failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
    match = TRANSLATED.search(stderr) or TRANSLATED.search(stdout)
    if match is None:
        raise RuntimeError("fairseq-generate printed no 'Translated ... in Xs' line")
    hypotheses = sum(1 for line in stdout.splitlines() if line.startswith("H-"))
    return {"generation_s": float(match.group(2)), "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "hypotheses": hypotheses}


def in_process(base_cmd: List[str], extra: List[str], repeats: int, float16: bool) -> Dict[str, List[Dict[str, float]]]:
    """The generation loop of fairseq-generate in this process: same options, task, model and
    batches; times only ``task.inference_step`` (CPU time and wall time), which is what recording
    adds to, so a busy shared machine blurs the ratio less than whole-process timings."""
    import torch
    from fairseq import checkpoint_utils, options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import open_dict

    parser = options.get_generation_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, base_cmd[1:] + extra))
    utils.import_user_module(cfg.common)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    task = tasks.setup_task(cfg.task)
    models, _ = checkpoint_utils.load_model_ensemble(utils.split_paths(cfg.common_eval.path), task=task)
    for model in models:
        model.eval()
    task.load_dataset(cfg.dataset.gen_subset)
    itr = task.get_batch_iterator(
        dataset=task.dataset(cfg.dataset.gen_subset), max_tokens=cfg.dataset.max_tokens or 12000,
        max_sentences=cfg.dataset.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in models]),
        required_batch_size_multiple=cfg.dataset.required_batch_size_multiple, num_workers=0,
    ).next_epoch_itr(shuffle=False)
    samples = list(itr)
    store_root = Path(tempfile.mkdtemp(prefix="bench_recording_"))
    results: Dict[str, List[Dict[str, float]]] = {"plain": [], "recording": []}
    try:
        for rep in range(-1, repeats):  # rep -1: one untimed warm-up run of each variant
            for variant in (("plain", "recording") if rep % 2 == 0 else ("recording", "plain")):
                store = store_root / f"store{rep}"
                with open_dict(task.cfg):  # setup_task merged cfg.task into a config of its own
                    task.cfg.record_cross_attn = str(store) if variant == "recording" else None
                    task.cfg.record_float16 = float16
                generator = task.build_generator(models, cfg.generation)
                cpu, wall = time.process_time(), time.perf_counter()
                n_hypotheses = 0
                for sample in samples:
                    prefix = sample["target"][:, : cfg.generation.prefix_size] if cfg.generation.prefix_size > 0 else None
                    hypos = task.inference_step(generator, models, sample, prefix_tokens=prefix)
                    n_hypotheses += sum(min(len(h), cfg.generation.nbest) for h in hypos)
                result = {"generation_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                          "hypotheses": n_hypotheses}
                if variant == "recording":
                    task.close_recording()
                    result["store_mib"] = sum(f.stat().st_size for f in store.iterdir()) / 2**20
                    shutil.rmtree(store)
                if rep < 0:
                    continue
                results[variant].append(result)
                print(f"run {rep + 1}/{repeats} {variant:9s} inference_step wall {result['generation_s']:.3f}s "
                      f"cpu {result['cpu_s']:.3f}s", flush=True)
    finally:
        shutil.rmtree(store_root, ignore_errors=True)
    return results


def prepare_tiny(workdir: Path, n_test: int):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_setup import tiny_model

    return tiny_model(workdir, size=max(200, n_test), eval_size=n_test)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="data folder (fairseq S2T manifests + config.yaml)")
    parser.add_argument("--path", type=Path, help="checkpoint")
    parser.add_argument("--tiny", type=Path, metavar="WORKDIR", help="build a tiny dataset and model here (scripts/bench/tiny_setup.py)")
    parser.add_argument("--tiny-utterances", type=int, default=200, help="test utterances of --tiny (default 200)")
    parser.add_argument("--task", default="speech_to_text_ctc")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--float16", action="store_true", help="record with --record-float16")
    parser.add_argument("--in-process", action="store_true",
                        help="time the generation loop inside this process (CPU and wall time of inference_step) "
                             "instead of whole fairseq-generate processes")
    parser.add_argument("generate_args", nargs="*", help="after --: more fairseq-generate options (--beam 5 ...)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.data, args.path = prepare_tiny(args.tiny, args.tiny_utterances)
    if not args.data or not args.path:
        parser.error("give --data and --path, or --tiny WORKDIR")
    for flag, path in (("--data", args.data), ("--path", args.path)):
        if not path.exists():
            parser.error(f"{flag} {path}: no such file or directory")

    exe = str(Path(sys.executable).parent / "fairseq-generate")
    base = [exe, str(args.data), "--user-dir", str(REPO / "fairseq_xattn"), "--task", args.task,
            "--gen-subset", args.subset, "--path", str(args.path), "--cpu", "--num-workers", "0"]
    extra = list(args.generate_args) or ["--beam", "5", "--max-tokens", "20000"]
    if args.in_process:
        results = in_process(base, extra, args.repeats, args.float16)
        return report(results, args.repeats, in_process=True)
    store_root = Path(tempfile.mkdtemp(prefix="bench_recording_"))
    results: Dict[str, List[Dict[str, float]]] = {"plain": [], "recording": []}
    try:
        for rep in range(args.repeats):
            order = ("plain", "recording") if rep % 2 == 0 else ("recording", "plain")
            for variant in order:
                cmd = base + extra
                if variant == "recording":
                    store = store_root / f"store{rep}"
                    cmd += ["--record-cross-attn", str(store)] + (["--record-float16"] if args.float16 else [])
                result = run_generate(cmd)
                if variant == "recording":
                    result["store_mib"] = sum(f.stat().st_size for f in store.iterdir()) / 2**20
                    shutil.rmtree(store)
                results[variant].append(result)
                print(f"run {rep + 1}/{args.repeats} {variant:9s} generation {result['generation_s']:.2f}s "
                      f"wall {result['wall_s']:.1f}s peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(store_root, ignore_errors=True)

    return report(results, args.repeats, in_process=False)


def report(results: Dict[str, List[Dict[str, float]]], repeats: int, in_process: bool) -> int:
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in results.items()}
    if med["plain"]["hypotheses"] != med["recording"]["hypotheses"]:
        print("WARNING: the two variants produced different numbers of hypotheses")
    ratio = med["recording"]["generation_s"] / med["plain"]["generation_s"]
    cpu_ratio = med["recording"]["cpu_s"] / med["plain"]["cpu_s"]
    what = "inference_step" if in_process else "fairseq timer"
    print()
    if in_process:
        print(f"{'':12s}{'wall s':>10s}{'cpu s':>10s}")
        for variant in ("plain", "recording"):
            print(f"{variant:12s}{med[variant]['generation_s']:10.3f}{med[variant]['cpu_s']:10.3f}")
    else:
        print(f"{'':12s}{'generation s':>14s}{'wall s':>10s}{'process cpu s':>15s}{'peak RSS MiB':>14s}")
        for variant in ("plain", "recording"):
            m = med[variant]
            print(f"{variant:12s}{m['generation_s']:14.2f}{m['wall_s']:10.1f}{m['cpu_s']:15.1f}{m['peak_rss_mib']:14.0f}")
    print(f"hypotheses per run: {int(med['plain']['hypotheses'])}; store size {med['recording']['store_mib']:.1f} MiB")
    print(f"generation time ratio recording/plain ({what}, median of {repeats}): {ratio:.3f} "
          f"({(ratio - 1) * 100:+.1f}%; goal <= +15%)")
    print(f"cpu time ratio: {cpu_ratio:.3f}" + ("" if in_process else " (whole process, start-up included)"))
    if not in_process:
        print(f"wall time ratio: {med['recording']['wall_s'] / med['plain']['wall_s']:.3f}; "
              f"peak memory ratio: {med['recording']['peak_rss_mib'] / med['plain']['peak_rss_mib']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
