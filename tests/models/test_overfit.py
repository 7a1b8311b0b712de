"""A small xattn_conformer, trained with ctc_multi_loss on a handful of synthetic utterances (each
word a distinct spectral pattern), memorises them: the loss falls far below its start and greedy
decoding reproduces every target."""
import numpy as np
import torch
from fairseq.sequence_generator import SequenceGenerator

from tests.fixtures.tiny_s2t import WORDS, render_sentence
from tests.models.tiny_model import FakeTask, build_small_model, make_dictionary
from fairseq_xattn.criterions import CtcMultiLossCriterion

SENTENCES = [[0, 3, 5], [1, 2], [4, 6, 7, 8], [9, 0, 2]]
STEPS = 40  # full-batch Adam updates (30 already suffice with this seed)


def make_batch(dictionary):
    rng = np.random.default_rng(0)
    feats = [torch.from_numpy(render_sentence(s, rng)[0]) for s in SENTENCES]
    lengths = torch.tensor([len(f) for f in feats])
    src = torch.zeros(len(feats), int(lengths.max()), 80)
    for b, f in enumerate(feats):
        src[b, : len(f)] = f
    ids = [[dictionary.index(WORDS[w]) for w in s] for s in SENTENCES]
    width = max(len(i) for i in ids) + 1
    pad, eos = dictionary.pad(), dictionary.eos()
    target = torch.full((len(ids), width), pad)
    prev = torch.full((len(ids), width), pad)
    for b, seq in enumerate(ids):
        target[b, : len(seq) + 1] = torch.tensor(seq + [eos])
        prev[b, : len(seq) + 1] = torch.tensor([eos] + seq)
    ctc_src = torch.full((len(ids), width - 1), pad)
    for b, seq in enumerate(ids):
        ctc_src[b, : len(seq)] = torch.tensor(seq)
    return {
        "id": torch.arange(len(ids)), "utt_id": [f"u{b}" for b in range(len(ids))],
        "net_input": {"src_tokens": src, "src_lengths": lengths, "prev_output_tokens": prev},
        "target": target, "target_lengths": (target != pad).sum(1),
        "ctc_src": ctc_src, "ctc_src_lengths": (ctc_src != pad).sum(1),
        "ntokens": int((target != pad).sum()), "nsentences": len(ids),
    }, ids


def test_tiny_model_memorises_a_handful_of_utterances():
    torch.set_num_threads(1)
    dictionary = make_dictionary(4 + len(WORDS), extra=WORDS)
    task = FakeTask(dictionary)
    model = build_small_model(
        task, seed=0, input_feat_per_channel=80, encoder_embed_dim=64, decoder_embed_dim=64,
        encoder_ffn_embed_dim=128, decoder_ffn_embed_dim=128, conv_channels=64, decoder_layers=1,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    )
    criterion = CtcMultiLossCriterion(task, sentence_avg=False, label_smoothing=0.1)
    sample, ids = make_batch(dictionary)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(STEPS):
        loss, sample_size, _ = criterion(model, sample)
        optimizer.zero_grad()
        (loss / sample_size).backward()
        optimizer.step()
        losses.append(float(loss) / sample_size)
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])

    model.eval()
    generator = SequenceGenerator([model], dictionary, beam_size=1, max_len_b=8)
    with torch.no_grad():
        hypos = generator.generate([model], {"net_input": {k: sample["net_input"][k] for k in ("src_tokens", "src_lengths")}})
    decoded = [h[0]["tokens"][:-1].tolist() for h in hypos]
    assert decoded == ids

