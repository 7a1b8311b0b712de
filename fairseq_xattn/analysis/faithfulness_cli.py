"""``xattn faithfulness``: deletion/insertion AUC and size of explanations, decoding with the model.

Example (ASR, the paper's three explanations and the random baselines)::

    xattn faithfulness --checkpoint ckpt/avg.pt --data data/ --split test \
        --explanation "SM^X=saliency_input:results/spes_input" \
        --explanation "SM^X agg=saliency_input_aggregated:results/spes_input" \
        --explanation "SM^H=saliency_encoder:results/spes_encoder" \
        --explanation "CA=attention:results/attn" \
        --scorer wer_max --json faith.json

``--explanation [LABEL=]KIND:STORE[@SPACE]``; kinds: saliency_input, saliency_input_aggregated,
saliency_encoder, attention; spaces: input (cells for full-resolution SM^X, frames otherwise),
frames, encoder.
"""
from __future__ import annotations

import csv
import functools
import json
import sys

from ..files import check_output
from ..maps.pooling import AGGREGATORS
from ..maps.heads import HeadSelectionError, expand_pairs, parse_pairs
from .decoding import DecodingConfig, FairseqDecodingSession
from .explanations import KINDS, ExplanationError, RandomExplanation, StoreExplanation, check_same_ids
from .faithfulness import MODES, percent_steps, run_faithfulness
from .metrics import TEXT_NORMALISERS, score
from .options import non_negative_int, normaliser_chain, positive_int


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="fairseq checkpoint of the model to explain")
    parser.add_argument("--data", required=True, help="data directory of the task (TSV manifests, config.yaml)")
    parser.add_argument("--split", default="test", help="dataset split the stores were computed on (default: test)")
    parser.add_argument("--config-yaml", default=None, help="data config override (default: the checkpoint's)")
    parser.add_argument("--user-dir", default=None, help="extra fairseq --user-dir to import")
    parser.add_argument("--explanation", action="append", required=True, metavar="[LABEL=]KIND:STORE[@SPACE]",
                        help=f"an explanation to evaluate (repeatable); KIND in {sorted(KINDS)}")
    parser.add_argument("--metric", nargs="+", default=["deletion"], choices=MODES,
                        help="deletion and/or insertion (default: deletion)")
    parser.add_argument("--step", type=positive_int, default=5, help="percentage step (default: 5 -> 21 steps)")
    parser.add_argument("--scorer", default="wer_max", choices=["wer_max", "wer", "bleu", "chrf"],
                        help="corpus score at each step: wer_max for ASR, bleu for ST (default: %(default)s)")
    parser.add_argument("--normaliser", default="whisper_english", choices=sorted(TEXT_NORMALISERS),
                        help="text normaliser for WER (default: %(default)s)")
    parser.add_argument("--no-random", action="store_true", help="skip the random-ranking baseline rows")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random baseline")
    parser.add_argument("--no-size", action="store_true", help="skip the size metric")
    parser.add_argument("--saliency-norm", nargs="*", default=["spes"], type=normaliser_chain,
                        help="per-token normalisers before summing over tokens / for size (default: spes)")
    parser.add_argument("--aggregation", default="max2d", choices=sorted(AGGREGATORS),
                        help="pooling for saliency_input_aggregated (default: %(default)s)")
    parser.add_argument("--attention-pairs", default=None, metavar="L:H,...",
                        help="(layer, head) pairs averaged for attention explanations (default: all)")
    parser.add_argument("--keep-eos", action="store_true", help="keep the EOS row in token maps")
    parser.add_argument("--max-utterances", type=positive_int, default=None, help="evaluate only the first N ids")
    gen = parser.add_argument_group("decoding")
    gen.add_argument("--beam", type=positive_int, default=5)
    gen.add_argument("--no-repeat-ngram-size", type=non_negative_int, default=5)
    gen.add_argument("--max-len-a", type=float, default=0.0)
    gen.add_argument("--max-len-b", type=non_negative_int, default=200)
    gen.add_argument("--prefix-size", type=non_negative_int, default=0, help="forced target prefix (1 for a language tag)")
    gen.add_argument("--infer-tgt-lang", default=None,
                     help="multilingual models (speech_to_text_ctc): the target language to decode and score, as "
                          "in fairseq-generate (the source language: transcript; the other: translation; "
                          "default: the checkpoint's setting, the translation); use with --prefix-size 1")
    gen.add_argument("--post-process", default=None, help="fairseq post-process of the target dictionary string")
    gen.add_argument("--cpu", action="store_true")
    parser.add_argument("--json", default=None, help="write curves, AUCs and sizes as JSON")
    parser.add_argument("--csv", default=None, help="write the curves in long format (label, mode, percent, score)")
    parser.add_argument("--hypotheses", default=None,
                        help="write every decoded hypothesis as JSON lines (label, mode, percent, id, hyp, ref)")


def parse_explanation(text: str):
    """``[LABEL=]KIND:STORE[@SPACE]`` -> (label, kind, store, space)."""
    label = None
    if "=" in text.split(":", 1)[0]:
        label, text = text.split("=", 1)
    if ":" not in text:
        raise ExplanationError(f"--explanation {text!r}: write [LABEL=]KIND:STORE[@SPACE]")
    kind, store = text.split(":", 1)
    space = None
    if "@" in store:
        store, space = store.rsplit("@", 1)
    return label, kind, store, space


def _check_pairs(sources, pairs, text: str) -> None:
    """``--attention-pairs`` against the layers and heads of every attention store, before any decoding."""
    for source in sources:
        if source.kind == "attention" and source.ids():
            L, H = source.reader.get(source.ids()[0]).arrays["attention"].shape[:2]
            try:
                expand_pairs(pairs, L, H, f"--attention-pairs {text}")
            except HeadSelectionError as e:
                raise ExplanationError(f"{e} of {source.store}") from None


def main(args) -> int:
    percent_steps(args.step)  # the options first: a mistake fails before the model is loaded
    for flag, path in (("--json", args.json), ("--csv", args.csv), ("--hypotheses", args.hypotheses)):
        if path:
            check_output(path, flag, {"--data": args.data})
    import torch

    torch.set_num_threads(1)  # shared CPUs; beam search on small batches gains little from threads
    try:
        pairs = parse_pairs(args.attention_pairs) if args.attention_pairs else None
    except ValueError as e:
        raise ExplanationError(f"--attention-pairs: {e}") from None
    sources = []
    for item in args.explanation:
        label, kind, store, space = parse_explanation(item)
        sources.append(StoreExplanation(kind, store, space=space, label=label, saliency_norm=args.saliency_norm,
                                        aggregation=args.aggregation, pairs=pairs, drop_eos=not args.keep_eos))
    if pairs:
        _check_pairs(sources, pairs, args.attention_pairs)
    labels = [s.label for s in sources]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ExplanationError(f"several explanations are labelled {dupes}: name them with LABEL=KIND:STORE")
    ids = check_same_ids(sources)
    if args.max_utterances:
        ids = ids[: args.max_utterances]
    explanations = list(sources)
    if not args.no_random:
        for space in dict.fromkeys(s.space for s in sources):
            explanations.append(RandomExplanation(space, seed=args.seed))
    session = FairseqDecodingSession(
        args.checkpoint, args.data, args.split, DecodingConfig(
            beam=args.beam, no_repeat_ngram_size=args.no_repeat_ngram_size, max_len_a=args.max_len_a,
            max_len_b=args.max_len_b, prefix_size=args.prefix_size, post_process=args.post_process, cpu=args.cpu),
        config_yaml=args.config_yaml, user_dir=args.user_dir, infer_tgt_lang=args.infer_tgt_lang)
    missing = [u for u in ids if u not in session.index]
    if missing:
        raise ExplanationError(f"{len(missing)} explained utterance(s) are not in split {args.split!r} of "
                               f"{args.data}: {missing[:5]}")
    scorer = functools.partial(lambda h, r, name: score(name, h, r, normaliser=args.normaliser), name=args.scorer)
    result = run_faithfulness(session, explanations, ids, modes=args.metric, step=args.step, scorer=scorer,
                              scorer_name=args.scorer, with_size=not args.no_size)
    sys.stdout.write(f"{args.scorer} of the unperturbed decoding: {result.unperturbed_score:.2f} "
                     f"({result.n_utterances} utterances); AUC = trapezoid over k% / 100\n\n")
    sys.stdout.write(result.markdown() + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.as_dict(), f, indent=1)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "space", "mode", "percent", args.scorer])
            for row in result.rows:
                for mode, curve in row.curves.items():
                    for k, v in zip(result.percents, curve):
                        w.writerow([row.label, row.space, mode, k, v])
    if args.hypotheses:
        with open(args.hypotheses, "w", encoding="utf-8") as f:
            for label, by_mode in result.hypotheses.items():
                for mode, steps in by_mode.items():
                    for k, texts in zip(result.percents, steps):
                        for utt, hyp, ref in zip(result.ids, texts, result.references):
                            f.write(json.dumps({"label": label, "mode": mode, "percent": k, "id": utt,
                                                "hyp": hyp, "ref": ref}) + "\n")
    return 0
