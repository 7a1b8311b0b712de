"""Reuse the generation tests' cached tiny dataset and checkpoint (trained once, kept across sessions)
instead of training another copy with the root conftest's per-session fixtures."""
from tests.generation.conftest import tiny_checkpoint, tiny_data  # noqa: F401
