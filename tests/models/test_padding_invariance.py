"""An utterance gives the same encoder output, CTC and decoder log-probabilities alone or batched
with longer ones (eval mode), and batch-norm training statistics ignore padding."""
import torch

from tests.models.tiny_model import FakeTask, build_small_model, make_dictionary
from fairseq_xattn.models import MaskedBatchNorm1d


def test_alone_or_batched_gives_the_same_outputs():
    torch.set_num_threads(1)
    d = make_dictionary(30)
    model = build_small_model(FakeTask(d), depthwise_conv_kernel_size=31).eval()
    torch.manual_seed(1)
    lengths = torch.tensor([97, 61, 38, 9])
    feats = torch.randn(4, 97, 20)
    for b, n in enumerate(lengths):  # what a collater leaves beyond the end does not matter: make it loud
        feats[b, n:] = 50.0
    prev = torch.randint(4, 30, (4, 6))
    prev[:, 0] = d.eos()
    with torch.no_grad():
        batched = model(feats, lengths, prev)
        ctc_src_b, _ = model.get_ctc_output(batched, "src")
        ctc_tgt_b, len_b = model.get_ctc_output(batched, "tgt")
        lprobs_b = model.get_normalized_probs(batched, log_probs=True)
        for b in range(4):
            n = int(lengths[b])
            alone = model(feats[b:b + 1, :n], lengths[b:b + 1], prev[b:b + 1])
            enc_alone = alone[1]["encoder_out"]["encoder_out"][0]  # T' x 1 x D
            t_prime = enc_alone.size(0)
            assert int(len_b[b]) == t_prime == (n + 3) // 4
            enc_b = batched[1]["encoder_out"]["encoder_out"][0][:t_prime, b:b + 1]
            torch.testing.assert_close(enc_b, enc_alone, rtol=0, atol=1e-5)
            src_a, _ = model.get_ctc_output(alone, "src")
            tgt_a, _ = model.get_ctc_output(alone, "tgt")
            torch.testing.assert_close(ctc_src_b[:t_prime, b:b + 1], src_a, rtol=0, atol=1e-5)
            torch.testing.assert_close(ctc_tgt_b[:t_prime, b:b + 1], tgt_a, rtol=0, atol=1e-5)
            lprobs_a = model.get_normalized_probs(alone, log_probs=True)
            torch.testing.assert_close(lprobs_b[b:b + 1], lprobs_a, rtol=0, atol=1e-5)


def test_masked_batch_norm_statistics_come_from_valid_frames_only():
    torch.manual_seed(0)
    bn = MaskedBatchNorm1d(3, momentum=1.0)  # momentum 1: running stats = last batch's stats
    x = torch.randn(2, 7, 3)  # B x T x C
    mask = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    x[1, 4:] = 1000.0
    out = bn.train()(x, mask)
    valid = torch.cat([x[0], x[1, :4]], dim=0)  # 11 x 3
    torch.testing.assert_close(bn.running_mean, valid.mean(0))
    torch.testing.assert_close(bn.running_var, valid.var(0, unbiased=True))
    expected = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(torch.cat([out[0], out[1, :4]], 0), expected, rtol=1e-5, atol=1e-5)
    assert torch.all(out[1, 4:] == 0)
