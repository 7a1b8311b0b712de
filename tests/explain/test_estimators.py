"""Estimators of the SPES map: every estimator targets the paper's population map (checked exactly
on enumerable oracles), the regression removes the other units' variance, and every estimator x design
is deterministic and invariant to batching and to the other utterances of a run."""
import itertools

import numpy as np
import pytest
import torch

from fairseq_xattn.explain.estimators import ESTIMATORS, build_estimator
from fairseq_xattn.explain.explainer import Explainer, ExplainSettings
from fairseq_xattn.explain.mask_designs import MASK_DESIGNS
from fairseq_xattn.explain.masks import MaskSampler
from fairseq_xattn.explain.scorers import get_scorer
from fairseq_xattn.maps.normalisers import normalise
from fairseq_xattn.maps.reliability import map_reliability

from .oracles import RegionOracle

ESTIMATOR_NAMES = sorted(ESTIMATORS)
DESIGN_NAMES = sorted(MASK_DESIGNS)
EOS = 2
TOKENS = torch.tensor([4, 5, EOS])


# ---------------------------------------------------------------- score functions of the mask bits
def score_function(bits: torch.Tensor) -> torch.Tensor:
    """A known non-additive "model": k x 4 cell bits -> k x 2 scores."""
    o = bits.double()
    tok0 = 3 * o[:, 0] + o[:, 1] + 2 * o[:, 0] * o[:, 2] + 0.5
    tok1 = 2 * torch.maximum(o[:, 1], o[:, 3]) + o[:, 2] * (1 - o[:, 0])
    return torch.stack([tok0, tok1], 1)


def population(labels, p):
    """Exact paper population map (2 x 4 cells) by enumeration, levels weighted equally."""
    maps = []
    for lab in labels:
        n_units = int(lab.max()) + 1
        num, den = np.zeros((2, n_units)), np.zeros(n_units)
        for unit_bits in itertools.product([0, 1], repeat=n_units):
            ub = torch.tensor(unit_bits, dtype=torch.bool)
            w = p ** sum(unit_bits) * (1 - p) ** (n_units - sum(unit_bits))
            s = score_function(ub[lab][None])[0].numpy()
            num += w * np.outer(s, unit_bits)
            den += w * np.array(unit_bits)
        maps.append((num / den)[:, lab.numpy()])
    return np.mean(maps, axis=0)


LABELS = [torch.arange(4), torch.tensor([0, 0, 1, 1])]  # level 0: every cell a unit; level 1: two pairs


def test_population_by_hand():
    # p = 0.5, token 0, cell 0 at level 0: E[3 + o1 + 2 o2 + 0.5] = 3 + 0.5 + 1 + 0.5 = 5
    assert population([LABELS[0]], 0.5)[0, 0] == pytest.approx(5.0)


def whole_population_map(estimator, p, weight, copies=1):
    """Fed every mask with a multiplicity proportional to its probability (weight^k for k occluded
    units: p = weight / (weight + 1)), ``copies`` times: the sample IS the population."""
    est = build_estimator(estimator, 2, LABELS, [4, 2], p)
    for level, n_units in enumerate([4, 2]):
        rows = []
        for unit_bits in itertools.product([0, 1], repeat=n_units):
            rows += [unit_bits] * weight ** sum(unit_bits)
        # level 1 has fewer distinct masks: repeat them so that both levels have as many masks
        reps = (weight + 1) ** (4 - n_units) * copies
        occ = torch.tensor(rows * reps, dtype=torch.bool)
        est.add(level, score_function(occ[:, LABELS[level]]), occ)
    return est.saliency().numpy()


@pytest.mark.parametrize("estimator", ["paper", "difference"])
@pytest.mark.parametrize("p,weight", [(0.5, 1), (0.75, 3)])
def test_ratio_and_difference_estimators_are_exact_on_the_whole_mask_population(estimator, p, weight):
    np.testing.assert_allclose(whole_population_map(estimator, p, weight), population(LABELS, p),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("p,weight", [(0.5, 1), (0.75, 3)])
def test_regression_is_exact_on_the_population_up_to_its_ridge_shrinkage(p, weight):
    """Least squares on the whole (orthogonal) population gives the marginal differences exactly; the
    ridge weight (empirical Bayes) shrinks them by lambda / (N p (1-p) + lambda): a bias falling as 1/N."""
    truth = population(LABELS, p)
    small = np.abs(whole_population_map("regression", p, weight, copies=1) - truth).max()
    large = np.abs(whole_population_map("regression", p, weight, copies=1000) - truth).max()
    assert large < 1e-3 and large < small / 100


@pytest.mark.parametrize("design", DESIGN_NAMES)
@pytest.mark.parametrize("estimator", ESTIMATOR_NAMES)
def test_every_estimator_and_design_is_unbiased_for_random_masks(estimator, design):
    """Mean over 60 utterances (independent masks) of 1280-mask maps = the population map."""
    p = 0.5
    maps = []
    for rep in range(60):
        sampler = MaskSampler([4, 2], p, seed=1, utt_id=f"u{rep}", design=design)
        batch = sampler.batch(0, 1280)
        est = build_estimator(estimator, 2, LABELS, [4, 2], p)
        for level, occ in batch.occluded.items():
            est.add(level, score_function(occ[:, LABELS[level]]), occ)
        maps.append(est.saliency().numpy())
    truth = population(LABELS, p)
    mean = np.mean(maps, axis=0)
    # per-map noise here is about 0.04; the mean of 60 has about 0.005
    np.testing.assert_allclose(mean, truth, atol=0.03)
    assert np.abs(np.array(maps) - truth).max() < 0.5   # and no map is wildly off


def test_regression_removes_the_variance_of_the_other_units():
    """Additive score over 60 units: the paper's noise is the other units' effects; the regression
    fits them away (10x+ smaller error), the difference estimator is no worse than the paper's."""
    rng = np.random.default_rng(0)
    n_units, p = 60, 0.5
    effects = torch.tensor(rng.standard_normal(n_units))
    truth = (1 - p) * effects.numpy()     # the population map minus its constant E[s]
    errors = {name: [] for name in ESTIMATOR_NAMES}
    for rep in range(5):
        occ = MaskSampler([n_units], p, seed=rep, utt_id="a").batch(0, 1000).occluded[0]
        scores = (occ.double() @ effects)[:, None]
        for name in ESTIMATOR_NAMES:
            est = build_estimator(name, 1, [torch.arange(n_units)], [n_units], p)
            est.add(0, scores, occ)
            m = est.saliency().numpy()[0]
            errors[name].append(np.mean(((m - m.mean()) - (truth - truth.mean())) ** 2))
    mse = {k: float(np.mean(v)) for k, v in errors.items()}
    assert mse["regression"] < 0.1 * mse["paper"]
    assert mse["difference"] < 1.1 * mse["paper"]


def test_difference_equals_paper_under_the_balanced_design():
    """Balanced blocks occlude every unit in exactly half the masks: p_hat = p, the two coincide."""
    rng = np.random.default_rng(1)
    labels = [torch.arange(10), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])]
    sampler = MaskSampler([10, 5], 0.5, seed=1, utt_id="b", design="balanced")
    batch = sampler.batch(0, 2 * 3 * 64)
    ests = {n: build_estimator(n, 2, labels, [10, 5], 0.5) for n in ("paper", "difference")}
    for level, occ in batch.occluded.items():
        scores = torch.tensor(rng.standard_normal((occ.shape[0], 2))) + occ[:, labels[level]][:, :2].double()
        for e in ests.values():
            e.add(level, scores, occ)
    np.testing.assert_allclose(ests["paper"].saliency().numpy(), ests["difference"].saliency().numpy(),
                               rtol=1e-10)


# ------------------------------------------------------------------------ through the explainer
T, F = 5, 3


def frames_oracle():
    region = torch.zeros(T, F, dtype=torch.bool)
    region[[1, 3]] = True
    return RegionOracle(region, scale=3.0)


def features():
    return torch.arange(1, T * F + 1, dtype=torch.float32).reshape(T, F) / 10


def encoder_population(oracle, p):
    """Exact population SM^H of the oracle: all 2^T frame masks through the model and the KL scorer."""
    x = features()
    ref = oracle._logprobs(x[None])[0]
    masks = torch.tensor(list(itertools.product([0, 1], repeat=T)), dtype=torch.bool)
    kl = get_scorer("kl")(ref, oracle._logprobs(x[None] * (~masks)[:, :, None])).double().numpy()  # 32 x I
    k = masks.sum(1).numpy()
    w = p ** k * (1 - p) ** (T - k)
    o = masks.numpy().astype(float)
    return (kl.T * w) @ o / (w @ o)


def explain(adapter, utt="u", **kw):
    kw.setdefault("target", "encoder")
    kw.setdefault("p", 0.5)
    return Explainer(adapter, ExplainSettings(**kw)).explain(utt, features(), TOKENS, EOS)


@pytest.mark.parametrize("design", DESIGN_NAMES)
@pytest.mark.parametrize("estimator", ESTIMATOR_NAMES)
def test_explainer_maps_converge_to_the_exact_population_map(estimator, design):
    oracle = frames_oracle()
    truth = encoder_population(oracle, 0.5)
    # a map with structure to get right: the frames the model reads stand out in every row
    assert (truth[:, [1, 3]].min(1) > 1.4 * truth[:, [0, 2, 4]].max(1)).all()
    maps = [explain(oracle, f"u{i}", n_masks=3200, estimator=estimator, mask_design=design).saliency
            for i in range(4)]
    np.testing.assert_allclose(np.mean(maps, 0), truth, rtol=0.05, atol=0.02 * truth.max())


@pytest.mark.parametrize("design", DESIGN_NAMES)
@pytest.mark.parametrize("estimator", ESTIMATOR_NAMES)
def test_maps_do_not_depend_on_batching_or_on_other_utterances(estimator, design):
    oracle = frames_oracle()
    kw = dict(n_masks=300, estimator=estimator, mask_design=design)
    a = explain(oracle, "x", mask_batch_size=300, **kw)
    b = explain(oracle, "x", mask_batch_size=7, **kw)
    np.testing.assert_allclose(a.saliency, b.saliency, rtol=1e-5, atol=1e-7)
    # one explainer over several utterances (a shard, another order): the same map for "x"
    explainer = Explainer(oracle, ExplainSettings(target="encoder", p=0.5, mask_batch_size=64, **kw))
    explainer.explain("y", features() * 2, TOKENS, EOS)
    c = explainer.explain("x", features(), TOKENS, EOS)
    np.testing.assert_allclose(a.saliency, c.saliency, rtol=1e-5, atol=1e-7)
    assert a.n_masks == 300 and len(a.half_maps) == 2
    # and another utterance id draws other masks
    assert not np.allclose(explain(oracle, "z", **kw).saliency, a.saliency)


@pytest.mark.parametrize("estimator", ESTIMATOR_NAMES)
def test_reliability_is_returned_and_grows_with_the_masks(estimator):
    oracle = RegionOracle(torch.tensor([[True] * F] + [[False] * F] * (T - 1)))
    few = explain(oracle, n_masks=64, estimator=estimator, p=0.5)
    many = explain(oracle, n_masks=4000, estimator=estimator, p=0.5)
    assert few.reliability_per_token.shape == (3,)
    assert 0 <= few.reliability <= 1 and 0 < many.reliability <= 1
    assert many.reliability > 0.9 and many.reliability >= few.reliability
    # the analysis rows (here: without EOS) from the stored halves
    assert many.reliability_of_rows(0, -1) == pytest.approx(
        map_reliability(many.half_maps[0][:-1], many.half_maps[1][:-1]))


@pytest.mark.parametrize("estimator,design", [("paper", "bernoulli"), ("regression", "balanced")])
def test_early_stop_with_every_estimator_is_a_prefix_of_the_full_run(estimator, design):
    oracle = frames_oracle()
    kw = dict(estimator=estimator, mask_design=design)
    res = explain(oracle, n_masks=20000, early_stop=0.99, early_stop_interval=256, early_stop_min_masks=512, **kw)
    assert 512 <= res.n_masks < 20000 and res.n_masks % 256 == 0
    same = explain(oracle, n_masks=res.n_masks, **kw)
    np.testing.assert_allclose(res.saliency, same.saliency, rtol=1e-5)
    r = np.corrcoef(normalise(res.saliency, "spes").ravel(),
                    normalise(encoder_population(oracle, 0.5), "spes").ravel())[0, 1]
    assert r > 0.97


def test_reliability_of_the_pooled_analysis_view_of_an_input_map():
    """Input maps: the analysis correlates SPES-normalised, max2d-pooled maps; the reliability of that
    view comes from the halves pooled the same way."""
    from fairseq_xattn.maps.normalisers import normalise as norm
    from fairseq_xattn.maps.pooling import aggregate

    region = torch.zeros(24, 8, dtype=torch.bool)
    region[8:12] = True
    x = torch.rand(24, 8, generator=torch.Generator().manual_seed(0)) + 1
    res = Explainer(RegionOracle(region), ExplainSettings(target="input", n_masks=600, mask_batch_size=64,
                                                          estimator="difference")).explain("u", x, TOKENS, EOS)
    a, b = (aggregate(norm(h[:-1], "spes"), "max2d", 4) for h in res.half_maps)
    assert a.shape == (2, 6)
    assert res.reliability_of_rows(0, -1, pool="max2d", subsampling=4) == pytest.approx(map_reliability(a, b, view=None))
    assert 0 < res.reliability_of_rows(0, -1, pool="max2d", subsampling=4) <= 1


@pytest.mark.parametrize("design", ["bernoulli", "balanced"])
@pytest.mark.parametrize("estimator", ESTIMATOR_NAMES)
def test_edge_probabilities_give_the_papers_maps(estimator, design):
    """p = 0: no cell ever occluded -> all zeros; p = 1: every mask blanks everything -> flat rows equal
    to the KL of the blank input (no kept mask to compare with: the mean over the occluding masks)."""
    oracle = frames_oracle()
    zero = explain(oracle, n_masks=128, p=0.0, estimator=estimator, mask_design=design)
    assert np.all(zero.saliency == 0)
    one = explain(oracle, n_masks=128, p=1.0, estimator=estimator, mask_design=design)
    ref = oracle._logprobs(features()[None])[0]
    blank = oracle._logprobs(torch.zeros(1, T, F))[0]
    kl = (ref.exp() * (ref - blank)).sum(-1).numpy()
    np.testing.assert_allclose(one.saliency, np.repeat(kl[:, None], T, 1), rtol=1e-5)
