"""fairseq's ``EnsembleModel`` that keeps every decoding step's per-head cross-attention.

How beam search stays correct without copying fairseq's search loop: at each step
:meth:`forward_decoder` stores the step's attention (``B' x L x H x S``, one row per live beam
item) in a list, and returns to ``SequenceGenerator`` as "attention" only each row's index
(``B' x 1``).  ``SequenceGenerator`` reorders, prunes and slices that tiny buffer together with the
beams, so a finished hypothesis comes out with ``hypo["attention"] = 1 x I`` row indices: at
output position i, its history was row ``attention[0, i]`` of step i.  Gathering those rows gives
the attention of the hypothesis' own history, for any search strategy, at a cost of one
``B' x 1`` float column per step instead of fairseq's ``B' x S x max_len`` buffer that is
re-indexed at every step.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Dict, List, Optional

import torch
from fairseq.sequence_generator import EnsembleModel
from torch import Tensor

from ..models.encoder_output import encoder_output_lengths
from .capture import CrossAttentionCapture


class RecordingEnsembleModel(EnsembleModel):
    """An ensemble whose decoder steps are recorded; attention of several models is averaged."""

    def __init__(self, models):
        super().__init__(models)
        self.captures = [CrossAttentionCapture(m.decoder) for m in self.models]
        shapes = {(c.num_layers, c.num_heads) for c in self.captures}
        if len(shapes) > 1:
            raise ValueError(
                "cannot average cross-attention over an ensemble whose models differ in decoder "
                f"layers x heads: {sorted(shapes)}"
            )
        self.num_layers, self.num_heads = shapes.pop()
        self.steps: List[Tensor] = []  # step i -> B'_i x L x H x S
        self.encoder_lengths: Optional[Tensor] = None  # B, set by forward_encoder
        self._active: Optional[ExitStack] = None

    # -- recording session (one batch) -------------------------------------------------------------
    def start(self) -> None:
        """Install the hooks and forget the previous batch."""
        self.reset()
        self._active = ExitStack()
        for capture in self.captures:
            self._active.enter_context(capture)

    def stop(self) -> None:
        """Remove the hooks (the recorded steps stay until :meth:`reset`)."""
        if self._active is not None:
            self._active.close()
            self._active = None

    def reset(self) -> None:
        self.steps = []
        self.encoder_lengths = None

    # -- EnsembleModel ---------------------------------------------------------------------------------
    def forward_encoder(self, net_input: Dict[str, Tensor]):
        encoder_outs = super().forward_encoder(net_input)
        self.encoder_lengths = encoder_output_lengths(encoder_outs[0])
        return encoder_outs

    def forward_decoder(self, tokens, encoder_outs, incremental_states, temperature: float = 1.0):
        if self._active is None:
            raise RuntimeError("RecordingEnsembleModel.forward_decoder called outside start()/stop()")
        lprobs, _ = super().forward_decoder(tokens, encoder_outs, incremental_states, temperature)
        step = self.captures[0].pop()[:, :, :, -1]  # B' x L x H x S (last query position)
        for capture in self.captures[1:]:
            step = step + capture.pop()[:, :, :, -1]
        if len(self.captures) > 1:
            step = step / len(self.captures)
        self.steps.append(step)
        row_ids = torch.arange(step.size(0), device=lprobs.device, dtype=torch.float32).unsqueeze(1)
        return lprobs, row_ids

    def gather(self, row_ids: List[Tensor]) -> List[Tensor]:
        """Attention of hypotheses from their per-step row indices (each ``I_k``): ``L x H x I_k x S`` each.

        Works step by step over all hypotheses at once (a few tensor ops per step, no Python loop over
        tokens, no copy of the whole history: only the rows that finished hypotheses use).
        """
        if not row_ids:
            return []
        lengths = torch.tensor([len(r) for r in row_ids])
        if int(lengths.max()) > len(self.steps):
            raise RuntimeError(f"a hypothesis has {int(lengths.max())} steps but only {len(self.steps)} were recorded")
        device = self.steps[0].device
        rows = torch.nn.utils.rnn.pad_sequence([r.round().long() for r in row_ids], batch_first=True).to(device)
        lengths = lengths.to(device)
        starts = lengths.cumsum(0) - lengths  # first output row of each hypothesis
        first = self.steps[0]
        out = first.new_empty((int(lengths.sum()),) + tuple(first.shape[1:]))  # (sum_k I_k) x L x H x S
        for i in range(int(lengths.max())):
            alive = (lengths > i).nonzero().squeeze(1)
            out.index_copy_(0, starts[alive] + i, self.steps[i].index_select(0, rows[alive, i]))
        return [o.permute(1, 2, 0, 3) for o in out.split(lengths.tolist(), dim=0)]
