"""--explain-autocast: masked passes under torch.autocast, everything else float32 (reference, scores,
maps); maps of the tiny trained model agree with float32 maps; the option is one setting that reaches
the fairseq flags, the store meta and the resume check; devices without autocast are refused."""
import argparse

import numpy as np
import pytest
import torch

from fairseq_xattn.errors import OptionError
from fairseq_xattn.explain.autocast import AUTOCAST_DTYPES, masked_pass_context
from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
from fairseq_xattn.explain.forced_decoder import FairseqForcedDecoder
from fairseq_xattn.explain.settings import settings_from_config

from .oracles import RegionOracle
from .test_task import hyp_tsv  # noqa: F401  (the fixture: the references as hypotheses)

N_MASKS = {"input": 128, "encoder": 256}


def _explain(adapter, task, utterance_index, target, autocast):
    ds = task.datasets["test"]
    item = ds[utterance_index]
    settings = ExplainSettings(target=target, n_masks=N_MASKS[target], autocast=autocast)
    return Explainer(adapter, settings).explain(str(ds.ids[utterance_index]), item.source, item.target.long(),
                                                task.target_dictionary.eos())


@pytest.mark.parametrize("target", ["input", "encoder"])
def test_bf16_maps_correlate_with_float32_maps(tiny_model_and_task, target):
    model, task = tiny_model_and_task
    adapter = FairseqForcedDecoder(model)
    for index in (0, 1):
        exact = _explain(adapter, task, index, target, "none")
        low = _explain(adapter, task, index, target, "bf16")
        assert low.saliency.shape == exact.saliency.shape and low.saliency.dtype == np.float32
        assert not np.array_equal(low.saliency, exact.saliency)   # the masked passes did run in bf16
        r = np.corrcoef(low.saliency.ravel(), exact.saliency.ravel())[0, 1]
        assert r >= 0.99, (index, target, r)
        # the reference pass runs outside autocast: bit for bit the float32 one
        np.testing.assert_array_equal(low.ref_logprobs, exact.ref_logprobs)
        assert low.n_masks == exact.n_masks == N_MASKS[target]


class _Spy(FairseqForcedDecoder):
    """Records, per adapter call, whether autocast was on (and its dtype) on the CPU."""

    def __init__(self, model):
        super().__init__(model)
        self.seen = []

    def _note(self, name):
        self.seen.append((name, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    def prepare_frame_zeroing(self, *args, **kwargs):  # encoder target: K/V of the intact states
        self._note("reference")
        return super().prepare_frame_zeroing(*args, **kwargs)

    def decode_logprobs(self, *args, **kwargs):
        self._note("reference")
        return super().decode_logprobs(*args, **kwargs)

    def logprobs_for_inputs(self, *args, **kwargs):
        self._note("masked")
        return super().logprobs_for_inputs(*args, **kwargs)

    def logprobs_with_frames_zeroed(self, *args, **kwargs):
        self._note("masked")
        return super().logprobs_with_frames_zeroed(*args, **kwargs)


@pytest.mark.parametrize("target", ["input", "encoder"])
def test_only_the_masked_passes_run_under_autocast_and_scores_are_float32(tiny_model_and_task, target):
    model, task = tiny_model_and_task
    spy = _Spy(model)
    settings = ExplainSettings(target=target, n_masks=N_MASKS[target], autocast="bf16", mask_batch_size=32)
    explainer = Explainer(spy, settings)
    scored = []
    real_scorer = explainer.scorer

    def scorer(ref, pert):
        out = real_scorer(ref, pert)
        scored.append((ref.dtype, pert.dtype, out.dtype))
        return out

    explainer.scorer = scorer
    item = task.datasets["test"][0]
    # even inside a caller's autocast region the reference pass is float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = explainer.explain("u0", item.source, item.target.long(), task.target_dictionary.eos())
    reference_calls = [s for s in spy.seen if s[0] == "reference"]
    masked_calls = [s for s in spy.seen if s[0] == "masked"]
    assert reference_calls and all(not enabled for _, enabled, _ in reference_calls)
    assert len(masked_calls) == N_MASKS[target] // 32
    assert all(enabled and dtype == torch.bfloat16 for _, enabled, dtype in masked_calls)
    assert scored and set(scored) == {(torch.float32, torch.float32, torch.float32)}
    assert res.saliency.dtype == np.float32 and all(h.dtype == np.float32 for h in res.half_maps)
    assert np.isfinite(res.saliency).all() and res.saliency.max() > 0


def test_fp16_autocast_runs_on_this_cpu(tiny_model_and_task):
    # torch 2.13 has CPU autocast for float16 as well: accepted, and the map agrees with float32
    model, task = tiny_model_and_task
    adapter = FairseqForcedDecoder(model)
    exact, half = (_explain(adapter, task, 0, "encoder", a) for a in ("none", "fp16"))
    assert np.corrcoef(exact.saliency.ravel(), half.saliency.ravel())[0, 1] >= 0.99


def test_a_device_without_autocast_is_refused_before_any_pass():
    class MetaDeviceOracle(RegionOracle):
        device = torch.device("meta")   # torch has no autocast for it

    region = torch.zeros(60, 80, dtype=torch.bool)
    region[10:20] = True
    oracle = MetaDeviceOracle(region)
    settings = ExplainSettings(target="input", n_masks=64, autocast="bf16")
    with pytest.raises(OptionError, match=r"--explain-autocast bf16 on device meta"):
        Explainer(oracle, settings).explain("u", torch.randn(60, 80), torch.tensor([4, 5, 2]), 2)
    assert oracle.calls == []
    with pytest.raises(OptionError, match="--explain-autocast fp16 on device meta"):
        masked_pass_context("fp16", torch.device("meta"))
    # "none" never asks the device
    Explainer(oracle, ExplainSettings(target="input", n_masks=64)).explain(
        "u", torch.randn(60, 80), torch.tensor([4, 5, 2]), 2)


def test_non_finite_masked_outputs_under_autocast_are_reported_once(caplog):
    class Overflowing(RegionOracle):   # a model whose low-precision masked passes overflow
        def logprobs_for_inputs(self, features, lengths, prev_output_tokens):
            out = super().logprobs_for_inputs(features, lengths, prev_output_tokens).clone()
            out[0, 0, 0] = float("nan")
            return out

    region = torch.zeros(60, 80, dtype=torch.bool)
    region[10:20] = True
    features = torch.randn(60, 80)
    for autocast, warnings in (("bf16", 1), ("none", 0)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="fairseq_xattn.explain.explainer"):
            res = Explainer(Overflowing(region), ExplainSettings(target="input", n_masks=128, mask_batch_size=32,
                                                                 autocast=autocast)).explain(
                "u7", features, torch.tensor([4, 5, 2]), 2)
        assert np.isfinite(res.saliency).all()   # scored as the largest change, as in float32
        reported = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
        assert len(reported) == warnings
        if warnings:
            assert "u7" in reported[0] and "--explain-autocast bf16" in reported[0]


def test_unknown_value_names_the_flag():
    with pytest.raises(OptionError, match=r"--explain-autocast value 'fp8'.*'bf16', 'fp16', 'none'"):
        ExplainSettings(autocast="fp8")


def test_the_option_is_a_map_defining_setting_recorded_only_when_used():
    from fairseq_xattn.stores import settings_differences

    assert "autocast" not in ExplainSettings().store_meta()       # stores written before it still resume
    assert ExplainSettings(autocast="bf16").store_meta()["autocast"] == "bf16"
    assert settings_differences(ExplainSettings().store_meta(), ExplainSettings(autocast="bf16").store_meta()) \
        == [("autocast", "(not recorded)", "bf16")]
    assert settings_differences(ExplainSettings(autocast="fp16").store_meta(),
                                ExplainSettings(autocast="bf16").store_meta()) == [("autocast", "fp16", "bf16")]


def _task_parser():
    from fairseq.dataclass.utils import gen_parser_from_dataclass

    from fairseq_xattn.tasks.speech_explain import SpeechExplainConfig

    parser = argparse.ArgumentParser()
    gen_parser_from_dataclass(parser, SpeechExplainConfig())
    return parser


def test_the_flag_round_trips_through_the_task_config():
    parser = _task_parser()
    action = next(a for a in parser._actions if "--explain-autocast" in a.option_strings)
    assert sorted(action.choices) == sorted(AUTOCAST_DTYPES) == ["bf16", "fp16", "none"]
    assert settings_from_config(parser.parse_args(["data"])).autocast == "none"
    for value in ("bf16", "fp16", "none"):
        cfg = parser.parse_args(["data", "--explain-autocast", value, "--explain-target", "encoder"])
        settings = settings_from_config(cfg)
        assert settings.autocast == value and settings.target == "encoder"
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "--explain-autocast", "fp8"])


def test_fairseq_generate_records_autocast_and_refuses_to_resume_without_it(tiny_data, tiny_checkpoint,  # noqa: F811
                                                                            hyp_tsv, tmp_path):
    from fairseq_xattn.stores import StoreError, StoreReader

    from .generate_runner import explain_argv, generate_in_process, store_contents

    encoder = ["--explain-target", "encoder", "--explain-masks", "96", "--max-tokens", "4000"]
    low, exact = tmp_path / "bf16", tmp_path / "fp32"
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, low, *encoder, "--explain-autocast", "bf16"))
    generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, exact, *encoder))
    with StoreReader(low) as a, StoreReader(exact) as b:
        assert a.meta["autocast"] == "bf16" and "autocast" not in b.meta
    maps, references = store_contents(low), store_contents(exact)
    assert sorted(maps) == sorted(references) and len(maps) == 10
    for utt_id, (meta, saliency) in maps.items():
        assert saliency.dtype == np.float32
        assert np.corrcoef(saliency.ravel(), references[utt_id][1].ravel())[0, 1] >= 0.99, utt_id
        assert meta["positional_scores"] == references[utt_id][0]["positional_scores"]   # float32 reference
    with pytest.raises(StoreError, match="autocast"):
        generate_in_process(explain_argv(tiny_data, tiny_checkpoint, hyp_tsv, low, *encoder))
