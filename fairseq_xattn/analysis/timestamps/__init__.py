"""Word timestamps from cross-attention, saliency and CTC, and their evaluation against true word times.

Modules (numpy only at import time; :mod:`.ctc` imports torch/fairseq inside the function that runs
a checkpoint):

* :mod:`.words`       subword tokens -> words (SentencePiece ``▁``, Whisper byte-level ``Ġ``)
* :mod:`.alignment`   token x frame maps -> token frame spans (registry ``TIMESTAMP_METHODS``: dtw, argmax, mass)
* :mod:`.timing`      token spans -> timed words in seconds, confidences
* :mod:`.heads`       head selections (all, layer, head, named set, Whisper's alignment heads, auto)
* :mod:`.sources`     hypotheses and their maps from attention and saliency stores
* :mod:`.ctc`         CTC forced alignment (Viterbi) and CTC log-probabilities from a checkpoint
* :mod:`.systems`     every requested system over the stores
* :mod:`.formats`     Whisper-style JSON, CTM, SRT, WebVTT
* :mod:`.references`  reference times: our timings JSONL, CTM, Praat TextGrid
* :mod:`.evaluate`    matching, boundary errors, F1, the table
* :mod:`.cli`         ``xattn timestamps`` and ``xattn timestamps evaluate``
"""
