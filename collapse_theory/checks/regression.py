"""Checks of the linear-regression family against THEORY.md §3–5 (:mod:`collapse_theory.theory.regression`).

Parameters are small designs (d = 5, T = 16) where the finite-sample factor d/(T−d−1) and its asymptotic form
φ/(1−φ) = d/(T−d) differ by 10 %, so the planted asymptotic formula is far outside the Monte-Carlo noise, while
every moment used stays finite (tr (XᵀX)⁻¹ has finite moments of order < (T−d+1)/2 = 6).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import regimes
from ..mixing import simulate_mixture
from ..models.regression import Downstream, LinearRegression
from ..simulate import FAST_COMPILE, simulate
from ..theory import regression as th
from . import Check, Measurement, QuickFull, compile_options, register, scaled

GERSTGRASSER = "Gerstgrasser et al., arXiv 2404.01413, §3 (linear regression); THEORY.md §3.1"
DEMYSTIFIED = "Dohmatob, Feng & Kempe, NeurIPS 2024 (Model Collapse Demystified); THEORY.md §4"
STRONG = "Dohmatob, Feng, Subramonian & Kempe, ICLR 2025 (Strong Model Collapse); THEORY.md §5.2"

DIM, ROWS = 5, 16
NOISE_VAR, CHAIN_GENERATIONS, CHAIN_CHAINS = 1.0, 10, scaled(8000)
"""σ², number of fits and chains (quick/full) of the shared chain (:func:`_chain`)."""


def _chain_params(design: str, regime: str, fits: tuple) -> dict:
    """Parameters of a check on the shared chain (its ``run`` reads design, regime and the fit counts ``fits``
    from them)."""
    return {"d": DIM, "T": ROWS, "sigma2": NOISE_VAR, "design": design, "regime": regime, "n": fits,
            "generations": CHAIN_GENERATIONS, "num_chains": CHAIN_CHAINS}


REPLACE_FIXED = _chain_params("fixed", "replace", (1, 5, 10))
REPLACE_FRESH = _chain_params("fresh", "replace", (1, 5, 10))
ACCUMULATE = _chain_params("fixed", "accumulate", (2, 5, 10))
CONDITIONAL = _chain_params("fixed", "accumulate", (3, 10))


def _measure(quantity, values_mean, values_sd, chains, theory, planted, approx_rel=0.0, **params):
    return Measurement(
        quantity=quantity, theory=float(theory), simulation=float(values_mean),
        se=float(values_sd / math.sqrt(chains)), planted=float(planted), params=params, approx_rel=approx_rel,
    )


@functools.lru_cache(maxsize=8)
def _chain(quick: bool, seed: int, design: str, regime: str):
    model = LinearRegression(dim=DIM, noise_sd=math.sqrt(NOISE_VAR), design=design,
                             design_rows=ROWS if design == "fixed" else None)
    return simulate(
        seed, model, regimes.REGIMES[regime](), num_chains=CHAIN_CHAINS.pick(quick), num_generations=CHAIN_GENERATIONS,
        num_samples=ROWS, path="exact", metrics=["excess_risk"], quantiles=(),
        trajectories=(design == "fixed" and regime == "accumulate"), compiler_options=FAST_COMPILE,
    )


def _replace(params):
    def run(quick, seed):
        design = params["design"]
        res = _chain(quick, seed, design, params["regime"])
        out = []
        for n in params["n"]:
            out.append(_measure(
                f"E ||w_n − w*||² at n={n}", res.mean("excess_risk")[n - 1], res.summary["excess_risk"]["sd"][n - 1],
                res.num_chains, th.replace_excess_risk(n, DIM, ROWS), n * DIM / (ROWS - DIM),
                n=n, d=DIM, T=ROWS, sigma2=NOISE_VAR, design=design, num_chains=res.num_chains,
            ))
        return out

    return run


register(Check(
    name="regression-replace-fixed-design",
    family="regression",
    reference=GERSTGRASSER,
    formula="E ||ŵ_n − w*||²_Σ = n σ² d/(T − d − 1) (replace, fixed X, exact; no σ² noise floor)",
    planted="the asymptotic n σ² φ/(1 − φ) = n σ² d/(T − d)",
    run=_replace(REPLACE_FIXED),
    params=REPLACE_FIXED,
))
register(Check(
    name="regression-replace-fresh-design",
    family="regression",
    reference=GERSTGRASSER + "; Dohmatob et al. 2024 (independent X_m)",
    formula="E ||ŵ_n − w*||²_Σ = n σ² d/(T − d − 1) (replace, a fresh X every generation)",
    planted="the asymptotic n σ² d/(T − d)",
    run=_replace(REPLACE_FRESH),
    params=REPLACE_FRESH,
))


def _accumulate(quick, seed):
    p = ACCUMULATE
    res = _chain(quick, seed, p["design"], p["regime"])
    out = []
    for n in p["n"]:
        harmonic = sum(1.0 / i for i in range(1, n + 1))
        out.append(_measure(
            f"E ||w_n − w*||² at n={n}", res.mean("excess_risk")[n - 1], res.summary["excess_risk"]["sd"][n - 1],
            res.num_chains, th.accumulate_excess_risk(n, DIM, ROWS), harmonic * th.inverse_trace(DIM, ROWS),
            n=n, d=DIM, T=ROWS, sigma2=NOISE_VAR, design=p["design"], num_chains=res.num_chains,
        ))
    return out


register(Check(
    name="regression-accumulate-fixed-design",
    family="regression",
    reference=GERSTGRASSER,
    formula="E ||ŵ_n − w*||²_Σ = σ² d/(T − d − 1) Σ_{i≤n} 1/i² ≤ (π²/6) σ² d/(T − d − 1) (accumulate, fixed X)",
    planted="Σ_{i≤n} 1/i (harmonic sum instead of Σ 1/i²)",
    run=_accumulate,
    params=ACCUMULATE,
))


def _conditional(quick, seed):
    """Paired: each chain's error minus its own conditional expectation n σ² tr((XᵀX)⁻¹) given its design."""
    p = CONDITIONAL
    res = _chain(quick, seed, p["design"], p["regime"])
    designs = np.asarray(res.final_params.design)
    traces = np.array([th.inverse_trace_given_design(x) for x in designs])
    out = []
    for n in p["n"]:
        factor = th.accumulate_factor(n)
        harmonic = sum(1.0 / i for i in range(1, n + 1))
        sim = res.trajectories["excess_risk"][n - 1]
        diff_sd = np.std(sim - factor * traces, ddof=1)
        out.append(_measure(
            f"E[||w_n − w*||² | X] averaged at n={n}", sim.mean(), diff_sd, res.num_chains,
            np.mean(factor * traces), np.mean(harmonic * traces),
            n=n, d=DIM, T=ROWS, sigma2=NOISE_VAR, design=p["design"], num_chains=res.num_chains,
        ))
    return out


register(Check(
    name="regression-accumulate-given-design",
    family="regression",
    reference=GERSTGRASSER + " (conditional on X, derived)",
    formula="E[||ŵ_n − w*||²_Σ | X] = σ² tr(Σ (XᵀX)⁻¹) Σ_{i≤n} 1/i², paired per chain (SE of the difference)",
    planted="σ² tr(Σ (XᵀX)⁻¹) Σ_{i≤n} 1/i",
    run=_conditional,
    params=CONDITIONAL,
))


DOWNSTREAM = {"d": 5, "T": 20, "T0": 14, "sigma": 1.0, "sigma0": 1.0, "n": (1, 3, 6), "generations": 6,
              "num_chains": scaled(8000)}


def _downstream(quick, seed):
    p = DOWNSTREAM
    d, t, t0, sigma, sigma0 = p["d"], p["T"], p["T0"], p["sigma"], p["sigma0"]
    model = LinearRegression(dim=d, noise_sd=sigma0, downstream=Downstream(rows=t, noise_sd=sigma))
    res = simulate(seed, model, num_chains=p["num_chains"].pick(quick), num_generations=p["generations"],
                   num_samples=t0, compiler_options=FAST_COMPILE,
                   path="exact", metrics=["downstream_excess_risk"], quantiles=())
    out = []
    for n in p["n"]:
        out.append(_measure(
            f"E_test of the downstream OLS on generation-{n} data", res.mean("downstream_excess_risk")[n - 1],
            res.summary["downstream_excess_risk"]["sd"][n - 1], res.num_chains,
            th.downstream_ols_excess_risk(n, d, t, t0, sigma**2, sigma0**2),
            th.downstream_ols_excess_risk(n + 1, d, t, t0, sigma**2, sigma0**2),
            n=n, d=d, T=t, T0=t0, sigma2=sigma**2, sigma0_2=sigma0**2, num_chains=res.num_chains,
        ))
    return out


register(Check(
    name="regression-downstream-ols",
    family="regression",
    reference=DEMYSTIFIED + ", Thm 4.1 (exact form, App. F.2)",
    formula="E_test(ŵ_pred_n) = σ² d/(T − d − 1) + n σ0² d/(T0 − d − 1) (fresh X_m, downstream OLS on T rows)",
    planted="n + 1 generations (fit index off by one)",
    run=_downstream,
    params=DOWNSTREAM,
))


NOISELESS = {"d": 12, "T0": 6, "sigma0": 0.0, "design": ("fixed", "fresh"), "n": (2, 4), "generations": 4,
             "num_chains": scaled(4000)}


def _noiseless(quick, seed):
    p = NOISELESS
    d, t0, generations = p["d"], p["T0"], p["generations"]
    out = []
    for design, planted_design in zip(p["design"], p["design"][::-1], strict=True):  # the other design's formula
        model = LinearRegression(dim=d, noise_sd=p["sigma0"], design=design,
                                 design_rows=t0 if design == "fixed" else None)
        res = simulate(seed, model, num_chains=p["num_chains"].pick(quick), num_generations=generations,
                       num_samples=t0, compiler_options=FAST_COMPILE,
                       path="exact", metrics=["relative_weight_norm", "excess_risk"], quantiles=())
        for n in p["n"]:
            out.append(_measure(
                f"E ||ŵ_n||²/||w0||² at n={n}, {design} design", res.mean("relative_weight_norm")[n - 1],
                res.summary["relative_weight_norm"]["sd"][n - 1], res.num_chains,
                th.noiseless_weight_norm(n, d, t0, design), th.noiseless_weight_norm(n, d, t0, planted_design),
                n=n, d=d, T0=t0, design=design, num_chains=res.num_chains,
            ))
        out.append(_measure(  # ‖w0‖² = 1 (the model's default truth)
            f"E ||ŵ_n − w0||² at n={generations}, {design} design", res.mean("excess_risk")[generations - 1],
            res.summary["excess_risk"]["sd"][generations - 1], res.num_chains,
            th.noiseless_excess_risk(generations, d, t0, design),
            th.noiseless_excess_risk(generations, d, t0, planted_design),
            n=generations, d=d, T0=t0, design=design, num_chains=res.num_chains,
        ))
    return out


register(Check(
    name="regression-noiseless-overparametrised",
    family="regression",
    reference=DEMYSTIFIED + ", Thms 4.5/4.6 (exact finite-sample form)",
    formula="σ0 = 0, T0 < d, min-norm fits: E||ŵ_n||²/||w0||² = T0/d (fixed X0) or (T0/d)^n (independent X_m); "
            "the bias E||ŵ_n − w0||²/||w0||² is 1 minus that",
    planted="the other design's formula (fixed ↔ independent)",
    run=_noiseless,
    params=NOISELESS,
))


MIXTURE_NOISE = {"d": 20, "n1": 45, "n2": 15, "noise_sd_real": 1.0, "noise_sd_synth": 2.0, "delta_norm_sq": 0.0,
                 "num_chains": scaled(20000)}


def _mixture_noise(quick, seed):
    cfg = MIXTURE_NOISE
    d, n1, n2, s1, s2 = cfg["d"], cfg["n1"], cfg["n2"], cfg["noise_sd_real"], cfg["noise_sd_synth"]
    model = LinearRegression(dim=d, noise_sd=s1)
    res = simulate_mixture(seed, model, num_real=n1, num_synth=n2, shift_norm_sq=cfg["delta_norm_sq"],
                           synth_noise_sd=s2, num_chains=cfg["num_chains"].pick(quick),
                           compiler_options=compile_options(quick))
    n, p2 = n1 + n2, n2 / (n1 + n2)
    noise = (1 - p2) * s1**2 + p2 * s2**2
    return [_measure(
        "E ||ŵ − w1||² with δ = 0", res.mean("excess_risk")[0], res.summary["excess_risk"]["sd"][0],
        res.num_chains, th.mixture_noise_term(n, d, p2, s1**2, s2**2), noise * d / (n - d),
        d=d, n1=n1, n2=n2, sigma1_2=s1**2, sigma2_2=s2**2, num_chains=res.num_chains,
    )]


register(Check(
    name="strong-collapse-noise-term",
    family="regression",
    task="regression-mixing",  # shares no simulation with the chain checks: its own worker task
    reference=STRONG + " (exact noise term, derived)",
    formula="δ = 0: E ||ŵ − w1||² = (p1 σ1² + p2 σ2²) d/(n − d − 1) (ridgeless, isotropic)",
    planted="the asymptotic (p1 σ1² + p2 σ2²) φ/(1 − φ) = … d/(n − d)",
    run=_mixture_noise,
    params=MIXTURE_NOISE,
))


MIXTURE_SHIFT = {"d": 50, "n": 500, "p2": (0.1, 0.5), "delta_norm_sq": 1.0, "noise_sd": 0.5,
                 "num_chains": QuickFull(500, 16000)}
"""Quick: 500 chains still put the planted p2² 60+ standard errors away (2000 chains: 130-275)."""


def _mixture_shift_and_error(quick, seed):
    cfg = MIXTURE_SHIFT
    d, n, shift = cfg["d"], cfg["n"], cfg["delta_norm_sq"]
    p2s = cfg["p2"]
    model = LinearRegression(dim=d, noise_sd=cfg["noise_sd"])
    n2 = [int(round(p * n)) for p in p2s]
    res = simulate_mixture(seed, model, num_real=[n - k for k in n2], num_synth=n2, shift_norm_sq=shift,
                           num_chains=cfg["num_chains"].pick(quick), compiler_options=compile_options(quick))
    out = []
    for i, p2 in enumerate(p2s):
        out.append(_measure(
            f"E <ŵ − w1, δ> at p2={p2}", res.mean("mean_shift")[i], res.summary["mean_shift"]["sd"][i],
            res.num_chains, th.mixture_mean_shift(p2, shift), p2**2 * shift,
            d=d, n=n, p2=p2, delta_norm_sq=shift, num_chains=res.num_chains,
        ))
    return out


register(Check(
    name="strong-collapse-mean-shift",
    family="regression",
    task="regression-mixing",  # shares no simulation with the chain checks: its own worker task
    reference=STRONG + " (E[(XᵀX)⁻¹X2ᵀX2] = p2 I, derived, exact)",
    formula="E <ŵ − w1, δ> = p2 ||δ||² (the fit moves a fraction p2 of the way to the shifted weights)",
    planted="p2² ||δ||² (the plateau's square)",
    run=_mixture_shift_and_error,
    params=MIXTURE_SHIFT,
))


MIXTURE_ERROR = {"d": 100, "n": 1000, "p2": (0.1, 0.5), "delta_norm_sq": 1.0, "noise_sd": 0.5,
                 "num_chains": QuickFull(250, 8000)}
"""Quick: 250 chains still reject the planted form by 13+ standard errors (1000 chains: 30-42)."""


def _mixture_error(quick, seed):
    cfg = MIXTURE_ERROR
    d, n, shift, sigma = cfg["d"], cfg["n"], cfg["delta_norm_sq"], cfg["noise_sd"]
    p2s = cfg["p2"]
    model = LinearRegression(dim=d, noise_sd=sigma)
    n2 = [int(round(p * n)) for p in p2s]
    res = simulate_mixture(seed, model, num_real=[n - k for k in n2], num_synth=n2, shift_norm_sq=shift,
                           num_chains=cfg["num_chains"].pick(quick), compiler_options=compile_options(quick))
    out = []
    for i, p2 in enumerate(p2s):
        noise = th.mixture_noise_term(n, d, p2, sigma**2, sigma**2)
        out.append(_measure(
            f"E ||ŵ − w1||² at p2={p2}", res.mean("excess_risk")[i], res.summary["excess_risk"]["sd"][i],
            res.num_chains, th.mixture_excess_risk(n, d, p2, shift, sigma**2, sigma**2),
            noise + th.mixture_plateau(p2, shift), approx_rel=MIXTURE_APPROX_REL,
            d=d, n=n, p2=p2, delta_norm_sq=shift, sigma2=sigma**2, num_chains=res.num_chains,
        ))
    return out


MIXTURE_APPROX_REL = 0.005
"""Budget for the deterministic equivalent's finite-size error at d = 100, n = 1000: measured +0.2 % (pooled over
6 seeds × 8000 chains, +1.3e-4 ± 3.5e-5 at p2 = 0.1), about one full-mode standard error; at d = 20 it is 2 %."""


register(Check(
    name="strong-collapse-error",
    family="regression",
    task="regression-mixing",  # shares no simulation with the chain checks: its own worker task
    reference=STRONG + ", Cor. 1 and its derived first-order form (deterministic equivalent, ≈)",
    formula="E_test ≈ (p1σ1² + p2σ2²) d/(n−d−1) + ||δ||² (p2² + p1 p2 φ/(1−φ)), φ = d/n = 0.1, d = 100 "
            "(approximation: it runs about 0.2 % high here, about one full-mode SE, so z divides by the SE combined "
            "with a 0.5 % budget for it)",
    planted="the paper's form without the first-order term: noise + p2² ||δ||²",
    run=_mixture_error,
    params=MIXTURE_ERROR,
))
