"""Analysis of recorded cross-attention and saliency: reads stores, never fairseq internals
(except :mod:`.faithfulness`, which decodes with the real model through fairseq).

Modules (one concept each):

* :mod:`.normalisers`   per-token / frame-wise normalisers (numpy only; registry + chains)
* :mod:`.aggregation`   pooling ``I x T x F`` -> ``I x T'`` (registry: max2d, avg2d, maxfreq_avgtime)
* :mod:`.rows`          which token rows take part (drop language tags and EOS)
* :mod:`.correlate`     Pearson r between attention and saliency stores, views and output formats
* :mod:`.metrics`       WER (Whisper normaliser) / wer_max / BLEU / chrF / COMET scorers
* :mod:`.explanations`  an explanation store as one relevance ranking per utterance
* :mod:`.encoder_override`  a model whose encoder returns a given (perturbed) encoder output
* :mod:`.decoding`      beam search with a fairseq checkpoint, task and dataset
* :mod:`.faithfulness`  deletion/insertion curves, AUC, size
* :mod:`.plots`         figures
* ``*_cli``             the ``xattn score|correlate|faithfulness|plot`` subcommands
"""
