"""Kernel density estimates on the generic sample-level path (collapse_theory.models.kde, collapse_theory.datasets).

THEORY.md §2.5 (exact replace-chain spread and drift) with Monte-Carlo standard errors and power checks, the
density against a direct computation, weighted resampling, the accumulate pool, the datasets' population means and
the chain's train/test sets coming from one distribution, and bad inputs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects, chain_mean_se
from scipy.special import logsumexp

import collapse_theory as ct
from collapse_theory import datasets
from collapse_theory.models.kde import KDEParams, KernelDensity, capacity_for
from collapse_theory.theory import kde as kth

N, H, V, FITS = 4, 0.7, 1.0, 15


@pytest.fixture(scope="module")
def replace_chain():
    """1-D truth N(0, 1) (a single fixed blob), M = 4, h = 0.7, 15 fits, 8192 chains."""
    model = KernelDensity(bandwidth=H, dataset=datasets.Blobs(centers=((0.0,),), cluster_std=1.0), capacity=N,
                          num_test=1)
    return ct.simulate(21, model, ct.Replace(), num_chains=8192, num_generations=FITS, num_samples=N,
                       metrics=["spread", "sq_mean_error"], quantiles=(), trajectories=True)


@pytest.mark.parametrize("fit", [1, 4, 15])
def test_replace_spread_matches_theory(replace_chain, fit):
    m, se = chain_mean_se(replace_chain.trajectories["spread"][fit - 1])
    assert_close_to_theory(m, se, kth.expected_spread(fit, N, H, V), label=f"E S^2 at fit {fit}")
    if fit > 1:  # power: the kernel sum started at k = 0 (a generation index shifted by one)
        wrong = kth.expected_spread(fit, N, H, V) + H**2
        assert_rejects(m, se, wrong, label=f"kernel sum from k = 0 at fit {fit}")
    else:  # power at fit 1: the unbiased sample variance v instead of the MLE r v
        assert_rejects(m, se, V, label="ddof=1 at fit 1")


@pytest.mark.parametrize("fit", [4, 15])
def test_replace_drift_matches_theory(replace_chain, fit):
    m, se = chain_mean_se(replace_chain.trajectories["sq_mean_error"][fit - 1])
    assert_close_to_theory(m, se, kth.expected_sq_mean_error(fit, N, H, V), label=f"E drift at fit {fit}")
    spread = kth.expected_spread(np.arange(1, fit + 1), N, H, V)
    wrong = V / N + np.sum(spread[: fit - 1]) / N  # random walk without the kernel's own h² step
    if fit == FITS:  # the h² steps add up to (t−1)h²/M: leverage at the last fit
        assert_rejects(m, se, wrong, label=f"drift without h^2 at fit {fit}")


def test_theory_limits_and_bad_inputs():
    assert kth.expected_spread(4000, 10, 0.3, 1.0) == pytest.approx(kth.stationary_spread(10, 0.3), rel=1e-12)
    with pytest.raises(ValueError, match="bandwidth=0.0 is out of range"):
        kth.expected_spread(3, 10, 0.0)
    with pytest.raises(ValueError, match="num_fits=0 is out of range"):
        kth.expected_sq_mean_error(0, 10, 0.5)


def test_closed_forms_equal_the_recursions_and_need_no_table():
    """The spread and drift are closed-form geometric sums (they were cumulative tables of t terms: num_fits = 10⁹
    allocated 8 GB); checked against the defining recursions summed term by term."""
    for n, h, v in ((1, 0.5, 2.0), (2, 1.0, 1.0), (20, 0.3, 1.0)):
        r = (n - 1) / n
        fits = np.arange(1, 60)
        spread = np.array([r**t * v + h**2 * sum(r**k for k in range(1, t)) for t in fits])
        drift = np.array([v / n + sum((spread[s - 1] + h**2) / n for s in range(1, t)) for t in fits])
        np.testing.assert_allclose(kth.expected_spread(fits, n, h, v), spread, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(kth.expected_sq_mean_error(fits, n, h, v), drift, rtol=1e-12)
    huge = kth.expected_sq_mean_error(10**12, 20, 0.3)
    assert huge == pytest.approx(1e12 * 0.3**2, rel=1e-6)  # grows by about h² per fit


def test_log_density_matches_a_direct_computation_and_skips_empty_blocks():
    model = KernelDensity(bandwidth=0.3, dataset=datasets.Moons(noise=0.1), capacity=40, block=16)
    rng = np.random.default_rng(0)
    rows = model.rows
    points = rng.normal(size=(rows, 2))
    weights = np.zeros(rows)
    weights[:21] = rng.integers(0, 4, 21)  # the last blocks hold no weight
    weights[3] = 0.0
    params = KDEParams(jnp.asarray(points), jnp.asarray(weights), jnp.zeros(()), jnp.zeros((1, 2)),
                       jax.random.key_data(jax.random.key(0)))
    x = rng.normal(size=(30, 2)) * 2
    got = np.asarray(jax.jit(model.log_density)(params, jnp.asarray(x)))
    keep = weights > 0
    d2 = np.sum((x[:, None, :] - points[None, keep, :]) ** 2, axis=2)
    want = logsumexp(-d2 / (2 * 0.09), b=weights[keep][None, :], axis=1) - np.log(weights.sum())
    want -= np.log(2 * np.pi * 0.09)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_sampling_resamples_rows_in_proportion_to_their_weights():
    model = KernelDensity(bandwidth=1e-3, dataset=datasets.Circles(), capacity=3)
    params = KDEParams(jnp.asarray([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]), jnp.asarray([0.0, 1.0, 3.0]),
                       jnp.zeros(()), jnp.zeros((1, 2)), jax.random.key_data(jax.random.key(0)))
    x = np.asarray(jax.jit(model.sample, static_argnums=2)(jax.random.key(1), params, 20000))
    assert not np.any(np.abs(x[:, 0]) < 5)  # the weight-0 row is never drawn
    m, se = chain_mean_se(x[:, 0] > 15)
    assert_close_to_theory(m, se, 0.75, label="weight 3 of 4")
    assert_rejects(m, se, 2 / 3, label="uniform over the non-empty rows")


def test_zero_weight_rows_do_not_reach_the_density_even_when_not_finite():
    """A weight-0 row at NaN used to make every log density NaN (0 · NaN); it is stored as 0 now, so the density
    equals the one without that row's value."""
    model = KernelDensity(bandwidth=0.5, capacity=4)
    params = model.init(jax.random.key(0))
    rows = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [jnp.nan, jnp.inf]])
    weights = jnp.asarray([1.0, 2.0, 0.0])
    got = model.fit(None, rows, weights, params)
    want = model.fit(None, rows.at[2].set(0.0), weights, params)
    probe = jnp.asarray([[0.5, 0.5], [2.0, -1.0]])
    np.testing.assert_array_equal(np.asarray(model.log_density(got, probe)), np.asarray(model.log_density(want, probe)))
    assert np.all(np.isfinite(np.asarray(model.log_density(got, probe))))


def test_a_training_set_of_total_weight_zero_keeps_the_previous_model():
    """No rows of positive weight (a gate rejected them all): a KDE of nothing has no density (its sampler fell back
    to a zero padding row); the previous model is kept."""
    model = KernelDensity(bandwidth=0.5, capacity=4)
    start = model.init(jax.random.key(0))
    previous = model.fit(None, jnp.asarray([[0.0, 0.0], [1.0, 1.0]]), jnp.asarray([1.0, 2.0]), start)
    got = model.fit(None, jnp.asarray([[5.0, 5.0], [6.0, 6.0]]), jnp.zeros(2), previous)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(previous), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_accumulate_keeps_the_real_rows_in_the_pooled_kde():
    model = KernelDensity(bandwidth=0.5, dataset=datasets.Blobs(), capacity=capacity_for(ct.Accumulate(), 50, 4))
    res = ct.simulate(3, model, ct.Accumulate(), num_chains=4, num_generations=4, num_samples=50, quantiles=())
    w = res.final_params.weights
    np.testing.assert_array_equal(w.sum(axis=1), 200.0)  # all 4 batches of 50, pooled
    np.testing.assert_array_equal(w[:, :200], 1.0)
    # the first 50 rows are the chain's real data: N(centre, I) around its own blob centres
    for points, centres in zip(res.final_params.points, res.final_params.constants, strict=True):
        dist2 = np.min(np.sum((points[:50, None] - centres[None]) ** 2, axis=2), axis=1)
        assert np.mean(dist2) < 4.0  # E = d σ² = 2; rows from elsewhere in the (-10, 10)² box would be ~10²
    assert np.all(np.isfinite(res.mean("test_nll")))


def test_train_and_test_sets_come_from_the_chain_s_own_blobs():
    """Each chain draws its own centres; its real training rows and its test set cluster around those centres."""
    model = KernelDensity(bandwidth=0.5, dataset=datasets.Blobs(), capacity=300, num_test=300)
    truth = model.params()
    chain_truths = [model.chain_truth(jax.random.key(c), truth) for c in range(3)]
    centres = [np.asarray(t.constants) for t in chain_truths]
    assert not np.allclose(centres[0], centres[1])
    for t, c in zip(chain_truths, centres, strict=True):
        train = np.asarray(model.sample(jax.random.key(99), t, 300))
        test = np.asarray(model.test_set(t))
        for rows in (train, test):
            dist = np.sqrt(np.min(np.sum((rows[:, None] - c[None]) ** 2, axis=2), axis=1))
            assert np.mean(dist**2) == pytest.approx(2.0, rel=0.25)  # E‖z‖² = d σ² = 2 around the right centres


@pytest.mark.parametrize("name", ["blobs", "circles", "moons", "swiss_roll"])
def test_dataset_population_means(name):
    ds = {"blobs": datasets.Blobs(), "circles": datasets.Circles(noise=0.1), "moons": datasets.Moons(noise=0.1),
          "swiss_roll": datasets.SwissRoll(noise=0.5)}[name]
    const = ds.constants(jax.random.key(0))
    x = np.asarray(ds.sample(jax.random.key(1), const, 200000))
    mean = np.asarray(ds.mean(const))
    for j in range(ds.dim):
        m, se = chain_mean_se(x[:, j])
        assert_close_to_theory(m, se, mean[j], label=f"{name} mean[{j}]")


def _always(row):
    return jnp.bool_(True)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="bandwidth=0.0 is out of range"):
        KernelDensity(bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth=-1 is out of range"):
        KernelDensity(bandwidth=-1)
    with pytest.raises(ValueError, match="capacity=0 is out of range"):
        KernelDensity(bandwidth=1.0, capacity=0)
    with pytest.raises(ValueError, match="noise=-0.1 is out of range"):
        datasets.Moons(noise=-0.1)
    with pytest.raises(ValueError, match="factor=1.5 is out of range"):
        datasets.Circles(factor=1.5)
    model = KernelDensity(bandwidth=0.5, capacity=20)
    with pytest.raises(ValueError, match="capacity=20 is out of range.*capacity >= 60"):
        ct.simulate(0, model, ct.Accumulate(), num_chains=2, num_generations=3, num_samples=20)
    with pytest.raises(ValueError, match="path='exact'"):
        ct.simulate(0, model, num_chains=2, num_generations=3, num_samples=20, path="exact")
    assert capacity_for(ct.FreshFraction(0.5), 20, 3) == 40
    assert capacity_for(ct.AccumulateSubsample(), 20, 3) == 20
    # a gate hands the fit its inner regime's rows (it returned M for a gated pool, then the fit refused M)
    gated = ct.Gate(ct.Accumulate(), predicate=_always)
    assert capacity_for(gated, 20, 3) == 60
    # NumPy scalars are numbers like any other (np.float32(0.5) was "out of range")
    assert KernelDensity(bandwidth=np.float32(0.5)).bandwidth == 0.5
    assert type(KernelDensity(bandwidth=np.float64(0.5)).bandwidth) is float
    with pytest.raises(ValueError, match="bandwidth=True is out of range"):
        KernelDensity(bandwidth=True)
    assert math.isfinite(float(kth.stationary_spread(20, 0.1)))


def test_a_dataset_as_the_real_source_with_a_given_test_set():
    model = KernelDensity(bandwidth=0.5, dataset=datasets.Moons(noise=0.1), capacity=50)
    ds = datasets.Moons(noise=0.1)
    rows = np.asarray(ds.sample(jax.random.key(0), ds.constants(None), 300))
    test = np.asarray(ds.sample(jax.random.key(1), ds.constants(None), 200))
    res = ct.simulate(0, model, ct.Replace(), num_chains=2, num_generations=3, num_samples=50, real_data=rows,
                      reference=test, quantiles=())
    direct = [-np.mean(np.asarray(model.log_density(jax.tree.map(lambda a, c=c: a[c], res.final_params), test)))
              for c in range(2)]
    assert res.mean("test_nll")[-1] == pytest.approx(np.mean(direct), rel=1e-10)  # scored on the given rows
    assert np.all(np.isfinite(res.mean("test_nll")))
