"""Session fixtures for the generation tests: the model/task of the shared tiny checkpoint (tests/conftest.py)
loaded through the Python API."""
from __future__ import annotations


import pytest
import torch


from .helpers import load_recording_task, one_batch

torch.set_num_threads(1)


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
