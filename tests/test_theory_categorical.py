"""The categorical theory module (THEORY.md §7–8): identities, worked numbers, NumPy Monte-Carlo oracles and
input validation. No JAX: these tests check the formulas themselves, independently of the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects, chain_mean_se
from scipy import special

from collapse_theory.theory import categorical as c


def test_zipf_probs_and_tail_mass():
    p = c.zipf_probs(1000, 1.5)
    assert p.shape == (1000,) and abs(p.sum() - 1) < 1e-12 and np.all(np.diff(p) < 0)
    np.testing.assert_allclose(c.zipf_probs(5, 0.0), np.full(5, 0.2))
    np.testing.assert_allclose(c.zipf_tail_mass(1000, 1.5, 10), p[10:].sum())
    # K = infinity asymptote of the tail beyond h: within a few % at h = 100, beta = 2 (with K = 10^6)
    assert abs(c.zipf_tail_mass(10**6, 2.0, 100) / c.zipf_tail_mass_asymptote(100, 2.0) - 1) < 0.01
    assert c.expected_tail_mass(p, 10) == pytest.approx(p[10:].sum())


def test_heterozygosity_worked_numbers():
    # STYLE.md §2F: K = 5 uniform, M = 10, T = 10
    assert c.expected_heterozygosity(10, 10, 0.8) == pytest.approx(0.8 * 0.9**10, rel=1e-14)
    t = np.arange(0, 6)
    acc = c.expected_heterozygosity(t, 7, 0.5, "accumulate")
    manual = 0.5 * np.concatenate([[1.0], np.cumprod(1 - 1 / (7 * np.arange(1, 6) ** 2))])
    np.testing.assert_allclose(acc, manual, rtol=1e-14)
    # THEORY.md §16: M = 50, limit sinc(pi/sqrt(50)) = 0.96742
    assert c.accumulate_heterozygosity_limit(50) == pytest.approx(0.96742, abs=5e-6)
    assert c.expected_heterozygosity(20000, 50, 1 - 1e-12, "accumulate") == pytest.approx(
        c.accumulate_heterozygosity_limit(50), rel=1e-4)


def test_transition_matrix_is_stochastic_and_absorbing():
    p = c.transition_matrix(12)
    assert p.shape == (13, 13)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-13)
    assert p[0, 0] == 1.0 and p[12, 12] == 1.0
    np.testing.assert_allclose(p @ np.arange(13), np.arange(13), rtol=1e-12)  # martingale: E c' = c


def test_survival_and_fixation_identities():
    p0 = c.zipf_probs(8, 1.0)
    m = 6
    # one fit: survival 1 - (1-p)^M, fixation p^M
    np.testing.assert_allclose(c.survival_probability(1, m, p0), 1 - (1 - p0) ** m, rtol=1e-12)
    np.testing.assert_allclose(c.fixation_probability(1, m, p0), p0**m, rtol=1e-12)
    s = c.survival_probability(np.arange(0, 40), m, p0)
    assert s.shape == (40, 8) and np.all(np.diff(s, axis=0) <= 1e-15)
    np.testing.assert_allclose(s[0], 1.0)
    # fixation increases to p0 (Shumailov: end on i with probability p_0,i); the events are disjoint
    f = c.fixation_probability([5, 50, 400], m, p0)
    assert np.all(np.diff(f, axis=0) >= 0) and np.all(f.sum(axis=1) <= 1 + 1e-12)
    np.testing.assert_allclose(f[-1], c.eventual_fixation_probability(p0), atol=1e-10)
    # expected survivors, zero count and lost mass are consistent sums
    assert c.expected_surviving(3, m, p0) + c.expected_zero_count(3, m, p0) == pytest.approx(8)
    assert c.expected_lost_mass(1, m, p0) == pytest.approx(c.memorizer_error(m, p0), rel=1e-12)
    assert c.not_fixed_probability(4, m, p0) == pytest.approx(1 - c.fixation_probability(4, m, p0).sum())


def test_first_fit_zero_count():
    assert c.first_fit_zero_count(10, 10) == pytest.approx(3.4868, abs=5e-5)  # THEORY.md §16
    p = c.zipf_probs(30, 1.2)
    assert c.first_fit_zero_count(30, 25, p) == pytest.approx(np.sum((1 - p) ** 25), rel=1e-12)
    assert c.first_fit_zero_count(30, 25, p) == pytest.approx(c.expected_zero_count(1, 25, p), rel=1e-10)


def test_fixation_time_moments_against_the_series_and_geometric_case():
    assert c.fixation_time_moments(2, [0.5, 0.5]) == pytest.approx((2.0, 2.0))  # geometric(1/2)
    p = np.full(10, 0.1)
    mean, var = c.fixation_time_moments(10, p)
    t = np.arange(1, 4000)
    tail = c.not_fixed_probability(t, 10, p)
    assert mean == pytest.approx(1 + tail.sum(), rel=1e-10)
    assert var == pytest.approx(1 + np.sum((2 * t + 1) * tail) - (1 + tail.sum()) ** 2, rel=1e-8)


def test_diffusion_approximations_are_close_but_not_exact():
    """Kimura/Littler: approximations. Uniform K = 10 at M = 100: Littler's 1.90 M within 2% of the exact mean."""
    exact, _ = c.fixation_time_moments(100, np.full(10, 0.1))
    approx = c.expected_fixation_time_diffusion(100, np.full(10, 0.1))
    assert approx == pytest.approx(-2 * 100 * 10 * 0.9 * math.log(0.9))
    assert abs(approx / exact - 1) < 0.02 and approx != exact
    # two types at 1/2: -2M[p ln p + (1-p) ln(1-p)] = 1.386 M
    assert c.expected_fixation_time_diffusion(50, [0.5, 0.5]) == pytest.approx(2 * 50 * math.log(2))
    # survival of a rare category (count 4 of M = 400) after t = 100 fits: 1 - exp(-2Mq/t) within 10%
    q = np.array([0.01])
    ex = c.survival_probability(100, 400, q)[0]
    ap = c.survival_probability_diffusion(100, 400, q)[0]
    assert abs(ap / ex - 1) < 0.1


def test_memorizer_error_and_power_law():
    # THEORY.md §8: beta = 2, T = 1e4: exact 0.0069096 (K = infinity) vs 0.0069099 (asymptote)
    k = 10**6
    p = c.zipf_probs(k, 2.0)
    beyond = (1 / k) / special.zeta(2.0)  # mass beyond rank K, never seen at T = 1e4
    exact_inf = c.memorizer_error(10_000, p) * (1 - beyond) + beyond
    assert exact_inf == pytest.approx(0.0069096, abs=2e-7)
    assert c.memorizer_error_asymptote(10_000, 2.0) == pytest.approx(0.0069099, abs=2e-7)
    np.testing.assert_allclose(c.memorizer_error([0, 1], [0.25, 0.75]), [1.0, 2 * 0.25 * 0.75])
    # tail mass lost in one generation: the memorizer error restricted to the tail
    p = c.zipf_probs(100, 1.2)
    assert c.tail_mass_lost_per_generation(50, p) == pytest.approx(c.memorizer_error(50, p), rel=1e-14)
    assert c.tail_mass_lost_per_generation(50, p, 10) == pytest.approx(np.sum(p[10:] * (1 - p[10:]) ** 50))
    # tail cutting: no cut = memorizer error; a cut adds the lost tail as a plateau
    p = c.zipf_probs(200, 1.5)
    assert c.tail_cut_memorizer_error(50, p, 200) == pytest.approx(c.memorizer_error(50, p))
    assert c.tail_cut_memorizer_error(10**6, p, 20) == pytest.approx(p[20:].sum(), rel=1e-6)


def test_wright_fisher_numpy_oracle():
    """An independent NumPy Wright-Fisher simulation (np.random.multinomial, 20 000 chains) matches the exact
    survivor count and heterozygosity, and rejects the generation-index-shifted formulas."""
    rng = np.random.default_rng(7)
    k, m, t_max, chains = 12, 10, 6, 20000
    p0 = c.zipf_probs(k, 1.0)
    p = np.tile(p0, (chains, 1))
    for _ in range(t_max):
        p = np.array([rng.multinomial(m, row) for row in p]) / m
    surv_mean, surv_se = chain_mean_se((p > 0).sum(axis=1))
    assert_close_to_theory(surv_mean, surv_se, c.expected_surviving(t_max, m, p0), label="numpy WF survivors")
    assert_rejects(surv_mean, surv_se, c.expected_surviving(t_max - 1, m, p0), label="numpy WF survivors t-1")
    h_mean, h_se = chain_mean_se(1 - (p**2).sum(axis=1))
    h0 = c.heterozygosity(p0)
    assert_close_to_theory(h_mean, h_se, c.expected_heterozygosity(t_max, m, h0), label="numpy WF H")
    assert_rejects(h_mean, h_se, c.expected_heterozygosity(t_max, m - 1, h0), label="numpy WF H, M-1")


def _smoothed_chain_exact(p0, m, alpha, t_max):
    """E p_t and E Σ p_t² of the add-α smoothed replace chain by enumerating every count vector (K = len(p0)):
    the state after a fit is its counts c, the next counts are Multinomial(M, (c + α)/(M + Kα))."""
    import itertools

    from scipy import stats

    k = len(p0)
    states = [c for c in itertools.product(range(m + 1), repeat=k) if sum(c) == m]
    probs_of = np.array([(np.array(c) + alpha) / (m + k * alpha) for c in states])
    first = np.array([stats.multinomial.pmf(c, m, p0) for c in states])
    step = np.array([[stats.multinomial.pmf(c, m, q) for c in states] for q in probs_of])
    dist, mean, square = first, [], []
    for _ in range(t_max):
        mean.append(dist @ probs_of)
        square.append(dist @ (probs_of**2).sum(axis=1))
        dist = dist @ step
    return np.array(mean), np.array(square)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 2.0])
def test_smoothed_chain_against_exact_enumeration(alpha):
    """``expected_smoothed_probs`` and ``expected_smoothed_heterozygosity`` equal the exact expectations of the
    smoothed chain computed by enumerating its states (K = 3, M = 4, six fits): an independent derivation of both
    recursions. α = 0 is Wright–Fisher."""
    p0, m, t_max = np.array([0.6, 0.3, 0.1]), 4, 6
    mean, square = _smoothed_chain_exact(p0, m, alpha, t_max)
    t = np.arange(1, t_max + 1)
    np.testing.assert_allclose(c.expected_smoothed_probs(t, m, p0, alpha), mean, rtol=1e-12, atol=1e-14)
    h0 = c.heterozygosity(p0)
    np.testing.assert_allclose(c.expected_smoothed_heterozygosity(t, m, h0, alpha, 3), 1 - square, rtol=1e-12)
    if alpha == 0:
        np.testing.assert_allclose(1 - square, c.expected_heterozygosity(t, m, h0), rtol=1e-12)
    else:  # the drift–mutation balance: far from Wright–Fisher's decay to 0
        assert c.smoothed_heterozygosity_limit(m, alpha, 3) > 0.2
        assert np.all(np.abs(1 - square - c.expected_heterozygosity(t, m, h0))[2:] > 0.02)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: c.expected_smoothed_probs(2, 10, [0.5, 0.5], -0.1), "smoothing=-0.1"),
        (lambda: c.expected_smoothed_heterozygosity(2, 10, 0.5, np.inf, 3), "smoothing=inf"),
        (lambda: c.expected_smoothed_heterozygosity(2, 10, 0.5, 0.1, 0), "num_categories=0"),
        (lambda: c.zipf_probs(1, 1.0), "num_categories=1"),
        (lambda: c.zipf_probs(10, -0.5), "beta=-0.5"),
        (lambda: c.expected_heterozygosity(3, 0, 0.5), "num_samples=0"),
        (lambda: c.expected_heterozygosity(-1, 10, 0.5), "num_fits"),
        (lambda: c.expected_heterozygosity(3, 10, 1.0), "h0=1.0"),
        (lambda: c.expected_heterozygosity(3, 10, 0.5, "subsample"), "regime='subsample'"),
        (lambda: c.survival_probability(2, 10, [0.5, 1.5]), "outside \\[0, 1\\]"),
        (lambda: c.expected_surviving(2, 10, [0.5, 0.4]), "sums to 0.9"),
        (lambda: c.expected_surviving(2, 10, [0.5, np.nan, 0.5]), "non-finite"),
        (lambda: c.transition_matrix(10**6), "num_samples=1000000"),
        (lambda: c.first_fit_zero_count(10, 5, [0.5, 0.5]), "num_categories=10"),
        (lambda: c.memorizer_error_asymptote(100, 1.0), "beta=1.0"),
        (lambda: c.tail_cut_memorizer_error(10, [0.5, 0.5], 3), "cut=3"),
        (lambda: c.zipf_tail_mass(10, 1.0, 10), "head=10"),
        (lambda: c.fixation_time_moments(0, [1.0]), "num_samples=0"),
        (lambda: c.expected_smoothed_heterozygosity(3, 10, 0.95, 0.1, 2), "h0=0.95 is out of range: need h0 <= 1 - "
                                                                           "1/num_categories = 0.5"),
        (lambda: c.expected_surviving([], 10, [0.5, 0.5]), "num_fits=.* is empty"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_array_fit_counts_keep_their_shape_and_huge_ones_need_no_table():
    """A 2-D ``num_fits`` raised an IndexError in the Wright–Fisher marginals; the accumulate product was a table of
    t factors (t = 10⁹ allocated 8 GB): it is now exact up to 10⁵ factors and a trigamma tail beyond."""
    t = np.array([[1, 2], [3, 4]])
    fix = c.fixation_probability(t, 10, [0.5, 0.5])
    assert fix.shape == (2, 2, 2)
    np.testing.assert_allclose(fix[1, 0], c.fixation_probability(3, 10, [0.5, 0.5]))
    assert c.expected_surviving(t, 10, [0.5, 0.5]).shape == (2, 2)
    far = np.array([100_000, 100_001, 250_000])
    direct = [0.8 * np.prod(1 - 1 / (10 * np.arange(1, k + 1, dtype=float) ** 2)) for k in far]
    np.testing.assert_allclose(c.expected_heterozygosity(far, 10, 0.8, "accumulate"), direct, rtol=1e-13)
    assert c.expected_heterozygosity(10**12, 10, 0.8, "accumulate") == pytest.approx(
        c.accumulate_heterozygosity_limit(10, 0.8), rel=1e-12)
