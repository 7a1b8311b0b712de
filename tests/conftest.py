"""Shared fixtures: a tiny real fairseq S2T dataset and a tiny checkpoint trained on it.

Both are deterministic functions of tests/fixtures/tiny_s2t.py, so they are built once and cached
across test sessions in a folder keyed by that file's hash (pytest's own cache is off, see
pytest.ini).  XATTN_TEST_CACHE moves the cache; a fresh machine (CI) simply builds them once.
"""
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests share 2 cores with subprocesses; one thread each keeps them from thrashing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Every fairseq component registered whatever a test module imports first (a test that imports one of
# our fairseq-using modules before fairseq registers only what that module defines).
import fairseq_xattn.plugin  # noqa: E402,F401
from tests.fixtures import tiny_s2t  # noqa: E402
from tests.fixtures.tiny_s2t import train_tiny_checkpoint, write_tiny_s2t_dataset  # noqa: E402


def _fixture_cache() -> Path:
    digest = hashlib.sha1(Path(tiny_s2t.__file__).read_bytes()).hexdigest()[:12]
    base = Path(os.environ.get("XATTN_TEST_CACHE",
                               Path(tempfile.gettempdir()) / f"xattn-test-cache-{os.getuid()}"))
    path = base / f"tiny_{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


@pytest.fixture(scope="session")
def tiny_data():
    """train.tsv (64 utts), test.tsv (10 utts: not a multiple of 8, so --required-batch-size-multiple 8
    leaves a remainder batch), dict.txt, config.yaml, fbank/."""
    root = _fixture_cache() / "data"
    if not root.exists():  # build aside, publish when complete
        partial = _fresh(root.with_name("data.partial"))
        write_tiny_s2t_dataset(partial, splits={"train": 64, "test": 10})
        # the manifests name features by absolute path: point them at the final folder
        for tsv in partial.glob("*.tsv"):
            tsv.write_text(tsv.read_text().replace(str(partial), str(root)))
        partial.rename(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data):
    """A stock s2t_transformer (2+2 layers, d 64) trained 300 updates with the real fairseq-train."""
    checkpoint = _fixture_cache() / "ckpt" / "checkpoint_last.pt"
    if not checkpoint.exists():  # a killed run leaves no half-trained cache
        partial = _fresh(checkpoint.parent.with_name("ckpt.partial"))
        train_tiny_checkpoint(tiny_data, partial)
        partial.rename(checkpoint.parent)
    return checkpoint
