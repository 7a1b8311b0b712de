"""``xattn whisper-import SRC OUT``: a Whisper checkpoint -> a folder fairseq-generate can use.

SRC: an OpenAI ``.pt`` file, a Hugging Face folder, a CTranslate2 folder (faster-whisper's), or a
hub name such as ``openai/whisper-tiny.en`` (downloaded with huggingface_hub when the network
answers).  OUT gets checkpoint.pt, whisper_dictionary.json (+ tokenizer files), alignment_heads.json
and config.yaml (see :mod:`fairseq_xattn.models.whisper.importer`).
"""
import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .importer import CHECKPOINT_FORMATS

    parser.add_argument("src", metavar="SRC",
                        help="OpenAI .pt, Hugging Face folder, CTranslate2 folder, or hub name (openai/whisper-tiny.en)")
    parser.add_argument("out", metavar="OUT", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--format", default="auto", choices=["auto", *CHECKPOINT_FORMATS],
                        help="format of SRC (default: detected)")
    parser.add_argument("--tokenizer", metavar="FOLDER",
                        help="folder with the model's tokenizer.json, or vocab.json + added_tokens.json (needed for "
                             "an OpenAI .pt, which has none; overrides the source's own vocabulary)")
    parser.add_argument("--alignment-heads", metavar="L:H,...",
                        help="Whisper alignment heads, 0-based layer:head pairs (default: the source's, else "
                             "Whisper's default of all heads of the last half of the layers)")
    parser.add_argument("--language", help="language code of the prompt (multilingual models; default en); "
                                           "English-only models take none")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"],
                        help="Whisper task of the prompt (default transcribe)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")


def main(args: argparse.Namespace) -> int:
    from .importer import import_whisper

    result = import_whisper(args.src, args.out, fmt=args.format, tokenizer=args.tokenizer,
                            alignment_heads=args.alignment_heads, language=args.language, task=args.task,
                            overwrite=args.overwrite)
    for warning in result.warnings:
        print(f"warning: {warning}")
    dims = result.dims
    print(f"{args.src} ({result.format}) -> {result.out}: arch {result.arch}, {dims['n_audio_layer']}+"
          f"{dims['n_text_layer']} layers, width {dims['n_text_state']}, {dims['n_vocab']} tokens, "
          f"{dims['n_mels']} mel bins, {len(result.alignment_heads)} alignment heads")
    return 0
