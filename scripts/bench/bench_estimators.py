#!/usr/bin/env python
"""How many masks each SPES estimator x mask design needs for the same map (issue 16).

For a few utterances of a trained model and both targets (input SM^X, encoder SM^H):

1. a high-budget reference per utterance: the mean of ``--reference-maps`` independent paper maps
   (``paper`` estimator, ``bernoulli`` masks, other seeds) of ``--reference-masks`` masks each;
2. for every mask design, ONE run of masks (seed 1) scored once and fed to every estimator at the same
   time (so the estimators are compared on the same forward passes, side by side), with maps taken at
   N = ``--masks`` (500 .. 20000);
3. r(map with N masks, reference) after the analysis' per-token normalisation (SPES), as curves, and
   "masks needed to match the paper estimator at the largest N" (log-linear interpolation);
4. the split-half predicted correlation with the converged map (the early-stop criterion) next to the
   measured one (measured r divided by sqrt(reference reliability): the reference is noisy too);
5. with an attention store (``--attention``, a recording run of the same model and split, whose
   hypotheses are then explained): the convergence of the CA-vs-SM full-average correlation with N
   (analysis view: content rows, SPES, max2d pooling for SM^X, frame-wise mean-variance for CA).

Defaults: the demo's model and data (``work/demo/ckpt_asr/averaged.pt``, ``work/demo/data_asr``, split
``test_explain``, attention ``work/demo/attention_test_explain``) when they exist; otherwise pass
``--checkpoint`` and ``--data`` (nothing is trained here).  A smoke run on any small model:
``--utterances 1 --masks 64,128 --reference-masks 256 --reference-maps 2``.

    .venv/bin/python scripts/bench/bench_estimators.py [--targets encoder,input] [--utterances 3]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
DEMO_WORK = REPO / "work" / "demo"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="default: the demo's averaged model if present")
    p.add_argument("--data", default=None, help="default: the demo's ASR data folder if present")
    p.add_argument("--split", default=None, help="default: test_explain if the data has it, else test")
    p.add_argument("--attention", default=None,
                   help="recording store of the same model and split: its hypotheses are explained and the "
                        "CA-vs-SM correlation is followed (default: the demo's, if present; 'none': off)")
    p.add_argument("--utterances", type=int, default=3, help="first K utterances of the split")
    p.add_argument("--targets", default="encoder,input")
    p.add_argument("--masks", default="500,1000,2000,5000,10000,20000", help="N of the curves")
    p.add_argument("--design-max-masks", default="",
                   help="cap N per design, e.g. balanced=5000,antithetic=5000 (to save input forward passes)")
    p.add_argument("--reference-masks", type=int, default=20000)
    p.add_argument("--reference-maps", type=int, default=3, help="independent paper maps averaged")
    p.add_argument("--estimators", default="", help="default: all registered")
    p.add_argument("--designs", default="", help="default: all registered that accept the target's p")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mask-batch-size", type=int, default=0, help="0: automatic")
    return p.parse_args(argv)


def resolve_defaults(args):
    if args.checkpoint is None:
        ckpt = DEMO_WORK / "ckpt_asr" / "averaged.pt"
        if not ckpt.exists():
            sys.exit("bench_estimators: no demo model at work/demo/ckpt_asr/averaged.pt (run `make demo` or pass "
                     "--checkpoint CKPT --data DATA [--attention STORE])")
        args.checkpoint = str(ckpt)
        args.data = args.data or str(DEMO_WORK / "data_asr")
        if args.attention is None and (DEMO_WORK / "attention_test_explain").exists():
            args.attention = str(DEMO_WORK / "attention_test_explain")
    if args.data is None:
        sys.exit("bench_estimators: --checkpoint needs --data")
    if args.split is None:
        args.split = "test_explain" if (Path(args.data) / "test_explain.tsv").exists() else "test"
    if args.attention in (None, "none"):
        args.attention = None
    return args


class Utterance:
    def __init__(self, utt_id, features, tokens, prefix_len=0, attention=None, subsampling=None):
        self.utt_id, self.features, self.tokens = utt_id, features, tokens
        self.prefix_len, self.attention, self.subsampling = prefix_len, attention, subsampling


def load(args):
    from fairseq import checkpoint_utils  # fairseq first, then the plugin (registers models, compat shims)

    import fairseq_xattn.plugin  # noqa: F401

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [args.checkpoint], arg_overrides={"data": args.data})
    task.load_dataset(args.split)
    ds = task.datasets[args.split]
    store = None
    if args.attention:
        from fairseq_xattn.stores.schema import open_store

        store = open_store(args.attention, kind="cross_attention")
    utts = []
    for i in range(min(args.utterances, len(ds))):
        item = ds[i]
        utt_id = str(ds.ids[i])
        tokens, prefix_len, att, s = item.target.long(), 0, None, None
        if store is not None:
            rec = store.get(utt_id, 0)
            tokens = torch.tensor(rec.meta["tokens"], dtype=torch.long)
            prefix_len = int(rec.meta.get("prefix_len", 0) or 0)
            att = np.asarray(rec["attention"], dtype=np.float64)   # L x H x I x T'
            s = int(rec.meta["subsampling"])
        utts.append(Utterance(utt_id, item.source, tokens, prefix_len, att, s))
    return models[0].eval(), task.target_dictionary, utts


def run_masks(adapter, perturbation, scorer, ctx, prev, ref, utt_id: str, p: float, seed: int, design: str,
              estimators: Sequence[str], snapshots: Sequence[int], batch: int, halves: bool = False,
              keep_level0: Optional[list] = None):
    """One run of ``max(snapshots)`` masks fed to every estimator; {estimator: {N: (map, half_a, half_b)}}.
    ``keep_level0``: a list that receives (bits, scores) of the level-0 masks (for the additivity check)."""
    from fairseq_xattn.explain.estimators import build_estimator
    from fairseq_xattn.explain.masks import MaskSampler

    n_tok = ref.shape[0]
    sampler = MaskSampler(ctx.units_per_level, p, seed, utt_id, device=ref.device, design=design)
    accs = {e: [build_estimator(e, n_tok, ctx.labels, ctx.units_per_level, p) for _ in range(2)] for e in estimators}
    out: Dict[str, Dict[int, tuple]] = {e: {} for e in estimators}
    stops = sorted(set(snapshots))
    done = 0
    while done < stops[-1]:
        limit = min(done + batch, next(n for n in stops if n > done))
        masks = sampler.batch(done, limit - done)
        scores = scorer(ref, perturbation.logprobs(adapter, ctx, masks, prev))
        if keep_level0 is not None and 0 in masks.rows:
            keep_level0.append((masks.occluded[0].cpu().numpy(), scores[masks.rows[0]].cpu().numpy()))
        for level, rows in masks.rows.items():
            for h in (0, 1):
                sel = (masks.halves[level] == h).nonzero().flatten()
                if len(sel):
                    for pair in accs.values():
                        pair[h].add(level, scores[rows[sel]], masks.occluded[level][sel])
        done = limit
        if done in stops:
            for e, (a, b) in accs.items():
                full = a.saliency(b).cpu().numpy()
                out[e][done] = (full, a.saliency().cpu().numpy(), b.saliency().cpu().numpy()) if halves else (full,)
    return out


def additive_share(kept: list) -> float:
    """Out-of-sample R^2 of a ridge-regularised additive model of the score on the mask bits (fit on the
    first 2/3 of the level-0 masks, tested on the rest), mean over tokens: the share of the score's
    variance that any estimator using the bits linearly can remove (regression gain <= 1 / (1 - R^2))."""
    bits = np.concatenate([b for b, _ in kept]).astype(np.float64)
    scores = np.concatenate([s for _, s in kept]).astype(np.float64)
    n_fit = len(bits) * 2 // 3
    x = np.hstack([np.ones((len(bits), 1)), bits - bits[:n_fit].mean(0)])
    gram = x[:n_fit].T @ x[:n_fit] + np.eye(x.shape[1])
    w = np.linalg.solve(gram, x[:n_fit].T @ scores[:n_fit])
    resid = scores[n_fit:] - x[n_fit:] @ w
    var = scores[n_fit:].var(0)
    return float(np.mean([1 - resid[:, t].var() / var[t] for t in range(scores.shape[1]) if var[t] > 0]))


def analysis_saliency(sal: np.ndarray, utt: Utterance, target: str) -> np.ndarray:
    from fairseq_xattn.maps.normalisers import normalise
    from fairseq_xattn.maps.pooling import aggregate

    rows = normalise(sal[utt.prefix_len:sal.shape[0] - 1], "spes")
    return aggregate(rows, "max2d", utt.subsampling) if target == "input" else rows


def ca_correlation(sal: np.ndarray, utt: Utterance, target: str) -> float:
    from fairseq_xattn.maps.correlation import pearson
    from fairseq_xattn.maps.normalisers import normalise

    att = utt.attention[:, :, utt.prefix_len:utt.attention.shape[2] - 1].mean(axis=(0, 1))
    return pearson(normalise(att, "frame_mean_variance"), analysis_saliency(sal, utt, target))


def masks_to_match(curve: Dict[int, float], goal: float) -> Optional[float]:
    """Smallest N (log-linear interpolation between measured points) where the curve reaches ``goal``."""
    pts = sorted(curve.items())
    if not pts or math.isnan(goal):
        return None
    if pts[0][1] >= goal:
        return float(pts[0][0]) if pts[0][1] == goal else -pts[0][0]  # negative: already above at the first N
    for (n0, r0), (n1, r1) in zip(pts, pts[1:]):
        if r0 < goal <= r1:
            f = (goal - r0) / (r1 - r0)
            return float(math.exp(math.log(n0) + f * (math.log(n1) - math.log(n0))))
    return None


def main(argv=None) -> int:
    args = resolve_defaults(parse_args(argv))
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)  # inference only (the explainer runs under no_grad too)
    import fairseq  # noqa: F401  (before the package: it registers itself on fairseq's import)
    from fairseq_xattn.explain.convergence import map_correlation, predicted_correlation
    from fairseq_xattn.explain.estimators import ESTIMATORS
    from fairseq_xattn.explain.explainer import Explainer
    from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder
    from fairseq_xattn.explain.mask_designs import MASK_DESIGNS
    from fairseq_xattn.explain.perturbations import build_perturbation
    from fairseq_xattn.explain.scorers import get_scorer
    from fairseq_xattn.explain.settings import ExplainSettings
    from fairseq_xattn.maps.reliability import disattenuate, spearman_brown

    model, dictionary, utts = load(args)
    adapter = FairseqForcedDecoder(model, kv_reuse=True)
    Ns = sorted(int(x) for x in args.masks.split(","))
    caps = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in args.design_max_masks.split(",") if "=" in kv}
    estimators = [e for e in args.estimators.split(",") if e] or sorted(ESTIMATORS)
    print(f"model {args.checkpoint} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M), data {args.data} "
          f"split {args.split}, {len(utts)} utterance(s): "
          + ", ".join(f"{u.utt_id} ({len(u.features)} frames, {len(u.tokens)} tokens)" for u in utts))
    print(f"reference: mean of {args.reference_maps} paper maps x {args.reference_masks} masks (seeds 1001..); "
          f"curves: seed 1, N = {Ns}; attention store: {args.attention}; {args.threads} threads\n", flush=True)

    for target in [t for t in args.targets.split(",") if t]:
        settings = ExplainSettings(target=target, mask_batch_size=args.mask_batch_size)
        explainer = Explainer(adapter, settings)
        perturbation, scorer, p = explainer.perturbation, get_scorer(settings.scorer), settings.p
        designs = [d for d in (args.designs.split(",") if args.designs else sorted(MASK_DESIGNS))
                   if d and not (d == "antithetic" and p != 0.5)]
        if "bernoulli" not in designs:
            designs.insert(0, "bernoulli")
        curves = {(d, e): {n: [] for n in Ns} for d in designs for e in estimators}
        predicted = {(d, e): {n: [] for n in Ns} for d in designs for e in estimators}
        ca_curves = {(d, e): {n: [] for n in Ns} for d in designs for e in estimators}
        ca_ref, ref_rel, seconds, r2 = [], [], {}, []
        for utt in utts:
            features = utt.features
            tokens = utt.tokens
            prev = torch.cat([tokens.new_tensor([dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
            ctx = perturbation.setup(adapter, features, prev)
            ref = ctx.ref_logprobs
            batch = explainer.mask_batch_size(ctx.n_cells, *ref.shape)
            t0 = time.perf_counter()
            ref_maps = [run_masks(adapter, perturbation, scorer, ctx, prev, ref, utt.utt_id, p, 1001 + k, "bernoulli",
                                  ["paper"], [args.reference_masks], batch)["paper"][args.reference_masks][0]
                        for k in range(args.reference_maps)]
            seconds.setdefault("reference", 0.0)
            seconds["reference"] += time.perf_counter() - t0
            reference = np.mean(ref_maps, axis=0)
            # reliability of the reference (mean of R maps): mean pairwise r, Spearman-Brown to R maps
            pair_r = [map_correlation(a, b) for i, a in enumerate(ref_maps) for b in ref_maps[i + 1:]]
            rel = spearman_brown(float(np.mean(pair_r)), factor=len(ref_maps)) if pair_r else float("nan")
            ref_rel.append(rel)
            if utt.attention is not None:
                ca_ref.append(ca_correlation(reference, utt, target))
            for design in designs:
                stops = [n for n in Ns if n <= caps.get(design, Ns[-1])]
                t0 = time.perf_counter()
                kept = [] if design == "bernoulli" else None
                maps = run_masks(adapter, perturbation, scorer, ctx, prev, ref, utt.utt_id, p, 1, design,
                                 estimators, stops, batch, halves=True, keep_level0=kept)
                if kept:
                    r2.append(additive_share(kept))
                seconds[design] = seconds.get(design, 0.0) + time.perf_counter() - t0
                for e in estimators:
                    for n, (full, half_a, half_b) in maps[e].items():
                        curves[(design, e)][n].append(map_correlation(full, reference))
                        predicted[(design, e)][n].append(predicted_correlation(map_correlation(half_a, half_b)))
                        if utt.attention is not None:
                            ca_curves[(design, e)][n].append(ca_correlation(full, utt, target))
            print(f"  [{target}] {utt.utt_id}: reference reliability {rel:.4f}; additive R^2 {r2[-1]:.3f}; "
                  f"seconds so far "
                  + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), flush=True)

        rel_mean = float(np.mean(ref_rel))
        print(f"\n## target {target} (p {p}), {len(utts)} utterance(s); reference reliability {rel_mean:.4f} "
              f"(a perfect map would reach r = {math.sqrt(rel_mean):.4f}); additive share of the score variance "
              f"(out-of-sample R^2, level 0) {np.mean(r2):.3f}: at most {1 / max(1e-9, 1 - np.mean(r2)):.2f}x less "
              f"variance for a linear-in-the-bits estimator\n")
        print("r(map with N masks, reference), mean over utterances (SPES-normalised maps):\n")
        print("| design | estimator | " + " | ".join(str(n) for n in Ns) + " |")
        print("|---|---|" + "---|" * len(Ns))
        mean_curve = {}
        for key, c in curves.items():
            mean_curve[key] = {n: float(np.mean(v)) for n, v in c.items() if v}
            print(f"| {key[0]} | {key[1]} | " + " | ".join(
                f"{mean_curve[key][n]:.4f}" if n in mean_curve[key] else "" for n in Ns) + " |")
        n_top = max(n for n in mean_curve[("bernoulli", "paper")])
        goal = mean_curve[("bernoulli", "paper")][n_top]
        print(f"\nmasks needed to match the paper estimator at {n_top} masks (r {goal:.4f}):\n")
        print("| design | estimator | masks | fewer than the paper |")
        print("|---|---|---|---|")
        for key, c in mean_curve.items():
            need = masks_to_match(c, goal)
            if need is None:
                text, ratio = f"> {max(c)}", ""
            elif need < 0:
                text, ratio = f"<= {-need:.0f}", f">= {n_top / -need:.1f}x"
            else:
                text, ratio = f"{need:.0f}", f"{n_top / need:.1f}x"
            print(f"| {key[0]} | {key[1]} | {text} | {ratio} |")
        print("\nearly-stop criterion: predicted r with the converged map (split-half) / measured r with the "
              "reference divided by sqrt(reference reliability):\n")
        print("| design | estimator | " + " | ".join(str(n) for n in Ns) + " |")
        print("|---|---|" + "---|" * len(Ns))
        for key in curves:
            cells = []
            for n in Ns:
                if predicted[key][n]:
                    corrected = disattenuate(mean_curve[key][n], rel_mean)
                    cells.append(f"{np.mean(predicted[key][n]):.3f}/{corrected:.3f}")
                else:
                    cells.append("")
            print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        if ca_ref:
            print(f"\nCA-vs-SM full-average correlation (analysis view), mean over utterances; with the reference "
                  f"map: {np.mean(ca_ref):.4f}\n")
            print("| design | estimator | " + " | ".join(str(n) for n in Ns) + " |")
            print("|---|---|" + "---|" * len(Ns))
            for key, c in ca_curves.items():
                print(f"| {key[0]} | {key[1]} | " + " | ".join(
                    f"{np.mean(c[n]):.4f}" if c[n] else "" for n in Ns) + " |")
        print(f"\nseconds ({target}): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
