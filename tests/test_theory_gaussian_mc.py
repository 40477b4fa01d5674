"""Monte-Carlo tests of the THEORY.md §2 functions that ``test_simulate_gaussian.py`` does not reach: the moments of
σ_n (``c_factor``, ``a_factor``, ``expected_std``, ``expected_std_power``, ``expected_variance``,
``expected_variance_squared``, ``variance_of_variance``), ``expected_marginal_variance``, ``log_variance_rate``,
``expected_det_ratio``, the accumulate limits and the fresh-data stationary values.

Each compares the engine's exact path (float64, fixed seeds) with the closed form at |z| <= 4 (STYLE.md §2F). The
standard error is analytic wherever the theory module gives the second moment (E σ^{2s} for E σ^s, E σ^8 for the
spread of σ², E det² from the Bartlett factorisation); the sample sd is used only for light-tailed statistics (log σ²,
and the pooled variance and mean of the accumulate chain, which do not collapse). Every test also rejects a
deliberately wrong formula on the same data (|z| > 4): the other ddof's constant, the sample size off by one, the
first-order approximation in place of the exact value, or the π²/6 bound in place of the limit.

Sizes are small (M = 6, up to four fits) so that σ_n's moments up to the eighth stay finite and light enough for
the analytic SE to be the right yardstick, and so that the wrong formulas sit many SEs away.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects, chain_mean_se, shared_config, shared_run

from collapse_theory import Accumulate, Gaussian, Replace, simulate
from collapse_theory.theory import gaussian as g

M, FITS, CHAINS = 6, 4, 40_000
"""The 1-D replace chain of the σ_n-moment tests: M = 6 points per fit, four fits, 40 000 chains."""


def _analytic_se(first, second, chains: int) -> float:
    """SE of a mean over ``chains`` chains of a statistic with first and second moments ``first``, ``second``."""
    return math.sqrt((float(second) - float(first) ** 2) / chains)


@pytest.fixture(scope="module")
def replace_chains():
    """Per-chain σ_n, σ_n², log σ_n² and (μ_n − μ)² of the 1-D replace chain, n = 1..FITS, for ddof 0 and 1."""
    out = {}
    for ddof in (0, 1):
        res = simulate(
            710 + ddof, Gaussian(dim=1, ddof=ddof), Replace(), num_chains=CHAINS, num_generations=FITS,
            num_samples=M, path="exact", metrics=["std", "variance", "log_variance", "sq_mean_error"], quantiles=(),
            trajectories=True,
        )
        out[ddof] = {k: np.asarray(v, np.float64) for k, v in res.trajectories.items()}
    return out


@pytest.mark.parametrize("ddof", [0, 1])
def test_expected_std_and_the_chi_factors(replace_chains, ddof):
    r"""E σ_n/σ = a(M)^n (MLE) and c(M−1)^n (unbiased), THEORY.md "useful constants" and §2.1; analytic SE from
    E σ_n² (``expected_variance``).

    Catches a wrong chi-mean constant: the power checks plant the sample size off by one (a(M+1)^n, c(M)^n, 0.026
    and 0.028 away at n = 4, ~9 SE) and the other ddof's constant."""
    std = replace_chains[ddof]["std"]
    factor = g.a_factor(M) if ddof == 0 else g.c_factor(M - 1)
    wrong = g.a_factor(M + 1) if ddof == 0 else g.c_factor(M)
    other = g.c_factor(M - 1) if ddof == 0 else g.a_factor(M)
    for n in range(1, FITS + 1):
        se = _analytic_se(factor**n, g.expected_variance(n, M, ddof=ddof), CHAINS)
        np.testing.assert_allclose(g.expected_std(n, M, ddof=ddof), factor**n, rtol=1e-13)
        assert_close_to_theory(std[n - 1].mean(), se, factor**n, label=f"E sigma_n ddof={ddof} n={n}")
    se = _analytic_se(factor**FITS, g.expected_variance(FITS, M, ddof=ddof), CHAINS)
    assert_rejects(std[-1].mean(), se, wrong**FITS, label=f"E sigma_n ddof={ddof} with M off by one")
    assert_rejects(std[-1].mean(), se, other**FITS, label=f"E sigma_n ddof={ddof} with the other ddof's factor")


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("s", [0.5, 3.0])
def test_expected_std_power(replace_chains, ddof, s):
    r"""E σ_n^s = σ^s Π_i E[(χ²_{M−1}/(M−ddof))^{s/2}] for powers other than the special cases 0, 1, 2, 4 that
    ``test_theory_gaussian`` pins by identity; analytic SE from E σ_n^{2s}.

    Power: the per-fit moment with the divisor of the other ddof (f = M vs M − 1: the factor ((M−1)/M)^{s/2} per
    fit, 0.83 for s = 1/2 and 0.33 for s = 3 over four fits)."""
    std = replace_chains[ddof]["std"][FITS - 1]
    theory = g.expected_std_power(s, FITS, M, ddof=ddof)
    se = _analytic_se(theory, g.expected_std_power(2 * s, FITS, M, ddof=ddof), CHAINS)
    assert_close_to_theory((std**s).mean(), se, theory, label=f"E sigma_n^{s} ddof={ddof}")
    assert_rejects((std**s).mean(), se, g.expected_std_power(s, FITS, M, ddof=1 - ddof),
                   label=f"E sigma_n^{s} ddof={ddof} with ddof swapped")


@pytest.mark.parametrize("ddof", [0, 1])
def test_variance_moments(replace_chains, ddof):
    r"""E σ_n² (``expected_variance``), E σ_n⁴ (``expected_variance_squared``) and Var σ_n²
    (``variance_of_variance``), §2.1, with analytic SEs: Var σ_n² for the first, E σ_n⁸ − (E σ_n⁴)² for the second,
    and for the sample variance of σ_n² the delta-method SE √((μ₄ − Var²)/C) from the raw moments E σ^{2k}, k ≤ 4.

    Power: the other ddof (E σ_n² = 1 vs ((M−1)/M)^n = 0.48), and for the spread the one-fit variance 2σ⁴/(M−1)
    compounded as if σ_n² were a sum of independent increments (n · 2/(M−1) = 1.6 vs the exact 2.84 for ddof = 1,
    0.37 vs 0.66 for the MLE)."""
    var = replace_chains[ddof]["variance"][FITS - 1]
    mean = g.expected_variance(FITS, M, ddof=ddof)
    second = g.expected_variance_squared(FITS, M, ddof=ddof)
    spread = g.variance_of_variance(FITS, M, ddof=ddof)
    np.testing.assert_allclose(spread, second - mean**2, rtol=1e-12)
    assert_close_to_theory(var.mean(), math.sqrt(spread / CHAINS), mean, label=f"E sigma_n^2 ddof={ddof}")
    assert_rejects(var.mean(), math.sqrt(spread / CHAINS), g.expected_variance(FITS, M, ddof=1 - ddof),
                   label=f"E sigma_n^2 ddof={ddof} with ddof swapped")

    raw = {k: g.expected_std_power(2 * k, FITS, M, ddof=ddof) for k in range(1, 5)}  # E (σ²)^k
    se_sq = _analytic_se(second, raw[4], CHAINS)
    assert_close_to_theory((var**2).mean(), se_sq, second, label=f"E sigma_n^4 ddof={ddof}")
    assert_rejects((var**2).mean(), se_sq, g.expected_variance_squared(FITS, M, ddof=1 - ddof),
                   label=f"E sigma_n^4 ddof={ddof} with ddof swapped")

    mu4 = raw[4] - 4 * raw[3] * raw[1] + 6 * raw[2] * raw[1] ** 2 - 3 * raw[1] ** 4  # central fourth moment
    se_spread = math.sqrt((mu4 - spread**2) / CHAINS)
    assert_close_to_theory(var.var(ddof=1), se_spread, spread, label=f"Var sigma_n^2 ddof={ddof}")
    naive = FITS * 2 / (M - 1) * mean**2
    assert_rejects(var.var(ddof=1), se_spread, naive, label=f"Var sigma_n^2 ddof={ddof} as n independent increments")


@pytest.mark.parametrize("ddof", [0, 1])
def test_expected_marginal_variance(replace_chains, ddof):
    r"""Var X^n = E(μ_n − μ)² + E σ_n² (§2.1; σ²(1 + Σ 1/M_i) for ddof = 1, σ² for the MLE chain): the per-chain
    value (μ_n − μ)² + σ_n² is the conditional second moment of a generation-n draw about the truth, sample-sd SE
    (four fits of M = 6: both terms have all moments used here).

    Power: Shumailov et al.'s first-order σ²(1 + n/M) taken for the MLE chain (1.67 vs 1), and the MLE value σ²
    taken for the unbiased chain (1 vs 1.67)."""
    chains = replace_chains[ddof]
    for n in range(1, FITS + 1):
        sim, se = chain_mean_se(chains["sq_mean_error"][n - 1] + chains["variance"][n - 1])
        assert_close_to_theory(sim, se, g.expected_marginal_variance(n, M, ddof=ddof),
                               label=f"Var X^n ddof={ddof} n={n}")
    wrong = 1.0 + FITS / M if ddof == 0 else 1.0
    assert_rejects(sim, se, wrong, label=f"Var X^n ddof={ddof} with the other estimator's value")


@pytest.mark.parametrize("ddof", [0, 1])
def test_log_variance_rate(replace_chains, ddof):
    r"""The per-fit drift of log σ_n²: E[log σ_n²]/n = ψ((M−1)/2) + log(2/(M−ddof)) exactly at every n (the
    increments are i.i.d.); sample-sd SE (log σ² is light-tailed).

    Power: the first-order rate −1/(M−1) (plus log(1 − 1/M) for the MLE), 0.013 away (~7 SE), and the rate of the
    other ddof."""
    log_var = replace_chains[ddof]["log_variance"][FITS - 1]
    sim, se = chain_mean_se(log_var / FITS)
    rate = g.log_variance_rate(M, ddof=ddof)
    assert_close_to_theory(sim, se, rate, label=f"log variance rate ddof={ddof}")
    first_order = -1 / (M - 1) + (math.log(1 - 1 / M) if ddof == 0 else 0.0)
    assert_rejects(sim, se, first_order, label=f"log variance rate ddof={ddof}: first order only")
    assert_rejects(sim, se, g.log_variance_rate(M, ddof=1 - ddof), label=f"log variance rate ddof={ddof} swapped")


DET_DIM, DET_M, DET_FITS, DET_CHAINS = 3, 8, 3, 20_000


def _det_second_moment(num_fits: int, m: int, dim: int, ddof: int) -> float:
    """E (det Σ_n/det Σ)²: each fit multiplies det by Π_{i=1}^{d} χ²_{M−i}/(M−ddof) (Bartlett), independent across
    fits, and E(χ²_k)² = k(k+2)."""
    k = m - np.arange(1, dim + 1)
    return float(np.prod(k * (k + 2.0)) / (m - ddof) ** (2 * dim)) ** num_fits


def test_expected_det_ratio():
    r"""§2.2 E det Σ_n/det Σ = Π_fits Π_{i=1}^{d} (M−i)/(M−ddof), d = 3, M = 8, MLE, analytic SE from the Bartlett
    second moment (E det² = Π k_i(k_i+2)/f² per fit).

    Power: the unbiased divisor (f = M − 1: (8/7)^9 = 3.3× larger) and the one-dimensional law raised to the d-th
    power (((M−1)/M)^{nd}, which ignores that the Bartlett diagonal has M − i degrees of freedom)."""
    res = simulate(720, Gaussian(dim=DET_DIM, ddof=0), Replace(), num_chains=DET_CHAINS, num_generations=DET_FITS,
                   num_samples=DET_M, path="exact", metrics=["det_ratio"], quantiles=())
    for n in range(1, DET_FITS + 1):
        theory = g.expected_det_ratio(n, DET_M, DET_DIM, ddof=0)
        se = _analytic_se(theory, _det_second_moment(n, DET_M, DET_DIM, 0), DET_CHAINS)
        assert_close_to_theory(res.mean("det_ratio")[n - 1], se, theory, label=f"E det ratio n={n}")
    sim = res.mean("det_ratio")[-1]
    assert_rejects(sim, se, g.expected_det_ratio(DET_FITS, DET_M, DET_DIM, ddof=1), label="E det ratio, ddof=1 divisor")
    assert_rejects(sim, se, ((DET_M - 1) / DET_M) ** (DET_FITS * DET_DIM), label="E det ratio, 1-D law to the d-th")


ACC_M, ACC_GENS, ACC_CHAINS = 4, 1000, 16_384


@pytest.fixture(scope="module")
def accumulate_long():
    """The 1-D accumulate chain far past its transient, M = 4, MLE: 1000 generations."""
    return simulate(730, Gaussian(dim=1, ddof=0), Accumulate(), num_chains=ACC_CHAINS, num_generations=ACC_GENS,
                    num_samples=ACC_M, path="exact", metrics=["variance", "sq_mean_error"], quantiles=())


def test_accumulate_limits(accumulate_long):
    r"""§2.3 limits of the accumulate chain, M = 4, MLE: E σ̂²_n/σ² → sinc(π/√M) = 2/π
    (``accumulate_variance_limit``) and E(μ̂_n − μ)² → (σ²/M) Σ_k P_{k−1}/k² (``accumulate_mean_sq_error_limit``),
    compared at n = 1000, where the finite-n values differ from the limits by less than 0.05 SE (asserted);
    sample-sd SE (the pooled statistics do not collapse).

    Power: the unbiased limit (Γ-function product) for the variance, the π²/6 bound taken as the value of the
    mean error (0.41 vs 0.36), and the bound with π²/5."""
    res = accumulate_long
    var, var_se = res.mean("variance")[-1], res.se("variance")[-1]
    err, err_se = res.mean("sq_mean_error")[-1], res.se("sq_mean_error")[-1]
    var_limit = g.accumulate_variance_limit(ACC_M, ddof=0)
    err_limit = g.accumulate_mean_sq_error_limit(ACC_M, ddof=0)
    np.testing.assert_allclose(var_limit, math.sin(math.pi / 2) / (math.pi / 2), rtol=1e-14)
    assert abs(g.expected_accumulate_variance_ratio(ACC_GENS, ACC_M, ddof=0) - var_limit) < 0.05 * var_se
    assert abs(g.expected_accumulate_mean_sq_error(ACC_GENS, ACC_M, ddof=0) - err_limit) < 0.05 * err_se
    assert_close_to_theory(var, var_se, var_limit, label="accumulate variance limit M=4")
    assert_close_to_theory(err, err_se, err_limit, label="accumulate mean error limit M=4")
    assert_rejects(var, var_se, g.accumulate_variance_limit(ACC_M, ddof=1), label="variance limit, unbiased form")
    bound = g.accumulate_mean_sq_error_bound(ACC_M)
    assert err <= bound + 4 * err_se
    assert_rejects(err, err_se, bound, label="mean error limit: the pi^2/6 bound as the value")
    assert_rejects(err, err_se, bound * 6 / 5, label="mean error limit: pi^2/5")


def test_fresh_stationary_values():
    r"""§2.4 stationary E e² and E σ² of the fresh-data loop (γ = 1/4, M = 20, ddof = 1) against the last of 30
    generations, where the recursion is within 0.05 SE of its fixed point (asserted); sample-sd SE (stationary,
    light-tailed).

    Power: the stationary E e² at γ = 0.3 (13 SE away), and E σ² = σ0², the pooled variance without the
    between-batch inflation γ(1−γ)M/(M−1)·e² (20 SE)."""
    cfg = shared_config("fresh-1d-0.25")
    res = shared_run("fresh-1d-0.25")
    m, gamma, gens = cfg["num_samples"], cfg["regime"].gamma, cfg["num_generations"]
    e2_inf = g.stationary_fresh_mean_sq_error(m, gamma, ddof=1)
    var_inf = g.stationary_fresh_variance(m, gamma, ddof=1)
    e2_n, var_n = g.fresh_fraction_moments(gens, m, gamma, ddof=1)
    e2, e2_se = res.mean("sq_mean_error")[-1], res.se("sq_mean_error")[-1]
    var, var_se = res.mean("variance")[-1], res.se("variance")[-1]
    assert abs(e2_n - e2_inf) < 0.05 * e2_se and abs(var_n - var_inf) < 0.05 * var_se
    assert_close_to_theory(e2, e2_se, e2_inf, label="fresh stationary E e^2")
    assert_close_to_theory(var, var_se, var_inf, label="fresh stationary E sigma^2")
    assert_rejects(e2, e2_se, g.stationary_fresh_mean_sq_error(m, 0.3, ddof=1), label="stationary E e^2 at gamma=0.3")
    assert_rejects(var, var_se, 1.0, label="stationary E sigma^2 without the between-batch term")


@pytest.mark.parametrize("ddof", [0, 1])
def test_log_variance_quantiles(replace_chains, ddof):
    r"""The exact law's quantiles of log σ_n² (``log_variance_quantiles``, Gil-Pelaez inversion of the product of
    χ² factors) against the engine's chains: at each theory quantile q_p the fraction of chains below it is p within
    4 binomial SEs, at n = 1..4 and p ∈ {0.05, 0.25, 0.5, 0.75, 0.95}.

    Catches a wrong law of the sum (a convolution or inversion error; planted: the normal approximation with the
    exact mean and variance, whose 5 % quantile sits 0.11 too high and median 0.07 too low at M = 6) and the
    other ddof's divisor (a log(6/5) = 0.18 shift), both rejected on the same chains."""
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    logs = replace_chains[ddof]["log_variance"]
    se = np.sqrt(levels * (1 - levels) / CHAINS)

    def worst_z(quantiles):
        return max(np.max(np.abs(np.mean(logs[n - 1][:, None] <= quantiles[n - 1], axis=0) - levels) / se)
                   for n in range(1, FITS + 1))

    fits = np.arange(1, FITS + 1)
    exact = g.log_variance_quantiles(fits, M, levels, ddof=ddof)
    assert worst_z(exact) <= 4.0
    from scipy import stats

    normal = (g.expected_log_variance(fits, M, ddof)[:, None]
              + np.sqrt(g.variance_of_log_variance(fits, M, ddof))[:, None] * stats.norm.ppf(levels))
    assert worst_z(normal) > 4.0, "the normal approximation is not rejected: the test has no power"
    assert worst_z(g.log_variance_quantiles(fits, M, levels, ddof=1 - ddof)) > 4.0
