"""fairseq-xattn: cross-attention and perturbation saliency for fairseq speech-to-text models.

Importing the package has no side effects of its own: the stores (:mod:`fairseq_xattn.stores`), the
map maths (:mod:`fairseq_xattn.maps`) and the analysis import neither fairseq nor torch.  The fairseq
components are registered (:mod:`fairseq_xattn.plugin`) as soon as fairseq is loaded: at once when it
already is (fairseq's ``--user-dir`` imports this package from inside fairseq), otherwise right after
fairseq's own import, so a program that imports our analysis first and runs fairseq later still finds
our tasks and models.
"""
import importlib
import importlib.abc
import importlib.util
import sys as _sys

__version__ = "0.1.0"


def _importing_ourselves() -> bool:
    """True while one of our modules is half imported (it imported fairseq itself): registering then
    would import it again through the plugin, a cycle.  Such a module registers what it defines;
    code that then needs every component imports :mod:`fairseq_xattn.plugin` itself."""
    return any(getattr(getattr(m, "__spec__", None), "_initializing", False)
               for name, m in list(_sys.modules.items()) if name.startswith("fairseq_xattn.") and m is not None)


class _RegisterAfterFairseq(importlib.abc.MetaPathFinder):
    """Finds nothing itself; on the first import of ``fairseq`` it lets fairseq's own loader run, then
    imports :mod:`fairseq_xattn.plugin` (and removes itself)."""

    def find_spec(self, name, path=None, target=None):
        if name != "fairseq":
            return None
        _sys.meta_path.remove(self)
        spec = importlib.util.find_spec("fairseq")
        if spec is None or spec.loader is None:
            return spec  # not installed: `import fairseq` fails as usual
        run_fairseq = spec.loader.exec_module

        def exec_module(module):
            run_fairseq(module)
            if not _importing_ourselves():
                importlib.import_module("fairseq_xattn.plugin")

        spec.loader.exec_module = exec_module
        return spec


if "fairseq" in _sys.modules:
    from . import plugin  # noqa: F401,E402
elif not any(isinstance(f, _RegisterAfterFairseq) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _RegisterAfterFairseq())
