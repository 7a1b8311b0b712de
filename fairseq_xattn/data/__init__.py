"""Data: manifests, filterbank features, the CTC-aware S2T dataset, ``xattn prep``, ``xattn corpus``.

Modules import fairseq lazily where they can, so the corpus builder stays light.
"""
