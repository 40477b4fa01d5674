"""The verification gate: a regime-level wrapper that weights rejected synthetic rows 0 (or redraws them)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects, chain_mean_se, ks_two_sample

from collapse_theory import Accumulate, AccumulateSubsample, FreshFraction, Gate, Gaussian, Replace, simulate
from collapse_theory.regimes import Layout, Sizes


def _even(row):
    return jnp.all(row % 2 == 0)


def _positive(row):
    return row[0] > 0


def _always(row):
    return jnp.array(True)


def _key_for(t):
    base = jax.random.fold_in(jax.random.key(0), t)
    return lambda purpose: jax.random.fold_in(base, purpose)


def _fake_draws(t):
    """Synthetic rows 100 t + i (i = 0..n-1); real rows 1, 3, 5, ... (odd: the predicate rejects them)."""

    def real(key, n):
        return (2.0 * jnp.arange(n) + 1.0)[:, None]

    def draw(key, n):  # as in the engine: generation 1 draws the real data
        return real(key, n) if t == 1 else (100.0 * t + jnp.arange(n, dtype=jnp.float64))[:, None]

    return draw, real


def _assemble(regime, t, m, layout, buffer):
    draw, real = _fake_draws(t)
    sizes = Sizes(jnp.asarray(float(m)), jnp.asarray(float(m * t)))
    return regime.assemble(_key_for(t), jnp.int32(t), sizes, layout, draw, real, buffer)


def test_replace_gate_weights():
    layout = Layout(6, 3, True)
    gate = Gate(Replace(), _even)
    data, w, _ = _assemble(gate, 2, 5, layout, jnp.zeros(()))
    np.testing.assert_array_equal(np.asarray(data[:, 0]), 200 + np.arange(6))
    np.testing.assert_array_equal(np.asarray(w), [1, 0, 1, 0, 1, 0])  # row 5 is beyond M_t anyway
    _, w1, _ = _assemble(gate, 1, 5, layout, jnp.zeros(()))
    np.testing.assert_array_equal(np.asarray(w1), [1, 1, 1, 1, 1, 0])  # generation 1 is real: never gated


def test_fresh_fraction_real_rows_are_never_gated():
    gate = Gate(FreshFraction(0.5), _even)
    data, w, _ = _assemble(gate, 2, 6, Layout(6, 3, True), jnp.zeros(()))
    values = np.asarray(data[:, 0])
    np.testing.assert_array_equal(values[:6], 2 * np.arange(6) + 1)  # real (odd: would fail the predicate)
    np.testing.assert_array_equal(np.asarray(w), [1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0])


def _pool(m, gens):
    rows = m * gens
    return (jnp.zeros((rows, 1)), jnp.zeros((rows,)))  # what the engine allocates for a pooled regime


def test_accumulate_gate_keeps_verdicts_in_the_pool():
    m, gens = 4, 3
    layout = Layout(m, gens, True)
    gate = Gate(Accumulate(), _even)
    buffer = _pool(m, gens)
    weights = []
    for t in (1, 2, 3):
        data, w, buffer = _assemble(gate, t, m, layout, buffer)
        weights.append(np.asarray(w))
    np.testing.assert_array_equal(weights[0], [1, 1, 1, 1] + [0] * 8)
    np.testing.assert_array_equal(weights[1], [1, 1, 1, 1, 1, 0, 1, 0] + [0] * 4)
    np.testing.assert_array_equal(weights[2], [1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(np.asarray(data[:, 0]), [1, 3, 5, 7, 200, 201, 202, 203, 300, 301, 302, 303])
    # stored: w for accepted rows, -(1 + w) for rejected ones
    np.testing.assert_array_equal(np.asarray(buffer[1]), [1, 1, 1, 1, 1, -2, 1, -2, 1, -2, 1, -2])


def test_accumulate_subsample_gate():
    m, gens = 4, 3
    layout = Layout(m, gens, True)
    gate = Gate(AccumulateSubsample(), _even)
    buffer = _pool(m, gens)
    for t in (1, 2, 3):
        data, w, buffer = _assemble(gate, t, m, layout, buffer)
        values = np.asarray(data[:, 0])
        expected = (values < 100) | (values % 2 == 0)  # real rows, or synthetic rows that pass
        np.testing.assert_array_equal(np.asarray(w), expected.astype(float))
    assert len(set(values.tolist())) == m


@pytest.mark.parametrize("retries", [0, 3])
def test_retries_redraw_from_the_conditional_law(retries):
    """Each slot keeps the first of its R + 1 candidates that passes: P(slot passes) = 1 - (1 - a)^(R+1), and a kept
    row has the model's law given the predicate (here N(0, 1) given x > 0: the half-normal)."""
    n = 20000

    def draw(key, k):
        return jax.random.normal(key, (k, 1))

    gate = Gate(Replace(), _positive, retries=retries)
    sizes = Sizes(jnp.asarray(float(n)), jnp.asarray(float(2 * n)))
    data, w, _ = jax.jit(lambda: gate.assemble(_key_for(2), jnp.int32(2), sizes, Layout(n, 3, True), draw, draw,
                                               jnp.zeros(())))()
    w, x = np.asarray(w), np.asarray(data[:, 0])
    p = 1 - 0.5 ** (retries + 1)
    se = math.sqrt(p * (1 - p) / n)
    assert_close_to_theory(w.mean(), se, p, label=f"pass rate, retries={retries}")
    assert_rejects(w.mean(), se, 1 - 0.5 ** (retries + 2), label=f"pass rate, one retry more than {retries}")
    assert np.all(x[w > 0] > 0) and np.all(x[w == 0] <= 0)
    half_normal = np.abs(np.random.default_rng(0).standard_normal(n))
    ks_two_sample(x[w > 0], half_normal, label=f"kept rows ~ half-normal, retries={retries}")


def test_gate_in_the_engine():
    model = Gaussian(dim=1, ddof=1)
    # an always-true predicate reproduces the inner regime bit for bit
    kw = dict(num_chains=8, num_generations=4, num_samples=10, quantiles=(), trajectories=True)
    a = simulate(5, model, Accumulate(), **kw)
    b = simulate(5, model, Gate(Accumulate(), _always), **kw)
    for name in a.trajectories:
        np.testing.assert_array_equal(a.trajectories[name], b.trajectories[name], err_msg=name)
    # keeping only positive samples: after the gated fit (t = 2) the mean is E[X | X > 0] = sqrt(2/pi)
    res = simulate(6, model, Gate(Replace(), _positive), num_chains=256, num_generations=2, num_samples=2000,
                   quantiles=())
    mean, se = chain_mean_se(res.final_params.mean[:, 0])
    assert_close_to_theory(mean, se, math.sqrt(2 / math.pi), label="gated mean at t=2")
    assert_rejects(mean, se, 0.0, label="ungated mean")
    with pytest.raises(ValueError, match="exact"):
        simulate(0, model, Gate(Replace(), _positive), num_chains=2, num_generations=2, num_samples=10,
                 path="exact")


@dataclasses.dataclass
class _Unhashable:
    def __call__(self, row):
        return True


def test_bad_gate_inputs():
    with pytest.raises(ValueError, match="predicate"):
        Gate(Replace(), 3)
    with pytest.raises(ValueError, match="predicate"):
        Gate(Replace(), _Unhashable())
    with pytest.raises(ValueError, match="retries"):
        Gate(Replace(), _even, retries=-1)
    with pytest.raises(ValueError, match="retries"):
        Gate(Replace(), _even, retries=1.5)
    with pytest.raises(ValueError, match="inner"):
        Gate("replace", _even)


def _vector_verdict(row):
    return row > 0  # shape (1,) for a 1-D row: not a scalar


def test_gate_that_starves_a_chain_warns_and_bad_predicates_are_named():
    """Found by review: a Gate that left a chain's training set with weight <= ddof made that chain NaN for good,
    and every summary with it, without a word; a predicate returning one bool per coordinate failed with a scan
    carry TypeError; nested gates failed inside the predicate. Now: a warning and a metadata note name the metrics
    and the first NaN generation; the predicate's shape and the nesting are refused by name."""
    with pytest.warns(RuntimeWarning, match=r"the mean over chains is NaN from generation t=2 on: some chains had "
                                            r"a training set of total weight <= ddof=1"):
        res = simulate(0, Gaussian(dim=1, ddof=1), Gate(Replace(), _positive), num_chains=200, num_generations=3,
                       num_samples=4, metrics=["variance"], quantiles=())
    assert np.isnan(res.mean("variance")[-1]) and any("NaN from generation t=2" in n for n in res.metadata["notes"])
    with pytest.raises(ValueError, match=r"returned shape \(1,\) for one row: it must return one bool scalar"):
        simulate(0, Gaussian(dim=1, ddof=1), Gate(Replace(), _vector_verdict), num_chains=4, num_generations=2,
                 num_samples=4)
    with pytest.raises(ValueError, match="gates do not nest"):
        Gate(Gate(Accumulate(), _positive), _positive)
