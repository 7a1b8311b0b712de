"""The model inside fairseq: argparse (--arch) and hydra configs, beam search with incremental decoding,
and the cross-attention modules the recorder hooks."""
import torch
from omegaconf import OmegaConf

from fairseq import options
from fairseq.criterions import build_criterion
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import build_model
from fairseq.modules import MultiheadAttention
from fairseq.sequence_generator import SequenceGenerator

from tests.models.tiny_model import FakeTask, build_small_model, make_dictionary
from fairseq_xattn.criterions import CtcMultiLossCriterion
from fairseq_xattn.models import XattnConformerModel

USER_DIR = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "fairseq_xattn")


def test_argparse_arch_and_flags_reach_the_model_and_criterion():
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        "/nonexistent-data", "--user-dir", USER_DIR, "--task", "translation",
        "--arch", "xattn_conformer_tiny", "--encoder-layers", "3", "--ctc-src-layer", "2",
        "--criterion", "ctc_multi_loss", "--ctc-tgt-weight", "0.5",
    ])
    cfg = convert_namespace_to_omegaconf(args)
    task = FakeTask(make_dictionary(40))
    model = build_model(cfg.model, task)
    assert isinstance(model, XattnConformerModel)
    assert len(model.encoder.layers) == 3 and model.encoder.ctc_src_layer == 2  # flags win
    assert model.cfg.encoder_embed_dim == 144 and len(model.decoder.layers) == 2  # tiny arch values
    criterion = build_criterion(cfg.criterion, task)
    assert isinstance(criterion, CtcMultiLossCriterion)
    assert (criterion.ce_weight, criterion.ctc_src_weight, criterion.ctc_tgt_weight) == (5.0, 1.0, 0.5)
    assert criterion.eps == 0.1
    assert model.ctc_src_head is not None and model.ctc_tgt_head is not None
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "/nonexistent-data", "--user-dir", USER_DIR, "--task", "translation",
        "--arch", "xattn_conformer_tiny", "--no-ctc-tgt", "--ctc-src-layer", "0",
    ])
    model = build_model(convert_namespace_to_omegaconf(args).model, task)
    assert model.ctc_tgt_head is None and model.ctc_src_head is None


def test_hydra_style_configs_build_arch_and_model_defaults():
    task = FakeTask(make_dictionary(40))
    # A hydra yaml naming an arch carries only what it sets; build_model must complete it.
    model = build_model(OmegaConf.create({"_name": "xattn_conformer_tiny", "decoder_layers": 1}), task)
    assert model.cfg.encoder_embed_dim == 144 and len(model.decoder.layers) == 1
    with torch.device("meta"):  # the model name gives the dataclass defaults: the paper's base model
        base = build_model(OmegaConf.create({"_name": "xattn_conformer"}), task)
    assert base.cfg.encoder_embed_dim == 512 and len(base.encoder.layers) == 12
    assert base.encoder.ctc_src_layer == 8 and len(base.decoder.layers) == 6


def test_beam_search_scores_equal_teacher_forced_scores():
    """Incremental decoding (with beam reordering of the encoder output) must score each final
    hypothesis exactly as a full teacher-forced forward pass does."""
    torch.set_num_threads(1)
    d = make_dictionary(25)
    model = build_small_model(FakeTask(d)).eval()
    torch.manual_seed(3)
    feats = torch.randn(3, 50, 20)
    lengths = torch.tensor([50, 31, 17])
    sample = {"net_input": {"src_tokens": feats, "src_lengths": lengths}, "id": torch.arange(3)}
    generator = SequenceGenerator([model], d, beam_size=3, max_len_b=7)
    with torch.no_grad():
        hypos = generator.generate([model], sample)
        for b, hyps in enumerate(hypos):
            for hyp in hyps:
                tokens = hyp["tokens"]
                prev = torch.cat([tokens.new_tensor([d.eos()]), tokens[:-1]]).unsqueeze(0)
                n = int(lengths[b])
                out = model(feats[b:b + 1, :n], lengths[b:b + 1], prev)
                lprobs = model.get_normalized_probs(out, log_probs=True)[0]
                forced = lprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
                torch.testing.assert_close(hyp["positional_scores"], forced, rtol=0, atol=1e-4)


def test_cross_attention_modules_are_the_decoder_layers_stock_attention():
    d = make_dictionary(25)
    model = build_small_model(FakeTask(d), decoder_layers=3, encoder_embed_dim=48, decoder_embed_dim=32)
    modules = model.decoder.cross_attention_modules()
    assert len(modules) == 3
    for layer, module in zip(model.decoder.layers, modules):
        assert module is layer.encoder_attn and type(module) is MultiheadAttention
        assert module.kdim == 48 and module.num_heads == 4
    # Per-head weights come out of the stock module: H x B x I x T'.
    enc = torch.randn(9, 2, 48)
    query = torch.randn(5, 2, 32)
    _, weights = modules[0](query, enc, enc, need_weights=True, need_head_weights=True, static_kv=True)
    assert weights.shape == (4, 2, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 2, 5))


def test_intermediate_ctc_layer_outside_the_encoder_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match=r"--ctc-src-layer 3 is outside the encoder's 1\.\.2 layers"):
        build_small_model(FakeTask(make_dictionary(25)), ctc_src_layer=3)
