"""Mixed precision of the masked forward passes (``--explain-autocast``, registry ``AUTOCAST_DTYPES``).

With ``bf16`` or ``fp16`` the masked copies run under ``torch.autocast(device_type=<the model's device
type>, dtype=...)``: matrix products and convolutions in the low-precision type, which is faster where
the hardware has it (GPUs; CPUs with AMX / AVX512-BF16).  Everything a map is made of besides those
passes stays float32: the reference (unmasked) forward runs with autocast explicitly off, the
perturbed log-probabilities are cast to float32 before scoring, and the scores are accumulated in
float64 (:mod:`.accumulator`).  The maps change by the low precision's rounding (docs/explain.md gives
the measured agreement), so the setting is recorded in the store's meta like the other map-defining
settings.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import ContextManager, Optional

import torch

from ..errors import OptionError
from ..registry import Registry

#: ``--explain-autocast`` value -> name of the torch dtype of the masked passes (None: no autocast).
AUTOCAST_DTYPES: "Registry[Optional[str]]" = Registry("--explain-autocast value")
NO_AUTOCAST = "none"
for _name, _dtype in ((NO_AUTOCAST, None), ("bf16", "bfloat16"), ("fp16", "float16")):
    AUTOCAST_DTYPES.register(_name)(_dtype)


def masked_pass_context(name: str, device: torch.device) -> ContextManager:
    """The context the masked forward passes on ``device`` run in: nothing for ``none``, else
    ``torch.autocast``.  A device that cannot autocast to the dtype is an :class:`OptionError` naming
    the flag and the device (torch itself would only warn and run in float32)."""
    dtype_name = AUTOCAST_DTYPES.get(name)
    if dtype_name is None:
        return contextlib.nullcontext()
    device = torch.device(device)
    where = f"--explain-autocast {name} on device {device}"
    if not torch.amp.is_autocast_available(device.type):
        raise OptionError(f"{where}: torch has no autocast for device type {device.type!r}; "
                          f"use --explain-autocast {NO_AUTOCAST}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            context = torch.autocast(device_type=device.type, dtype=getattr(torch, dtype_name))
        except RuntimeError as error:  # e.g. CUDA bf16 on a GPU without it
            raise OptionError(f"{where}: not supported ({error}); use another --explain-autocast value") from None
    disabled = [str(w.message).splitlines()[0] for w in caught if "autocast" in str(w.message).lower()]
    if disabled:  # torch disables autocast with a warning for dtypes the device lacks
        raise OptionError(f"{where}: not supported ({disabled[0]}); use another --explain-autocast value")
    return context


def reference_pass_context(name: str, device: torch.device) -> ContextManager:
    """The context of the reference (unmasked) forward: autocast off whenever ``name`` turns it on for
    the masked passes (also against an autocast region of the caller), so the reference is float32."""
    if AUTOCAST_DTYPES.get(name) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, enabled=False)
