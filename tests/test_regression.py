"""Linear-regression chains (THEORY.md §3–5): estimator identities, both paths, fixed vs fresh design, bad input.

Statistical tests compare a simulated mean with a formula using the Monte-Carlo standard error (|z| ≤ 4) and check
power against a planted wrong formula; exact identities are compared to round-off.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_theory import regimes
from collapse_theory.mixing import simulate_mixture
from collapse_theory.models import Downstream, LinearRegression, power_law_spectrum
from collapse_theory.simulate import simulate
from collapse_theory.theory import regression as th

Z = 4.0


def _z(mean, se, value):
    return (mean - value) / se


# ----------------------------------------------------------------- the estimator


def test_fit_is_pinv_on_stacked_rows_and_weights_equal_repeats():
    """Frequency weights == repeated rows, and the ridgeless fit == numpy.linalg.pinv (Kazdan et al.'s fit)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4))
    y = rng.normal(size=7)
    counts = np.array([1, 2, 0, 1, 3, 1, 1.0])
    model = LinearRegression(dim=4)
    params = model.params()
    fitted = model.fit(None, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, jnp.asarray(counts), params)
    rows = np.repeat(np.arange(7), counts.astype(int))
    expected = np.linalg.pinv(x[rows]) @ y[rows]
    np.testing.assert_allclose(fitted.weights, expected, rtol=1e-10, atol=1e-12)
    # a row of weight 0 holding non-finite values is no row: it must not turn the fit into NaN (sqrt(0) * NaN)
    x[2], y[2] = np.nan, np.inf
    fitted = model.fit(None, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, jnp.asarray(counts), params)
    np.testing.assert_allclose(fitted.weights, expected, rtol=1e-10, atol=1e-12)


def test_underdetermined_fit_is_minimum_norm():
    """T < d: the fit is the minimum-norm interpolant pinv(X) y, on both paths."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6))
    y = rng.normal(size=3)
    model = LinearRegression(dim=6)
    params = model.params()
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    ones = jnp.ones(3)
    fitted = model.fit(None, data, ones, params)
    np.testing.assert_allclose(fitted.weights, np.linalg.pinv(x) @ y, atol=1e-12)
    stats = model.empty_stats(params)._replace(gram=jnp.asarray(x.T @ x), moment=jnp.asarray(x.T @ y),
                                               count=jnp.asarray(3.0))
    np.testing.assert_allclose(model.fit_from_stats(stats, params).weights, np.linalg.pinv(x) @ y, atol=1e-10)


def test_ridge_matches_closed_form_on_both_paths():
    """ŵ = (XᵀX + nλI)⁻¹Xᵀy with n = Σ weights (Dohmatob et al.'s normalisation)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 3))
    y = rng.normal(size=9)
    lam = 0.3
    model = LinearRegression(dim=3, ridge=lam)
    params = model.params()
    expected = np.linalg.solve(x.T @ x + 9 * lam * np.eye(3), x.T @ y)
    fitted = model.fit(None, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, jnp.ones(9), params)
    np.testing.assert_allclose(fitted.weights, expected, rtol=1e-10)
    stats = model.empty_stats(params)._replace(gram=jnp.asarray(x.T @ x), moment=jnp.asarray(x.T @ y),
                                               count=jnp.asarray(9.0))
    np.testing.assert_allclose(model.fit_from_stats(stats, params).weights, expected, rtol=1e-10)


def test_projection_model_with_invertible_square_projection_equals_plain_fit():
    """m = d with S invertible: vᵀSx spans every linear model, so the fit equals the plain OLS fit."""
    model = LinearRegression(dim=4, model_size=4)
    truth = model.chain_truth(jax.random.key(3), model.params())
    data = model.sample(jax.random.key(4), truth, 12)
    plain = LinearRegression(dim=4).fit(None, data, jnp.ones(12), LinearRegression(dim=4).params())
    projected = model.fit(None, data, jnp.ones(12), truth)
    np.testing.assert_allclose(projected.weights, plain.weights, rtol=1e-8)


def test_fixed_design_is_tiled_and_constant_across_generations():
    model = LinearRegression(dim=2, design="fixed", design_rows=5)
    truth = model.chain_truth(jax.random.key(0), model.params())
    a = model.sample(jax.random.key(1), truth, 10)
    b = model.sample(jax.random.key(2), truth, 5)
    np.testing.assert_array_equal(a["x"][:5], a["x"][5:])
    np.testing.assert_array_equal(a["x"][:5], b["x"])
    assert not np.allclose(a["y"][:5], b["y"])  # fresh label noise every draw


def test_exact_statistics_of_a_fixed_design_match_the_stacked_data():
    """sample_stats for n = kT + r rows has the Gram matrix of the tiled design (rows i mod T)."""
    model = LinearRegression(dim=3, design="fixed", design_rows=4)
    truth = model.chain_truth(jax.random.key(0), model.params())
    x = np.asarray(truth.design)
    stats = model.sample_stats(jax.random.key(1), truth, 10)
    tiled = x[np.arange(10) % 4]
    np.testing.assert_allclose(stats.gram, tiled.T @ tiled, rtol=1e-12)
    assert float(stats.count) == 10


# ----------------------------------------------------------------- both paths agree in distribution


@pytest.mark.parametrize("design", ["fixed", "fresh"])
@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_exact_and_sample_paths_agree(design, regime):
    """Mean and log-mean of the excess risk at n = 6 agree between the paths (two-sample z)."""
    model = LinearRegression(dim=3, noise_sd=1.0, design=design, design_rows=8 if design == "fixed" else None)
    out = {}
    for path, seed in (("exact", 0), ("sample", 1)):
        res = simulate(seed, model, regimes.REGIMES[regime](), num_chains=3000, num_generations=6, num_samples=8,
                       path=path, metrics=["excess_risk", "log_excess_risk"], quantiles=())
        out[path] = {m: (res.mean(m)[-1], res.se(m)[-1]) for m in ("excess_risk", "log_excess_risk")}
    for metric in ("excess_risk", "log_excess_risk"):
        (a, sa), (b, sb) = out["exact"][metric], out["sample"][metric]
        assert abs(a - b) / math.hypot(sa, sb) < Z, (metric, a, b)


# ----------------------------------------------------------------- fixed vs fresh design (THEORY.md §3.1, §14.3)


@pytest.fixture(scope="module")
def accumulate_runs():
    out = {}
    for design in ("fixed", "fresh"):
        model = LinearRegression(dim=5, design=design, design_rows=16 if design == "fixed" else None)
        out[design] = simulate(7, model, regimes.Accumulate(), num_chains=20000, num_generations=10,
                               num_samples=16, path="exact", metrics=["excess_risk"], quantiles=())
    return out


def test_accumulate_fixed_design_follows_inverse_square_sum(accumulate_runs):
    res = accumulate_runs["fixed"]
    theory = th.accumulate_excess_risk(10, 5, 16)
    z = _z(res.mean("excess_risk")[-1], res.se("excess_risk")[-1], theory)
    assert abs(z) < Z
    planted = th.inverse_trace(5, 16) * sum(1 / i for i in range(1, 11))  # Σ1/i instead of Σ1/i²
    assert abs(_z(res.mean("excess_risk")[-1], res.se("excess_risk")[-1], planted)) > Z
    assert res.mean("excess_risk")[-1] < th.accumulate_bound(5, 16)


def test_accumulate_fresh_design_runs_below_the_fixed_design_identity(accumulate_runs):
    """The Σ1/i² identity needs a fixed X: with fresh X the accumulate chain is measurably lower (§14.3), while
    the replace formula holds for both (checked by the registry's fresh-design check)."""
    fixed, fresh = accumulate_runs["fixed"], accumulate_runs["fresh"]
    theory = th.accumulate_excess_risk(10, 5, 16)
    z = _z(fresh.mean("excess_risk")[-1], fresh.se("excess_risk")[-1], theory)
    assert z < -Z, z
    # the first fit is the same law for both designs
    diff = fixed.mean("excess_risk")[0] - fresh.mean("excess_risk")[0]
    assert abs(diff) / math.hypot(fixed.se("excess_risk")[0], fresh.se("excess_risk")[0]) < Z


# ----------------------------------------------------------------- the other regimes run on regression


@pytest.mark.parametrize("regime", [regimes.AccumulateSubsample(), regimes.ReplaceGrown(), regimes.FreshFraction(0.5)])
def test_other_regimes_run_with_fixed_shapes(regime):
    model = LinearRegression(dim=3, design="fixed", design_rows=8)
    res = simulate(0, model, regime, num_chains=64, num_generations=5, num_samples=8, path="sample",
                   metrics=["excess_risk"], quantiles=())
    assert np.all(np.isfinite(res.mean("excess_risk")))
    assert res.final_params.design.shape == (64, 8, 3)


def test_fresh_fraction_exact_path_matches_sample_path():
    model = LinearRegression(dim=3)
    means = []
    for path, seed in (("exact", 0), ("sample", 1)):
        res = simulate(seed, model, regimes.FreshFraction(0.5), num_chains=3000, num_generations=8, num_samples=10,
                       path=path, metrics=["excess_risk"], quantiles=())
        means.append((res.mean("excess_risk")[-1], res.se("excess_risk")[-1]))
    (a, sa), (b, sb) = means
    assert abs(a - b) / math.hypot(sa, sb) < Z


def test_random_weights_and_designs_differ_per_chain_and_results_do_not_depend_on_chain_count():
    model = LinearRegression(dim=3, design="fixed", design_rows=6, random_weights=True)
    small = simulate(3, model, num_chains=4, num_generations=3, num_samples=6, path="exact",
                     metrics=["excess_risk"], trajectories=True, quantiles=())
    large = simulate(3, model, num_chains=9, num_generations=3, num_samples=6, path="exact",
                     metrics=["excess_risk"], trajectories=True, quantiles=())
    # same keys => same chains; batched linear algebra may round differently with the batch size (ulps)
    np.testing.assert_allclose(small.trajectories["excess_risk"], large.trajectories["excess_risk"][:, :4], rtol=1e-12)
    designs = np.asarray(small.final_params.design)
    assert not np.allclose(designs[0], designs[1])


def test_noisy_test_labels_add_the_noise_floor():
    model = LinearRegression(dim=2, noise_sd=0.7, test_labels="noisy")
    truth = model.params()
    fitted = truth._replace(weights=truth.weights + 0.1)
    values = model.metrics(fitted, truth)
    assert float(values["test_error"]) == pytest.approx(float(values["excess_risk"]) + 0.49)
    clean = dataclasses.replace(model, test_labels="clean").metrics(fitted, truth)
    assert float(clean["test_error"]) == pytest.approx(float(clean["excess_risk"]))


def test_power_law_spectrum_weights_the_excess_risk():
    spec = power_law_spectrum(3, 2.0)
    assert spec == pytest.approx((1.0, 0.25, 1 / 9))
    model = LinearRegression(dim=3, spectrum=spec)
    truth = model.params(weights=[0.0, 0.0, 1.0])
    fitted = truth._replace(weights=jnp.asarray([0.0, 0.0, 0.0]))
    assert float(model.metrics(fitted, truth)["excess_risk"]) == pytest.approx(1 / 9)


# ----------------------------------------------------------------- strong model collapse


def test_strong_collapse_plateau_persists_as_n_grows():
    """Fixed p2 = 0.1: as n grows the error falls to the floor p2²||δ||², not to zero; with p2 → 0 it vanishes."""
    d, shift = 10, 1.0
    n = np.array([100, 1000, 10000])
    model = LinearRegression(dim=d, noise_sd=1.0)
    res = simulate_mixture(0, model, num_real=(0.9 * n).astype(int), num_synth=(0.1 * n).astype(int),
                           shift_norm_sq=shift, num_chains=2000)
    err, se = res.mean("excess_risk"), res.se("excess_risk")
    theory = [th.mixture_excess_risk(k, d, 0.1, shift) for k in n]
    assert np.all(np.abs(err - theory) < Z * se + 0.03 * np.asarray(theory))  # deterministic equivalent, ~1 %
    assert err[-1] > 0.9 * th.mixture_plateau(0.1, shift)
    vanishing = simulate_mixture(0, model, num_real=n - 1, num_synth=[1, 1, 1], shift_norm_sq=shift,
                                 num_chains=2000)
    # one shifted row: the δ-term is p2²||δ||² = 1e-8 at n = 1e4, so only the noise term d/(n−d−1) remains
    assert np.all(np.diff(vanishing.mean("excess_risk")) < 0)
    assert vanishing.mean("excess_risk")[-1] < 0.15 * th.mixture_plateau(0.1, shift)


def test_mixture_rejects_bad_input():
    model = LinearRegression(dim=3)
    with pytest.raises(ValueError, match="design='fresh'"):
        simulate_mixture(0, LinearRegression(dim=3, design="fixed", design_rows=5), num_real=5, num_synth=1,
                         shift_norm_sq=1.0, num_chains=4)
    with pytest.raises(ValueError, match="num_real"):
        simulate_mixture(0, model, num_real=-1, num_synth=1, shift_norm_sq=1.0, num_chains=4)
    with pytest.raises(ValueError, match="exactly one"):
        simulate_mixture(0, model, num_real=5, num_synth=1, num_chains=4)


# ----------------------------------------------------------------- Dohmatob et al.: the ridge corollary (asymptotic)


@pytest.mark.slow
def test_downstream_ridge_matches_corollary_4_4_within_its_finite_size_error():
    """Cor. 4.4 is a random-matrix limit: at d = 200 it is within ~1 % (THEORY.md §4.2); allow 3 % + 4 SE."""
    d, t, t0, lam, sigma, sigma0 = 200, 400, 600, 0.1, 0.5, 1.0
    model = LinearRegression(dim=d, noise_sd=sigma0, downstream=Downstream(rows=t, noise_sd=sigma, ridge=lam))
    res = simulate(0, model, num_chains=200, num_generations=3, num_samples=t0, path="exact",
                   metrics=["downstream_excess_risk"], quantiles=())
    theory = th.downstream_ridge_isotropic([1, 2, 3], d, t, t0, lam, sigma**2, sigma0**2, 1.0)
    err, se = res.mean("downstream_excess_risk"), res.se("downstream_excess_risk")
    assert np.all(np.abs(err - theory) < Z * se + 0.03 * theory)
    planted = th.downstream_ridge_isotropic([2, 3, 4], d, t, t0, lam, sigma**2, sigma0**2, 1.0)
    assert np.all(np.abs(err - planted) > Z * se + 0.03 * planted)


# ----------------------------------------------------------------- bad input


def test_theory_refuses_infinite_expectations():
    with pytest.raises(ValueError, match=r"rows=11 is out of range: need rows >= dim \+ 2 = 12"):
        th.replace_excess_risk(3, 10, 11)
    with pytest.raises(ValueError, match="rows=10"):
        th.accumulate_excess_risk(3, 10, 10)  # Kazdan's d = n = 10 cell
    with pytest.raises(ValueError, match="generator_rows"):
        th.downstream_ols_excess_risk(1, 10, 100, 11)
    with pytest.raises(ValueError, match="singular"):
        th.inverse_trace_given_design(np.ones((5, 3)))
    # Corollary 4.4 returned finite numbers (or divided by zero at T = d) where the exact expectation is infinite
    with pytest.raises(ValueError, match=r"rows=10 is out of range for ridge=0: need rows <= dim - 2 = 8"):
        th.downstream_ridge_isotropic(1, 10, 10, 20, 0.0)
    with pytest.raises(ValueError, match="rows=11 is out of range for ridge=0"):
        th.downstream_ridge_isotropic(1, 10, 11, 20, 0.0)
    with pytest.raises(ValueError, match=r"generator_rows=11 is out of range: need generator_rows >= dim \+ 2"):
        th.downstream_ridge_isotropic(1, 10, 40, 11, 0.1)
    with pytest.raises(ValueError, match="generator_rows=11 is out of range"):
        th.power_law_rate(100, 2.0, 0.375, 0.5, num_fits=1, generator_rows=11, dim=10)
    assert np.isfinite(th.downstream_ridge_isotropic(1, 10, 12, 12, 0.0))  # the first finite sizes still work
    assert np.isfinite(th.downstream_ridge_isotropic(1, 10, 10, 12, 0.1))  # any T with a ridge


def test_theory_rejects_out_of_range_parameters():
    with pytest.raises(ValueError, match="p2=1.5 is out of range"):
        th.mixture_plateau(1.5)
    with pytest.raises(ValueError, match="p2=-0.1 is out of range"):
        th.mixture_excess_risk(100, 10, -0.1)
    with pytest.raises(ValueError, match="ridge=-1"):
        th.isotropic_kappa(-1.0, 0.5)
    with pytest.raises(ValueError, match="num_fits"):
        th.replace_excess_risk(0, 10, 40)
    with pytest.raises(ValueError, match=r"rows=\[40, 50\] is an array: need one integer"):
        th.replace_excess_risk(3, 10, np.array([40, 50]))
    with pytest.raises(ValueError, match=r"design=array.* is not one of \('fixed', 'fresh'\)"):
        th.noiseless_weight_norm(2, 5, 3, design=np.zeros(3))  # was numpy's "truth value ... ambiguous"
    with pytest.raises(ValueError, match=r"b=1.0 is out of range: need b >= a=2.0"):
        th.optimal_ridge_exponent(2.0, 0.5, a=2.0, b=1.0)  # returned a negative exponent
    with pytest.raises(ValueError, match="num_fits=.* is empty"):
        th.replace_excess_risk([], 10, 40)  # was numpy's "zero-size array to reduction"


def test_accumulate_factor_needs_no_table_for_huge_fit_counts():
    """Σ_{i<=n} 1/i² summed term by term up to 10⁵, then a trigamma tail: n = 10¹² allocated a 7 TiB table."""
    n = np.array([1, 2, 99_999, 100_000, 100_001, 250_000])
    direct = np.array([np.sum(1.0 / np.arange(1, k + 1) ** 2) for k in n])
    np.testing.assert_allclose(th.accumulate_factor(n), direct, rtol=1e-13)
    assert th.accumulate_factor(10**12) == pytest.approx(np.pi**2 / 6 - 1e-12, rel=1e-13)


def test_model_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="ridge=-0.5 is out of range"):
        LinearRegression(dim=3, ridge=-0.5)
    with pytest.raises(ValueError, match="model_size=0 is out of range"):
        LinearRegression(dim=3, model_size=0)
    with pytest.raises(ValueError, match="design_rows"):
        LinearRegression(dim=3, design="fixed")
    with pytest.raises(ValueError, match="design="):
        LinearRegression(dim=3, design="random")
    with pytest.raises(ValueError, match="dim=0"):
        LinearRegression(dim=0)
    with pytest.raises(ValueError, match="spectrum"):
        LinearRegression(dim=2, spectrum=(1.0, -1.0))
    with pytest.raises(ValueError, match="rows=0"):
        Downstream(rows=0)
    with pytest.raises(ValueError, match="weights=0"):
        LinearRegression(dim=2).params(weights=[0.0, 0.0])


def test_theory_values_from_the_notes():
    """THEORY.md §16: d = 10, T = 100 gives 0.11236·n (replace); accumulate ratio 1.5498 at n = 10."""
    assert th.replace_excess_risk(1, 10, 100) == pytest.approx(0.11236, abs=1e-5)
    assert th.accumulate_factor(10) == pytest.approx(1.5498, abs=1e-4)
    assert th.accumulate_bound(10, 40) == pytest.approx(math.pi**2 / 6 * 10 / 29)
    assert th.downstream_ridge_isotropic([0, 1, 3, 6], 200, 400, 600, 0.1, 0.25, 1.0, 1.0) == pytest.approx(
        [0.1768, 0.5457, 1.284, 2.390], abs=1e-3)
    assert th.noiseless_weight_norm(3, 40, 20, "fresh") == pytest.approx(0.125)
    # the bias: ||w0||² − 2 E<Qw0, w0> + E||Qw0||² with E Q = (T0/d)^n I (fresh) or P0 (fixed, idempotent)
    assert th.noiseless_excess_risk(3, 40, 20, "fresh") == pytest.approx(0.875)
    assert th.noiseless_excess_risk([1, 5], 40, 10, "fixed", weight_norm_sq=2.0) == pytest.approx([1.5, 1.5])
    assert th.optimal_ridge_exponent(2.0, 0.375, 0.0, 1.0) == pytest.approx(2.0 / 2.5)


def test_exact_path_keeps_every_direction_of_a_badly_conditioned_design_in_float32():
    """The exact path's ridgeless solve counted Gram eigenvalues below 4·d·eps·max as zero. In float32 with the
    power-law spectrum k^-2 at d = 300 (eigenvalues spanning 9·10⁴, Dohmatob et al.'s Fig. 1b setting) that dropped
    most of the 300 directions of a full-rank Gram matrix, and E excess risk after one fit came out 0.085 against
    σ²d/(T−d−1) = 0.429 (the sample path was right). The solve now keeps exactly rank = min(rows, d) eigenvalues.
    Sample-sd SE over 40 chains; power: σ²d/T (0.30, the population-design value) is rejected."""
    d, rows, chains = 300, 1000, 40
    model = LinearRegression(dim=d, spectrum=power_law_spectrum(d, 2.0))
    with jax.enable_x64(False):
        res = simulate(0, model, regimes.Replace(), num_chains=chains, num_generations=1, num_samples=rows,
                       path="exact", metrics=["excess_risk"], quantiles=())
    assert res.mean("excess_risk").dtype == np.float32
    sim, se = float(res.mean("excess_risk")[0]), float(res.se("excess_risk")[0])
    theory = float(th.replace_excess_risk(1, d, rows))
    assert abs(sim - theory) <= Z * se, (sim, se, theory)
    assert abs(sim - d / rows) > Z * se, (sim, se)


def test_numpy_scalars_are_numbers_like_any_other():
    """np.float32(0.5) and np.int64(3) were refused as "out of range" (only Python int/float passed); they are
    accepted now and stored as Python numbers (the models are static arguments), while bools stay refused."""
    from collapse_theory.models import Categorical

    model = LinearRegression(dim=np.int64(3), noise_sd=np.float32(0.5), ridge=np.float32(0.25), design="fixed",
                             design_rows=np.int64(10))
    assert (model.dim, model.design_rows, model.noise_sd, model.ridge) == (3, 10, 0.5, 0.25)
    assert type(model.dim) is int and type(model.ridge) is float
    assert LinearRegression(dim=2, spectrum=(np.float32(1), np.float32(0.5)), model_size=np.int64(4)).model_size == 4
    assert Downstream(rows=np.int64(10), noise_sd=np.float32(0.5)).rows == 10
    assert power_law_spectrum(np.int64(3), np.float32(2)) == (1.0, 0.25, 1 / 9)
    cat = Categorical(5, temperature=np.float32(0.5), smoothing=np.float32(0.25), collapse_threshold=np.float64(1e-3))
    assert (cat.temperature, cat.smoothing, type(cat.smoothing)) == (0.5, 0.25, float)
    for bad, name in ((dict(dim=True), "dim=True"), (dict(dim=3, noise_sd=np.bool_(True)), "noise_sd=")):
        with pytest.raises(ValueError, match=name):
            LinearRegression(**bad)
    with pytest.raises(ValueError, match="temperature=True is out of range"):
        Categorical(5, temperature=True)
