"""Fixtures of the explain tests: the tiny trained fairseq model (trained once per session)."""
import pytest


@pytest.fixture(scope="session")
def tiny_model_and_task(tiny_data, tiny_checkpoint):
    import fairseq_xattn.plugin  # noqa: F401  (compat shims: torch>=2.6 checkpoint loading)
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(tiny_checkpoint)], arg_overrides={"data": str(tiny_data)})
    model = models[0].eval()
    task.load_dataset("test")
    return model, task


@pytest.fixture(scope="session")
def tiny_utterance(tiny_model_and_task):
    """(utt_id, features T x F after the dataset's transforms, hypothesis tokens incl. EOS)."""
    model, task = tiny_model_and_task
    ds = task.datasets["test"]
    item = ds[0]
    return ds.ids[0], item.source, item.target.long()
