"""``ctc_multi_loss``: ce_weight * label-smoothed CE + ctc_src_weight * CTC(intermediate encoder layer,
source transcript) + ctc_tgt_weight * CTC(final encoder output, target text)  (paper Appendix B.2).

Every term is a sum over the batch (tokens for CE, utterances for CTC), like fairseq's ``ctc`` and
label-smoothed criteria, and the total is normalised by ``sample_size`` (target tokens, or sentences
with --sentence-avg), so the logged terms add up to the logged loss.  CTC blank = the dictionary's
``bos()`` (see :class:`fairseq_xattn.models.ctc_head.CtcHead`).
"""

import math
from dataclasses import dataclass, field
from typing import Iterable, Set

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.logging import metrics

from ..language_tags import is_lang_tag



@dataclass
class CtcMultiLossConfig(LabelSmoothedCrossEntropyCriterionConfig):
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of the CE term"})
    ce_weight: float = field(default=5.0, metadata={"help": "weight of the label-smoothed CE (0 skips it)"})
    ctc_src_weight: float = field(
        default=1.0, metadata={"help": "weight of CTC on the intermediate layer vs. the source transcript (0 skips it)"}
    )
    ctc_tgt_weight: float = field(
        default=2.0, metadata={"help": "weight of CTC on the final encoder output vs. the target text (0 skips it)"}
    )


def language_tag_indices(task, dictionary) -> Set[int]:
    """Indices of language-tag tokens: ``task.lang_tag_indices()`` when the task provides it,
    otherwise the dictionary symbols that look like ``<lang:xx>``."""
    provider = getattr(task, "lang_tag_indices", None)
    if callable(provider):
        return {int(i) for i in provider()}
    return {i for i, symbol in enumerate(dictionary.symbols) if is_lang_tag(symbol)}


def pack_ctc_targets(tokens: torch.Tensor, drop: Iterable[int]):
    """``B x S`` padded ids -> (concatenated ids ``sum(lengths)``, lengths ``B``) without ``drop`` ids."""
    drop = torch.tensor(sorted(set(drop)), dtype=tokens.dtype, device=tokens.device)
    keep = ~torch.isin(tokens, drop)
    return tokens[keep], keep.sum(dim=1)


@register_criterion("ctc_multi_loss", dataclass=CtcMultiLossConfig)
class CtcMultiLossCriterion(LabelSmoothedCrossEntropyCriterion):
    def __init__(
        self,
        task,
        sentence_avg,
        label_smoothing,
        ignore_prefix_size=0,
        report_accuracy=False,
        ce_weight=5.0,
        ctc_src_weight=1.0,
        ctc_tgt_weight=2.0,
    ):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy)
        for name, value in (("--ce-weight", ce_weight), ("--ctc-src-weight", ctc_src_weight),
                            ("--ctc-tgt-weight", ctc_tgt_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.ce_weight = ce_weight
        self.ctc_src_weight = ctc_src_weight
        self.ctc_tgt_weight = ctc_tgt_weight
        tgt_dict = task.target_dictionary
        src_dict = getattr(task, "source_dictionary", None) or tgt_dict
        self.tgt_dict, self.src_dict = tgt_dict, src_dict
        # Tokens that are never CTC targets: padding, BOS (= blank), EOS and language tags.
        self.tgt_non_targets = {tgt_dict.pad(), tgt_dict.bos(), tgt_dict.eos()} | language_tag_indices(task, tgt_dict)
        self.src_non_targets = {src_dict.pad(), src_dict.bos(), src_dict.eos()}

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"], run_decoder=self.ce_weight > 0)
        zero = next(model.parameters()).new_zeros(())
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }

        ce_loss, nll_loss = zero, zero
        if self.ce_weight > 0:
            ce_loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
            if self.report_accuracy:
                n_correct, total = self.compute_accuracy(model, net_output, sample)
                logging_output["n_correct"] = utils.item(n_correct.data)
                logging_output["total"] = utils.item(total.data)

        ctc_src_loss = zero
        if self.ctc_src_weight > 0:
            ctc_src_loss = self.ctc_src_loss(model, net_output, sample)

        ctc_tgt_loss = zero
        if self.ctc_tgt_weight > 0:
            targets, lengths = pack_ctc_targets(sample["target"], self.tgt_non_targets)
            ctc_tgt_loss = self.ctc_loss(model, net_output, "tgt", targets, lengths, self.tgt_dict.bos())

        loss = self.ce_weight * ce_loss + self.ctc_src_weight * ctc_src_loss + self.ctc_tgt_weight * ctc_tgt_loss
        logging_output.update(
            loss=loss.data,
            ce_loss=ce_loss.data,
            nll_loss=nll_loss.data,
            ctc_src_loss=ctc_src_loss.data,
            ctc_tgt_loss=ctc_tgt_loss.data,
        )
        return loss, sample_size, logging_output

    def ctc_src_loss(self, model, net_output, sample) -> torch.Tensor:
        if sample.get("ctc_src") is None:
            ids = sample.get("utt_id") or sample.get("id")
            ids = list(ids.tolist() if torch.is_tensor(ids) else ids) if ids is not None else []
            shown = ", ".join(str(i) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise ValueError(
                f"ctc_multi_loss: --ctc-src-weight is {self.ctc_src_weight} but the batch with utterances "
                f"[{shown}] has no source transcript (sample['ctc_src']): give the manifest a src_text "
                "column or set --ctc-src-weight 0"
            )
        targets, lengths = pack_ctc_targets(sample["ctc_src"], self.src_non_targets)
        return self.ctc_loss(model, net_output, "src", targets, lengths, self.src_dict.bos())

    @staticmethod
    def ctc_loss(model, net_output, which, targets, target_lengths, blank) -> torch.Tensor:
        """Summed CTC loss of one head; an impossible alignment (target longer than T') counts 0."""
        lprobs, input_lengths = model.get_ctc_output(net_output, which)  # T' x B x V
        with torch.backends.cudnn.flags(enabled=False):  # cudnn's CTC needs blank 0 and int32 inputs
            return F.ctc_loss(
                lprobs, targets, input_lengths, target_lengths,
                blank=blank, reduction="sum", zero_infinity=True,
            )

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        if sample_size == 0:
            return
        for key in ("ce_loss", "ctc_src_loss", "ctc_tgt_loss"):
            total = sum(log.get(key, 0) for log in logging_outputs)
            metrics.log_scalar(key, total / sample_size / math.log(2), sample_size, round=3)
