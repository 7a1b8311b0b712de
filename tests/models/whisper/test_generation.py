"""Decoding our fairseq Whisper with fairseq's SequenceGenerator (the prompt as bos_token +
prefix_tokens) gives transformers' greedy tokens; incremental decoding equals a full forward."""
import torch
from fairseq.sequence_generator import SequenceGenerator

from fairseq_xattn.models.whisper import generator_prompt, whisper_prompt

from .conftest import EOT, NO_TIMESTAMPS, SOT
from .helpers import fairseq_batch, fairseq_whisper, hf_batch, utterance_features

NEW_TOKENS = 12


def _hf_greedy(hf_model, features, prompt):
    """transformers' generic greedy search (``GenerationMixin.generate``; Whisper's own ``generate``
    adds its long-form and timestamp logic and returns the tokens after the prompt only)."""
    from transformers import GenerationConfig, GenerationMixin

    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=NEW_TOKENS, eos_token_id=EOT,
                              pad_token_id=EOT, decoder_start_token_id=SOT)
    prompt_ids = torch.tensor([prompt] * len(features))
    with torch.no_grad():
        out = GenerationMixin.generate(hf_model, input_features=hf_batch(features), decoder_input_ids=prompt_ids,
                                       generation_config=config)
    return [row.tolist() for row in out]


def test_prompt_of_an_english_only_vocabulary(whisper_dictionary):
    assert whisper_prompt(whisper_dictionary) == [SOT, NO_TIMESTAMPS]
    bos, prefix = generator_prompt(whisper_dictionary, batch_size=3)
    assert bos == SOT and prefix.tolist() == [[NO_TIMESTAMPS]] * 3


def test_greedy_sequence_generator_equals_transformers_generate(hf_whisper_folder, hf_whisper_model,
                                                               whisper_dictionary):
    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    features = utterance_features()
    prompt = whisper_prompt(whisper_dictionary)
    expected = _hf_greedy(hf_whisper_model, features, prompt)

    src, lengths = fairseq_batch(features)
    bos, prefix = generator_prompt(whisper_dictionary, batch_size=len(features))
    generator = SequenceGenerator([model], whisper_dictionary, beam_size=1, max_len_a=0,
                                  max_len_b=len(prompt) - 1 + NEW_TOKENS)
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths}}
    with torch.no_grad():
        hypos = generator.generate([model], sample, prefix_tokens=prefix, bos_token=bos)
    for b, reference in enumerate(expected):
        ours = [SOT] + hypos[b][0]["tokens"].tolist()  # fairseq drops the bos token, keeps the prefix
        generated = reference[len(prompt):]
        assert reference[:len(prompt)] == prompt
        if EOT in generated:  # both stop at <|endoftext|>
            assert ours == reference[: len(prompt) + generated.index(EOT) + 1]
        else:  # transformers stops after NEW_TOKENS; fairseq appends EOS at max_len
            assert ours[:-1] == reference and ours[-1] == EOT
        assert len(set(generated)) > 2  # a real sequence, not one token repeated


def test_incremental_decoding_equals_full_forward(hf_whisper_folder, whisper_dictionary):
    model = fairseq_whisper(hf_whisper_folder, whisper_dictionary)
    features = utterance_features()
    src, lengths = fairseq_batch(features)
    tokens = torch.tensor([[SOT, NO_TIMESTAMPS, 10, 20, 30, 40, 50, 60],
                           [SOT, NO_TIMESTAMPS, 70, 80, 90, 100, 110, 120]])
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths)
        full, _ = model.decoder(tokens, encoder_out=encoder_out)
        state = {}
        steps = [model.decoder(tokens[:, : i + 1], encoder_out=encoder_out, incremental_state=state)[0]
                 for i in range(tokens.size(1))]
    incremental = torch.cat(steps, dim=1)
    assert incremental.shape == full.shape
    torch.testing.assert_close(incremental[..., :-1], full[..., :-1], atol=1e-5, rtol=0)
