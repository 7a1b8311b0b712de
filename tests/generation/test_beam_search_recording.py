"""The key invariant: what beam search records for a hypothesis is the attention of that
hypothesis' own history, i.e. equals a teacher-forced recomputation of it."""
from __future__ import annotations

import copy

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_xattn.generation import CrossAttentionRecordingGenerator
from fairseq_xattn.stores import KIND_CROSS_ATTENTION, open_store

from .helpers import record_teacher_forced

from .helpers import (
    all_hypotheses, generation_args, make_task, max_difference_to_teacher_forced, random_s2t_conformer,
    random_xattn_conformer, subsampled,
)

TOLERANCE = 1e-5


def record(model, task, sample, **kwargs):
    generator = CrossAttentionRecordingGenerator.build([model], task.target_dictionary, **kwargs)
    return generator.generate([model], sample)


@pytest.mark.parametrize("beam,no_repeat_ngram_size", [(1, 0), (5, 0), (5, 2)])
def test_recorded_attention_equals_teacher_forced_recomputation(loaded, mixed_batch, beam, no_repeat_ngram_size):
    model, task = loaded
    hypos = record(model, task, mixed_batch, beam_size=beam, no_repeat_ngram_size=no_repeat_ngram_size)
    assert len(hypos) == 10 and all(len(h) == beam for h in hypos)
    # every hypothesis of the beam (not just the best) must carry its own history
    assert max_difference_to_teacher_forced(model, mixed_batch, hypos, task.target_dictionary) <= TOLERANCE


def test_prefix_size_1_records_each_hypothesis_own_history(loaded, mixed_batch, tmp_path):
    """How ST / multitask models are decoded: ``--prefix-size 1`` forces the first target token (the
    language tag); fairseq-generate passes ``prefix_tokens = target[:, :1]`` to inference_step."""
    model, base = loaded
    task = make_task(base.args, base.tgt_dict, record_cross_attn=str(tmp_path / "store"))
    task.load_dataset("test")
    generator = task.build_generator([model], generation_args(beam=5, nbest=5, prefix_size=1))
    prefix = mixed_batch["target"][:, :1]
    hypos = task.inference_step(generator, [model], mixed_batch, prefix_tokens=prefix)
    task.close_recording()
    assert len(hypos) == 10 and all(len(h) == 5 for h in hypos)
    for forced, per_utt in zip(prefix[:, 0].tolist(), hypos):
        assert {h["tokens"][0].item() for h in per_utt} == {forced}
    assert len({tuple(h["tokens"].tolist()) for h in hypos[0]}) > 1  # really different histories
    assert max_difference_to_teacher_forced(model, mixed_batch, hypos, task.target_dictionary) <= TOLERANCE
    ids = task.dataset("test").ids
    with open_store(tmp_path / "store", KIND_CROSS_ATTENTION) as store:
        assert store.meta["prefix_size"] == 1 and len(store) == 50
        for index, per_utt in zip(mixed_batch["id"].tolist(), hypos):
            for rank, hypo in enumerate(per_utt):
                record = store.get(ids[index], rank)
                assert record.meta["prefix_len"] == 1
                assert record.meta["tokens"] == hypo["tokens"].tolist()
                torch.testing.assert_close(torch.from_numpy(record["attention"]), hypo["cross_attention"],
                                           atol=0, rtol=0)


def test_recorded_shapes_and_rows(loaded, mixed_batch):
    model, task = loaded
    hypos = record(model, task, mixed_batch, beam_size=5)
    src_lengths = mixed_batch["net_input"]["src_lengths"].tolist()
    assert len(set(src_lengths)) > 5  # the batch really mixes lengths (so it is padded)
    for n_frames, per_utt in zip(src_lengths, hypos):
        for hypo in per_utt:
            xattn = hypo["cross_attention"]
            # L x H x I x T': 2 layers, 4 heads, tokens incl. EOS, encoder frames without padding
            assert xattn.shape == (2, 4, len(hypo["tokens"]), subsampled(n_frames))
            torch.testing.assert_close(xattn.sum(-1), torch.ones(xattn.shape[:-1]), atol=1e-5, rtol=0)
            assert (xattn >= 0).all()
            torch.testing.assert_close(hypo["attention"], xattn.mean(dim=(0, 1)).t())


@pytest.mark.parametrize("beam,no_repeat_ngram_size", [(1, 0), (5, 2)])
def test_recording_does_not_change_hypotheses_or_scores(loaded, mixed_batch, beam, no_repeat_ngram_size):
    model, task = loaded
    kwargs = dict(beam_size=beam, no_repeat_ngram_size=no_repeat_ngram_size)
    stock = SequenceGenerator([model], task.target_dictionary, **kwargs).generate([model], mixed_batch)
    recorded = record(model, task, mixed_batch, **kwargs)
    for expected, got in zip(all_hypotheses(stock), all_hypotheses(recorded)):
        assert torch.equal(expected["tokens"], got["tokens"])
        assert torch.equal(expected["score"], got["score"])  # bitwise: same computation path
        assert torch.equal(expected["positional_scores"], got["positional_scores"])


def test_only_nbest_hypotheses_are_recorded(loaded, mixed_batch):
    model, task = loaded
    hypos = record(model, task, mixed_batch, beam_size=5, nbest=2)
    for per_utt in hypos:
        assert ["cross_attention" in h for h in per_utt] == [True, True, False, False, False]


@pytest.mark.parametrize("build", [random_xattn_conformer, random_s2t_conformer], ids=["xattn_conformer", "s2t_conformer"])
@pytest.mark.parametrize("beam", [1, 5])
def test_other_architectures(loaded, mixed_batch, build, beam):
    _, task = loaded
    model = build(task)
    hypos = record(model, task, mixed_batch, beam_size=beam, max_len_b=12, no_repeat_ngram_size=2)
    layers = len(model.decoder.layers)
    heads = model.decoder.layers[0].encoder_attn.num_heads
    assert {h["cross_attention"].shape[:2] for h in all_hypotheses(hypos)} == {(layers, heads)}
    assert max_difference_to_teacher_forced(model, mixed_batch, hypos, task.target_dictionary) <= TOLERANCE


def test_ensemble_records_the_average_attention(loaded, mixed_batch):
    model, task = loaded
    other = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tgt_dict = task.target_dictionary
    hypos = CrossAttentionRecordingGenerator.build([model, other], tgt_dict, beam_size=3).generate([model, other], mixed_batch)
    best = [h[0] for h in hypos]
    tokens = [h["tokens"] for h in best]
    forced = [record_teacher_forced(m, mixed_batch["net_input"], tokens, tgt_dict.pad(), tgt_dict.eos())
              for m in (model, other)]
    for i, hypo in enumerate(best):
        assert (hypo["cross_attention"] - (forced[0][i] + forced[1][i]) / 2).abs().max() <= TOLERANCE
        assert (forced[0][i] - forced[1][i]).abs().max() > 1e-3  # the two models really differ


def test_ensemble_of_different_shapes_is_refused(loaded):
    model, task = loaded
    other = random_xattn_conformer(task)  # 3 layers: cannot be averaged with a 2-layer model
    with pytest.raises(ValueError, match="layers x heads"):
        CrossAttentionRecordingGenerator.build([model, other], task.target_dictionary)
