"""Shared fixtures: a tiny real fairseq S2T dataset and a tiny checkpoint trained on it (once)."""
import os

import pytest

# Tests share 2 cores with subprocesses; one thread each keeps them from thrashing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from tests.fixtures.tiny_s2t import train_tiny_checkpoint, write_tiny_s2t_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Directory with train.tsv (64 utts), test.tsv (10 utts), dict.txt, config.yaml, fbank/."""
    return write_tiny_s2t_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_data, tmp_path_factory):
    """A stock s2t_transformer (2+2 layers, d 64) trained 300 updates with the real fairseq-train."""
    return train_tiny_checkpoint(tiny_data, tmp_path_factory.mktemp("tiny_ckpt"))
