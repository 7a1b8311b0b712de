"""Numpy maths on explanation maps, shared by explain (early stop) and analysis (numpy only).

* :mod:`.normalisers`   per-token / frame-wise normalisers (registry ``NORMALISERS``, chains)
* :mod:`.pooling`       input saliency ``I x T x F`` -> encoder grid ``I x T'`` (registry ``AGGREGATORS``)
* :mod:`.correlation`   Pearson r of two maps (the one definition used everywhere)
* :mod:`.reliability`   split-half reliability of sampled maps and attenuation-corrected r
"""
