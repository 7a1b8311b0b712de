"""Shims that let stock fairseq 0.12 (the ``fairseq-fixed`` distribution) run on torch >= 2.6 and
numpy 2 without patching its files.  ``apply()`` runs once when ``fairseq_xattn`` is imported.

Each shim is small, idempotent and says why it exists.
"""
from __future__ import annotations

import argparse
import collections
import functools
import logging

import numpy as np

logger = logging.getLogger(__name__)

_APPLIED = False


def fairseq_checkpoint_safe_globals() -> list:
    """Exactly the non-tensor types that fairseq-train / fairseq-hydra-train pickle in a checkpoint.

    ``cfg.model`` (and ``args`` in older checkpoints) is an argparse.Namespace for argparse-only
    models; the metrics state in ``extra_state`` holds numpy scalars.
    """
    safe = [argparse.Namespace, collections.OrderedDict, collections.defaultdict, set]
    # numpy scalars pickle as numpy.core.multiarray.scalar(dtype, bytes) with a dtype instance.
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    safe += [scalar, np.dtype]
    # numpy >= 1.25 pickles dtypes by their class (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        safe += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return safe


def _allow_fairseq_checkpoints() -> None:
    # torch >= 2.6 loads with weights_only=True: allow-list fairseq's pickled types, keep the default.
    import torch.serialization as ts

    if hasattr(ts, "add_safe_globals"):
        ts.add_safe_globals(fairseq_checkpoint_safe_globals())


def load_checkpoint_state(path, mmap: bool = False) -> dict:
    """``torch.load`` of a fairseq checkpoint onto the CPU, safely wherever torch allows it.

    With ``add_safe_globals`` (torch >= 2.4) the load is ``weights_only`` with fairseq's types
    allow-listed; older torch (>= 2.1, which setup.py admits) cannot allow-list, and its default
    (full unpickling, what fairseq itself does there) is used.
    """
    import torch
    import torch.serialization as ts

    apply()
    kwargs = {"weights_only": True} if hasattr(ts, "add_safe_globals") else {}
    return torch.load(path, map_location="cpu", mmap=mmap, **kwargs)


def unreadable_checkpoint(path, error: BaseException, flag: str = "checkpoint") -> "InputDataError":
    """The one-line user error for a checkpoint file torch cannot read (truncated, another kind of file)."""
    from .errors import InputDataError

    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return InputDataError(f"{flag} {path}: not a readable fairseq checkpoint (truncated or another kind of file: "
                          f"{type(error).__name__}: {first_line})")


def _raised_while_unpickling(error: BaseException) -> bool:
    """Whether ``error`` was raised by torch reading a file (not by fairseq using what it read)."""
    import traceback

    return any(frame.filename.replace("\\", "/").endswith(("torch/serialization.py", "torch/_weights_only_unpickler.py"))
               for frame in traceback.extract_tb(error.__traceback__))


def _checkpoints_fail_in_one_line() -> None:
    """fairseq-generate --path with a missing, truncated or non-checkpoint file: a user error naming the file
    (fairseq's own errors are an OSError traceback, ``KeyError: 101`` or ``PytorchStreamReader failed``)."""
    from fairseq import checkpoint_utils

    from .errors import MissingFileError

    load = checkpoint_utils.load_checkpoint_to_cpu
    if not getattr(load, "__xattn_user_errors__", False):
        @functools.wraps(load)
        def load_checkpoint_to_cpu(path, *args, **kwargs):
            try:
                return load(path, *args, **kwargs)
            except Exception as e:
                if _raised_while_unpickling(e):
                    raise unreadable_checkpoint(path, e) from None
                raise

        load_checkpoint_to_cpu.__xattn_user_errors__ = True
        checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu

    ensemble = checkpoint_utils.load_model_ensemble_and_task
    if not getattr(ensemble, "__xattn_user_errors__", False):
        @functools.wraps(ensemble)
        def load_model_ensemble_and_task(filenames, *args, **kwargs):
            import os

            for filename in filenames:
                if "://" not in str(filename) and not os.path.exists(filename):
                    raise MissingFileError(f"--path {filename}: no such checkpoint file")
            return ensemble(filenames, *args, **kwargs)

        load_model_ensemble_and_task.__xattn_user_errors__ = True
        checkpoint_utils.load_model_ensemble_and_task = load_model_ensemble_and_task


def _numpy_aliases() -> None:
    # fairseq.data.data_utils (compute_mask_indices, used by SpecAugment-like masking paths) still
    # says np.int, removed in numpy 1.24; restore it as the builtin it always was.
    for name, value in (("int", int), ("float", float), ("bool", bool)):
        if name not in np.__dict__:
            setattr(np, name, value)


def batch_by_size_keep_all(original):
    """Wrap fairseq's ``batch_by_size`` so that no index is ever dropped.

    fairseq-fixed's ``data_utils.batch_by_size`` ends with ``if bsz_mult > 1 and len(b[-1]) %
    bsz_mult != 0: b = b[:-1]``: the remainder batch is silently discarded when
    ``required_batch_size_multiple`` > 1, losing utterances in training, validation and
    fairseq-generate (the stock 0.12.2 code keeps it).  The compiled batching itself is correct, so we call it and put back the
    remainder as a final batch.
    """

    @functools.wraps(original)
    def batch_by_size(indices, num_tokens_fn, num_tokens_vec=None, max_tokens=None,
                      max_sentences=None, required_batch_size_multiple=1, fixed_shapes=None):
        batches = original(indices, num_tokens_fn, num_tokens_vec=num_tokens_vec,
                           max_tokens=max_tokens, max_sentences=max_sentences,
                           required_batch_size_multiple=required_batch_size_multiple,
                           fixed_shapes=fixed_shapes)
        if fixed_shapes is not None or required_batch_size_multiple <= 1:
            return batches
        indices = np.asarray(indices, dtype=np.int64) if not isinstance(indices, np.ndarray) else indices
        n_batched = sum(len(b) for b in batches)
        if n_batched == len(indices):
            return batches
        # The dropped batch is always the tail of ``indices`` (batches are contiguous slices).
        tail = np.asarray(indices[n_batched:], dtype=np.int64)
        return list(batches) + [tail]

    batch_by_size.__xattn_keeps_all__ = True
    return batch_by_size


def _batching_keeps_every_sample() -> None:
    from fairseq.data import data_utils

    if not getattr(data_utils.batch_by_size, "__xattn_keeps_all__", False):
        data_utils.batch_by_size = batch_by_size_keep_all(data_utils.batch_by_size)


def apply() -> None:
    """Apply every shim (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _allow_fairseq_checkpoints()
    _numpy_aliases()
    _batching_keeps_every_sample()
    _checkpoints_fail_in_one_line()
    _APPLIED = True
