"""Tests for collapse_theory.theory.gaussian (NumPy/SciPy closed forms; no JAX).

Deterministic checks against the worked numbers of THEORY.md §1.4, §1.6, §2 and
§16, internal consistency identities, brute-force quadrature, input validation,
and two small fixed-seed NumPy Monte-Carlo checks of the formulas derived for
this module (pooled-unbiased accumulate chain, MLE fresh-data loop).
"""

import doctest
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from collapse_theory.theory import _validate
from collapse_theory.theory import gaussian as g

# --------------------------------------------------------------------------
# Worked numbers from THEORY.md
# --------------------------------------------------------------------------

WORKED = [
    # (label, value, expected, abs tolerance = half a unit in the last quoted digit)
    ("§16 E sigma_n, M=10 n=10 ddof=1", lambda: g.expected_std(10, 10), 0.75789, 5e-6),
    ("§16 E log sigma^2, M=10 n=10 ddof=1", lambda: g.expected_log_variance(10, 10), -1.15206, 5e-6),
    ("§16 E (mu_n-mu)^2 = n/M", lambda: g.expected_mean_sq_error(10, 10), 1.0, 1e-14),
    ("§16 E W2^2, M=10 n=10 ddof=1", lambda: g.expected_w2_squared(10, 10), 1.48422, 5e-6),
    ("§16 E W2^2, M=100 n=100 ddof=1", lambda: g.expected_w2_squared(100, 100), 1.44632, 5e-6),
    ("§16 E sigma_n^2 martingale", lambda: g.expected_variance(10, 10), 1.0, 1e-14),
    ("§16 E sigma_n^2, ddof=0", lambda: g.expected_variance(10, 10, ddof=0), 0.34868, 5e-6),
    ("§16 E sigma_n, ddof=0", lambda: g.expected_std(10, 10, ddof=0), 0.44753, 5e-6),
    ("§16 E (mu_n-mu)^2, ddof=0", lambda: g.expected_mean_sq_error(10, 10, ddof=0), 0.65132, 5e-6),
    ("§16 E W2^2, ddof=0", lambda: g.expected_w2_squared(10, 10, ddof=0), 1.10494, 5e-6),
    ("§16 det ratio d=3 M=10 n=1", lambda: g.expected_det_ratio(1, 10, 3), 0.504, 1e-12),
    ("§16 accumulate limit M=10", lambda: g.accumulate_variance_limit(10), 0.84344, 5e-6),
    ("§16 accumulate limit M=100", lambda: g.accumulate_variance_limit(100), 0.98363, 5e-6),
    ("§16 categorical accumulate sinc M=50", lambda: g.accumulate_variance_limit(50), 0.96742, 5e-6),
    ("§16 accumulate mean error d=3 M=10 n=40",
     lambda: g.expected_accumulate_mean_sq_error(40, 10, trace=3.0), 0.4634, 5e-5),
    ("§2.3 pi^2/6 bound d=3 M=10", lambda: g.accumulate_mean_sq_error_bound(10, trace=3.0), 0.4935, 5e-5),
    ("§16 fresh stationary mean error M=20 gamma=.25",
     lambda: g.stationary_fresh_mean_sq_error(20, 0.25), 0.12258, 5e-6),
    ("§2.4 fresh stationary variance M=20 gamma=.25",
     lambda: g.stationary_fresh_variance(20, 0.25), 1.0968, 5e-5),
    ("§1.6 exact E W2^2 M=20 n=5", lambda: g.expected_w2_squared(5, 20), 0.3773, 5e-5),
    ("§1.6 Shumailov approx M=20 n=5", lambda: g.shumailov_w2_squared_approx(5, 20), 0.375, 1e-14),
    ("§1.4 Var(X^n) M=100 n=10", lambda: g.expected_marginal_variance(10, 100), 1.1, 1e-14),
    ("§1.4 E R^11 with M_0..M_10 = 100", lambda: g.shumailov_w2_squared_approx(11, [100] * 11), 0.165, 1e-14),
    ("§2.1 M=5 n=15 E sigma", lambda: g.expected_std(15, 5), 0.3952, 5e-5),
    ("§2.1 M=5 n=15 E log sigma^2", lambda: g.expected_log_variance(15, 5), -4.055, 5e-4),
    ("§2.1 M=5 n=15 E (mu-mu0)^2", lambda: g.expected_mean_sq_error(15, 5), 3.0, 1e-14),
    ("§2.1 M=20 ddof=0 n=60 E sigma", lambda: g.expected_std(60, 20, ddof=0), 0.0975, 5e-5),
    ("§2.1 M=20 ddof=0 n=60 E W2^2", lambda: g.expected_w2_squared(60, 20, ddof=0), 1.805, 5e-4),
    ("§2.1 M=20 ddof=1 n=30 E W2^2", lambda: g.expected_w2_squared(30, 20), 2.152, 5e-4),
    ("§2.2 trace ratio d=3 M=10 n=10", lambda: g.expected_trace_ratio(10, 10), 0.3487, 5e-5),
    ("§2.2 E||mu||^2 d=3 M=10 n=10", lambda: g.expected_mean_sq_norm(10, 10, trace=3.0), 1.954, 5e-4),
    ("§2.2 E log det d=3 M=10 n=40", lambda: g.expected_log_det_ratio(40, 10, 3), -43.21, 5e-3),
    ("STYLE §2F E log sigma^2 m=20 T=50 ddof=0", lambda: g.expected_log_variance(50, 20, ddof=0), -5.242, 5e-4),
    ("STYLE §2F sd log sigma^2 m=20 T=50",
     lambda: math.sqrt(g.variance_of_log_variance(50, 20, ddof=0)), 2.36, 5e-3),
]


@pytest.mark.parametrize("label,fn,expected,tol", WORKED, ids=[w[0] for w in WORKED])
def test_worked_numbers(label, fn, expected, tol):
    assert abs(float(fn()) - expected) <= tol, (label, float(fn()), expected)


def test_shumailov_approx_agrees_to_first_order():
    # (3/2) n/M vs exact: difference O(n/M^2) + O(n^2/M^2); relative gap shrinks like 1/M.
    gaps = [abs(g.expected_w2_squared(5, m) / g.shumailov_w2_squared_approx(5, m) - 1) for m in (20, 200, 2000)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 2e-3


def test_doctests_pass():
    for module in (g, _validate):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__


# --------------------------------------------------------------------------
# Constants and closed forms
# --------------------------------------------------------------------------


def test_c_and_a_factors_match_gamma_formulas():
    for k in (1, 2, 3, 9, 19, 99):
        direct = math.sqrt(2 / k) * math.gamma((k + 1) / 2) / math.gamma(k / 2)
        assert g.c_factor(k) == pytest.approx(direct, rel=1e-13)
    for m in (2, 3, 10, 20, 100):
        direct = math.sqrt(2 / m) * math.gamma(m / 2) / math.gamma((m - 1) / 2)
        assert g.a_factor(m) == pytest.approx(direct, rel=1e-13)
        assert g.a_factor(m) == pytest.approx(math.sqrt((m - 1) / m) * g.c_factor(m - 1), rel=1e-14)
    assert g.a_factor(1) == 0.0
    np.testing.assert_allclose(g.c_factor(np.array([9.0, 19.0])), [g.c_factor(9), g.c_factor(19)])


def test_c_factor_large_k_asymptotics():
    # c(k) = 1 - 1/(4k) + 1/(32k^2) + 5/(128k^3) + O(k^-4); gammaln differences would lose ~k*eps.
    for k in (1e4, 1e6, 1e8):
        series = 1 - 1 / (4 * k) + 1 / (32 * k**2) + 5 / (128 * k**3)
        assert abs(g.c_factor(k) - series) < 1e-15


def test_replace_chain_closed_forms_constant_m():
    n = np.arange(0, 30)
    for m in (2, 3, 5, 20):
        c = g.c_factor(m - 1)
        np.testing.assert_allclose(g.expected_std(n, m), c**n, rtol=1e-13)
        np.testing.assert_allclose(g.expected_w2_squared(n, m), n / m + 2 * (1 - c**n), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g.expected_marginal_variance(n, m), 1 + n / m, rtol=1e-14)
        np.testing.assert_allclose(g.expected_variance_squared(n, m), ((m + 1) / (m - 1)) ** n, rtol=1e-13)
        r = (m - 1) / m
        np.testing.assert_allclose(g.expected_variance(n, m, ddof=0), r**n, rtol=1e-13)
        np.testing.assert_allclose(g.expected_std(n, m, ddof=0), g.a_factor(m) ** n, rtol=1e-13)
        np.testing.assert_allclose(g.expected_mean_sq_error(n, m, ddof=0), 1 - r**n, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g.expected_marginal_variance(n, m, ddof=0), 1.0, rtol=1e-14)
        np.testing.assert_allclose(g.expected_w2_squared(n, m, ddof=0), 2 * (1 - g.a_factor(m) ** n),
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g.expected_variance_squared(n, m, ddof=0),
                                   ((m - 1) * (m + 1) / m**2) ** n, rtol=1e-13)
        psi = special.digamma((m - 1) / 2)
        np.testing.assert_allclose(g.expected_log_variance(n, m), n * (psi + math.log(2 / (m - 1))),
                                   rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g.expected_log_variance(n, m, ddof=0), n * (psi + math.log(2 / m)),
                                   rtol=1e-13, atol=1e-15)


def test_sigma2_scaling():
    kw = dict(num_fits=7, num_samples=6)
    for ddof in (0, 1):
        assert g.expected_variance(**kw, ddof=ddof, sigma2=4.0) == pytest.approx(
            4 * g.expected_variance(**kw, ddof=ddof))
        assert g.expected_std(**kw, ddof=ddof, sigma2=4.0) == pytest.approx(2 * g.expected_std(**kw, ddof=ddof))
        assert g.expected_w2_squared(**kw, ddof=ddof, sigma2=4.0) == pytest.approx(
            4 * g.expected_w2_squared(**kw, ddof=ddof))
        assert g.variance_of_variance(**kw, ddof=ddof, sigma2=4.0) == pytest.approx(
            16 * g.variance_of_variance(**kw, ddof=ddof))
        assert g.expected_log_variance(**kw, ddof=ddof, sigma2=4.0) == pytest.approx(
            math.log(4) + g.expected_log_variance(**kw, ddof=ddof))


def test_variance_of_variance_identity():
    n = np.arange(0, 40)
    for ddof in (0, 1):
        for sizes in (7, list(range(3, 43))):
            lhs = g.expected_variance_squared(n, sizes, ddof=ddof, sigma2=2.0) - g.expected_variance(
                n, sizes, ddof=ddof, sigma2=2.0) ** 2
            np.testing.assert_allclose(g.variance_of_variance(n, sizes, ddof=ddof, sigma2=2.0), lhs,
                                       rtol=1e-10, atol=1e-14)
    assert g.variance_of_variance(30, 5) == pytest.approx(1.5**30 - 1, rel=1e-12)  # THEORY.md §2.1 MC pitfall


def test_variance_of_variance_of_long_chains():
    """Found by review: exp(2 log E σ²) underflowed to 0 while expm1(growth) overflowed, so a long MLE chain got NaN
    (M = 10 from n ≈ 3550) and lost digits before it. For ddof=0, Var σ_n² = 0.99ⁿ − 0.81ⁿ at M = 10, sigma2=1."""
    for n in (3520, 3550, 10**4):
        assert g.variance_of_variance(n, 10, ddof=0) == pytest.approx(0.99**n - 0.81**n, rel=1e-10)
    assert g.variance_of_variance(10**4, 10) == np.inf  # ddof=1: about e^2007, beyond float64
    assert g.expected_variance_squared(3, 10, sigma2=1e300) == np.inf  # not an OverflowError from sigma2**2


def test_std_power_special_cases():
    n = np.arange(0, 12)
    for ddof in (0, 1):
        for sizes in (4, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]):
            np.testing.assert_allclose(g.expected_std_power(0, n, sizes, ddof=ddof), 1.0)
            # independent closed forms (review: comparing with expected_std / expected_variance compared a
            # function with itself): E σ̂ = sqrt(2/(M-ddof)) Γ(M/2)/Γ((M-1)/2), E σ̂² = (M-1)/(M-ddof) per fit
            ms = np.broadcast_to(np.asarray(sizes), (11,))
            e1 = [math.sqrt(2 / (m - ddof)) * math.exp(math.lgamma(m / 2) - math.lgamma((m - 1) / 2)) for m in ms]
            e2 = [(m - 1) / (m - ddof) for m in ms]
            np.testing.assert_allclose(g.expected_std_power(1, n, sizes, ddof=ddof),
                                       np.concatenate([[1.0], np.cumprod(e1)]), rtol=1e-12)
            np.testing.assert_allclose(g.expected_std(n, sizes, ddof=ddof), np.concatenate([[1.0], np.cumprod(e1)]),
                                       rtol=1e-12)
            np.testing.assert_allclose(g.expected_std_power(2, n, sizes, ddof=ddof),
                                       np.concatenate([[1.0], np.cumprod(e2)]), rtol=1e-12)
            np.testing.assert_allclose(g.expected_std_power(4.0, n, sizes, ddof=ddof),
                                       g.expected_variance_squared(n, sizes, ddof=ddof), rtol=1e-12)
    # Suresh et al.'s s = 0.7 moment, direct Gamma-function form (THEORY.md §2.1), ddof=1.
    m, s, k = 10, 0.7, 5
    direct = (math.gamma((m - 1 + s) / 2) / (math.gamma((m - 1) / 2) * ((m - 1) / 2) ** (s / 2))) ** k
    assert g.expected_std_power(s, k, m) == pytest.approx(direct, rel=1e-13)
    # negative power just inside the existence range: E[(chi2_k/k)^{s/2}] via quadrature
    m, s = 4, -2.5
    f = m - 1
    numeric = integrate.quad(lambda x: (x / f) ** (s / 2) * stats.chi2.pdf(x, m - 1), 0, np.inf)[0]
    assert g.expected_std_power(s, 1, m) == pytest.approx(numeric, rel=1e-8)


def test_log_moments_by_quadrature():
    """E and Var of log(chi2_k/f) by numerical integration, then sums over fits."""
    sizes = [2, 3, 5, 12, 40]

    def log_chi_moments(m, ddof):
        k, f = m - 1, m - ddof
        # substitute x = exp(u) so the integrable log singularity at 0 is harmless
        pdf = lambda u: stats.chi2.pdf(np.exp(u), k) * np.exp(u)  # noqa: E731
        mean = integrate.quad(lambda u: (u - math.log(f)) * pdf(u), -60, 10, limit=200)[0]
        second = integrate.quad(lambda u: (u - math.log(f)) ** 2 * pdf(u), -60, 10, limit=200)[0]
        return mean, second - mean**2

    for ddof in (0, 1):
        moments = [log_chi_moments(m, ddof) for m in sizes]
        for n in range(len(sizes) + 1):
            mean = sum(mu for mu, _ in moments[:n])
            var = sum(v for _, v in moments[:n])
            assert g.expected_log_variance(n, sizes, ddof=ddof, sigma2=3.0) == pytest.approx(
                math.log(3.0) + mean, rel=1e-8, abs=1e-9)
            assert g.variance_of_log_variance(n, sizes, ddof=ddof) == pytest.approx(var, rel=1e-8, abs=1e-9)
    # the same via scipy's chi2.expect for one fit
    assert g.expected_log_variance(1, 7) == pytest.approx(stats.chi2(6).expect(lambda x: np.log(x / 6)), rel=1e-8)


def test_log_variance_rate():
    for m in (2, 5, 10, 100):
        for ddof in (0, 1):
            # E log(σ̂²/σ²) per fit = ψ((M-1)/2) + log(2/(M-ddof)), written out (not via the module's helper)
            direct = special.digamma((m - 1) / 2) + math.log(2 / (m - ddof))
            assert g.log_variance_rate(m, ddof) == pytest.approx(direct, rel=1e-13)
            assert 13 * g.log_variance_rate(m, ddof) == pytest.approx(g.expected_log_variance(13, m, ddof=ddof))
    # a.s. rate -1/(M-1) - 1/(3(M-1)^2) + O(M^-3) (THEORY.md §2.1); the M^-3 term vanishes:
    # psi(x) - log x = -1/(2x) - 1/(12x^2) + 1/(120x^4) - ..., x = (M-1)/2. Negative for every M.
    for m in (50, 500, 10**6, 10**9):
        k = m - 1
        series = -1 / k - 1 / (3 * k**2) + 2 / (15 * k**4)
        assert abs(g.log_variance_rate(m) - series) < 1 / k**6 + 1e-15 * abs(series)
    assert np.all(g.log_variance_rate(np.arange(2, 200)) < 0)
    assert g.log_variance_rate(10, ddof=0) == pytest.approx(g.log_variance_rate(10) + math.log(0.9))


def test_replace_mean_error_varying_sizes_by_hand():
    sizes = [5, 10, 20, 8]
    # E (mu_n - mu)^2 = sum_{i<n} E sigma_i^2 / M_i with E sigma_i^2 = prod_{j<i} (M_j - 1)/(M_j - ddof)
    e_sig0 = np.cumprod([1.0] + [(m - 1) / m for m in sizes[:-1]])
    expected0 = np.cumsum(e_sig0 / np.array(sizes))
    np.testing.assert_allclose(g.expected_mean_sq_error([1, 2, 3, 4], sizes, ddof=0), expected0, rtol=1e-14)
    np.testing.assert_allclose(g.expected_mean_sq_error([1, 2, 3, 4], sizes, ddof=1),
                               np.cumsum(1 / np.array(sizes)), rtol=1e-14)
    c = [g.c_factor(m - 1) for m in sizes]
    assert g.expected_w2_squared(4, sizes) == pytest.approx(sum(1 / m for m in sizes) + 2 * (1 - np.prod(c)))
    assert g.expected_marginal_variance(4, sizes) == pytest.approx(1 + sum(1 / m for m in sizes))


ONE_D = [g.expected_variance, g.expected_variance_squared, g.variance_of_variance, g.expected_log_variance,
         g.variance_of_log_variance, g.expected_std, g.expected_mean_sq_error, g.expected_marginal_variance,
         g.expected_w2_squared]


@pytest.mark.parametrize("fn", ONE_D, ids=[f.__name__ for f in ONE_D])
@pytest.mark.parametrize("ddof", [0, 1])
def test_constant_sequence_equals_scalar(fn, ddof):
    n = np.arange(0, 25)
    np.testing.assert_allclose(fn(n, [7] * 30, ddof=ddof), fn(n, 7, ddof=ddof), rtol=1e-12, atol=1e-14)
    # only the first max(n) entries of a longer sequence matter
    assert fn(3, [7, 7, 7, 2], ddof=ddof) == pytest.approx(fn(3, 7, ddof=ddof), rel=1e-12, abs=1e-14)


def test_constant_sequence_equals_scalar_other_functions():
    n = np.arange(0, 15)
    np.testing.assert_allclose(g.shumailov_w2_squared_approx(n, [9] * 14), g.shumailov_w2_squared_approx(n, 9))
    np.testing.assert_allclose(g.expected_std_power(0.7, n, [9] * 14), g.expected_std_power(0.7, n, 9))
    for ddof in (0, 1):
        np.testing.assert_allclose(g.expected_trace_ratio(n, [9] * 14, ddof=ddof),
                                   g.expected_trace_ratio(n, 9, ddof=ddof))
        np.testing.assert_allclose(g.expected_det_ratio(n, [9] * 14, 3, ddof=ddof),
                                   g.expected_det_ratio(n, 9, 3, ddof=ddof))
        np.testing.assert_allclose(g.expected_log_det_ratio(n, [9] * 14, 3, ddof=ddof),
                                   g.expected_log_det_ratio(n, 9, 3, ddof=ddof))
        np.testing.assert_allclose(g.variance_of_log_det_ratio(n, [9] * 14, 3, ddof=ddof),
                                   g.variance_of_log_det_ratio(n, 9, 3, ddof=ddof))
        np.testing.assert_allclose(g.expected_mean_sq_norm(n, [9] * 14, ddof=ddof, trace=2.0),
                                   g.expected_mean_sq_norm(n, 9, ddof=ddof, trace=2.0))


def test_output_types_and_shapes():
    assert isinstance(g.expected_std(3, 10), np.float64)
    assert isinstance(g.expected_accumulate_variance_ratio(3, 10), np.float64)
    e2, s2 = g.fresh_fraction_moments(3, 20, 0.25)
    assert isinstance(e2, np.float64) and isinstance(s2, np.float64)
    n = np.array([[0, 1], [2, 3]])
    for out in (g.expected_std(n, 10), g.expected_log_det_ratio(n, 10, 2), g.expected_accumulate_mean_sq_error(n, 10),
                g.fresh_fraction_moments(n, 20, 0.25)[1], g.expected_w2_squared(n, [5, 6, 7])):
        assert out.shape == (2, 2) and out.dtype == np.float64
    np.testing.assert_allclose(g.expected_std(n, 10).ravel(), [g.expected_std(k, 10) for k in range(4)])


def test_degenerate_single_sample_mle():
    # ddof=0 with M=1: the first fit is a point mass; mu freezes after one N(0, sigma^2) step.
    n = np.array([0, 1, 5])
    np.testing.assert_array_equal(g.expected_variance(n, 1, ddof=0), [1, 0, 0])
    np.testing.assert_array_equal(g.expected_std(n, 1, ddof=0), [1, 0, 0])
    np.testing.assert_allclose(g.expected_mean_sq_error(n, 1, ddof=0), [0, 1, 1])
    np.testing.assert_allclose(g.expected_w2_squared(n, 1, ddof=0), [0, 2, 2])
    np.testing.assert_array_equal(g.variance_of_variance(n, 1, ddof=0), [0, 0, 0])
    np.testing.assert_array_equal(g.expected_accumulate_variance_ratio(n, 1), [1, 0, 0])
    assert g.accumulate_variance_limit(1) == 0.0


def test_large_m_precision():
    # The naive gammaln/digamma differences lose ~M*eps; the series keep full precision.
    m, n = 10**8, 10**9
    k = m - 1.0
    log_c = -1 / (4 * k) + 1 / (96 * k**3)  # log c(k) = -1/(4k) + 1/(96k^3) + O(k^-5)
    assert g.expected_std(n, m) == pytest.approx(math.exp(n * log_c), rel=1e-13)
    assert g.expected_log_variance(1, m) == pytest.approx(-1 / k - 1 / (3 * k**2), rel=1e-12)


# --------------------------------------------------------------------------
# d-dimensional replace chain
# --------------------------------------------------------------------------


def test_d_dim_closed_forms():
    n = np.arange(0, 12)
    m, d = 10, 3
    np.testing.assert_allclose(g.expected_trace_ratio(n, m), ((m - 1) / m) ** n, rtol=1e-13)
    np.testing.assert_allclose(g.expected_trace_ratio(n, m, ddof=1), 1.0)
    np.testing.assert_allclose(g.expected_det_ratio(n, m, d), (9 * 8 * 7 / 1000) ** n, rtol=1e-13)
    np.testing.assert_allclose(g.expected_det_ratio(n, m, d, ddof=1), (8 * 7 / 81) ** n, rtol=1e-13)
    per_fit = sum(special.digamma((m - i) / 2) + math.log(2 / m) for i in range(1, d + 1))
    np.testing.assert_allclose(g.expected_log_det_ratio(n, m, d), n * per_fit, rtol=1e-13)
    per_fit_var = sum(special.polygamma(1, (m - i) / 2) for i in range(1, d + 1))
    np.testing.assert_allclose(g.variance_of_log_det_ratio(n, m, d), n * per_fit_var, rtol=1e-13)
    np.testing.assert_allclose(g.expected_mean_sq_norm(n, m, trace=3.0), 3 * (1 - ((m - 1) / m) ** n),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g.expected_mean_sq_norm(n, m, ddof=1, trace=3.0), 3 * n / m, rtol=1e-13)


def test_d_dim_reduces_to_one_dim():
    n = np.arange(0, 10)
    for ddof in (0, 1):
        np.testing.assert_allclose(g.expected_log_det_ratio(n, 6, 1, ddof=ddof),
                                   g.expected_log_variance(n, 6, ddof=ddof), atol=1e-13)
        np.testing.assert_allclose(g.variance_of_log_det_ratio(n, 6, 1, ddof=ddof),
                                   g.variance_of_log_variance(n, 6, ddof=ddof), rtol=1e-14)
        np.testing.assert_allclose(g.expected_det_ratio(n, 6, 1, ddof=ddof), g.expected_variance(n, 6, ddof=ddof),
                                   rtol=1e-13)
        # independent closed forms (review: the 1-D functions share these expressions' code): E tr ratio =
        # ((M-1)/(M-ddof))^n, E‖μ_n-μ‖² = tr Σ Σ_{k<n} ((M-1)/(M-ddof))^k / M
        q = 5 / (6 - ddof)
        np.testing.assert_allclose(g.expected_trace_ratio(n, 6, ddof=ddof), q**n, rtol=1e-13)
        np.testing.assert_allclose(g.expected_mean_sq_norm(n, 6, ddof=ddof, trace=2.0),
                                   [2.0 * sum(q**k for k in range(t)) / 6 for t in n], rtol=1e-13)


def test_det_ratio_is_zero_when_m_not_above_d():
    n = np.array([0, 1, 4])
    np.testing.assert_array_equal(g.expected_det_ratio(n, 3, 3, singular="zero"), [1, 0, 0])
    np.testing.assert_array_equal(g.expected_det_ratio(n, 2, 5, ddof=1, singular="zero"), [1, 0, 0])
    # one singular fit in a sequence kills the determinant from then on
    np.testing.assert_allclose(g.expected_det_ratio([0, 1, 2, 3], [10, 10, 3, 10], 3, singular="zero"),
                               [1, 0.504, 0.504**2, 0], rtol=1e-13)


def test_det_ratio_refuses_m_not_above_d_unless_asked():
    """d > n for det is a bad input by default: the error names num_samples, the bound dim + 1 and the way to get
    the exact 0; a singular fit after the last one used (M_3 = 3 with n <= 2) is not an error."""
    with pytest.raises(ValueError, match=r"num_samples.*dim \+ 1.*singular='zero'"):
        g.expected_det_ratio(1, 3, 5)
    with pytest.raises(ValueError, match="num_samples"):
        g.expected_det_ratio([0, 1, 2, 3], [10, 10, 3, 10], 3)
    np.testing.assert_allclose(g.expected_det_ratio([0, 1, 2], [10, 10, 3, 10], 3), [1, 0.504, 0.504**2],
                               rtol=1e-13)
    with pytest.raises(ValueError, match="singular="):
        g.expected_det_ratio(1, 10, 3, singular="nan")
    assert g.expected_det_ratio(0, 3, 5) == 1.0  # the truth itself: no fit, nothing singular


# --------------------------------------------------------------------------
# Accumulate chain
# --------------------------------------------------------------------------


def _direct_accumulate_products(max_n, m, ddof):
    k = np.arange(1, max_n + 1, dtype=float)
    fac = 1 - 1 / (m * k**2) if ddof == 0 else np.where(k >= 2, 1 - 1 / (k * (k * m - 1)), 1.0)
    return np.concatenate([[1.0], np.cumprod(fac)])


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("m", [2, 3, 10, 100, 5000])
def test_accumulate_ratio_matches_direct_product(m, ddof):
    n = np.arange(0, 400)
    np.testing.assert_allclose(g.expected_accumulate_variance_ratio(n, m, ddof=ddof),
                               _direct_accumulate_products(399, m, ddof), rtol=1e-13)


def test_accumulate_indexing_first_fits():
    # n = 1 is the fit on the real batch: MLE bias (M-1)/M, unbiased pooled fit exact.
    assert g.expected_accumulate_variance_ratio(1, 10) == pytest.approx(0.9)
    assert g.expected_accumulate_variance_ratio(1, 10, ddof=1) == 1.0
    assert g.expected_accumulate_variance_ratio(2, 10) == pytest.approx(0.9 * (1 - 1 / 40))
    assert g.expected_accumulate_variance_ratio(2, 10, ddof=1) == pytest.approx(1 - 1 / (2 * 19))
    assert g.expected_accumulate_mean_sq_error(1, 10, trace=3.0) == pytest.approx(0.3)  # tr Sigma / M


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("m", [2, 10, 100])
def test_accumulate_ratio_converges_to_limit(m, ddof):
    limit = g.accumulate_variance_limit(m, ddof=ddof)
    values = g.expected_accumulate_variance_ratio(np.array([10, 1000, 10**5, 10**8]), m, ddof=ddof)
    assert np.all(np.diff(values) < 0) and np.all(values > limit)
    # tail of the product: log P_n - log P_inf ~ (1/M) sum_{k>n} 1/k^2 ~ 1/(M n)
    np.testing.assert_allclose(np.log(values / limit), [1 / (m * n) for n in (10.5, 1000.5, 1e5, 1e8)],
                               rtol=0.1 if ddof == 1 else 0.02)
    if ddof == 0:
        x = 1 / math.sqrt(m)
        assert limit == pytest.approx(math.sin(math.pi * x) / (math.pi * x), rel=1e-14)
    else:
        # direct product to K = 10**6 times the tail factor exp(-sum_{k>K} 1/(k(kM-1))) ~ exp(-1/(M(K+1/2)))
        big_k = 10**6
        tail = math.exp(-1 / (m * (big_k + 0.5)))
        assert limit == pytest.approx(_direct_accumulate_products(big_k, m, 1)[-1] * tail, rel=1e-11)


@pytest.mark.parametrize("ddof", [0, 1])
def test_accumulate_mean_error_matches_direct_sum_and_bound(ddof):
    m, trace = 10, 3.0
    n = np.arange(0, 300)
    p = _direct_accumulate_products(299, m, ddof)
    k = np.arange(1, 300)
    direct = np.concatenate([[0.0], np.cumsum(p[:-1] / k**2)]) * trace / m
    values = g.expected_accumulate_mean_sq_error(n, m, trace=trace, ddof=ddof)
    np.testing.assert_allclose(values, direct, rtol=1e-13, atol=1e-16)
    bound = g.accumulate_mean_sq_error_bound(m, trace=trace)
    limit = g.accumulate_mean_sq_error_limit(m, trace=trace, ddof=ddof)
    assert np.all(np.diff(values) > 0) and values[-1] < limit < bound
    assert limit > g.accumulate_variance_limit(m, ddof=ddof) * bound
    # beyond 2**20 terms the tail uses P_inf; it must join smoothly and approach the limit
    far = g.expected_accumulate_mean_sq_error(np.array([2**20, 2**20 + 1, 10**9]), m, trace=trace, ddof=ddof)
    assert far[0] < far[1] < far[2] < limit
    assert far[1] - far[0] == pytest.approx(trace / m * g.accumulate_variance_limit(m, ddof=ddof) / (2**20 + 1) ** 2,
                                            rel=1e-5)
    assert limit - far[2] == pytest.approx(trace / m * g.accumulate_variance_limit(m, ddof=ddof) / 10**9, rel=1e-3)


def test_accumulate_monte_carlo_unbiased_pooled():
    """Fixed-seed MC of the pooled-unbiased accumulate chain (newly derived product)."""
    rng = np.random.default_rng(20240611)
    m, chains, fits = 5, 20000, 6
    total = np.zeros(chains)
    total_sq = np.zeros(chains)
    count = 0
    mean, var = np.zeros(chains), np.ones(chains)  # model 0 = truth N(0, 1)
    sim = []
    for _ in range(fits):
        batch = mean[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((chains, m))
        total += batch.sum(axis=1)
        total_sq += (batch**2).sum(axis=1)
        count += m
        mean = total / count
        var = (total_sq - count * mean**2) / (count - 1)  # pooled unbiased (ddof=1)
        sim.append(var.copy())
    theory = g.expected_accumulate_variance_ratio(np.arange(1, fits + 1), m, ddof=1)
    for t in (2, 4, 6):
        x = sim[t - 1]
        se = x.std(ddof=1) / math.sqrt(chains)
        z = (x.mean() - theory[t - 1]) / se
        assert abs(z) < 4, (t, x.mean(), theory[t - 1], z)
    # power: the naive "unbiased => martingale" value 1 is far outside the band at t = 6
    x = sim[-1]
    assert (1.0 - x.mean()) / (x.std(ddof=1) / math.sqrt(chains)) > 10


# --------------------------------------------------------------------------
# Fresh-data loop
# --------------------------------------------------------------------------


def _iterate_fresh(num_fits, m, gamma, ddof, sigma2):
    """Plain-loop version of the conditional first-moment recursion (independent check)."""
    n_r = round(gamma * m)
    n_s = m - n_r
    e2, s2 = 0.0, sigma2
    out = [(e2, s2)]
    for _ in range(num_fits):
        ss = (n_r * sigma2 + n_s * s2) * (1 - 1 / m) + n_r * n_s / m * e2
        e2, s2 = (n_s / m) ** 2 * e2 + (n_r * sigma2 + n_s * s2) / m**2, ss / (m - ddof)
        out.append((e2, s2))
    return np.array(out)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("m,gamma", [(20, 0.25), (10, 0.3), (2, 0.5), (50, 0.02), (8, 1.0)])
def test_fresh_recursion_and_stationary(m, gamma, ddof):
    n = np.arange(0, 60)
    e2, s2 = g.fresh_fraction_moments(n, m, gamma, ddof=ddof, sigma2=2.0)
    ref = _iterate_fresh(59, m, gamma, ddof, 2.0)
    np.testing.assert_allclose(e2, ref[:, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s2, ref[:, 1], rtol=1e-12)
    e_inf = g.stationary_fresh_mean_sq_error(m, gamma, ddof=ddof, sigma2=2.0)
    s_inf = g.stationary_fresh_variance(m, gamma, ddof=ddof, sigma2=2.0)
    e_far, s_far = g.fresh_fraction_moments(10**6, m, gamma, ddof=ddof, sigma2=2.0)
    assert e_far == pytest.approx(e_inf, rel=1e-10) and s_far == pytest.approx(s_inf, rel=1e-10)
    if ddof == 1:  # closed form of THEORY.md §2.4 (written there for sigma0^2 = 1)
        a = 1 / (m * (1 - (1 - gamma) ** 2))
        b = (1 - gamma) * m / (m - 1)
        assert e_inf == pytest.approx(2.0 * a / (1 - a * (1 - gamma) * b), rel=1e-12)
        assert s_inf == pytest.approx(2.0 + b * e_inf, rel=1e-12)
    else:  # MLE fits conserve the marginal variance: E e_n^2 + E sigma_n^2 = sigma0^2
        np.testing.assert_allclose(e2 + s2, 2.0, rtol=1e-12)


def test_fresh_special_cases():
    # gamma = 1: every fit is on fresh real data
    e2, s2 = g.fresh_fraction_moments(np.array([1, 5]), 10, 1.0, ddof=0)
    np.testing.assert_allclose(e2, 0.1)
    np.testing.assert_allclose(s2, 0.9)
    # first fit: all samples are effectively real whatever gamma
    for gamma in (0.1, 0.5):
        e2, s2 = g.fresh_fraction_moments(1, 10, gamma, ddof=1)
        assert e2 == pytest.approx(0.1) and s2 == pytest.approx(1.0)
    assert g.fresh_sample_counts(20, 0.25) == (5, 15)
    assert g.fresh_sample_counts(10, 0.3) == (3, 7)  # 0.3 * 10 = 3.0000000000000004 is accepted
    # approximation sigma0^2 / (M gamma (2 - gamma)) of THEORY.md §2.4
    assert g.stationary_fresh_mean_sq_error(1000, 0.5) == pytest.approx(1 / (1000 * 0.5 * 1.5), rel=1e-3)


def test_fresh_monte_carlo_mle():
    """Fixed-seed MC of the MLE (ddof=0) fresh-data loop (newly derived recursion)."""
    rng = np.random.default_rng(7)
    m, gamma, chains, fits = 10, 0.3, 20000, 5
    n_r, n_s = g.fresh_sample_counts(m, gamma)
    mean, var = np.zeros(chains), np.ones(chains)
    sim_e2, sim_s2 = [], []
    for _ in range(fits):
        real = rng.standard_normal((chains, n_r))
        synth = mean[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((chains, n_s))
        data = np.concatenate([real, synth], axis=1)
        mean, var = data.mean(axis=1), data.var(axis=1)  # ddof=0
        sim_e2.append(mean**2)
        sim_s2.append(var.copy())
    e2, s2 = g.fresh_fraction_moments(np.arange(1, fits + 1), m, gamma, ddof=0)
    wrong_e2, wrong_s2 = g.fresh_fraction_moments(fits, m, gamma, ddof=1)
    for t in (2, 5):
        for x, mu in ((sim_e2[t - 1], e2[t - 1]), (sim_s2[t - 1], s2[t - 1])):
            se = x.std(ddof=1) / math.sqrt(chains)
            assert abs(x.mean() - mu) < 4 * se, (t, x.mean(), mu, se)
    # power: the ddof=1 recursion is far away for the variance
    x = sim_s2[-1]
    assert abs(wrong_s2 - x.mean()) > 10 * x.std(ddof=1) / math.sqrt(chains)


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------

ERRORS = [
    (lambda: g.expected_variance(3, 1), ["num_samples=1", "num_samples >= 2", "ddof=1"]),
    (lambda: g.expected_variance(3, 0, ddof=0), ["num_samples=0", "num_samples >= 1"]),
    (lambda: g.expected_std(-1, 10), ["num_fits=-1", "num_fits >= 0"]),
    (lambda: g.expected_std(2.5, 10), ["num_fits=2.5", "integer"]),
    (lambda: g.expected_std(True, 10), ["num_fits=True", "integer"]),
    (lambda: g.expected_std(np.array([1, -2]), 10), ["num_fits=", "num_fits >= 0"]),
    (lambda: g.expected_std(np.inf, 10), ["num_fits=inf", "finite"]),
    (lambda: g.expected_std(3, float("nan")), ["num_samples=nan", "finite"]),
    (lambda: g.expected_std(3, 10.5), ["num_samples=10.5", "integer"]),
    (lambda: g.expected_std(3, [10, 1, 5]), ["num_samples[1]=1", ">= 2"]),
    (lambda: g.expected_std(3, [10, True, 5], ddof=0), ["num_samples[1]=True", "integer"]),
    (lambda: g.expected_std(3, [10, 5]), ["num_samples", "length 2", ">= max(num_fits) = 3"]),
    (lambda: g.expected_std(3, [[10, 5, 5]]), ["num_samples", "1-D"]),
    (lambda: g.expected_std(3, 10, ddof=2), ["ddof=2", "{0, 1}"]),
    (lambda: g.expected_std(3, 10, ddof=True), ["ddof=True", "{0, 1}"]),
    (lambda: g.expected_std(3, 10, sigma2=0.0), ["sigma2=0.0", "sigma2 > 0"]),
    (lambda: g.expected_std(3, 10, sigma2=float("inf")), ["sigma2=inf", "finite"]),
    (lambda: g.expected_log_variance(3, 1, ddof=0), ["num_samples=1", "num_samples >= 2", "-inf"]),
    (lambda: g.variance_of_log_variance(3, [5, 1, 5], ddof=0), ["num_samples[1]=1", ">= 2"]),
    (lambda: g.log_variance_rate(1), ["num_samples=1", ">= 2"]),
    (lambda: g.expected_std_power(-9, 3, 10), ["s=-9", "s > 1 - min(num_samples) = -9"]),
    (lambda: g.expected_std_power(float("nan"), 3, 10), ["s=nan", "finite"]),
    (lambda: g.shumailov_w2_squared_approx(2, 1), ["num_samples=1", ">= 2"]),
    (lambda: g.expected_det_ratio(2, 10, 0), ["dim=0", "dim >= 1"]),
    (lambda: g.expected_log_det_ratio(2, 3, 3), ["num_samples=3", "num_samples >= 4", "dim"]),
    (lambda: g.variance_of_log_det_ratio(2, [10, 2], 2), ["num_samples[1]=2", ">= 3"]),
    (lambda: g.expected_mean_sq_norm(2, 10, trace=-1.0), ["trace=-1.0", "trace > 0"]),
    (lambda: g.expected_accumulate_variance_ratio(3, 1, ddof=1), ["num_samples=1", ">= 2"]),
    (lambda: g.expected_accumulate_variance_ratio(3, [10, 10, 10]), ["num_samples=", "scalar"]),
    (lambda: g.accumulate_variance_limit(0), ["num_samples=0", ">= 1"]),
    (lambda: g.expected_accumulate_mean_sq_error(3, 10, trace=0), ["trace=0", "trace > 0"]),
    (lambda: g.accumulate_mean_sq_error_bound(10, trace=float("nan")), ["trace=nan", "finite"]),
    (lambda: g.fresh_fraction_moments(3, 7, 0.3), ["gamma=0.3", "num_samples=7", "integer"]),
    (lambda: g.fresh_fraction_moments(3, 10, 0.0), ["gamma=0.0", "(0, 1]"]),
    (lambda: g.fresh_fraction_moments(3, 10, 1.5), ["gamma=1.5", "(0, 1]"]),
    (lambda: g.fresh_fraction_moments(3, 1, 1.0), ["num_samples=1", ">= 2"]),
    (lambda: g.stationary_fresh_mean_sq_error(10, -0.1), ["gamma=-0.1", "(0, 1]"]),
    (lambda: g.stationary_fresh_variance(10, 0.5, sigma2=-2), ["sigma2=-2", "sigma2 > 0"]),
    (lambda: g.fresh_sample_counts(10, 1e-12), ["gamma=1e-12", "num_samples=10"]),
    (lambda: g.c_factor(0), ["k=0", "k > 0"]),
    (lambda: g.c_factor(True), ["k=True"]),
    (lambda: g.a_factor(0.5), ["num_samples=0.5", ">= 1"]),
]


@pytest.mark.parametrize("call,fragments", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors_name_parameter_value_and_range(call, fragments):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_validate_helpers():
    assert _validate.require_int("num_fits", 1e3, 0) == 1000
    assert _validate.require_int("num_fits", np.int32(4), 0) == 4
    assert _validate.require_in_interval("gamma", 1.0, 0.0, 1.0, lo_open=True) == 1.0
    with pytest.raises(ValueError, match=r"gamma=1.0 is out of range: need gamma in \(0, 1\)"):
        _validate.require_in_interval("gamma", 1.0, 0.0, 1.0, lo_open=True, hi_open=True)
    with pytest.raises(ValueError, match="x='a' is not a real number"):
        _validate.require_finite("x", "a")
    np.testing.assert_array_equal(_validate.sample_sizes([4, 5, 6], [0, 2]), [4, 5])
    assert _validate.sample_sizes(np.array([4, 5]), 0).shape == (0,)
    assert _validate.sample_sizes(7, np.array([1, 9])).shape == ()
    with pytest.raises(ValueError, match=r"num_samples=1 is out of range: need num_samples >= 2 for ddof=1 "
                                         r"\(an unbiased variance needs two samples\)"):
        _validate.sample_sizes(1, 3, minimum=2, reason=_validate.min_samples_for_ddof(1)[1])


@pytest.mark.parametrize("call, match", [
    (lambda: g.stationary_fresh_variance(10, float("nan")), r"gamma=nan is not finite: need gamma in \(0, 1\]"),
    (lambda: g.expected_std(3, 10, sigma2=float("nan")), r"sigma2=nan is not finite: need finite sigma2 > 0"),
    (lambda: g.expected_variance(2**70, 10), r"num_fits=\d+ is out of range: need \|num_fits\| <= 2\*\*62"),
    (lambda: g.expected_variance(3, 1e300), r"num_samples=1e\+300 is out of range"),
    (lambda: g.expected_variance(np.array([2**63], np.uint64), 10), r"num_fits=\[9223372036854775808\] is out of"),
])
def test_errors_name_the_allowed_range(call, match):
    """Found by review: a NaN was refused as "not finite: need a finite real number" without the parameter's
    range; integers beyond int64 raised a bare OverflowError, and a uint64 2**63 wrapped to a negative count."""
    with pytest.raises(ValueError, match=match):
        call()


def test_log_variance_quantiles_closed_forms_and_errors():
    """At n = 1 the exact law is log(χ²_{M−1}/f): the inversion must match ``scipy.stats.chi2.ppf`` to 1e-11 (M = 2,
    the most skewed, to 10⁴), and to 1e-6 standard deviations at the extreme levels 1e-9 and 1 − 1e-9 (a
    log-gamma difference in place of the cumulant series missed by 2e-4 sd at M = 10⁴); n = 0 is log σ² itself;
    a constant sequence of sizes equals the constant M; σ² shifts every quantile by log σ²; and bad levels and
    sizes are refused by name."""
    from scipy import stats

    levels = np.array([0.001, 0.05, 0.5, 0.95, 0.999])
    for m in (2, 3, 10, 100, 10_000):
        for ddof in (0, 1):
            if m - ddof < 1:
                continue
            np.testing.assert_allclose(g.log_variance_quantiles(1, m, levels, ddof=ddof),
                                       np.log(stats.chi2.ppf(levels, m - 1) / (m - ddof)), rtol=0, atol=1e-11)
            extreme = np.array([1e-9, 1 - 1e-9])
            sd = np.sqrt(g.variance_of_log_variance(1, m, ddof))
            np.testing.assert_allclose(g.log_variance_quantiles(1, m, extreme, ddof=ddof) / sd,
                                       np.log(stats.chi2.ppf(extreme, m - 1) / (m - ddof)) / sd, rtol=0, atol=1e-6)
    n = np.array([0, 1, 7, 30])
    same = g.log_variance_quantiles(n, 12, levels, ddof=1)
    np.testing.assert_allclose(g.log_variance_quantiles(n, [12] * 30, levels, ddof=1), same, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(same[0], 0.0)
    np.testing.assert_allclose(g.log_variance_quantiles(n, 12, levels, ddof=1, sigma2=3.0), same + np.log(3.0),
                               rtol=0, atol=1e-12)
    assert g.log_variance_quantiles(n, 12, 0.5).shape == (4,) and g.log_variance_quantiles(3, 12, 0.5).shape == ()
    for bad in (0.0, 1.0, 1e-10, 1 - 1e-10, float("nan"), [[0.5]], []):
        with pytest.raises(ValueError, match="levels"):
            g.log_variance_quantiles(2, 10, bad)
    with pytest.raises(ValueError, match="num_samples"):
        g.log_variance_quantiles(2, 1, 0.5, ddof=0)
