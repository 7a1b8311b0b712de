"""A small demo-like run (3 utterances of 3 s, 2 layers x 4 heads, 15 tokens) shared by the viewer tests."""
import pytest

from tests.analysis.viewer.runner import run_view
from tests.analysis.viewer.synthetic import write_run


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("viewer_run"), n_utterances=3, seed=0)


def full_view_args(run, out):
    return ["--attention", run.attention, "--saliency-input", run.saliency_input,
            "--saliency-encoder", run.saliency_encoder, "--features-from", run.data_dir,
            "--audio-from", run.raw_manifest, "--timestamps", run.timestamps, "--out", out]


@pytest.fixture(scope="session")
def report_html(synthetic_run, tmp_path_factory):
    """The page of the synthetic run with everything given."""
    out = tmp_path_factory.mktemp("viewer_html") / "report.html"
    result = run_view(*full_view_args(synthetic_run, out))
    assert result.returncode == 0, result.stderr
    return out
