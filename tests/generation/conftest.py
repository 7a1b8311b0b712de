"""Session fixtures for the generation tests: the tiny S2T dataset, one tiny trained checkpoint
(real fairseq-train, about a minute, trained once), and the model/task loaded through the Python API."""
from __future__ import annotations

import hashlib
import os
import tempfile
import shutil
from pathlib import Path

import pytest
import torch

from tests.fixtures import tiny_s2t
from tests.fixtures.tiny_s2t import train_tiny_checkpoint, write_tiny_s2t_dataset

from .helpers import load_recording_task, one_batch

torch.set_num_threads(1)


def _fixture_cache(request) -> Path:
    """A cache folder keyed by the fixture code: the dataset and the trained checkpoint are
    deterministic functions of it, so they are built once and reused by later test sessions
    (the repository's pytest.ini disables pytest's own cache).  XATTN_TEST_CACHE moves it."""
    digest = hashlib.sha1(Path(tiny_s2t.__file__).read_bytes()).hexdigest()[:12]
    base = Path(os.environ.get("XATTN_TEST_CACHE", Path(tempfile.gettempdir()) / f"xattn-test-cache-{os.getuid()}"))
    path = base / f"generation_{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_data(request):
    # 10 test utterances: not a multiple of 8, so --required-batch-size-multiple 8 leaves a remainder batch.
    root = _fixture_cache(request) / "data"
    if not root.exists():
        partial = _fresh(root.with_name("data.partial"))
        write_tiny_s2t_dataset(partial, splits={"train": 64, "test": 10})
        # the manifests name features by absolute path: point them at the final folder
        for tsv in partial.glob("*.tsv"):
            tsv.write_text(tsv.read_text().replace(str(partial), str(root)))
        partial.rename(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data, request):
    checkpoint = _fixture_cache(request) / "ckpt" / "checkpoint_last.pt"
    if not checkpoint.exists():  # train aside, publish when complete (a killed run leaves no half-trained cache)
        partial = _fresh(checkpoint.parent.with_name("ckpt.partial"))
        train_tiny_checkpoint(tiny_data, partial)
        partial.rename(checkpoint.parent)
    return checkpoint


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


@pytest.fixture(scope="session")
def loaded(tiny_checkpoint, tiny_data):
    """``(model, task)``: the trained s2t_transformer (eval mode) and a recording-capable task
    (no store configured) with the ``test`` split loaded."""
    return load_recording_task(tiny_checkpoint, tiny_data)


@pytest.fixture(scope="session")
def mixed_batch(loaded):
    """All 10 test utterances (106 down to 39 frames) in one padded batch."""
    model, task = loaded
    return one_batch(task)
