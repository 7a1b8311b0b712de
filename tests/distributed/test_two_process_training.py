"""Multi-GPU training is fairseq's own data parallelism.  Proven here on CPU: two processes (gloo),
started with torchrun as users start them, train through fairseq-hydra-train and stay synchronised.
"""
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.fixtures.tiny_s2t import REPO, USER_DIR
from tests.test_fairseq_commands import MICRO_MODEL

HERE = Path(__file__).parent
CPU_TORCHRUN_OVERRIDES = [
    "distributed_training.distributed_init_method=env://",
    "distributed_training.distributed_no_spawn=true",
    "distributed_training.distributed_rank=${oc.env:RANK}",
]


def test_two_ranks_hold_identical_parameters_after_updates(tiny_data, tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", XATTN_DUMP_DIR=str(dump))
    cmd = [
        str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517",
        str(HERE / "hydra_train_dump_params.py"),
        "--config-dir", str(REPO / "examples" / "configs"), "--config-name", "tiny_asr",
        f"task.data={tiny_data}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
        "dataset.valid_subset=test", "dataset.max_tokens=2000", "optimization.max_update=6",
        "distributed_training.distributed_world_size=2", "distributed_training.distributed_backend=gloo",
        "distributed_training.ddp_backend=legacy_ddp", "model.dropout=0.1",
        # CPU only: fairseq's torchrun detection divides by torch.cuda.device_count(), so give it the
        # env:// rendezvous and the rank explicitly (see README, "Multi-GPU training")
        *CPU_TORCHRUN_OVERRIDES,
        *[f"model.{k}={v}" for k, v in MICRO_MODEL.items()],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(dump / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["num_updates"] == r1["num_updates"] == 6
    # Trainable parameters are all-reduced every update: bitwise equal on both ranks.  (Batch-norm
    # running statistics are buffers: legacy_ddp keeps them per rank, pytorch_ddp broadcasts rank 0's.)
    for name, p0 in r0["params"].items():
        torch.testing.assert_close(p0, r1["params"][name], rtol=0, atol=0, msg=f"ranks differ in {name}")
    # ...and training really moved them (both ranks started from the same seeded initialisation)
    for name, p in r0["initial"].items():
        torch.testing.assert_close(p, r1["initial"][name], rtol=0, atol=0)
    moved = sum(not torch.equal(p, r0["initial"][n]) for n, p in r0["params"].items())
    assert moved >= 0.9 * len(r0["params"])
