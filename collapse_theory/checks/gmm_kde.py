r"""Checks of the Gaussian-mixture (EM) and kernel-density families, all on the generic sample-level path.

What is exact, and checked here:

* **KDE replace chain** (THEORY.md §2.5, :mod:`collapse_theory.theory.kde`): the rows' spread and the drift of
  their mean, exact for every number of fits.
* **1-component GMM = the Gaussian family**: EM with K = 1 and ``reg_covar = 0`` is the MLE Gaussian fit
  (ddof = 0), so the mixture's log-det and trace ratios follow THEORY.md §2.2.
* **EM on well-separated components recovers them**: with components 20σ apart the responsibilities are 0/1 to
  within e^{-200}, so the fitted weight of a component is N_k/M with N_k ~ Binomial(M, π_k), its mean is the
  cluster mean and its covariance the cluster's MLE covariance (+ λI). Hence, exactly (up to the 0.7^40 chance
  that a cluster is empty): E π̂_k = π_k, E tr Σ̂_k = dσ² E[(N_k−1)/N_k] + dλ, E‖μ̂_k−μ_k‖² = dσ² E[1/N_k].

What is *not* claimed: the long-run GMM chain (Shumailov et al.'s L2-distance curves) has no closed form; its
figures are labelled empirical.

Parameters are chosen so that every planted wrong formula lies many standard errors away (STYLE.md §2F).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

from .. import regimes
from ..datasets import Blobs
from ..models.gmm import GaussianMixture
from ..models.kde import KernelDensity
from ..simulate import simulate
from ..theory import gaussian as gth
from ..theory import kde as kth
from . import Check, Measurement, compile_options, register, scaled

KAZDAN_KDE = "Kazdan et al. arXiv 2410.16713, KDE workflow; exact replace-chain theory THEORY.md §2.5"
ONE_COMPONENT = "EM with K = 1 is the MLE Gaussian fit: THEORY.md §2.2 (Kazdan et al. Gaussian workflow)"
SEPARATED = "EM (Dempster-Laird-Rubin) on well-separated components = per-cluster MLE; Shumailov et al. SI §4.1"


# ------------------------------------------------------------------------------------------------- KDE replace
KDE_N, KDE_H, KDE_FITS, KDE_D, KDE_TRUTH, KDE_CHAINS = 10, 1.0, (5, 20), 2, "N(0, I_2)", scaled(4096)
KDE_PARAMS = {"M": KDE_N, "h": KDE_H, "d": KDE_D, "truth": KDE_TRUTH, "n": KDE_FITS, "num_chains": KDE_CHAINS}


@functools.lru_cache(maxsize=4)
def _kde_replace(quick: bool, seed: int):
    model = KernelDensity(bandwidth=KDE_H, dataset=Blobs(centers=((0.0,) * KDE_D,), cluster_std=1.0),
                          capacity=KDE_N, num_test=1)
    return simulate(seed, model, regimes.Replace(), num_chains=KDE_CHAINS.pick(quick),
                    num_generations=max(KDE_FITS), num_samples=KDE_N, metrics=["spread", "sq_mean_error"],
                    quantiles=(), compiler_options=compile_options(quick))


def _rows(res, metric, fits, theory_fn, planted_fn, **params):
    out = []
    for n in fits:
        i = n - 1
        out.append(Measurement(
            quantity=f"E {metric} at n={n}",
            theory=float(theory_fn(n)),
            simulation=float(res.mean(metric)[i]),
            se=float(res.se(metric)[i]),
            planted=float(planted_fn(n)),
            params={"n": int(n), "num_chains": res.num_chains, **params},
        ))
    return out


def _kde_spread(quick, seed):
    res = _kde_replace(quick, seed)
    return _rows(
        res, "spread", KDE_FITS,
        lambda n: kth.expected_spread(n, KDE_N, KDE_H, 1.0),
        lambda n: kth.expected_spread(n, KDE_N, KDE_H, 1.0) + KDE_H**2,
        M=KDE_N, h=KDE_H, d=KDE_D, truth=KDE_TRUTH,
    )


register(Check(
    name="kde-replace-spread",
    family="kde",
    reference=KAZDAN_KDE,
    formula="E S²(fit n) = r^n v + h² Σ_{k=1}^{n−1} r^k, r = (M−1)/M (per coordinate; → (M−1)h²)",
    planted="the sum started at k = 0 (one extra h² per coordinate: the kernel's own h² counted once more)",
    run=_kde_spread,
    params=KDE_PARAMS,
))


def _kde_drift(quick, seed):
    res = _kde_replace(quick, seed)

    def missing_kernel(n):  # the random walk without the kernel's own h² step
        spread = kth.expected_spread(np.arange(1, n + 1), KDE_N, KDE_H, 1.0)
        return 2 * (1.0 / KDE_N + np.sum(spread[: n - 1]) / KDE_N)

    return _rows(
        res, "sq_mean_error", KDE_FITS,
        lambda n: kth.expected_sq_mean_error(n, KDE_N, KDE_H, 1.0, dim=KDE_D),
        missing_kernel,
        M=KDE_N, h=KDE_H, d=KDE_D, truth=KDE_TRUTH,
    )


register(Check(
    name="kde-replace-drift",
    family="kde",
    reference=KAZDAN_KDE,
    formula="E‖x̄(fit n) − μ‖² = d[v/M + Σ_{s=1}^{n−1} (E S²(s) + h²)/M] (≈ h² per generation once stationary)",
    planted="the increments without the kernel's h² (E S²(s)/M only)",
    run=_kde_drift,
    params=KDE_PARAMS,
))


# ------------------------------------------------------------------------------------------------- GMM, K = 1
ONE = {"K": 1, "d": 3, "M": 10, "reg_covar": 0.0, "n": (1, 10), "num_chains": scaled(2048)}


def _one_component(quick, seed):
    p = ONE
    d, m, fits = p["d"], p["M"], p["n"]
    model = GaussianMixture(num_components=p["K"], dim=d, reg_covar=p["reg_covar"])
    res = simulate(seed, model, regimes.Replace(), num_chains=p["num_chains"].pick(quick), num_generations=max(fits),
                   num_samples=m, truth=model.params(means=0.0, covs=1.0),
                   metrics=["log_det_ratio", "trace_ratio"], quantiles=(), compiler_options=compile_options(quick))
    rows = []
    for n in fits:
        i = n - 1
        sd = math.sqrt(gth.variance_of_log_det_ratio(n, m, d, 0))
        rows.append(Measurement(
            quantity=f"E log_det_ratio at n={n}",
            theory=float(gth.expected_log_det_ratio(n, m, d, 0)),
            simulation=float(res.mean("log_det_ratio")[i]),
            se=sd / math.sqrt(res.num_chains),
            planted=float(gth.expected_log_det_ratio(n, m, d, 1)),
            params={"n": n, "num_chains": res.num_chains, "d": d, "M": m, "K": 1},
        ))
    rows += _rows(res, "trace_ratio", fits, lambda n: gth.expected_trace_ratio(n, m, 0),
                  lambda n: gth.expected_trace_ratio(n - 1, m, 0), d=d, M=m, K=1)
    return rows


register(Check(
    name="gmm-one-component-gaussian",
    family="gmm",
    reference=ONE_COMPONENT,
    formula="K = 1: E log det Σ_n/det Σ = n Σ_i[ψ((M−i)/2) + log(2/M)]; E tr Σ_n/tr Σ = ((M−1)/M)^n",
    planted="log det with the ddof=1 formula; trace ratio with n−1 fits",
    run=_one_component,
    params=ONE,
))


# ------------------------------------------------------------------------------------------------- GMM, separated
SEP_M, SEP_W, SEP_D, SEP_REG, SEP_CHAINS = 40, 0.3, 2, 1e-6, scaled(4096)


def _binomial_expectation(fn, m, p):
    """E fn(N) for N ~ Binomial(m, p) conditioned on N ≥ 1 (P(N = 0) = (1−p)^m is negligible here)."""
    k = np.arange(1, m + 1)
    pmf = stats.binom.pmf(k, m, p)
    return float(np.sum(pmf * fn(k)) / np.sum(pmf))


def separated_components(quick: bool, seed: int):
    """One EM fit (t = 1) of a 2-component mixture 20σ apart; per-chain (weight, trace, sq mean error) of the
    left component (components sorted by their first mean coordinate)."""
    model = GaussianMixture(num_components=2, dim=SEP_D, reg_covar=SEP_REG)
    truth = model.params(weights=[SEP_W, 1 - SEP_W], means=[[-10.0, 0.0], [10.0, 0.0]], covs=1.0)
    res = simulate(seed, model, regimes.Replace(), num_chains=SEP_CHAINS.pick(quick), num_generations=1,
                   num_samples=SEP_M, truth=truth, metrics=["min_weight"], quantiles=(),
                   compiler_options=compile_options(quick))
    mix = res.final_params.mixture
    left = np.argmin(mix.means[:, :, 0], axis=1)
    rows = np.arange(left.size)
    weight = np.exp(mix.log_weights[rows, left])
    chol = mix.chol[rows, left]
    trace = np.sum(chol**2, axis=(1, 2))
    err = np.sum((mix.means[rows, left] - np.array([-10.0, 0.0])) ** 2, axis=1)
    return {"weight": weight, "trace": trace, "sq_mean_error": err}


def _separated(quick, seed):
    per_chain = separated_components(quick, seed)
    c = per_chain["weight"].size
    d, m, p = SEP_D, SEP_M, SEP_W
    theory = {
        "weight": (p, 0.5),
        "trace": (d * _binomial_expectation(lambda k: (k - 1) / k, m, p) + d * SEP_REG, d * (1 + SEP_REG)),
        "sq_mean_error": (d * _binomial_expectation(lambda k: 1.0 / k, m, p), d / m),
    }
    out = []
    for name, (value, planted) in theory.items():
        x = per_chain[name]
        out.append(Measurement(
            quantity=f"E {name} of the π=0.3 component",
            theory=value, simulation=float(np.mean(x)), se=float(np.std(x, ddof=1) / math.sqrt(c)),
            planted=planted, params={"M": m, "d": d, "K": 2, "weights": [p, 1 - p], "separation": "20σ",
                                     "num_chains": c},
        ))
    return out


register(Check(
    name="gmm-em-separated-components",
    family="gmm",
    reference=SEPARATED,
    formula="N_k ~ Bin(M, π_k): E π̂_k = π_k; E tr Σ̂_k = dσ² E[(N_k−1)/N_k] + dλ; E‖μ̂_k−μ_k‖² = dσ² E[1/N_k]",
    planted="equal weights 1/2; the unbiased covariance dσ²(1+λ); mean error dσ²/M (all M points pooled)",
    run=_separated,
    params={"K": 2, "M": SEP_M, "d": SEP_D, "weights": [SEP_W, 1 - SEP_W], "separation": "20σ", "reg_covar": SEP_REG,
            "num_chains": SEP_CHAINS},
))
