"""Checks of the Gaussian family against THEORY.md §2 (formulas in :mod:`collapse_theory.theory.gaussian`).

Each check fixes parameters where its planted wrong formula lies many standard errors away (STYLE.md §2F):
small M, moderate numbers of fits, and thousands of chains.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import regimes, schedules
from ..models.gaussian import Gaussian
from ..simulate import simulate
from ..theory import gaussian as th
from . import Check, Measurement, compile_options, register, scaled

SHUMAILOV = "Shumailov et al., Nature 631 (2024), Thm 3.1 / SI §3.1.1; exact form THEORY.md §2.1"
KAZDAN = "Kazdan et al., arXiv 2410.16713, Gaussian workflow; THEORY.md §2.2"
ACCUMULATE = "Gerstgrasser et al. arXiv 2404.01413 / Dey & Donoho 2410.22812 (π²/6 pathway); THEORY.md §2.3"
FRESH = "Alemohammad et al. (MAD) fresh-data loop, Shumailov's γ_i; THEORY.md §2.4"


def _rows(res, metric, fits, theory_fn, planted_fn, sd_fn=None, **params):
    """Measurements of ``metric`` at the given fit counts; SE from ``sd_fn(n)`` or the sample sd."""
    out = []
    c = res.num_chains
    for n in fits:
        i = int(n) - 1
        sd = sd_fn(n) if sd_fn is not None else res.summary[metric]["sd"][i]
        out.append(
            Measurement(
                quantity=f"E {metric} at n={n}",
                theory=float(theory_fn(n)),
                simulation=float(res.mean(metric)[i]),
                se=float(sd / math.sqrt(c)),
                planted=float(planted_fn(n)),
                params={"n": int(n), "num_chains": c, **params, "path": res.config["path"]},
            )
        )
    return out


REPLACE_M, REPLACE_GENERATIONS = 10, 50
"""Sample size and number of fits of the shared 1-D replace simulation (:func:`_replace_1d`)."""
REPLACE_CHAINS = {"exact": scaled(20000), "sample": scaled(2048)}
"""Its chains (quick/full) per path."""


@functools.lru_cache(maxsize=16)
def _replace_1d(quick: bool, seed: int, ddof: int, path: str):
    """One shared 1-D replace simulation (M = 10, 50 fits) serves several checks: one compile, not five."""
    return simulate(
        seed, Gaussian(dim=1, ddof=ddof), num_chains=REPLACE_CHAINS[path].pick(quick),
        num_generations=REPLACE_GENERATIONS, num_samples=REPLACE_M, path=path,
        metrics=["log_variance", "std", "sq_mean_error", "w2_squared"], quantiles=(),
        compiler_options=compile_options(quick),
    )


def _replace_params(fits: tuple, ddof: int, path: str = "exact") -> dict:
    """Declared parameters of a check on the shared replace simulation, read at the fit counts ``fits``."""
    return {"M": REPLACE_M, "ddof": ddof, "n": fits, "generations": REPLACE_GENERATIONS, "path": path,
            "num_chains": REPLACE_CHAINS[path]}


LOG_VARIANCE_FITS = (5, 20, 50)


def _replace_log_variance(ddof: int, path: str):
    def run(quick, seed):
        m, fits = REPLACE_M, LOG_VARIANCE_FITS
        res = _replace_1d(quick, seed, ddof, path)
        return _rows(
            res, "log_variance", fits,
            lambda n: th.expected_log_variance(n, m, ddof),
            lambda n: th.expected_log_variance(n, m, 1 - ddof),
            sd_fn=lambda n: math.sqrt(th.variance_of_log_variance(n, m, ddof)),
            M=m, ddof=ddof,
        )

    return run


register(Check(
    name="gaussian-replace-log-variance-unbiased",
    family="gaussian",
    reference=SHUMAILOV,
    formula="E log σ_n² = n[ψ((M−1)/2) + log(2/(M−1))] (ddof=1); Var = n ψ'((M−1)/2)",
    planted="the MLE formula log(2/M) (ddof off by one)",
    run=_replace_log_variance(1, "exact"),
    params=_replace_params(LOG_VARIANCE_FITS, 1, "exact"),
))
register(Check(
    name="gaussian-replace-log-variance-mle",
    family="gaussian",
    reference=SHUMAILOV,
    formula="E log σ_n² = n[ψ((M−1)/2) + log(2/M)] (ddof=0)",
    planted="the unbiased formula log(2/(M−1)) (ddof off by one)",
    run=_replace_log_variance(0, "exact"),
    params=_replace_params(LOG_VARIANCE_FITS, 0, "exact"),
))
register(Check(
    name="gaussian-replace-log-variance-sample-path",
    family="gaussian",
    reference=SHUMAILOV,
    formula="E log σ_n² = n[ψ((M−1)/2) + log(2/(M−1))], simulated by drawing and fitting the M samples",
    planted="the MLE formula log(2/M) (ddof off by one)",
    run=_replace_log_variance(1, "sample"),
    params=_replace_params(LOG_VARIANCE_FITS, 1, "sample"),
))


STD_FITS = (10, 30)


def _replace_std(quick, seed):
    m, fits = REPLACE_M, STD_FITS
    res = _replace_1d(quick, seed, 0, "exact")
    return _rows(res, "std", fits, lambda n: th.expected_std(n, m, 0),
                 lambda n: th.a_factor(m + 1) ** n, M=m, ddof=0)


register(Check(
    name="gaussian-replace-std",
    family="gaussian",
    reference="Shumailov et al. SI Fig. 3 setting (np.std, ddof=0); THEORY.md §2.1",
    formula="E σ_n = σ a(M)^n, a(M) = sqrt(2/M) Γ(M/2)/Γ((M−1)/2) (ddof=0; light-tailed: E σ_n⁴ decays)",
    planted="a(M+1)^n (sample size off by one)",
    run=_replace_std,
    params=_replace_params(STD_FITS, 0),
))


MEAN_ERROR_FITS = (5, 10)


def _replace_mean_error(quick, seed):
    m, fits = REPLACE_M, MEAN_ERROR_FITS
    res = _replace_1d(quick, seed, 1, "exact")
    return _rows(res, "sq_mean_error", fits, lambda n: th.expected_mean_sq_error(n, m, 1),
                 lambda n: n / (m - 1), M=m, ddof=1)


register(Check(
    name="gaussian-replace-mean-error",
    family="gaussian",
    reference=SHUMAILOV,
    formula="E (μ_n − μ)² = σ² Σ_{i<n} 1/M_i = nσ²/M (ddof=1)",
    planted="n σ²/(M−1)",
    run=_replace_mean_error,
    params=_replace_params(MEAN_ERROR_FITS, 1),
))


W2_FITS = (5, 20)


def _replace_w2_mle(quick, seed):
    m, fits = REPLACE_M, W2_FITS
    res = _replace_1d(quick, seed, 0, "exact")
    return _rows(res, "w2_squared", fits, lambda n: th.expected_w2_squared(n, m, 0),
                 lambda n: th.shumailov_w2_squared_approx(n, m), M=m, ddof=0)


register(Check(
    name="gaussian-replace-w2-mle",
    family="gaussian",
    reference=SHUMAILOV + " (the released code fits np.std, ddof=0)",
    formula="E W2² = 2σ²(1 − a(M)^n), a(M) = sqrt(2/M) Γ(M/2)/Γ((M−1)/2) (ddof=0)",
    planted="Shumailov's (3/2)σ² Σ 1/M_i, derived for ddof=1",
    run=_replace_w2_mle,
    params=_replace_params(W2_FITS, 0),
))


GROWING = {"M": "4 + 2(t−1)", "ddof": 1, "n": (10, 40), "path": "exact", "num_chains": scaled(4096)}
GROWING_SCHEDULE = schedules.Linear(4, 2)
"""The sample sizes M_t = 4 + 2(t−1) (``GROWING["M"]`` names them)."""


def _schedule_log_variance(quick, seed):
    p = GROWING
    schedule, fits, ddof = GROWING_SCHEDULE, p["n"], p["ddof"]
    sizes = schedule.sizes(max(fits))
    res = simulate(seed, Gaussian(dim=1, ddof=ddof), num_chains=p["num_chains"].pick(quick),
                   num_generations=max(fits), num_samples=schedule, path=p["path"], metrics=["log_variance"],
                   quantiles=(), compiler_options=compile_options(quick))
    return _rows(res, "log_variance", fits, lambda n: th.expected_log_variance(n, sizes, ddof),
                 lambda n: th.expected_log_variance(n, int(sizes[0]), ddof),
                 sd_fn=lambda n: math.sqrt(th.variance_of_log_variance(n, sizes, ddof)), M=p["M"], ddof=ddof)


register(Check(
    name="gaussian-growing-sample-size",
    family="gaussian",
    reference=SHUMAILOV + " (varying M_i)",
    formula="E log σ_n² = Σ_{i<n} [ψ((M_i−1)/2) + log(2/(M_i−1))], M_t = 4 + 2(t−1)",
    planted="the constant-M formula with M = M_1",
    run=_schedule_log_variance,
    params=GROWING,
))


DDIM = {"d": 3, "M": 10, "ddof": 0, "n": (1, 10), "path": "exact", "num_chains": scaled(16384)}


def _ddim_replace(quick, seed):
    p = DDIM
    d, m, fits = p["d"], p["M"], p["n"]
    res = simulate(seed, Gaussian(dim=d, ddof=p["ddof"]), num_chains=p["num_chains"].pick(quick),
                   num_generations=max(fits), num_samples=m, path=p["path"],
                   metrics=["log_det_ratio", "trace_ratio", "sq_mean_error"], quantiles=(),
                   compiler_options=compile_options(quick))
    rows = _rows(res, "log_det_ratio", fits, lambda n: th.expected_log_det_ratio(n, m, d, 0),
                 lambda n: th.expected_log_det_ratio(n, m, d, 1),
                 sd_fn=lambda n: math.sqrt(th.variance_of_log_det_ratio(n, m, d, 0)), d=d, M=m, ddof=0)
    rows += _rows(res, "trace_ratio", fits[1:], lambda n: th.expected_trace_ratio(n, m, 0),
                  lambda n: th.expected_trace_ratio(n - 1, m, 0), d=d, M=m, ddof=0)
    rows += _rows(res, "sq_mean_error", fits[1:], lambda n: th.expected_mean_sq_norm(n, m, 0, trace=d),
                  lambda n: th.expected_mean_sq_norm(n, m, 1, trace=d), d=d, M=m, ddof=0)
    return rows


register(Check(
    name="gaussian-ddim-replace",
    family="gaussian",
    reference=KAZDAN,
    formula="E log det Σ_n/det Σ = n Σ_i[ψ((M−i)/2) + log(2/M)]; E tr Σ_n/tr Σ = ((M−1)/M)^n; "
    "E‖μ_n−μ‖² = tr Σ (1 − ((M−1)/M)^n) (MLE)",
    planted="log det with ddof=1; trace ratio with n−1 fits; mean error n trΣ/M (ddof=1 formula)",
    run=_ddim_replace,
    params=DDIM,
))


DDIM_SAMPLE = {**DDIM, "n": (10,), "path": "sample", "num_chains": scaled(4096)}


def _ddim_sample_path(quick, seed):
    p = DDIM_SAMPLE
    d, m, fits = p["d"], p["M"], p["n"]
    res = simulate(seed, Gaussian(dim=d, ddof=p["ddof"]), num_chains=p["num_chains"].pick(quick),
                   num_generations=max(fits), num_samples=m, path=p["path"], metrics=["log_det_ratio"],
                   quantiles=(), compiler_options=compile_options(quick))
    return _rows(res, "log_det_ratio", fits, lambda n: th.expected_log_det_ratio(n, m, d, 0),
                 lambda n: th.expected_log_det_ratio(n, m, d, 1),
                 sd_fn=lambda n: math.sqrt(th.variance_of_log_det_ratio(n, m, d, 0)), d=d, M=m, ddof=0)


register(Check(
    name="gaussian-ddim-replace-sample-path",
    family="gaussian",
    reference=KAZDAN + " (Bartlett: det W ~ Π χ²_{M−i})",
    formula="E log det Σ_n/det Σ = n Σ_i[ψ((M−i)/2) + log(2/M)], drawing and fitting the M samples",
    planted="log det with ddof=1",
    run=_ddim_sample_path,
    params=DDIM_SAMPLE,
))


ACCUMULATE_PARAMS = {"M": 10, "ddof": 0, "n": (5, 100), "path": "exact", "num_chains": scaled(16384)}


def _accumulate(quick, seed):
    p = ACCUMULATE_PARAMS
    m, fits = p["M"], p["n"]
    res = simulate(seed, Gaussian(dim=1, ddof=p["ddof"]), regimes.Accumulate(),
                   num_chains=p["num_chains"].pick(quick), num_generations=max(fits), num_samples=m,
                   path=p["path"], metrics=["variance", "sq_mean_error"], quantiles=(),
                   compiler_options=compile_options(quick))
    rows = _rows(res, "variance", fits, lambda n: th.expected_accumulate_variance_ratio(n, m, 0),
                 lambda n: th.expected_trace_ratio(n, m, 0), M=m, ddof=0)
    rows += _rows(res, "sq_mean_error", fits[1:], lambda n: th.expected_accumulate_mean_sq_error(n, m, 1.0, 0),
                  lambda n: th.expected_accumulate_mean_sq_error(n, m, 1.0, 0) * 6 / 5, M=m, ddof=0)
    return rows


register(Check(
    name="gaussian-accumulate",
    family="gaussian",
    reference=ACCUMULATE,
    formula="E σ̂_n²/σ² = Π_{k≤n}(1 − 1/(Mk²)) → sinc(π/√M); E(μ̂_n−μ)² = (σ²/M) Σ_k k⁻² Π_{j<k}(1 − 1/(Mj²)) "
    "≤ (π²/6)σ²/M (pooled MLE)",
    planted="variance: the replace law ((M−1)/M)^n; mean error: π²/5 in place of π²/6 (× 6/5)",
    run=_accumulate,
    params=ACCUMULATE_PARAMS,
))


FRESH_PARAMS = {"M": 20, "gamma": 0.25, "ddof": 1, "n": (3, 60), "path": "exact", "num_chains": scaled(8192)}


def _fresh(quick, seed):
    p = FRESH_PARAMS
    m, gamma, fits = p["M"], p["gamma"], p["n"]
    res = simulate(seed, Gaussian(dim=1, ddof=p["ddof"]), regimes.FreshFraction(gamma),
                   num_chains=p["num_chains"].pick(quick), num_generations=max(fits), num_samples=m,
                   path=p["path"], metrics=["sq_mean_error", "variance"], quantiles=(),
                   compiler_options=compile_options(quick))
    err = lambda n: th.fresh_fraction_moments(n, m, gamma, 1)[0]  # noqa: E731
    var = lambda n: th.fresh_fraction_moments(n, m, gamma, 1)[1]  # noqa: E731
    rows = _rows(res, "sq_mean_error", fits, err, lambda n: 1.0 / (m * gamma) * (1 - (1 - gamma) ** (2 * n)),
                 M=m, gamma=gamma, ddof=1)
    rows += _rows(res, "variance", fits[1:], var, lambda n: 1.0, M=m, gamma=gamma, ddof=1)
    return rows


register(Check(
    name="gaussian-fresh-fraction",
    family="gaussian",
    reference=FRESH,
    formula="e_{t+1} = (1−γ)e_t + ξ, E ξ² = (γσ0² + (1−γ)σ_t²)/M; E σ²_{t+1} = γσ0² + (1−γ)σ_t² + "
    "γ(1−γ)M/(M−1) e_t² (ddof=1); stationary E e² ≈ σ0²/(Mγ(2−γ))",
    planted="mean error without the (2−γ) factor; variance without the excess term (E σ² = σ0²)",
    run=_fresh,
    params=FRESH_PARAMS,
))


GROWN = {"M": 4, "ddof": 1, "n": (5, 20), "path": "exact", "num_chains": scaled(4096)}


def _replace_grown(quick, seed):
    p = GROWN
    m, fits = p["M"], p["n"]
    sizes = schedules.Constant(m).sizes(max(fits))
    pool = np.cumsum(sizes)
    res = simulate(seed, Gaussian(dim=1, ddof=p["ddof"]), regimes.ReplaceGrown(),
                   num_chains=p["num_chains"].pick(quick), num_generations=max(fits), num_samples=m,
                   path=p["path"], metrics=["log_variance"], quantiles=(), compiler_options=compile_options(quick))
    return _rows(res, "log_variance", fits, lambda n: th.expected_log_variance(n, pool, 1),
                 lambda n: th.expected_log_variance(n, m, 1),
                 sd_fn=lambda n: math.sqrt(th.variance_of_log_variance(n, pool, 1)), M=m, ddof=1)


register(Check(
    name="gaussian-replace-grown",
    family="gaussian",
    reference="compute-matched ablation of accumulate (Kazdan et al.); THEORY.md §2.1 with M_t = tM",
    formula="E log σ_n² = Σ_{t≤n} [ψ((tM−1)/2) + log(2/(tM−1))] (all-synthetic, pool-sized fits)",
    planted="the constant-M replace law",
    run=_replace_grown,
    params=GROWN,
))
