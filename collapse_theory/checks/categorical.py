"""Checks of the categorical family against THEORY.md §7–8 (formulas in :mod:`collapse_theory.theory.categorical`).

Parameters follow STYLE.md §2F: small M (10) and moderate numbers of fits, where an off-by-one in M or in the
generation index moves the mean by many standard errors (at M = 50, T = 20 such a test would be vacuous). Every
statistic is bounded (heterozygosity, counts of categories, masses, 0/1 indicators), so the sample standard
deviation over chains gives an honest standard error. All runs use the exact (multinomial-count) path, except one
row set that draws and counts the M samples (sample path).

Shared runs: one replace chain on a Zipf(1) truth over K = 10 outcomes with M = 10 serves the heterozygosity,
zero-count, fixation, survival and lost-mass checks (one compile); one accumulate chain; one first fit of a Zipf(1.5)
truth over K = 1000 outcomes for the memorizer error.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import regimes
from ..models.categorical import Categorical
from ..simulate import simulate
from ..theory import categorical as th
from . import Check, Measurement, QuickFull, compile_options, register, scaled

WRIGHT_FISHER = "Shumailov et al., Nature 631 (2024) §3.1 (discrete chain); Wright–Fisher exact forms THEORY.md §7.1"
KAZDAN = "Kazdan et al., arXiv 2410.16713, discrete workflow; THEORY.md §7.1"
ACCUMULATE = "Pooled-frequency (accumulate) chain, THEORY.md §7.2 (sinc limit as in Gerstgrasser/Kazdan §2.3)"
TAILS = "Dohmatob et al., 'A Tale of Tails' arXiv 2402.07043 (memorizer / Hutter LLM); THEORY.md §8"

K_SMALL, M_SMALL, BETA_SMALL, G_REPLACE, G_ACCUMULATE = 10, 10, 1.0, 200, 30
REPLACE_GENERATIONS = {"exact": G_REPLACE, "sample": 10}
"""Number of fits of the shared replace run (:func:`_replace_run`) per path."""
# quick: 4096 exact chains (the binomial tree's 200 generations are most of the family's quick time); the planted
# formulas stay 9.5+ standard errors away
REPLACE_CHAINS = {"exact": QuickFull(4096, 65536), "sample": scaled(4096)}
"""Its chains (quick/full) per path."""
ACCUMULATE_CHAINS = scaled(8192)


def _truth_small() -> np.ndarray:
    return th.zipf_probs(K_SMALL, BETA_SMALL)


@functools.lru_cache(maxsize=8)
def _replace_run(quick: bool, seed: int, path: str = "exact"):
    # the exact path draws its counts by the binomial tree: with the inverse-CDF sampler ("auto" at these sizes) it
    # would draw the very bits of the sample path, and the sample-path row would cover nothing new
    model = Categorical(K_SMALL, max_samples=M_SMALL, exact_sampler="tree" if path == "exact" else "auto")
    return simulate(
        seed, model, regimes.Replace(), num_chains=REPLACE_CHAINS[path].pick(quick),
        num_generations=REPLACE_GENERATIONS[path], num_samples=M_SMALL,
        truth=model.params(_truth_small()), path=path,
        metrics=["heterozygosity", "zero_count", "surviving", "top_fixed", "lost_mass"], quantiles=(),
        compiler_options=compile_options(quick),
    )


@functools.lru_cache(maxsize=4)
def _accumulate_run(quick: bool, seed: int):
    model = Categorical(K_SMALL, max_samples=M_SMALL)
    return simulate(
        seed, model, regimes.Accumulate(), num_chains=ACCUMULATE_CHAINS.pick(quick), num_generations=G_ACCUMULATE,
        num_samples=M_SMALL, truth=model.params(_truth_small()), path="exact",
        metrics=["heterozygosity", "zero_count"], quantiles=(), compiler_options=compile_options(quick),
    )


def _rows(res, metric, fits, theory_fn, planted_fn, **params):
    out = []
    c = res.num_chains
    for n in fits:
        i = int(n) - 1
        out.append(Measurement(
            quantity=f"E {metric} at t={n}",
            theory=float(theory_fn(n)),
            simulation=float(res.mean(metric)[i]),
            se=float(res.se(metric)[i]),
            planted=float(planted_fn(n)),
            params={"t": int(n), "num_chains": c, **params, "path": res.config["path"],
                    "regime": res.config["regime"]},
        ))
    return out


def _zipf(beta: float) -> str:
    return f"Zipf(beta={beta:g})"


_SMALL = {"K": K_SMALL, "M": M_SMALL, "truth": _zipf(BETA_SMALL)}


def _replace_params(fits: tuple, path: str = "exact") -> dict:
    """Declared parameters of a check on the shared replace run at the fit counts ``fits``."""
    return {**_SMALL, "regime": "Replace", "t": fits, "path": path, "generations": REPLACE_GENERATIONS[path],
            "num_chains": REPLACE_CHAINS[path]}


HETEROZYGOSITY_FITS, HETEROZYGOSITY_SAMPLE_FITS = (5, 10), (10,)


def _heterozygosity_replace(quick, seed):
    p0 = _truth_small()
    h0 = th.heterozygosity(p0)
    rows = _rows(_replace_run(quick, seed), "heterozygosity", HETEROZYGOSITY_FITS,
                 lambda n: th.expected_heterozygosity(n, M_SMALL, h0),
                 lambda n: th.expected_heterozygosity(n, M_SMALL - 1, h0), **_SMALL)
    rows += _rows(_replace_run(quick, seed, "sample"), "heterozygosity", HETEROZYGOSITY_SAMPLE_FITS,
                  lambda n: th.expected_heterozygosity(n, M_SMALL, h0),
                  lambda n: th.expected_heterozygosity(n, M_SMALL - 1, h0), **_SMALL)
    return rows


register(Check(
    name="categorical-heterozygosity-replace",
    family="categorical",
    reference=WRIGHT_FISHER,
    formula="E H_t = (1 − 1/M)^t H_0, H = 1 − Σ p_i² (t fits, the first on M real samples); exact path (binomial-"
            "tree counts) and sample path (inverse-CDF draws)",
    planted="(1 − 1/(M−1))^t H_0 (sample size off by one)",
    run=_heterozygosity_replace,
    params={**_SMALL, "regime": "Replace", "t": tuple(sorted({*HETEROZYGOSITY_FITS, *HETEROZYGOSITY_SAMPLE_FITS})),
            "path": ("exact", "sample"), "generations": (REPLACE_GENERATIONS["exact"], REPLACE_GENERATIONS["sample"]),
            "num_chains": (REPLACE_CHAINS["exact"], REPLACE_CHAINS["sample"])},
))


ACCUMULATE_FITS = (5, G_ACCUMULATE)


def _heterozygosity_accumulate(quick, seed):
    p0 = _truth_small()
    h0 = th.heterozygosity(p0)
    res = _accumulate_run(quick, seed)
    rows = _rows(res, "heterozygosity", ACCUMULATE_FITS,
                 lambda n: th.expected_heterozygosity(n, M_SMALL, h0, "accumulate"),
                 lambda n: th.expected_heterozygosity(n, M_SMALL - 1, h0, "accumulate"), **_SMALL)
    # no category is lost after the first fit: the zero count stays at its first-fit value
    rows += _rows(res, "zero_count", (G_ACCUMULATE,), lambda n: th.first_fit_zero_count(K_SMALL, M_SMALL, p0),
                  lambda n: th.expected_zero_count(n, M_SMALL, p0), **_SMALL)
    return rows


register(Check(
    name="categorical-heterozygosity-accumulate",
    family="categorical",
    reference=ACCUMULATE,
    formula="E H_t = H_0 Π_{k≤t}(1 − 1/(M k²)) → H_0 sinc(π/√M); zero count frozen at Σ(1 − p_0,i)^M after t = 1",
    planted="H_0 Π(1 − 1/((M−1)k²)) (M off by one); zero count of the replace chain",
    run=_heterozygosity_accumulate,
    params={**_SMALL, "regime": "Accumulate", "t": ACCUMULATE_FITS, "path": "exact", "num_chains": ACCUMULATE_CHAINS},
))


SMOOTHING = 0.1
"""α of the smoothed chain: K α = 1 pseudo-count per fit against M = 10 real ones."""
SMOOTHED_HETEROZYGOSITY_FITS, SMOOTHED_TOP_FITS = (5, 30), (5,)
SMOOTHED = {**_SMALL, "smoothing": SMOOTHING, "regime": "Replace",
            "t": tuple(sorted({*SMOOTHED_HETEROZYGOSITY_FITS, *SMOOTHED_TOP_FITS})),
            "generations": max(SMOOTHED_HETEROZYGOSITY_FITS), "path": "exact", "num_chains": scaled(8192)}


@functools.lru_cache(maxsize=4)
def _smoothed_run(quick: bool, seed: int):
    model = Categorical(K_SMALL, smoothing=SMOOTHING, max_samples=M_SMALL)
    return simulate(
        seed, model, regimes.Replace(), num_chains=SMOOTHED["num_chains"].pick(quick),
        num_generations=SMOOTHED["generations"], num_samples=M_SMALL,
        truth=model.params(_truth_small()), path="exact", metrics=["heterozygosity", "top_prob"], quantiles=(),
        compiler_options=compile_options(quick),
    )


def _smoothed(quick, seed):
    p0 = _truth_small()
    h0 = th.heterozygosity(p0)
    res = _smoothed_run(quick, seed)
    params = {**_SMALL, "smoothing": SMOOTHING}
    rows = _rows(res, "heterozygosity", SMOOTHED_HETEROZYGOSITY_FITS,
                 lambda n: th.expected_smoothed_heterozygosity(n, M_SMALL, h0, SMOOTHING, K_SMALL),
                 lambda n: th.expected_heterozygosity(n, M_SMALL, h0), **params)
    rows += _rows(res, "top_prob", SMOOTHED_TOP_FITS,
                  lambda n: th.expected_smoothed_probs(n, M_SMALL, p0, SMOOTHING)[0], lambda n: p0[0], **params)
    return rows


register(Check(
    name="categorical-smoothed-replace",
    family="categorical",
    reference="add-α (Lidstone) smoothed refits: drift–mutation balance, derived here (theory.categorical)",
    formula="E p_t = 1/K + r^t (p_0 − 1/K), r = M/(M + Kα); E H_t = H* + a^t (H_0 − H*), a = M(M−1)/(M + Kα)², "
            "H* = α(K−1)(2M + Kα)/(M + 2MKα + K²α²)",
    planted="α ignored: the Wright–Fisher (1 − 1/M)^t H_0 and the martingale E p_t = p_0",
    run=_smoothed,
    params=SMOOTHED,
))


FIXATION_FITS = (15, G_REPLACE)


def _fixation(quick, seed):
    p0 = _truth_small()
    res = _replace_run(quick, seed)
    return _rows(res, "top_fixed", FIXATION_FITS,
                 lambda n: th.fixation_probability(n, M_SMALL, p0)[0],
                 lambda n: (p0[0] if n < 50 else 1.0 / K_SMALL), **_SMALL)


register(Check(
    name="categorical-fixation",
    family="categorical",
    reference=WRIGHT_FISHER,
    formula="Pr(p_t,0 = 1) = [b P^{t−1}]_M, b = Binom(M, p_0,0), P the (M+1)² binomial matrix; → p_0,0 (t → ∞)",
    planted="at t = 15 the eventual value p_0,0 (ignores finite t); at t = 200 the uniform 1/K",
    run=_fixation,
    params=_replace_params(FIXATION_FITS),
))


SURVIVING_FITS, LOST_MASS_FITS = (3, 10), (5,)


def _survival(quick, seed):
    p0 = _truth_small()
    res = _replace_run(quick, seed)
    rows = _rows(res, "surviving", SURVIVING_FITS, lambda n: th.expected_surviving(n, M_SMALL, p0),
                 lambda n: th.expected_surviving(n - 1, M_SMALL, p0), **_SMALL)
    rows += _rows(res, "lost_mass", LOST_MASS_FITS, lambda n: th.expected_lost_mass(n, M_SMALL, p0),
                  lambda n: th.expected_lost_mass(n - 1, M_SMALL, p0), **_SMALL)
    return rows


register(Check(
    name="categorical-exact-survival",
    family="categorical",
    reference=WRIGHT_FISHER,
    formula="E #surviving = Σ_i (1 − [b_i P^{t−1}]_0); E lost mass = Σ_i p_0,i [b_i P^{t−1}]_0 (exact binomial chain)",
    planted="generation index shifted by one (t − 1 fits)",
    run=_survival,
    params=_replace_params(tuple(sorted({*SURVIVING_FITS, *LOST_MASS_FITS}))),
))


FIRST_FIT = (1,)


def _zero_count(quick, seed):
    p0 = _truth_small()
    res = _replace_run(quick, seed)
    return _rows(res, "zero_count", FIRST_FIT, lambda n: th.first_fit_zero_count(K_SMALL, M_SMALL, p0),
                 lambda n: float(np.sum(np.exp(-M_SMALL * p0))), **_SMALL)


register(Check(
    name="categorical-zero-count",
    family="categorical",
    reference=KAZDAN,
    formula="E #zero categories after the first fit = Σ_i (1 − p_0,i)^M (uniform: K(1 − 1/K)^M)",
    planted="the Poisson approximation Σ_i exp(−M p_0,i)",
    run=_zero_count,
    params=_replace_params(FIRST_FIT),
))

K_MEMO, BETA_MEMO, T_MEMO = 1000, 1.5, 100
MEMORIZER_CHAINS = scaled(4096)


@functools.lru_cache(maxsize=4)
def _memorizer_run(quick: bool, seed: int):
    model = Categorical(K_MEMO, max_samples=T_MEMO)
    return simulate(
        seed, model, regimes.Replace(), num_chains=MEMORIZER_CHAINS.pick(quick), num_generations=1,
        num_samples=T_MEMO, truth=model.zipf(BETA_MEMO), path="exact", metrics=["lost_mass"], quantiles=(),
        compiler_options=compile_options(quick),
    )


def _memorizer(quick, seed):
    p0 = _truth_small()
    rows = _rows(_replace_run(quick, seed), "lost_mass", FIRST_FIT, lambda n: th.memorizer_error(M_SMALL, p0),
                 lambda n: th.memorizer_error(M_SMALL - 1, p0), T=M_SMALL, **_SMALL)
    p = th.zipf_probs(K_MEMO, BETA_MEMO)
    rows += _rows(_memorizer_run(quick, seed), "lost_mass", FIRST_FIT, lambda n: th.memorizer_error(T_MEMO, p),
                  lambda n: th.memorizer_error_asymptote(T_MEMO, BETA_MEMO),
                  K=K_MEMO, T=T_MEMO, truth=_zipf(BETA_MEMO))
    return rows


register(Check(
    name="categorical-memorizer-error",
    family="categorical",
    reference=TAILS,
    formula="E(T) = Σ_i p_i (1 − p_i)^T = E truth mass of the categories unseen in T samples (first fit)",
    planted="K = 10: T − 1 samples; K = 1000: the K = ∞ power law (1/β)Γ(1−1/β)ζ(β)^{−1/β} T^{−(1−1/β)}",
    run=_memorizer,
    params={"K": (K_SMALL, K_MEMO), "T": (M_SMALL, T_MEMO), "truth": (_zipf(BETA_SMALL), _zipf(BETA_MEMO)),
            "regime": "Replace", "t": FIRST_FIT, "path": "exact",
            "num_chains": (REPLACE_CHAINS["exact"], MEMORIZER_CHAINS)},
))
