"""The d-dim Gaussian's sample-path fit: the Cholesky factor of the Gram matrix where it is accurate, the QR factor
where it is not (``models.gaussian._fit_factor``).

Checked against a float64 NumPy reference (``np.linalg.cholesky`` of the scatter of the same rows): the fitted
covariance on well- and ill-conditioned data, the choice of factor per chain (a chain's result may not depend on
the other chains it is advanced with, the engine's chunking invariance), and the QR running only in batches that
need it. Would catch: a Gram factor kept where it has lost its accuracy (ill-conditioned rows), a fallback decided
for the whole batch instead of per chain, a lost ``axis_name`` on the engine's vmap (the QR then runs for every
batch: a performance loss that no result shows, so it is checked in the program).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_theory import Gaussian
from collapse_theory.models import gaussian as gaussian_module
from collapse_theory.models.base import CHAIN_AXIS


def test_the_cases_below_are_above_the_gram_threshold():
    """The shapes of the tests below reach the Gram path (else they would test the QR twice)."""
    assert 1300 * 20**2 >= gaussian_module._GRAM_MIN_WORK and 5000 * 10**2 >= gaussian_module._GRAM_MIN_WORK


def _rows(seed: int, n: int, d: int, condition: float) -> np.ndarray:
    """``n`` centred rows whose scatter has condition number about ``condition**2`` (singular values of the rows
    spread log-uniformly over a factor ``condition``)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.geomspace(1.0, 1.0 / condition, d)
    x = rng.standard_normal((n, d)) @ (q * scales) @ q.T
    return (x - x.mean(axis=0)).astype(np.float32)


def _relative_covariance_error(lower: np.ndarray, rows: np.ndarray) -> float:
    """Largest relative error of the fitted scatter in the whitened frame of the exact one:
    ``||S^{-1/2} L L^T S^{-1/2} - I||_2``, which weighs the smallest directions as much as the largest."""
    exact = rows.astype(np.float64).T @ rows.astype(np.float64)
    root = np.linalg.cholesky(exact)
    inv = np.linalg.inv(root)
    fitted = lower.astype(np.float64) @ lower.astype(np.float64).T
    return float(np.linalg.norm(inv @ fitted @ inv.T - np.eye(len(exact)), 2))


@pytest.mark.parametrize("condition", [1.5, 1e3])
def test_fit_factor_is_accurate_for_any_conditioning(condition):
    """float32 rows, n = 1300, d = 20 (above ``_GRAM_MIN_WORK``): the factor's covariance within 1e-3 of the
    exact scatter in every direction, for well-conditioned rows (the Gram factor) and for rows of condition 1e3
    (scatter 1e6), where the Gram factor in float32 is off by far more (checked: the power of this test) and the
    fit must take the QR."""
    rows = _rows(0, 1300, 20, condition)
    lower = np.asarray(gaussian_module._fit_factor(jnp.asarray(rows), 20))
    assert _relative_covariance_error(lower, rows) < 1e-3
    gram = jnp.matmul(jnp.asarray(rows).T, jnp.asarray(rows), precision=jax.lax.Precision.HIGHEST)
    gram_only = np.asarray(jnp.linalg.cholesky(gram))
    gram_error = _relative_covariance_error(gram_only, rows) if np.all(np.isfinite(gram_only)) else np.inf
    if condition > 100:
        assert gram_error > 1e-2  # the float32 Gram factor alone would fail the bound above
    else:
        np.testing.assert_allclose(lower, gram_only, rtol=0, atol=0)  # and is what the fit keeps


def test_each_chain_chooses_its_own_factor():
    """Under the engine's vmap (axis ``CHAIN_AXIS``), a batch of a well- and an ill-conditioned chain: each gets
    the factor it gets alone, bit for bit (the QR runs for the batch, but only the ill-conditioned chain takes
    it), so a chain's result does not depend on the chains beside it."""
    good, bad = _rows(1, 5000, 10, 1.2), _rows(2, 5000, 10, 1e3)
    fit = functools.partial(gaussian_module._fit_factor, dim=10)
    together = jax.vmap(fit, axis_name=CHAIN_AXIS)(jnp.asarray(np.stack([good, bad])))
    alone_good = jax.vmap(fit, axis_name=CHAIN_AXIS)(jnp.asarray(good[None]))
    alone_bad = jax.vmap(fit, axis_name=CHAIN_AXIS)(jnp.asarray(bad[None]))
    np.testing.assert_array_equal(together[0], alone_good[0])
    np.testing.assert_array_equal(together[1], alone_bad[0])
    np.testing.assert_array_equal(alone_good[0], fit(jnp.asarray(good)))  # outside the engine: the same
    qr = gaussian_module._scatter_factor(jnp.asarray(bad), 10)
    np.testing.assert_array_equal(together[1], qr)


def test_fit_takes_qr_for_an_ill_conditioned_direction_its_pivots_hide():
    """Found on review: rows whose scatter has condition ~10⁸ in a 2-D block rotated so that both Cholesky pivots
    are ~√M (their ratio ~1). A guard on the pivots' ratio kept the float32 Gram factor, 1e-2 off in the small
    direction; the condition estimate (inverse iteration) finds the direction and the fit takes the QR."""
    rng = np.random.default_rng(0)
    d, n, big, small = 10, 5000, 100.0, 0.01
    c = np.sqrt((1 - small**2) / (big**2 - small**2))
    rotation = np.eye(d)
    rotation[:2, :2] = [[c, -np.sqrt(1 - c**2)], [np.sqrt(1 - c**2), c]]
    scales = np.ones(d)
    scales[:2] = big, small
    x = (rng.standard_normal((n, d)) * scales) @ rotation.T
    rows = (x - x.mean(axis=0)).astype(np.float32)
    lower = np.asarray(gaussian_module._fit_factor(jnp.asarray(rows), d))
    assert _relative_covariance_error(lower, rows) < 1e-4
    np.testing.assert_array_equal(lower, gaussian_module._scatter_factor(jnp.asarray(rows), d))


def test_fit_takes_qr_for_at_most_2d_rows():
    """At most 2d rows (here d = 64, M = 128, above ``_GRAM_MIN_WORK`` and well enough conditioned for the Gram
    factor otherwise): the QR, decided from the shape; and M ≤ d rows: a singular scatter, det = 0 and a factor
    that reproduces the scatter (the Gram factor would be NaN)."""
    assert 128 * 64**2 >= gaussian_module._GRAM_MIN_WORK
    rows = _rows(4, 128, 64, 1.0)
    np.testing.assert_array_equal(gaussian_module._fit_factor(jnp.asarray(rows), 64),
                                  gaussian_module._scatter_factor(jnp.asarray(rows), 64))
    rows = _rows(3, 6, 8, 1.0)
    lower = np.asarray(gaussian_module._fit_factor(jnp.asarray(rows), 8))
    assert np.all(np.isfinite(lower))
    np.testing.assert_allclose(lower @ lower.T, rows.T.astype(np.float64) @ rows, atol=1e-4)
    params = Gaussian(dim=8, ddof=0).fit(None, jnp.asarray(rows), jnp.ones(6), None)
    assert float(Gaussian(dim=8, ddof=0).metrics(params, Gaussian(dim=8, ddof=0).params(0.0, 1.0),
                                                 jax.random.key(0))["det_ratio"]) == 0.0


def test_qr_is_a_conditional_of_the_batch():
    """In the engine's program the QR sits in a conditional (run only when a chain of the batch needs it), not
    beside the Cholesky factor as a select of both (what a per-chain predicate under vmap would compile to)."""
    arg = jnp.zeros((4, 5000, 10), jnp.float32)
    named = jax.jit(jax.vmap(functools.partial(gaussian_module._fit_factor, dim=10), axis_name=CHAIN_AXIS))
    unnamed = jax.jit(jax.vmap(functools.partial(gaussian_module._fit_factor, dim=10)))
    cases = [f.lower(arg).as_text().count("stablehlo.case") for f in (named, unnamed)]
    assert cases[0] == cases[1] + 1, cases


def test_the_engine_names_its_chain_axis(monkeypatch):
    """The engine's vmap over chains carries ``CHAIN_AXIS``, so the fit's fallback decision is one per batch: a
    ``psum`` over that name, which raises ``NameError`` under a vmap without it (the QR would then run beside the
    Gram factor for every chain, a slowdown no result shows)."""
    from collapse_theory import simulate

    def strict(flag):
        return jax.lax.psum(flag.astype(jnp.int32), CHAIN_AXIS) > 0

    monkeypatch.setattr(gaussian_module, "any_chain", strict)
    res = simulate(0, Gaussian(dim=10, ddof=0), num_chains=4, num_generations=2, num_samples=5000, path="sample",
                   metrics=["trace_ratio"], quantiles=())
    assert np.all(np.isfinite(res.mean("trace_ratio")))
