"""The explanation engine on hand-built oracle models: where saliency must (and must not) go,
edge cases of p, determinism of the masks, batching invariance and early stop."""
import numpy as np
import pytest
import torch

from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
from fairseq_xattn.explain.masks import MaskSampler

from .oracles import RegionOracle

T, F = 60, 80
EOS = 2
TOKENS = torch.tensor([4, 5, EOS])


def spectrogram(seed=0, region_value=3.0):
    """Noise everywhere, a loud block in frames 20..29 x bins 16..31 (the oracle's region)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(T, F, generator=g)
    x[20:30, 16:32] = region_value
    return x


def region_mask():
    r = torch.zeros(T, F, dtype=torch.bool)
    r[20:30, 16:32] = True
    return r


def explain(adapter, features, **kw):
    kw.setdefault("n_masks", 240)
    snapshots = kw.pop("snapshots", ())
    settings = ExplainSettings(**kw)
    return Explainer(adapter, settings).explain("utt1", features, TOKENS, EOS, snapshots=snapshots)


def top_cells_inside(saliency_row, region):
    k = int(region.sum())
    top = np.argsort(-saliency_row.ravel(), kind="stable")[:k]
    return region.numpy().ravel()[top].mean()


def test_input_saliency_concentrates_on_the_region_the_model_reads():
    res = explain(RegionOracle(region_mask()), spectrogram(), target="input")
    assert res.saliency.shape == (3, T, F)
    for i in range(3):
        assert top_cells_inside(res.saliency[i], region_mask()) >= 0.8
    assert res.saliency.max() > 0


def test_encoder_saliency_concentrates_on_the_frames_the_model_reads():
    frames = torch.zeros(T, F, dtype=torch.bool)
    frames[[5, 6, 40]] = True
    res = explain(RegionOracle(frames), torch.randn(T, F).abs() + 0.5, target="encoder", n_masks=200)
    assert res.saliency.shape == (3, T)
    for i in range(3):
        assert set(np.argsort(-res.saliency[i])[:3]) == {5, 6, 40}


def test_an_all_zero_region_gets_no_saliency():
    # The model reads only the region, which is all zeros: occluding (setting to 0) changes nothing.
    res = explain(RegionOracle(region_mask()), spectrogram(region_value=0.0) * ~region_mask(), target="input")
    assert np.all(res.saliency == 0)


@pytest.mark.parametrize("target", ["input", "encoder"])
def test_p0_never_occludes_and_gives_zero_maps(target):
    res = explain(RegionOracle(region_mask()), spectrogram(), target=target, p=0.0, n_masks=64)
    assert np.all(res.saliency == 0) and not np.isnan(res.saliency).any()


@pytest.mark.parametrize("target", ["input", "encoder"])
def test_p1_occludes_everything_and_gives_flat_maps(target):
    oracle = RegionOracle(region_mask())
    res = explain(oracle, spectrogram(), target=target, p=1.0, n_masks=64)
    ref = oracle._logprobs(spectrogram()[None])[0]
    blank = oracle._logprobs(torch.zeros(1, T, F))[0]
    kl = (ref.exp() * (ref - blank)).sum(-1).numpy()
    for i in range(3):
        np.testing.assert_allclose(res.saliency[i], kl[i], rtol=1e-5)


def test_masks_do_not_depend_on_how_they_are_batched():
    sampler = MaskSampler([7, 11, 13], p=0.5, seed=3, utt_id="a")
    whole = sampler.batch(0, 300)
    parts = [sampler.batch(0, 37), sampler.batch(37, 100), sampler.batch(137, 163)]
    for level in range(3):
        joined = torch.cat([p.occluded[level] for p in parts])
        assert torch.equal(joined, whole.occluded[level])
    assert [len(whole.rows[lv]) for lv in range(3)] == [100, 100, 100]
    assert not torch.equal(MaskSampler([7], 0.5, 3, "b").level_masks(0, 0, 64),
                           MaskSampler([7], 0.5, 3, "a").level_masks(0, 0, 64))


def test_mask_bits_do_not_depend_on_the_model_device(monkeypatch):
    """Masks are drawn by CPU generators and only delivered to the model's device: here ``meta``, a device
    no generator exists for.  So CPU and CUDA runs (or a run resumed on another device) use the same masks."""
    units = [7, 11, 13]
    on_cpu = MaskSampler(units, p=0.5, seed=3, utt_id="a").batch(0, 300)
    delivered = []
    real_to = torch.Tensor.to

    def spy_to(self, *args, **kwargs):
        out = real_to(self, *args, **kwargs)
        if out.device.type == "meta" and self.device.type == "cpu" and self.dtype == torch.bool:
            delivered.append(self.clone())  # the bits moved onto the model's device
        return out

    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    on_meta = MaskSampler(units, p=0.5, seed=3, utt_id="a", device="meta").batch(0, 300)
    monkeypatch.undo()
    for level in range(3):
        assert on_meta.occluded[level].device.type == "meta" and on_meta.rows[level].device.type == "meta"
        assert on_meta.occluded[level].shape == on_cpu.occluded[level].shape
        assert any(torch.equal(bits, on_cpu.occluded[level]) for bits in delivered), level


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("target", ["input", "encoder"])
def test_maps_are_the_same_on_cpu_and_cuda(target):
    cpu = explain(RegionOracle(region_mask()), spectrogram(), target=target, n_masks=150)
    cuda = explain(RegionOracle(region_mask(), device="cuda"), spectrogram().cuda(), target=target, n_masks=150)
    np.testing.assert_allclose(cpu.saliency, cuda.saliency, rtol=1e-4, atol=1e-6)


def test_automatic_mask_batch_shrinks_for_a_large_output():
    from fairseq_xattn.explain.mask_batching import BUDGET_LOGITS, auto_mask_batch_size

    assert auto_mask_batch_size("encoder", 100) == 256
    assert auto_mask_batch_size("encoder", 100, n_tokens=12, vocab_size=200) == 256   # demo-size output
    # The paper's 16k vocabulary and 60 tokens: 256 masks would be ~1 GB per copy of the log-probs.
    size = auto_mask_batch_size("encoder", 100, n_tokens=60, vocab_size=16000)
    assert size == BUDGET_LOGITS // (60 * 16000) == 34
    assert auto_mask_batch_size("input", 400, n_tokens=60, vocab_size=16000) == 34
    assert auto_mask_batch_size("encoder", 100, n_tokens=600, vocab_size=100000) == 1   # never 0
    # 100 masks fit: rounded down to the mask block
    assert auto_mask_batch_size("encoder", 100, n_tokens=8, vocab_size=1000, budget_logits=100 * 8000) == 64


def test_explainer_sizes_mask_batches_by_the_output_without_changing_the_map():
    oracle = RegionOracle(region_mask(), vocab=1000)  # I x V = 3000 log-probs per mask
    auto = explain(oracle, spectrogram(), target="input", n_masks=150, budget_logits=20 * 3000)
    assert max(oracle.calls) == 20
    oracle.calls.clear()
    small = explain(oracle, spectrogram(), target="input", n_masks=150, mask_batch_size=3)
    assert max(oracle.calls) == 3
    np.testing.assert_allclose(auto.saliency, small.saliency, rtol=1e-5, atol=1e-7)


def test_a_reference_with_nan_is_refused_with_the_utterance():
    class Broken(RegionOracle):
        def decode_logprobs(self, encoded, prev_output_tokens):
            return torch.full_like(super().decode_logprobs(encoded, prev_output_tokens), float("nan"))

    oracle = Broken(region_mask())
    with pytest.raises(ValueError, match="utt1.*reference log-probabilities.*NaN"):
        explain(oracle, spectrogram(), target="encoder")
    assert oracle.calls == []


def test_total_masks_split_evenly_across_levels():
    whole = MaskSampler([5, 5, 5], p=0.5, seed=0, utt_id="x").batch(0, 200)
    assert [len(whole.rows[lv]) for lv in range(3)] == [67, 67, 66]


@pytest.mark.parametrize("target", ["input", "encoder"])
def test_maps_do_not_depend_on_the_mask_batch_size(target):
    oracle = RegionOracle(region_mask())
    a = explain(oracle, spectrogram(), target=target, n_masks=150, mask_batch_size=150)
    b = explain(oracle, spectrogram(), target=target, n_masks=150, mask_batch_size=7)
    assert 7 in oracle.calls and 150 in oracle.calls
    np.testing.assert_allclose(a.saliency, b.saliency, rtol=1e-5, atol=1e-7)


def test_snapshots_are_prefixes_of_the_full_run():
    oracle = RegionOracle(region_mask())
    full = explain(oracle, spectrogram(), target="encoder", n_masks=120, snapshots=[50])
    short = explain(oracle, spectrogram(), target="encoder", n_masks=50)
    np.testing.assert_allclose(full.snapshots[50], short.saliency, rtol=1e-5)


def test_early_stop_ends_once_converged_and_reports_masks_used():
    oracle = RegionOracle(region_mask())
    res = explain(oracle, spectrogram(), target="encoder", n_masks=5000, early_stop=0.95,
                  early_stop_interval=100, early_stop_min_masks=200)
    assert 200 <= res.n_masks < 5000 and res.n_masks % 100 == 0
    same = explain(oracle, spectrogram(), target="encoder", n_masks=res.n_masks)
    np.testing.assert_allclose(res.saliency, same.saliency, rtol=1e-5)


def test_bad_inputs_give_clear_errors():
    oracle = RegionOracle(region_mask())
    with pytest.raises(ValueError, match="utt1.*non-empty"):
        explain(oracle, torch.zeros(0, F))
    with pytest.raises(ValueError, match="utt1.*NaN"):
        explain(oracle, torch.full((T, F), float("nan")))
    with pytest.raises(ValueError, match="target"):
        ExplainSettings(target="decoder")
    with pytest.raises(ValueError, match="probability"):
        explain(oracle, spectrogram(), p=1.5)


def test_constant_spectrogram_is_explained_without_nan():
    res = explain(RegionOracle(region_mask()), torch.full((T, F), 1.0), target="input", n_masks=64)
    assert np.isfinite(res.saliency).all()


def test_model_and_dictionary_of_different_sizes_are_refused_before_any_mask():
    oracle = RegionOracle(region_mask(), vocab=6)
    with pytest.raises(ValueError, match="6 symbols but the target dictionary has 7"):
        Explainer(oracle, ExplainSettings(n_masks=10)).explain("utt1", spectrogram(), TOKENS, EOS, vocab_size=7)
    assert oracle.calls == []


def test_split_half_prediction_formula():
    from fairseq_xattn.explain.convergence import predicted_correlation

    # r_half = 1/3: noise-to-signal of the whole map a = (3 - 1) / 2 = 1 -> 1 / sqrt(2)
    assert predicted_correlation(1 / 3) == pytest.approx(2 ** -0.5)
    assert predicted_correlation(1.0) == 1.0 and predicted_correlation(-0.2) == 0.0
    assert predicted_correlation(0.9) > 0.9   # the whole map is more reliable than a half
