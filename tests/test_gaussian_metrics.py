"""Each Gaussian metric against its textbook formula, computed in NumPy/SciPy from the covariance matrices.

``Gaussian.metrics`` works from the log-scale factor form (Σ = e^{2s} F Fᵀ) with triangular solves, and in one
dimension with divisions instead: these tests catch a metric that swaps the two KL directions, drops a term, solves
with the wrong factor (the model's where the truth's belongs), or a one-dimensional shortcut that disagrees with the
general formula. Deterministic: no simulation, random but fixed parameters, float64.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import linalg, stats

from collapse_theory import Gaussian


def _random_gaussian(rng, d):
    a = rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T + 0.5 * np.eye(d)


def _kl(mean_p, cov_p, mean_q, cov_q):
    """KL(N(mean_p, cov_p) ‖ N(mean_q, cov_q))."""
    d = len(mean_p)
    inv_q = np.linalg.inv(cov_q)
    diff = mean_q - mean_p
    return 0.5 * (np.trace(inv_q @ cov_p) + diff @ inv_q @ diff - d
                  + np.linalg.slogdet(cov_q)[1] - np.linalg.slogdet(cov_p)[1])


def _w2_squared(mean_p, cov_p, mean_q, cov_q):
    root_q = linalg.sqrtm(cov_q)
    cross = linalg.sqrtm(root_q @ cov_p @ root_q)
    return float(np.sum((mean_p - mean_q) ** 2) + np.trace(cov_p) + np.trace(cov_q) - 2 * np.real(np.trace(cross)))


def _textbook(model, mean, cov, mean0, cov0):
    sd, sd0 = math.sqrt(cov[0, 0]), math.sqrt(cov0[0, 0])
    k = model.tail_k
    tail = stats.norm.cdf(mean0[0] - k * sd0, mean[0], sd) + stats.norm.sf(mean0[0] + k * sd0, mean[0], sd)
    out = {
        "sq_mean_error": np.sum((mean - mean0) ** 2),
        "trace_ratio": np.trace(cov) / np.trace(cov0),
        "log_trace_ratio": np.log(np.trace(cov) / np.trace(cov0)),
        "det_ratio": np.linalg.det(cov) / np.linalg.det(cov0),
        "log_det_ratio": np.linalg.slogdet(cov)[1] - np.linalg.slogdet(cov0)[1],
        "w2_squared": _w2_squared(mean, cov, mean0, cov0),
        "kl_truth_model": _kl(mean0, cov0, mean, cov),
        "kl_model_truth": _kl(mean, cov, mean0, cov0),
        "tail_mass": tail,
        "collapsed": float(math.sqrt(np.trace(cov) / np.trace(cov0)) < model.collapse_threshold),
    }
    if len(mean) == 1:
        out.update(variance=cov[0, 0], log_variance=math.log(cov[0, 0]), std=sd, abs_mean_error=abs(mean[0] - mean0[0]))
    return out


@pytest.mark.parametrize("d", [1, 3, 12])  # 12: above the Newton–Schulz bound, W2 through NumPy's SVD, looped solves
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_equal_the_textbook_formulas(d, seed):
    rng = np.random.default_rng(seed)
    model = Gaussian(dim=d, ddof=0, tail_k=1.5)
    (mean, cov), (mean0, cov0) = _random_gaussian(rng, d), _random_gaussian(rng, d)
    got = jax.jit(model.metrics)(model.params(mean, cov), model.params(mean0, cov0))
    want = _textbook(model, mean, cov, mean0, cov0)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=1e-9, atol=1e-12, err_msg=name)
    # the two KL directions differ here, so a swap could not pass
    assert abs(want["kl_truth_model"] - want["kl_model_truth"]) > 1e-3


@pytest.mark.parametrize("d", [1, 12])
@pytest.mark.parametrize("names", [("trace_ratio",), ("kl_truth_model", "det_ratio"), ("kl_model_truth",),
                                   ("w2_squared", "tail_mass")])
def test_named_metrics_are_the_same_values(d, names):
    """``metrics(..., names=)`` (what the engine passes for ``simulate(metrics=...)``) reports every named metric
    with the value of the full call, bit for bit, and leaves out the costly ones it was not asked for."""
    rng = np.random.default_rng(d)
    model = Gaussian(dim=d, ddof=0, tail_k=1.5)
    (mean, cov), (mean0, cov0) = _random_gaussian(rng, d), _random_gaussian(rng, d)
    args = (model.params(mean, cov), model.params(mean0, cov0))
    full = jax.jit(model.metrics)(*args)
    some = jax.jit(lambda p, r: model.metrics(p, r, names=names))(*args)
    for name in names:
        np.testing.assert_array_equal(np.asarray(some[name]), np.asarray(full[name]), err_msg=name)
    costly = {"w2_squared", "kl_truth_model", "kl_model_truth", "tail_mass"}
    assert set(some) & costly == set(names) & costly


@pytest.mark.parametrize("d", [1, 2])
def test_collapsed_and_tail_mass_at_the_extremes(d):
    """A model 10⁻⁴ times the truth's scale counts as collapsed and puts no mass beyond k σ0; a model 10⁴ times
    wider puts almost all of it there."""
    model = Gaussian(dim=d, ddof=0)
    truth = model.params(0.0, 1.0)
    narrow = jax.jit(model.metrics)(model.params(0.0, 1e-8), truth)
    wide = jax.jit(model.metrics)(model.params(0.0, 1e8), truth)
    assert float(narrow["collapsed"]) == 1.0 and float(wide["collapsed"]) == 0.0
    assert float(narrow["tail_mass"]) == 0.0
    np.testing.assert_allclose(float(wide["tail_mass"]), 2 * stats.norm.sf(3e-4), rtol=1e-9)


@pytest.mark.parametrize("d", [1, 3])
def test_metrics_do_not_depend_on_how_the_scale_is_split(d):
    """(F, s) and (cF, s − log c) are the same Gaussian (the engine keeps ‖F‖ = 1, but the metrics must not rely
    on it): every metric agrees, for the model's and the truth's factor alike."""
    rng = np.random.default_rng(2)
    model = Gaussian(dim=d, ddof=0, tail_k=1.5)
    p, p0 = (model.params(*_random_gaussian(rng, d)) for _ in range(2))

    def rescaled(params, c):
        return params._replace(factor=c * params.factor, log_scale=params.log_scale - math.log(c))

    metrics = jax.jit(model.metrics)
    base = metrics(p, p0)
    other = metrics(rescaled(p, 3.0), rescaled(p0, 0.25))
    for name in base:
        np.testing.assert_allclose(float(other[name]), float(base[name]), rtol=1e-9, atol=1e-12, err_msg=name)
