"""Which part of the data a recording or explaining fairseq-generate process takes, where it writes,
and how the parts become one store.

Two ways to split a run, and they compose:

* ``--num-shards N --shard-id K`` (fairseq's dataset options): independent jobs, e.g. a SLURM array.
  Job K writes ``STORE.shardK-of-N``; ``xattn store merge`` joins the N stores (it names missing ones).
* ``torchrun --nproc_per_node P fairseq-generate ...``: the P processes of one job (``RANK``,
  ``WORLD_SIZE`` in the environment) split the job's data again.  Process R writes
  ``JOB_STORE.partR-of-P``; when every process has finished (a barrier over a gloo process group, which
  needs no GPU), rank 0 merges the parts into the job's store (``STORE``, or ``STORE.shardK-of-N``) and
  removes them.  The merged store holds exactly the records of a single-process run.

fairseq-generate passes its own ``num_shards``/``shard_id`` (``--distributed-world-size``, whose default is
the number of visible GPUs, and ``--distributed-rank``, 0 unless fairseq's launcher sets it): they are
ignored here, because without fairseq's distributed launch every process would take the same first 1/N
of the data.

Resuming: a rerun of an interrupted job resumes its part stores; utterances already in the job's merged
store (a finished earlier run) count as done, and the final merge joins them with the new parts.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..errors import OptionError
from ..stores import StoreError, StoreReader, merge_stores, run_settings, settings_differences, \
    settings_mismatch_message

logger = logging.getLogger(__name__)

#: How long the first process to finish waits for the others (a barrier of the gloo group).
BARRIER_TIMEOUT = timedelta(days=7)


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise OptionError(f"environment variable {name}={value!r} is not an integer (set by torchrun?)") from None


@dataclass(frozen=True)
class RunShard:
    """The part of the data one process takes: job ``shard_id`` of ``num_shards``, process ``rank`` of
    ``world_size`` within the job.  Data shard ``index`` of ``count`` in fairseq's batch sharding
    (batches dealt round-robin), so the processes of all jobs partition the batches."""

    shard_id: int = 0
    num_shards: int = 1
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_options(cls, num_shards: int, shard_id: int, environ: Optional[Mapping[str, str]] = None) -> "RunShard":
        """From ``--num-shards/--shard-id`` and torchrun's ``RANK``/``WORLD_SIZE`` (absent: one process)."""
        environ = os.environ if environ is None else environ
        num_shards, shard_id = max(1, int(num_shards)), int(shard_id)
        if not 0 <= shard_id < num_shards:
            raise OptionError(f"--shard-id {shard_id} must be in [0, --num-shards {num_shards})")
        world_size = max(1, _env_int(environ, "WORLD_SIZE", 1))
        rank = _env_int(environ, "RANK", 0) if world_size > 1 else 0
        if not 0 <= rank < world_size:
            raise OptionError(f"environment RANK={rank} is not in [0, WORLD_SIZE={world_size})")
        return cls(shard_id, num_shards, rank, world_size)

    @property
    def index(self) -> int:
        return self.shard_id * self.world_size + self.rank

    @property
    def count(self) -> int:
        return self.num_shards * self.world_size

    @property
    def distributed(self) -> bool:
        """Several processes of one job (torchrun): their parts are merged at the end."""
        return self.world_size > 1

    def job_store(self, store: os.PathLike) -> Path:
        """The store of this job: ``store`` itself, or ``store.shardK-of-N`` for a ``--num-shards`` job."""
        path = Path(store)
        return path if self.num_shards == 1 else path.with_name(f"{path.name}.shard{self.shard_id}-of-{self.num_shards}")

    def part_store(self, store: os.PathLike) -> Path:
        """Where this process writes: the job's store, or ``JOB.partR-of-P`` under torchrun."""
        job = self.job_store(store)
        return job if not self.distributed else job.with_name(f"{job.name}.part{self.rank}-of-{self.world_size}")

    def job_meta(self) -> Dict[str, int]:
        """Store-level meta of the job's store (read by ``xattn store merge`` to check completeness)."""
        return {"shard_id": self.shard_id, "shard_count": self.num_shards} if self.num_shards > 1 else {}

    def part_meta(self) -> Dict[str, int]:
        """Store-level meta of this process's store."""
        part = {"part_id": self.rank, "part_count": self.world_size} if self.distributed else {}
        return {**self.job_meta(), **part}

    def describe(self) -> str:
        job = f"shard {self.shard_id} of {self.num_shards}" if self.num_shards > 1 else "the whole split"
        return job + (f", process {self.rank} of {self.world_size}" if self.distributed else "")


def bind_local_device(environ: Optional[Mapping[str, str]] = None) -> None:
    """Under torchrun on a GPU machine, put this process on its own GPU (``LOCAL_RANK``) before fairseq
    moves the model to "the" CUDA device; otherwise every process would share the first GPU."""
    import torch

    environ = os.environ if environ is None else environ
    if _env_int(environ, "WORLD_SIZE", 1) > 1 and torch.cuda.is_available():
        local_rank = _env_int(environ, "LOCAL_RANK", 0)
        torch.cuda.set_device(local_rank % torch.cuda.device_count())


def join_process_group(shard: RunShard) -> None:
    """Join the torchrun job's gloo group (used for the final barrier only; gloo runs without GPUs)."""
    import torch.distributed as dist

    if not shard.distributed or dist.is_initialized():
        return
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise OptionError(f"WORLD_SIZE={shard.world_size} is set but {name} is not: start the processes with "
                              "torchrun (or set MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE yourself)")
    dist.init_process_group("gloo", init_method="env://", rank=shard.rank, world_size=shard.world_size,
                            timeout=BARRIER_TIMEOUT)


def finished_in_job_store(shard: RunShard, store: os.PathLike, settings: Mapping[str, Any],
                          kind: str) -> Dict[Tuple[str, int], Dict[str, Any]]:
    """Records of an earlier, finished run of this torchrun job (its merged store), by ``(id, rank)``:
    they count as done.  Empty when the job is one process (its store is the process's own store) or
    no merged store exists; a merged store of other settings is refused like any resume."""
    job = shard.job_store(store)
    if not shard.distributed or not (job / "meta.json").exists():
        return {}
    with StoreReader(job, expect_kind=kind) as reader:
        differences = settings_differences(run_settings(reader.meta), run_settings(settings))
        if differences:
            raise StoreError(settings_mismatch_message(job, differences))
        return {key: reader.row_meta(*key) for key in reader.keys()}


def merge_parts(shard: RunShard, store: os.PathLike) -> int:
    """Rank 0, after the barrier: the job's merged store from its parts (and an earlier merged store of
    the same run); the parts are removed once it is in place.  Returns its number of records."""
    job = shard.job_store(store)
    parts = [RunShard(shard.shard_id, shard.num_shards, r, shard.world_size).part_store(store)
             for r in range(shard.world_size)]
    absent = [str(p) for p in parts if not (p / "meta.json").exists()]
    if absent:
        raise StoreError(f"cannot merge the parts of {job}: {', '.join(absent)} missing (did a process fail?)")
    sources = ([job] if (job / "meta.json").exists() else []) + parts
    n = merge_stores(sources, job, meta_update=shard.job_meta(), replace=True)
    for part in parts:
        shutil.rmtree(part)
    logger.info(f"merged the {shard.world_size} process stores into {job} ({n} records)")
    return n


def finish_job(shard: RunShard, store: os.PathLike) -> None:
    """End of this process's data: wait for the job's other processes, then rank 0 merges their stores."""
    if not shard.distributed:
        return
    import torch.distributed as dist

    join_process_group(shard)
    logger.info(f"process {shard.rank} of {shard.world_size} finished its data; waiting for the others")
    dist.barrier()
    try:
        if shard.rank == 0:
            merge_parts(shard, store)
        dist.barrier()  # every process exits after the merge: torchrun's exit status covers it
    finally:
        dist.destroy_process_group()


class EndOfDataIterator:
    """fairseq-generate's batch iterator (a ``CountingIterator``), calling ``on_end(batches)`` once when
    the loop asks for a batch after the last one: the process has then handled all of its data
    (``batches``: how many held utterances; a shard beyond the number of batches gets one empty
    placeholder).  An interrupted loop never calls it."""

    def __init__(self, iterator, on_end: Callable[[int], None]):
        self._iterator = iterator
        self._on_end: Optional[Callable[[int], None]] = on_end
        self.batches_with_data = 0

    def __iter__(self):
        return self

    def __next__(self):
        try:
            batch = next(self._iterator)
        except StopIteration:
            on_end, self._on_end = self._on_end, None
            if on_end is not None:
                on_end(self.batches_with_data)
            raise
        if isinstance(batch, dict) and "net_input" in batch:
            self.batches_with_data += 1
        return batch

    def __len__(self) -> int:
        return len(self._iterator)

    def __getattr__(self, name: str):  # n, total, has_next, skip, take ...
        return getattr(self._iterator, name)


class EndOfDataEpochIterator:
    """An ``EpochBatchIterator`` whose epoch iterators are :class:`EndOfDataIterator` s.  ``wrapped``
    is fairseq's iterator itself, to read batches outside a generation loop (read ahead, the end of
    the data is not the end of the run)."""

    def __init__(self, epoch_iterator, on_end: Callable[[int], None]):
        self.wrapped = epoch_iterator
        self._on_end = on_end

    def next_epoch_itr(self, *args, **kwargs) -> EndOfDataIterator:
        return EndOfDataIterator(self.wrapped.next_epoch_itr(*args, **kwargs), self._on_end)

    def __len__(self) -> int:
        return len(self.wrapped)

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)


def option_int(cfg, name: str, default: int) -> int:
    """An int task option that may be an interpolation of the global config (``${dataset.num_shards}``),
    unresolvable when the task is built outside fairseq-generate: then ``default``."""
    try:
        value = getattr(cfg, name, default)
        return default if value is None else int(value)
    except Exception:  # omegaconf's interpolation errors
        return default


class ShardedStoreRun:
    """Task mixin: a fairseq-generate run that writes one store, sharded by :class:`RunShard`.

    The task provides :meth:`writes_store` (is this run one), :meth:`store_option` (the store path the
    user gave), :meth:`open_run_store` (open or resume the process's store) and
    :meth:`close_run_store`, and calls :meth:`remember_generation` from its ``build_generator``.  The mixin shards the batches, and at the end of the data opens the
    store (so an empty shard still leaves an empty store of its run), closes it and, under torchrun,
    merges the processes' stores.
    """

    run_shard: RunShard = RunShard()

    def writes_store(self) -> bool:
        raise NotImplementedError

    def store_option(self) -> str:
        raise NotImplementedError

    def open_run_store(self, models, generator) -> None:
        raise NotImplementedError

    def close_run_store(self) -> None:
        raise NotImplementedError

    def process_store_path(self) -> Path:
        return self.run_shard.part_store(self.store_option())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.writes_store():
            bind_local_device()  # at task construction: before fairseq moves the model to the GPU

    def get_batch_iterator(self, dataset, *args, num_shards=1, shard_id=0, **kwargs):
        if not self.writes_store():
            return super().get_batch_iterator(dataset, *args, num_shards=num_shards, shard_id=shard_id, **kwargs)
        cfg = getattr(self, "cfg", None) or getattr(self, "args", None)
        shard = RunShard.from_options(option_int(cfg, "num_shards", 1), option_int(cfg, "shard_id", 0))
        if num_shards > 1 and (num_shards, shard_id) != (shard.count, shard.index):
            logger.info(f"ignoring fairseq-generate's distributed shard {shard_id} of {num_shards} (without a "
                        "distributed launch it is the same in every process): --num-shards/--shard-id and "
                        "torchrun's RANK/WORLD_SIZE split the data")
        self.run_shard = shard
        join_process_group(shard)
        if shard.count > 1:
            logger.info(f"this process takes {shard.describe()} (data shard {shard.index} of {shard.count}) "
                        f"and writes {self.process_store_path()}")
        epoch_iterator = super().get_batch_iterator(dataset, *args, num_shards=shard.count, shard_id=shard.index,
                                                    **kwargs)
        return EndOfDataEpochIterator(epoch_iterator, self._end_of_data)

    def remember_generation(self, models, generator) -> None:
        """The task's ``build_generator`` hands over the run's models and generator: at the end of the
        data the store of a process that got no batch is still opened with them."""
        self._run_models, self._run_generator = list(models), generator

    def _end_of_data(self, batches_with_data: int) -> None:
        models, generator = getattr(self, "_run_models", None), getattr(self, "_run_generator", None)
        if models is not None:
            self.open_run_store(models, generator)  # a shard without data still leaves its (empty) store
        self.close_run_store()
        finish_job(self.run_shard, self.store_option())
        if batches_with_data == 0:
            # fairseq-generate's closing summary divides by the time spent generating, zero here: its
            # ZeroDivisionError would turn a finished (empty) shard into a failed job.
            logger.info(f"{self.run_shard.describe()} holds no utterance: {self.process_store_path()} is an empty "
                        "store of this run; done")
            raise SystemExit(0)
