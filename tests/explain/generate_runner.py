"""Run the real fairseq-generate (``fairseq_cli.generate``) in-process or as a subprocess."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path
from typing import List, Sequence

import numpy as np

from tests.fixtures.tiny_s2t import USER_DIR, fairseq_cli


def explain_argv(data, checkpoint, hypotheses, store, *extra: str) -> List[str]:
    return [str(data), "--user-dir", str(USER_DIR), "--task", "speech_explain", "--path", str(checkpoint),
            "--gen-subset", "test", "--cpu", "--explain-hypotheses", str(hypotheses),
            "--explain-store", str(store), "--explain-no-progress", *extra]


def generate_in_process(argv: Sequence[str]) -> str:
    """fairseq-generate's own main on ``argv``; returns what it printed."""
    from fairseq import options
    from fairseq_cli import generate

    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        generate.main(args)
    return out.getvalue()


def generate_subprocess(argv: Sequence[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(fairseq_cli("generate") + list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def store_contents(path) -> dict:
    """{id: (meta, saliency)} of a store, for comparisons independent of the write order."""
    from fairseq_xattn.stores import StoreReader

    with StoreReader(Path(path)) as reader:
        return {rec.id: (rec.meta, rec["saliency"]) for rec in reader}


def assert_same_store(a, b) -> None:
    ca, cb = store_contents(a), store_contents(b)
    assert sorted(ca) == sorted(cb)
    for utt_id in ca:
        assert ca[utt_id][0] == cb[utt_id][0], utt_id
        np.testing.assert_array_equal(ca[utt_id][1], cb[utt_id][1], err_msg=utt_id)
