"""The fairseq adapter on the tiny trained s2t_transformer: the K/V-reuse fast path equals the plain
decoder, the reference forced decoding matches fairseq's own forward, and real explanations have the
expected shapes."""
import numpy as np
import torch

from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder


def _prev(tokens, eos):
    return torch.cat([tokens.new_tensor([eos]), tokens[:-1]]).unsqueeze(0)


def test_kv_reuse_equals_plain_decoder(tiny_model_and_task, tiny_utterance):
    model, task = tiny_model_and_task
    _, feats, tokens = tiny_utterance
    fast, plain = FairseqForcedDecoder(model, kv_reuse=True), FairseqForcedDecoder(model, kv_reuse=False)
    assert fast.kv_reuse and not plain.kv_reuse
    with torch.no_grad():
        enc = fast.encode(feats[None], torch.tensor([len(feats)]))
        t = fast.n_encoder_frames(enc)
        zeroed = torch.rand(9, t, generator=torch.Generator().manual_seed(0)) < 0.7
        zeroed[0] = False        # nothing zeroed
        zeroed[1] = True         # everything zeroed
        prev = _prev(tokens, task.target_dictionary.eos())
        a = fast.logprobs_with_frames_zeroed(fast.prepare_frame_zeroing(enc), zeroed, prev)
        b = plain.logprobs_with_frames_zeroed(plain.prepare_frame_zeroing(enc), zeroed, prev)
        ref = fast.decode_logprobs(enc, prev)
    assert fast.kv_reuse, "the self-check must keep the fast path on a stock decoder"
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[0], ref[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[1], a[0], atol=1e-3)   # zeroing frames does change the output


def test_reference_logprobs_match_fairseq_forward(tiny_model_and_task, tiny_utterance):
    model, task = tiny_model_and_task
    _, feats, tokens = tiny_utterance
    adapter = FairseqForcedDecoder(model)
    prev = _prev(tokens, task.target_dictionary.eos())
    with torch.no_grad():
        ours = adapter.decode_logprobs(adapter.encode(feats[None], torch.tensor([len(feats)])), prev)
        theirs = model.get_normalized_probs(model(feats[None], torch.tensor([len(feats)]), prev), log_probs=True)
        batched = adapter.logprobs_for_inputs(feats[None].expand(3, -1, -1), torch.tensor([len(feats)] * 3), prev)
    torch.testing.assert_close(ours, theirs.float())
    torch.testing.assert_close(batched, ours.expand(3, -1, -1), atol=1e-5, rtol=1e-5)


def test_real_model_explanations(tiny_model_and_task, tiny_utterance):
    model, task = tiny_model_and_task
    utt_id, feats, tokens = tiny_utterance
    eos = task.target_dictionary.eos()
    adapter = FairseqForcedDecoder(model)
    enc_map = Explainer(adapter, ExplainSettings(target="encoder", n_masks=256)).explain(utt_id, feats, tokens, eos)
    in_map = Explainer(adapter, ExplainSettings(target="input", n_masks=48)).explain(utt_id, feats, tokens, eos)
    t_enc = -(-len(feats) // 4)
    assert enc_map.saliency.shape == (len(tokens), t_enc)
    assert in_map.saliency.shape == (len(tokens), len(feats), feats.shape[1])
    assert np.isfinite(enc_map.saliency).all() and np.isfinite(in_map.saliency).all()
    # The tiny checkpoint is barely trained, so where saliency goes is left to the oracle tests;
    # here: perturbations do change the prediction, and every cell is occluded by some mask.
    assert enc_map.saliency.max() > 0 and in_map.saliency.max() > 0
    assert (in_map.saliency[0] > 0).mean() > 0.99
