"""The layering of docs/ARCHITECTURE.md, enforced: each folder imports only the ones before it, and the
numpy-only layers (the stores, the map maths, the analysis of stores) import neither torch nor fairseq."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fairseq_xattn"

#: Rank of each top-level module or folder of the package: a module may import ranks <= its own.
RANKS = {
    # foundation: pure Python / numpy
    "registry": 0, "errors": 0, "files": 0, "geometry": 0, "language_tags": 0, "maps": 0, "stores": 0,
    # the pipeline
    "compat": 1, "data": 1,
    "models": 2,
    "criterions": 3, "optim": 3,
    "generation": 4,
    "explain": 5,
    "tasks": 6,
    "plugin": 7,
    "analysis": 8,
    # commands
    "checkpoint_average": 9, "setup_cli": 9, "cli": 9,
    "__init__": 9,
}
#: Modules that must import neither torch nor fairseq (checked in a fresh interpreter).
NUMPY_ONLY = [
    "fairseq_xattn", "fairseq_xattn.stores", "fairseq_xattn.maps.normalisers", "fairseq_xattn.maps.pooling",
    "fairseq_xattn.maps.correlation", "fairseq_xattn.maps.heads", "fairseq_xattn.geometry",
    "fairseq_xattn.language_tags", "fairseq_xattn.registry", "fairseq_xattn.files",
    "fairseq_xattn.analysis", "fairseq_xattn.analysis.correlate", "fairseq_xattn.analysis.correlate_cli",
    "fairseq_xattn.analysis.explanations", "fairseq_xattn.analysis.plots", "fairseq_xattn.analysis.metrics",
    "fairseq_xattn.stores.cli", "fairseq_xattn.data.token_sequences", "fairseq_xattn.data.corpus.build",
]


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path = PACKAGE):
    """Absolute names of the fairseq_xattn modules ``path`` imports, anywhere in the file, in order."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = sorted((n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))),
                   key=lambda n: n.lineno)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fairseq_xattn"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fairseq_xattn"):
                if target == "fairseq_xattn":
                    for alias in node.names:  # from fairseq_xattn import plugin / __version__
                        is_module = (root / alias.name).is_dir() or (root / f"{alias.name}.py").is_file()
                        yield node.lineno, f"fairseq_xattn.{alias.name}" if is_module else "fairseq_xattn"
                else:
                    yield node.lineno, target


def test_every_top_level_module_has_a_rank():
    names = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert names <= set(RANKS), f"give these a rank in tests/test_architecture.py and docs/ARCHITECTURE.md: " \
                                f"{sorted(names - set(RANKS))}"


def test_each_folder_imports_only_the_ones_before_it():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _top(_module_name(path))
        for line, target in _imports(path):
            other = _top(target)
            if other != own and RANKS[other] > RANKS[own]:
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}, rank {RANKS[own]}) imports "
                                  f"{target} ({other}, rank {RANKS[other]})")
    assert not violations, "layering violations (docs/ARCHITECTURE.md):\n" + "\n".join(violations)


def test_the_scanner_resolves_relative_and_nested_imports(tmp_path):
    root = tmp_path / "fairseq_xattn"
    (root / "stores").mkdir(parents=True)
    module = root / "stores" / "bad.py"
    module.write_text("from ..maps import heads\n\ndef later():\n    from ..tasks import speech_explain\n")
    assert [t for _, t in _imports(module, root)] == ["fairseq_xattn.maps", "fairseq_xattn.tasks"]


@pytest.mark.parametrize("module", NUMPY_ONLY)
def test_numpy_only_modules_import_neither_torch_nor_fairseq(module):
    code = (f"import sys, {module}\n"
            "print(' '.join(sorted(m for m in ('torch', 'fairseq') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "", f"importing {module} imports {out}"
