"""Whisper's decoder prompt as fairseq's SequenceGenerator takes it.

Whisper starts decoding from ``<|startoftranscript|>`` and forces the rest of its prompt
(``<|xx|>`` and ``<|transcribe|>``/``<|translate|>`` for multilingual models, then
``<|notimestamps|>``): in fairseq the first token is ``SequenceGenerator.generate``'s
``bos_token`` (the decoder's first input, in place of EOS), the rest ``prefix_tokens``.  The token
sequence itself is the dictionary's (:meth:`.vocabulary.WhisperDictionary.sot_sequence`).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch


def whisper_prompt(dictionary, language: Optional[str] = None, task: str = "transcribe") -> List[int]:
    """``[<|startoftranscript|>, (<|xx|>, <|task|>,) <|notimestamps|>]`` for a Whisper dictionary."""
    return dictionary.sot_sequence(language=language, task=task)


def generator_prompt(dictionary, batch_size: int, language: Optional[str] = None,
                     task: str = "transcribe") -> Tuple[int, torch.Tensor]:
    """``(bos_token, prefix_tokens)`` for ``SequenceGenerator.generate``: the prompt's first token,
    and the rest repeated for the batch (``B x (P - 1)`` LongTensor)."""
    prompt = whisper_prompt(dictionary, language, task)
    prefix = torch.tensor(prompt[1:], dtype=torch.long).unsqueeze(0).expand(batch_size, -1).contiguous()
    return prompt[0], prefix
