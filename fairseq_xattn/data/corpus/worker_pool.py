"""Synthesis worker processes that do not import torch.

Every espeak synthesis runs in a process forked for it (see :mod:`.espeak`), and forking costs in
proportion to the parent's memory: ~30 ms from a process that has imported fairseq and torch,
~10 ms from a lean one.  So workers are started as plain interpreters running this file; they
import only the corpus modules (numpy, soundfile, soxr and the espeak library): the package root
imports neither fairseq nor torch.

Protocol on the worker's stdin/stdout: 8-byte little-endian length + pickle, one job and one
result at a time; EOF ends the worker.
"""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, List

_PACKAGE_PARENT = Path(__file__).resolve().parents[3]  # the folder holding fairseq_xattn/


def _send(stream, obj) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def _recv(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


class LeanWorkerPool:
    """``map(function_name, jobs)``: run ``fairseq_xattn.data.corpus.build.<function_name>`` on
    each job in ``workers`` lean processes; results come back in job order."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._procs: List[subprocess.Popen] = []
        self._free: List[subprocess.Popen] = []
        self._lock = threading.Lock()

    def __enter__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
        for _ in range(self.workers):
            p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(_PACKAGE_PARENT)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            self._procs.append(p)
            self._free.append(p)
        return self

    def __exit__(self, *exc):
        for p in self._procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in self._procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        return False

    def _run_one(self, function_name: str, job):
        with self._lock:
            proc = self._free.pop()
        try:
            _send(proc.stdin, (function_name, job))
            try:
                status, value = _recv(proc.stdout)
            except EOFError:
                raise RuntimeError(f"synthesis worker {proc.pid} died (exit code {proc.poll()}) on job {job!r}") from None
        finally:
            with self._lock:
                self._free.append(proc)
        if status != "ok":
            raise RuntimeError(f"synthesis job failed: {value}")
        return value

    def map(self, function_name: str, jobs: Iterable) -> Iterator:
        with ThreadPoolExecutor(self.workers) as ex:
            yield from ex.map(lambda j: self._run_one(function_name, j), jobs)


def _serve() -> None:  # pragma: no cover - runs in the worker process
    sys.path.insert(0, sys.argv[1])  # the folder that holds the package (it may not be installed)
    from fairseq_xattn.data.corpus import build

    build._init_worker()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            function_name, job = _recv(stdin)
        except EOFError:
            return
        try:
            result = ("ok", getattr(build, function_name)(job))
        except Exception as e:  # report to the parent, keep serving
            result = ("error", f"{type(e).__name__}: {e}")
        _send(stdout, result)


if __name__ == "__main__":
    _serve()
