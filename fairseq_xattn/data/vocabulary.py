"""SentencePiece unigram models and their fairseq dictionaries (fairseq's S2T recipe conventions:
<s>=0, <pad>=1, </s>=2, <unk>=3; the dictionary lists every other piece with count 1)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

SPECIAL_PIECES = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}


def train_sentencepiece(sentences: Iterable[str], model_prefix: Path, vocab_size: int,
                        user_symbols: Sequence[str] = (), model_type: str = "unigram") -> Path:
    """Train ``<prefix>.model`` / ``.vocab`` and write the fairseq dictionary ``<prefix>.txt``.

    ``vocab_size`` is an upper bound: on small data SentencePiece keeps fewer pieces
    (hard_vocab_limit=false).  ``user_symbols`` (e.g. language tags) become single pieces.
    Returns the dictionary path.
    """
    import sentencepiece as spm

    model_prefix = Path(model_prefix)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    text_path = model_prefix.with_suffix(".train.txt")
    n = 0
    with open(text_path, "w", encoding="utf-8") as f:
        for s in sentences:
            f.write(s.strip() + "\n")
            n += 1
    if n == 0:
        raise ValueError(f"no sentences to train the SentencePiece model {model_prefix}")
    kwargs = dict(
        input=str(text_path), model_prefix=str(model_prefix), model_type=model_type,
        vocab_size=int(vocab_size), character_coverage=1.0, num_threads=1, hard_vocab_limit=False,
        bos_id=SPECIAL_PIECES["<s>"], pad_id=SPECIAL_PIECES["<pad>"], eos_id=SPECIAL_PIECES["</s>"],
        unk_id=SPECIAL_PIECES["<unk>"], minloglevel=2,
    )
    if user_symbols:
        kwargs["user_defined_symbols"] = list(user_symbols)
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(1)  # reproducible sampling of training sentences
    try:
        spm.SentencePieceTrainer.train(**kwargs)
    finally:
        text_path.unlink(missing_ok=True)
    return export_fairseq_dictionary(model_prefix.with_suffix(".model"), model_prefix.with_suffix(".txt"))


def export_fairseq_dictionary(model_path: Path, dict_path: Optional[Path] = None) -> Path:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    for piece, idx in SPECIAL_PIECES.items():
        if sp.id_to_piece(idx) != piece:
            raise ValueError(f"{model_path}: piece {idx} is {sp.id_to_piece(idx)!r}, expected {piece!r}")
    dict_path = Path(dict_path or Path(model_path).with_suffix(".txt"))
    with open(dict_path, "w", encoding="utf-8") as f:
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if piece not in SPECIAL_PIECES:
                f.write(f"{piece} 1\n")
    return dict_path
