"""Data regimes on both engine paths: exact (sufficient statistics) vs sample (draw and refit), and Kazdan's
accumulate-subsample loop against a brute-force NumPy implementation.

THEORY.md §2 ("key distributional facts"): the sufficient statistics of M i.i.d. Gaussian draws are x̄ ~ N(μ, Σ/M)
independent of the scatter ~ Wishart(M−1, Σ), so the exact path (which draws only these) and the sample path (which
draws the M points and refits them with frequency weights) must give the *same law* for every regime built from
pooled statistics. Each comparison is a two-sample KS test at α = 1e-3 on the final generation's per-chain values
(``trajectories=True``), and both paths' means are also checked against the closed forms (§2.1–§2.4), with a power
check on the same data. A discrepancy here is a bug in one path: a wrong Bartlett dof, a Chan combination without
the between-batch term, a mask/weight off by one in the sample-path buffers, or real draws taken from the model.

The exact-path runs are shared with test_simulate_gaussian.py through ``helpers.shared_run``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    assert_close_to_theory,
    assert_rejects,
    chain_mean_se,
    ks_two_sample,
    shared_config,
    shared_run,
)

from collapse_theory import AccumulateSubsample, Gaussian, regimes, simulate
from collapse_theory.keys import SAMPLE, derive_key, root_key
from collapse_theory.theory import gaussian as g

SAMPLE_CHAINS = {1: 8192, 3: 4096, 5: 4096}
SAMPLE_SEED_OFFSET = 1000


def _final(res, metric):
    return res.trajectories[metric][-1]


def _sizes(cfg):
    """Per-fit training-set sizes M_0..M_{G-1} of a shared run (ReplaceGrown: t·M)."""
    m, gens = cfg["num_samples"], cfg["num_generations"]
    if type(cfg["regime"]).__name__ == "ReplaceGrown":
        return m * np.arange(1, gens + 1)
    return np.full(gens, m)


# Theory at the final generation: name -> list of (metric, theory(cfg), analytic sd(cfg) or None, wrong(cfg), bug).
def _theory_checks(name):
    cfg = shared_config(name)
    m, gens, ddof, dim = cfg["num_samples"], cfg["num_generations"], cfg["ddof"], cfg["dim"]
    sizes = _sizes(cfg)
    if name.startswith("replace") or name.startswith("grown"):
        if dim == 1:
            return [("log_variance", g.expected_log_variance(gens, sizes, ddof=ddof),
                     math.sqrt(g.variance_of_log_variance(gens, sizes, ddof=ddof)),
                     g.expected_log_variance(gens, sizes, ddof=1 - ddof), "ddof swapped")]
        out = [("trace_ratio", g.expected_trace_ratio(gens, sizes, ddof=ddof), None,
                g.expected_trace_ratio(gens, sizes, ddof=1 - ddof), "ddof swapped"),
               ("sq_mean_error", g.expected_mean_sq_norm(gens, sizes, ddof=ddof, trace=float(dim)), None,
                g.expected_mean_sq_norm(gens, sizes, ddof=1 - ddof, trace=float(dim)), "ddof swapped")]
        return out
    if name.startswith("accumulate"):
        return [("trace_ratio", g.expected_accumulate_variance_ratio(gens, m, ddof=ddof), None,
                 g.expected_accumulate_variance_ratio(gens, m, ddof=1 - ddof), "ddof swapped"),
                ("sq_mean_error", g.expected_accumulate_mean_sq_error(gens, m, trace=float(dim), ddof=ddof), None,
                 1.2 * g.expected_accumulate_mean_sq_error(gens, m, trace=float(dim), ddof=ddof), "pi^2/5 pathway")]
    if name.startswith("fresh"):
        gamma = cfg["regime"].gamma
        e2, tr = g.fresh_fraction_moments(gens, m, gamma, ddof=ddof, sigma2=float(dim))
        e2_wrong, _ = g.fresh_fraction_moments(gens, m, 0.3, ddof=ddof, sigma2=float(dim))
        metric = "variance" if dim == 1 else "trace_ratio"
        return [("sq_mean_error", e2, None, e2_wrong, "gamma=0.3"),
                (metric, tr / dim, None, 1.0, "no between-batch term")]
    raise KeyError(name)


ONE_D = ["replace-1d-ddof1", "accumulate-1d-unbiased", "fresh-1d-0.25", "grown-1d"]
THREE_D = ["replace-3d-mle", "accumulate-3d-mle", "fresh-3d-mle", "grown-3d-mle"]


def _pair(name):
    cfg = shared_config(name)
    exact = shared_run(name, "exact")
    sample = shared_run(name, "sample", num_chains=SAMPLE_CHAINS[cfg["dim"]], seed=cfg["seed"] + SAMPLE_SEED_OFFSET)
    return cfg, exact, sample


def _check_means(name, exact, sample):
    for metric, theory, sd, wrong, bug in _theory_checks(name):
        for path, res in (("exact", exact), ("sample", sample)):
            values = _final(res, metric)
            mean, se = chain_mean_se(values)
            if sd is not None:
                se = sd / math.sqrt(values.size)
            assert_close_to_theory(mean, se, theory, label=f"{name} {path} final {metric}")
            assert_rejects(mean, se, wrong, label=f"{name} {path} final {metric}, {bug}")


@pytest.mark.parametrize("name", ONE_D)
def test_exact_and_sample_paths_agree_1d(name):
    """1-D, final generation: log σ² and (μ − μ0)² have the same law on both paths (KS, α = 1e-3), and both means
    match THEORY.md (§2.1 replace and replace-grown via per-fit sizes, §2.3 accumulate, §2.4 fresh fraction).

    Catches a sample-path weight mask one row too long or short, an accumulate buffer written at the wrong offset,
    fresh real rows drawn from the model, a ReplaceGrown pool size off by one generation, and, on the exact path, a
    χ² dof off by one or a pooled statistic without the between-batch term."""
    cfg, exact, sample = _pair(name)
    for metric in ("log_variance", "sq_mean_error"):
        ks_two_sample(_final(exact, metric), _final(sample, metric), label=f"{name} {metric} exact vs sample")
    _check_means(name, exact, sample)


@pytest.mark.parametrize("name", THREE_D)
def test_exact_and_sample_paths_agree_3d(name):
    """d = 3 (MLE), final generation: log tr Σ_n/tr Σ has the same law on both paths (KS, α = 1e-3); trace ratio
    and ‖μ − μ0‖² means match §2.2 (replace, and replace-grown with sizes t·M), §2.3 (accumulate) and §2.4's
    d-dimensional recursion for (E‖e‖², E tr Σ) (fresh fraction).

    Catches a Bartlett factor applied on the wrong side (F B vs B F), a QR-based scatter factor that loses a row, a
    transposed Cholesky factor in the sampler, and pooled d-dim statistics combined with the wrong cross term."""
    cfg, exact, sample = _pair(name)
    ks_two_sample(_final(exact, "log_trace_ratio"), _final(sample, "log_trace_ratio"),
                  label=f"{name} log_trace_ratio exact vs sample")
    _check_means(name, exact, sample)


def test_exact_and_sample_paths_agree_singular():
    """Singular case M ≤ d (d = 5, M = 4, MLE): every fitted Σ has rank ≤ 3 (§2.2: det Σ_n = 0, but the trace and
    mean formulas still hold for any dimension). The exact path's singular Bartlett factor and the sample path's
    rank-deficient QR must give the same trace ratio and ‖μ − μ0‖² laws; means vs ((M−1)/M)^n and tr Σ(1 − r^n).

    Catches a Bartlett factor that keeps columns j ≥ M−1 alive (rank too high), NaNs from log 0 on the diagonal, and
    a QR padding that drops the zero rows."""
    name = "replace-5d-singular"
    cfg, exact, sample = _pair(name)
    for metric in ("trace_ratio", "sq_mean_error"):
        assert np.all(np.isfinite(_final(exact, metric))) and np.all(np.isfinite(_final(sample, metric)))
        ks_two_sample(_final(exact, metric), _final(sample, metric), label=f"{name} {metric} exact vs sample")
    _check_means(name, exact, sample)
    # rank: at most M − 1 = 3 non-zero diagonal entries of the final lower-triangular factor, on both paths
    for res in (exact, sample):
        diag = np.abs(np.diagonal(np.asarray(res.final_params.factor), axis1=1, axis2=2))
        assert np.all(np.sum(diag > 1e-10, axis=1) <= cfg["num_samples"] - 1)


# ----------------------------------------------------------------------------------------------------------------
# AccumulateSubsample (Kazdan et al.): sample path only
# ----------------------------------------------------------------------------------------------------------------

SUB_DIM, SUB_M, SUB_G, SUB_C, SUB_SEED = 2, 10, 12, 16384, 707


@pytest.fixture(scope="module")
def subsample_run():
    return simulate(
        SUB_SEED, Gaussian(dim=SUB_DIM, ddof=0), AccumulateSubsample(), num_chains=SUB_C, num_generations=SUB_G,
        num_samples=SUB_M, path="sample", metrics=["trace_ratio"], quantiles=(), trajectories=True,
    )


def kazdan_subsample_numpy(rng, num_chains, num_generations, m, dim):
    """Brute-force Kazdan et al. loop (src/fit_gaussians, THEORY.md §6.2), vectorised over chains.

    Real data: m points from N(0, I). Iteration t = 1..G: fit ``np.mean`` / ``np.cov(bias=True)`` on m points drawn
    without replacement from all data so far (t·m points), then append m samples of the fit. Returns the trace
    ratios tr Σ̂_t / tr I, shape (G, C).
    """
    pool = np.empty((num_chains, num_generations * m, dim))
    pool[:, :m] = rng.standard_normal((num_chains, m, dim))
    out = np.empty((num_generations, num_chains))
    for t in range(1, num_generations + 1):
        size = t * m
        scores = rng.random((num_chains, size))
        index = np.argpartition(scores, m - 1, axis=1)[:, :m]  # the m smallest keys: a uniform subset
        subset = np.take_along_axis(pool[:, :size], index[:, :, None], axis=1)
        mean = subset.mean(axis=1)
        centred = subset - mean[:, None, :]
        cov = np.einsum("cmi,cmj->cij", centred, centred) / m  # np.cov(bias=True)
        if t == 1:
            np.testing.assert_allclose(cov[0], np.cov(subset[0].T, bias=True), rtol=1e-12)
        out[t - 1] = np.trace(cov, axis1=1, axis2=2) / dim
        if t < num_generations:
            factor = np.linalg.cholesky(cov)
            z = rng.standard_normal((num_chains, m, dim))
            pool[:, size:size + m] = mean[:, None, :] + np.einsum("cij,cmj->cmi", factor, z)
    return out


def test_subsample_first_fit_is_the_real_fit(subsample_run):
    """One-step fact: at t = 1 the pool is the M real points, so the subset of M of them is all of them and the fit
    is the MLE of the real batch. Rebuild that batch from the documented key derivation k(c, 1, SAMPLE) and fit it
    with NumPy (np.cov(bias=True)) for a few chains: equal to rounding.

    Catches a subsample at t = 1 that draws from an empty or zero-padded buffer (weight-0 rows selected), or
    real data drawn with the wrong key."""
    model = Gaussian(dim=SUB_DIM, ddof=0)
    truth = model.params()
    root = root_key(SUB_SEED)
    for c in range(4):
        x = np.asarray(model.sample(derive_key(root, c, 1, SAMPLE), truth, SUB_M))
        expected = np.trace(np.cov(x.T, bias=True)) / SUB_DIM
        np.testing.assert_allclose(subsample_run.trajectories["trace_ratio"][0, c], expected, rtol=1e-10)


def test_subsample_second_fit_expectation(subsample_run):
    r"""One-step fact at t = 2: the fit uses M points drawn without replacement from the pool of 2M (the real batch
    and one batch from fit 1). With S_pool = S_1 + B + (M/2)(b̄ − μ̂_1)², E[S_pool | F_1] = (2M − ½) Σ̂_1 and, for
    simple random sampling without replacement, E[S_subset | pool] = (M−1) S_pool/(2M−1), so (MLE)

        E tr Σ̂_2 / tr Σ = ((M−1)/M)² (2M − ½)/(2M − 1)   (0.83132 at M = 10).

    Power checks: replace ((M−1)/M)² = 0.81, accumulate (1 − 1/M)(1 − 1/(4M)) = 0.8775, and a subset drawn *with*
    replacement, ((M−1)/M)² (2M − ½)/(2M) = 0.78975: the bugs "subset ignores the pool", "no subsampling" and
    "bootstrap instead of without replacement"."""
    m = SUB_M
    values = subsample_run.trajectories["trace_ratio"][1]
    mean, se = chain_mean_se(values)
    r = (m - 1) / m
    assert_close_to_theory(mean, se, r**2 * (2 * m - 0.5) / (2 * m - 1), label="subsample E trace ratio t=2")
    assert_rejects(mean, se, g.expected_trace_ratio(2, m), label="subsample t=2 vs replace")
    assert_rejects(mean, se, g.expected_accumulate_variance_ratio(2, m), label="subsample t=2 vs accumulate")
    assert_rejects(mean, se, r**2 * (2 * m - 0.5) / (2 * m), label="subsample t=2 with replacement")


def test_subsample_matches_bruteforce_numpy(subsample_run):
    """Kazdan's loop in plain NumPy (pool kept explicitly, argpartition subsets, np.cov(bias=True), Cholesky
    sampling) and the engine's fixed-shape buffer with Gumbel top-k subsets give the same law of the final trace
    ratio (KS, α = 1e-3) and the same mean (two-sample z).

    Catches a Gumbel top-k that picks padded rows, a subset size of m_max instead of M_t, a pool write offset that
    overwrites earlier batches, and frequency weights lost in the gather."""
    reference = kazdan_subsample_numpy(np.random.default_rng(20241016), SUB_C, SUB_G, SUB_M, SUB_DIM)
    for t in (2, SUB_G // 2, SUB_G):
        engine = subsample_run.trajectories["trace_ratio"][t - 1]
        ks_two_sample(engine, reference[t - 1], label=f"subsample engine vs NumPy trace ratio t={t}")
        (m1, s1), (m2, s2) = chain_mean_se(engine), chain_mean_se(reference[t - 1])
        assert_close_to_theory(m1 - m2, math.hypot(s1, s2), 0.0, label=f"subsample engine - NumPy mean t={t}")


def test_subsample_between_replace_and_accumulate(subsample_run):
    """Kazdan et al. §6.1(c): accumulate-subsample degrades "slowly": at moderate t its mean trace ratio lies
    strictly between replace ((M−1)/M)^t (§2.2) and accumulate Π(1 − 1/(Mk²)) (§2.3), by more than 4 SE each side.

    Catches a subsample that silently degenerates to replace (uses only the newest batch) or to accumulate (fits the
    whole pool)."""
    for t in (SUB_G // 2, SUB_G):
        mean, se = chain_mean_se(subsample_run.trajectories["trace_ratio"][t - 1])
        low, high = g.expected_trace_ratio(t, SUB_M), g.expected_accumulate_variance_ratio(t, SUB_M)
        print(f"subsample t={t}: replace {low:.4f} < {mean:.4f} (SE {se:.4f}) < accumulate {high:.4f}")
        assert low + 4 * se < mean < high - 4 * se, (t, low, mean, se, high)


def test_exact_path_keeps_chains_independent():
    """Sanity check behind every KS test above: distinct chains of one run are not copies (a key reused across
    chains would make the KS samples degenerate and the SE far too small)."""
    res = shared_run("replace-1d-ddof1")
    final = _final(res, "log_variance")
    assert np.unique(final).size == final.size
    corr = np.corrcoef(final[:-1], final[1:])[0, 1]
    assert abs(corr) < 4 / math.sqrt(final.size), corr



def _always(row):
    return True


@pytest.mark.parametrize("regime", [
    regimes.Replace(), regimes.Accumulate(), regimes.AccumulateSubsample(), regimes.ReplaceGrown(),
    regimes.FreshFraction(0.5), regimes.Gate(regimes.Replace(), _always),
], ids=lambda r: type(r).__name__)
def test_exact_attribute_says_whether_the_exact_path_runs(regime):
    """``regime.exact`` (what ``run`` reads to pick its default path) is true exactly when the regime runs on the
    exact path: a two-generation exact run of the 1-D Gaussian succeeds, or stops with "no exact path"."""

    def run():
        return simulate(0, Gaussian(dim=1, ddof=1), regime, num_chains=2, num_generations=2, num_samples=5,
                        path="exact", quantiles=())

    if regime.exact:
        assert np.all(np.isfinite(run().mean("log_variance")))
    else:
        with pytest.raises(ValueError, match="no exact path"):
            run()


def _always(row):
    return row[0] == row[0]


def test_draw_rows_counts_what_a_generation_holds_and_gates_wrap_it():
    """The engine's memory check reads ``regimes.draw_rows``; it recognised ReplaceGrown by type, so a Gate around
    ReplaceGrown was counted at M_t rows per draw instead of the pool's Σ M_k, and a 7 GiB draw went ahead. Each
    regime states its draw; a regime without the method is taken to draw m_max rows."""
    layout = regimes.Layout(10, 7)
    grown = regimes.ReplaceGrown()
    assert regimes.draw_rows(regimes.Replace(), layout) == 10
    assert regimes.draw_rows(regimes.Accumulate(), layout) == 10
    assert regimes.draw_rows(AccumulateSubsample(), layout) == 10
    assert regimes.draw_rows(regimes.FreshFraction(0.5), layout) == 20
    assert regimes.draw_rows(grown, layout) == 70
    assert regimes.draw_rows(regimes.Gate(grown, _always), layout) == 70
    assert regimes.draw_rows(regimes.Gate(grown, _always, retries=2), layout) == 140
    assert regimes.draw_rows(object(), layout) == 10
    # 1.6e7 pool rows x 120 chains x 4 (8) bytes = 7.2 (14.3) GiB per generation, refused before anything is traced
    for regime in (grown, regimes.Gate(grown, _always)):
        with pytest.raises(ValueError, match=r"draws 16000000 rows per chain per generation, (7\.2|14\.3) GiB"):
            simulate(0, Gaussian(dim=1, ddof=0), regime, num_chains=120, num_generations=1600, num_samples=10_000,
                     path="sample")


def test_fresh_fraction_first_generation_uses_each_dataset_row_once():
    """Found by review: at t = 1 FreshFraction's real and synthetic parts were two independent draws from
    ``real_data``, which overlapped; a dataset of exactly M rows gave each chain a different first fit instead of
    the dataset's own (every other regime does). Now both parts come from one draw without replacement."""
    data = np.random.default_rng(0).standard_normal((20, 1))
    for regime in (regimes.FreshFraction(0.5), regimes.FreshFraction(0.3), regimes.Gate(regimes.FreshFraction(0.5),
                                                                                          _always)):
        res = simulate(0, Gaussian(dim=1, ddof=1), regime, real_data=data, num_chains=64, num_generations=2,
                       num_samples=20, metrics=["variance"], quantiles=(0.0, 1.0),
                       reference=Gaussian(dim=1, ddof=1).params())
        np.testing.assert_allclose(res.summary["variance"]["quantiles"][0], np.var(data, ddof=1), rtol=1e-5)


def test_regime_and_schedule_numbers_are_checked_by_kind():
    """Found by review: FreshFraction(np.float32(0.5)) was refused as "out of range" and FreshFraction(True) and
    PowerLaw(5, True) were taken as 1; PowerLaw(5, '2') raised a NumPy TypeError."""
    from collapse_theory.schedules import PowerLaw

    assert regimes.FreshFraction(np.float32(0.5)).gamma == 0.5
    for make, match in ((lambda: regimes.FreshFraction(True), "gamma=True is not a real number"),
                        (lambda: PowerLaw(5, True), "exponent=True is not a real number"),
                        (lambda: PowerLaw(5, "2"), "exponent='2' is not a real number")):
        with pytest.raises(ValueError, match=match):
            make()
