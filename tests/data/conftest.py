"""Fixtures of the data tests: one tiny espeak corpus and its prepared data folder per session."""
import pytest


@pytest.fixture(scope="session")
def tiny_corpus_and_data(tmp_path_factory):
    """(corpus folder, prepared data folder): 12 sentence pairs, dev/test/test_voices 2 each."""
    from tests.fixtures.tiny_dataset import make_tiny_dataset

    root = tmp_path_factory.mktemp("tiny_espeak")
    data = make_tiny_dataset(root, size=12, seed=5)
    return root / "corpus", data
