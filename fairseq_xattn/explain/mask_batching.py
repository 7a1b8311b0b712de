"""How many masked copies go through the model per forward pass.

Many masks per forward amortise the per-call overhead (measured 1.8x for full passes, 3.7x for
decoder-only passes on the demo-size model on CPU), but memory grows with the batch in two ways:

* activations: ``masks x frames`` (frames: T for the input target, T' for the encoder target);
* output distributions: ``masks x I x V`` float32 (tokens x vocabulary).  The decoder's logits, their
  log-softmax and the scorer's temporaries are each a tensor of that size; with a 16k vocabulary and
  60 tokens, 256 masks would be ~1 GB per copy.

The automatic size fills both budgets (``budget_mask_frames`` cells and ``budget_logits`` elements),
is capped per target, and is a multiple of the mask block when large enough.  The scorer works in
chunks of its own (:mod:`.scorers`), so a batch forced larger by the user adds no scorer copies.

On a CUDA device the size is also capped by the device's free memory (:func:`device_free_bytes`,
queried by the caller: :func:`auto_mask_batch_size` stays a pure function of its arguments), with a
coarse estimate of the bytes one masked copy needs (:func:`bytes_per_mask`).  On the CPU the budgets
alone decide, so a run's batch sizes, hence its float rounding, do not depend on the machine's load.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .masks import BLOCK

#: Upper bound of the automatic size per target (beyond it no speed-up was measured).
AUTO_CAP = {"input": 64, "encoder": 256}

#: Default ``masks x frames`` budget (``--explain-budget``).
BUDGET_MASK_FRAMES = 32768
#: Default ``masks x tokens x vocabulary`` budget (``--explain-budget-logits``): 2^25 float32 = 128 MB per
#: copy of the N x I x V log-probabilities.
BUDGET_LOGITS = 1 << 25


#: Activations of one masked copy, in D-wide float32 tensors per frame and layer counted by
#: :func:`bytes_per_mask` (inference, no autograd).  Measured on the CPU (peak resident memory per mask,
#: ``scripts/bench/bench_mask_memory.py``): input target 0.6-0.9 (demo model), 1.5 (tiny test model);
#: encoder target 4.0-4.4 (demo), 4.6 (tiny).  About twice that, for the GPU's workspaces and kernels.
ACTIVATION_WIDTHS = {"input": 3, "encoder": 10}
#: Copies of the ``I x V`` float32 output per mask: logits, their log-softmax, the float32 cast.
LOGIT_COPIES = 3
#: Share of the free device memory the masked copies may fill (the estimate is coarse; the allocator
#: fragments).
FREE_MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class ModelSize:
    """What the activation estimate needs of a model: its width D and its layer counts."""

    model_dim: int
    encoder_layers: int
    decoder_layers: int


#: When the adapter does not say (``model_size()``): a Transformer-base-like model.
DEFAULT_MODEL_SIZE = ModelSize(model_dim=512, encoder_layers=12, decoder_layers=6)


def bytes_per_mask(target: str, n_frames: int, n_tokens: int, vocab_size: int,
                   model: ModelSize = DEFAULT_MODEL_SIZE) -> int:
    """Estimated device memory (bytes) one masked copy needs: float32 activations ``frames x D x layers
    x ACTIVATION_WIDTHS[target]`` (input target: encoder and decoder layers over T frames; encoder
    target: the decoder layers, whose cross-attention keys and values span the T' states) plus
    ``LOGIT_COPIES`` float32 ``I x V`` outputs."""
    layers = model.decoder_layers + (model.encoder_layers if target == "input" else 0)
    widths = ACTIVATION_WIDTHS.get(target, max(ACTIVATION_WIDTHS.values()))
    activations = 4 * widths * max(1, n_frames) * model.model_dim * max(1, layers)
    return activations + LOGIT_COPIES * 4 * n_tokens * vocab_size


def auto_mask_batch_size(target: str, n_frames: int, budget_mask_frames: int = BUDGET_MASK_FRAMES,
                         n_tokens: int = 1, vocab_size: int = 0, budget_logits: int = BUDGET_LOGITS,
                         free_bytes: Optional[int] = None, model: ModelSize = DEFAULT_MODEL_SIZE) -> int:
    """Masks per forward for an utterance of ``n_frames`` (T or T') frames and ``n_tokens`` (I) output
    tokens over ``vocab_size`` (V) symbols (0: the output size is not counted).  ``free_bytes``: free
    memory of the model's device (None: not capped by it), filled up to ``FREE_MEMORY_SHARE`` with
    :func:`bytes_per_mask` of ``model`` per mask."""
    cap = AUTO_CAP.get(target, 64)
    size = min(cap, budget_mask_frames // max(1, n_frames))
    if vocab_size > 0:
        size = min(size, budget_logits // max(1, n_tokens * vocab_size))
    if free_bytes is not None:
        size = min(size, int(max(0, free_bytes) * FREE_MEMORY_SHARE) //
                   bytes_per_mask(target, n_frames, n_tokens, vocab_size, model))
    size = max(1, size)
    if size >= BLOCK:
        size -= size % BLOCK
    return size


def device_free_bytes(device) -> Optional[int]:
    """Free memory of a CUDA ``device`` for new tensors (the driver's free memory plus what PyTorch's
    caching allocator holds unused); None for any other device (the CPU keeps the fixed budgets)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
