"""ctc_multi_loss: the loss is 5 CE + 1 CTC(src) + 2 CTC(tgt) computed by hand; gradients reach both
CTC heads; zero weights skip branches; language tags are not CTC targets; bad input is named."""
import math

import pytest
import torch
from fairseq.logging import metrics

from tests.models.tiny_model import FakeTask, build_small_model, make_dictionary
from fairseq_xattn.criterions import CtcMultiLossCriterion


def ctc_nll_by_hand(lprobs: torch.Tensor, target, blank: int) -> float:
    """-log p(target | x) by the CTC forward (alpha) recursion; lprobs ``T x V``."""
    ext = [blank]
    for y in target:
        ext += [y, blank]
    alpha = [-math.inf] * len(ext)
    alpha[0] = float(lprobs[0, ext[0]])
    if len(ext) > 1:
        alpha[1] = float(lprobs[0, ext[1]])
    for t in range(1, lprobs.size(0)):
        new = []
        for s, label in enumerate(ext):
            terms = [alpha[s]]
            if s >= 1:
                terms.append(alpha[s - 1])
            if s >= 2 and label != blank and label != ext[s - 2]:
                terms.append(alpha[s - 2])
            m = max(terms)
            acc = -math.inf if m == -math.inf else m + math.log(sum(math.exp(v - m) for v in terms))
            new.append(acc + float(lprobs[t, label]))
        alpha = new
    ends = alpha[-2:] if len(ext) > 1 else alpha[-1:]
    m = max(ends)
    return -(m + math.log(sum(math.exp(v - m) for v in ends)))


def make_setup(source_dictionary=True, lang_tags=None, **model_overrides):
    tgt = make_dictionary(20, extra=["<lang:en>", "<lang:it>"])
    src = make_dictionary(15) if source_dictionary else None
    task = FakeTask(tgt, src, lang_tags=lang_tags)
    model = build_small_model(task, **model_overrides).eval()  # eval: no dropout, deterministic
    en = tgt.index("<lang:en>")
    eos, pad = tgt.eos(), tgt.pad()
    target = torch.tensor([[en, 7, 8, 9, eos], [en, 10, 11, eos, pad]])
    prev = torch.tensor([[eos, en, 7, 8, 9], [eos, en, 10, 11, pad]])
    torch.manual_seed(5)
    sample = {
        "id": torch.tensor([0, 1]),
        "utt_id": ["utt_a", "utt_b"],
        "net_input": {"src_tokens": torch.randn(2, 40, 20), "src_lengths": torch.tensor([40, 28]),
                      "prev_output_tokens": prev},
        "target": target,
        "target_lengths": torch.tensor([5, 4]),
        "ctc_src": torch.tensor([[5, 6, 7], [8, 9, 1]]),  # padded with the source dictionary's pad (1)
        "ctc_src_lengths": torch.tensor([3, 2]),
        "ntokens": 9,
        "nsentences": 2,
    }
    return task, model, sample


def criterion_for(task, **kwargs):
    args = dict(sentence_avg=False, label_smoothing=0.1, ce_weight=5.0, ctc_src_weight=1.0, ctc_tgt_weight=2.0)
    args.update(kwargs)
    return CtcMultiLossCriterion(task, **args)


def test_loss_equals_hand_computed_combination_of_its_three_terms():
    torch.set_num_threads(1)
    task, model, sample = make_setup()
    criterion = criterion_for(task)
    loss, sample_size, log = criterion(model, sample)
    assert sample_size == 9

    with torch.no_grad():
        net = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net, log_probs=True)  # B x I x V
        v = lprobs.size(-1)
        eps, eps_i = 0.1, 0.1 / (v - 1)
        ce = nll = 0.0
        for b in range(2):
            for i, y in enumerate(sample["target"][b].tolist()):
                if y == task.target_dictionary.pad():
                    continue
                nll += -float(lprobs[b, i, y])
                ce += -(1 - eps - eps_i) * float(lprobs[b, i, y]) - eps_i * float(lprobs[b, i].sum())
        src_lp, src_len = model.get_ctc_output(net, "src")
        tgt_lp, tgt_len = model.get_ctc_output(net, "tgt")
        assert src_lp.size(-1) == 15 and tgt_lp.size(-1) == 20  # source vs. target dictionaries
        assert src_len.tolist() == tgt_len.tolist() == [10, 7]
        ctc_src = ctc_nll_by_hand(src_lp[:10, 0], [5, 6, 7], 0) + ctc_nll_by_hand(src_lp[:7, 1], [8, 9], 0)
        # Target CTC: no language tag, no EOS.
        ctc_tgt = ctc_nll_by_hand(tgt_lp[:10, 0], [7, 8, 9], 0) + ctc_nll_by_hand(tgt_lp[:7, 1], [10, 11], 0)

    assert float(log["ce_loss"]) == pytest.approx(ce, rel=1e-5)
    assert float(log["nll_loss"]) == pytest.approx(nll, rel=1e-5)
    assert float(log["ctc_src_loss"]) == pytest.approx(ctc_src, rel=1e-5)
    assert float(log["ctc_tgt_loss"]) == pytest.approx(ctc_tgt, rel=1e-5)
    assert float(loss) == pytest.approx(5.0 * ce + 1.0 * ctc_src + 2.0 * ctc_tgt, rel=1e-5)


def test_gradients_reach_both_ctc_heads_and_only_through_their_branches():
    task, model, sample = make_setup()
    loss, _, _ = criterion_for(task)(model.train(), sample)
    loss.backward()
    for head in (model.ctc_src_head, model.ctc_tgt_head):
        assert head.proj.weight.grad is not None and head.proj.weight.grad.abs().sum() > 0
    # The intermediate head's gradient reaches the first encoder layer, not the second.
    assert model.encoder.layers[0].ffn1.fc1.weight.grad.abs().sum() > 0

    model.zero_grad(set_to_none=True)
    loss, _, _ = criterion_for(task, ce_weight=0.0, ctc_tgt_weight=0.0)(model, sample)
    loss.backward()
    assert model.ctc_src_head.proj.weight.grad.abs().sum() > 0
    assert model.ctc_tgt_head.proj.weight.grad is None
    assert model.encoder.layers[1].ffn1.fc1.weight.grad is None  # above the intermediate layer
    assert all(p.grad is None for p in model.decoder.parameters())  # CE weight 0: decoder never ran


def test_zero_weights_need_no_ctc_heads():
    task, model, sample = make_setup(ctc_src_layer=0, no_ctc_tgt=True)
    assert model.ctc_src_head is None and model.ctc_tgt_head is None
    del sample["ctc_src"], sample["ctc_src_lengths"]
    loss, _, log = criterion_for(task, ctc_src_weight=0.0, ctc_tgt_weight=0.0)(model, sample)
    assert float(loss) == pytest.approx(5.0 * float(log["ce_loss"]))
    assert float(log["ctc_src_loss"]) == 0.0 and float(log["ctc_tgt_loss"]) == 0.0
    with pytest.raises(ValueError, match="--ctc-src-layer"):
        criterion_for(task, ctc_tgt_weight=0.0)(model, {**sample, "ctc_src": torch.tensor([[5]]),
                                                         "ctc_src_lengths": torch.tensor([1])})


def test_missing_source_transcript_names_the_utterances():
    task, model, sample = make_setup()
    del sample["ctc_src"], sample["ctc_src_lengths"]
    with pytest.raises(ValueError, match=r"utt_a, utt_b.*--ctc-src-weight"):
        criterion_for(task)(model, sample)


def test_language_tags_from_the_task_are_not_ctc_targets():
    # The task names "tok0" as its only tag: then "<lang:en>" is an ordinary token and tok0 is dropped.
    tag = make_dictionary(20, extra=["<lang:en>", "<lang:it>"]).index("tok0")
    task, model, sample = make_setup(lang_tags={tag})
    criterion = criterion_for(task, ce_weight=0.0, ctc_src_weight=0.0, ctc_tgt_weight=1.0)
    en = task.target_dictionary.index("<lang:en>")
    assert tag in criterion.tgt_non_targets and en not in criterion.tgt_non_targets
    sample["target"][0, 1] = tag  # [en, tag, 8, 9, eos] -> CTC target [en, 8, 9]
    _, _, log = criterion(model, sample)
    with torch.no_grad():
        lp, _ = model.get_ctc_output(model(**sample["net_input"]), "tgt")
    expected = ctc_nll_by_hand(lp[:10, 0], [en, 8, 9], 0) + ctc_nll_by_hand(lp[:7, 1], [en, 10, 11], 0)
    assert float(log["ctc_tgt_loss"]) == pytest.approx(expected, rel=1e-5)


def test_reduce_metrics_logs_each_term_per_token_in_bits():
    logs = [dict(loss=10.0, ce_loss=1.0, nll_loss=0.8, ctc_src_loss=2.0, ctc_tgt_loss=1.5,
                 ntokens=4, nsentences=1, sample_size=4)] * 2
    with metrics.aggregate() as agg:
        CtcMultiLossCriterion.reduce_metrics(logs)
    values = agg.get_smoothed_values()
    assert values["ce_loss"] == pytest.approx(round(2.0 / 8 / math.log(2), 3))
    assert values["ctc_src_loss"] == pytest.approx(round(4.0 / 8 / math.log(2), 3))
    assert values["ctc_tgt_loss"] == pytest.approx(round(3.0 / 8 / math.log(2), 3))
    assert values["loss"] == pytest.approx(round(20.0 / 8 / math.log(2), 3))
