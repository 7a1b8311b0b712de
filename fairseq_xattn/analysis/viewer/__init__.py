"""``xattn view``: a self-contained interactive HTML explorer of attention, saliency and word times.

:mod:`.load` reads stores (and the spectrograms, audio and word times beside them) into
:class:`.model.UtteranceView`; :mod:`.builder` writes the page (``template.html``, ``viewer.css`` and
``viewer.js`` of this package, with the data inlined; :mod:`.encode` packs the maps and audio).
Numpy only at import time.
"""
from .builder import build_html, write_html
from .model import UtteranceView, ViewerError

__all__ = ["build_html", "write_html", "UtteranceView", "ViewerError"]
