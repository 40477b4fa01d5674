"""Exact samplers behind the engine: the fused Threefry hash and key derivation, the batched Marsaglia–Tsang
log-gamma draw and Floyd's subset draw.

Bugs caught: a fused Threefry or ``fold_in`` that differs from JAX's by one bit (every chain's stream would change
with the code path that derived its key, breaking chunking/sharding/merge reproducibility); uniforms that reach 0 or
1 or are not uniform (float32 and float64 bit layouts); a normal and a gamma drawn from overlapping words (they
would be dependent); a wrong acceptance test or boost in ``log_gamma`` (its law would not be Gamma(a)); a batched
draw whose extra rejection rounds overwrite lanes that had already accepted (their law, and their independence from
the other lanes' shapes, would break); a Floyd step
that keeps a duplicate or favours some subsets (subset frequencies would not be uniform).
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from collapse_theory import keys
from collapse_theory._random import (
    gamma_uniforms,
    integers_below,
    log_gamma,
    log_gamma_from_uniforms,
    normal_and_log_gamma,
    unit_uniforms,
)
from collapse_theory.regimes import _floyd_subset


@pytest.mark.parametrize("a", [0.05, 0.5, 1.0, 4.5, 30.0])
def test_log_gamma_has_the_gamma_law(a):
    keys = jax.random.split(jax.random.key(11), 100_000)
    x = np.exp(np.asarray(jax.vmap(lambda k: log_gamma(k, a))(keys)))
    assert stats.kstest(x, stats.gamma(a).cdf).pvalue > 1e-3
    # power: the same test rejects a shape off by 10%
    assert stats.kstest(x, stats.gamma(1.1 * a).cdf).pvalue < 1e-3


LANE_SHAPES = np.array([0.3, 0.5, 1.0, 1.5, 49.5], np.float32)


def _lanes(key, shapes, proposals=1):
    """A batch of lanes drawn at once (the d-dim Bartlett diagonal's call), one proposal per round up front so
    that the extra rounds run often (5 % of draws at a = 1, 45 % of the steps hold such a lane)."""
    u = unit_uniforms(key, len(shapes) * gamma_uniforms(proposals), jnp.float32).reshape(len(shapes), -1)
    return log_gamma_from_uniforms(key, u, shapes)


def test_batched_log_gamma_has_the_gamma_law_in_every_lane():
    """``log_gamma_from_uniforms`` on an array of shapes: each lane is Gamma(a) (KS on 100 000 steps), and the
    same test rejects each lane's shape off by 10 % (power)."""
    draws = np.exp(np.asarray(jax.jit(jax.vmap(lambda k: _lanes(k, LANE_SHAPES)))(
        jax.random.split(jax.random.key(21), 100_000))))
    for j, a in enumerate(LANE_SHAPES):
        assert stats.kstest(draws[:, j], stats.gamma(a).cdf).pvalue > 1e-3, a
        assert stats.kstest(draws[:, j], stats.gamma(1.1 * a).cdf).pvalue < 1e-3, a


def test_batched_log_gamma_lane_does_not_depend_on_the_other_lanes():
    """A lane's draw is a function of its own uniforms and shape: changing every other lane's shape (so that the
    extra rounds run at other steps) leaves it bit for bit, also in the steps where the rounds ran for it."""
    keys_ = jax.random.split(jax.random.key(4), 20_000)
    other = LANE_SHAPES.copy()
    other[[0, 1, 3, 4]] = [2.0, 0.7, 0.4, 3.0]
    draw = jax.jit(jax.vmap(_lanes, in_axes=(0, None)))
    np.testing.assert_array_equal(np.asarray(draw(keys_, LANE_SHAPES))[:, 2], np.asarray(draw(keys_, other))[:, 2])


def test_integers_below_are_in_range_and_uniform():
    """``_random.integers_below`` (Floyd's draws): every value in [0, span), a span of 1 gives 0, and 70 000 draws
    with span 7 pass a chi-square test of uniformity (a draw modulo span - 1, or an off-by-one range, fails)."""
    keys = jax.random.split(jax.random.key(5), 10_000)
    spans = jnp.array([1, 2, 7, 7, 7, 7, 7, 7, 7, 100_000], jnp.int32)
    x = np.asarray(jax.jit(jax.vmap(lambda k: integers_below(k, spans)))(keys))
    assert np.all(x >= 0) and np.all(x < np.asarray(spans)) and np.all(x[:, 0] == 0)
    assert x[:, 9].max() > 90_000 and len(np.unique(x[:, 1])) == 2
    counts = np.bincount(x[:, 2:9].ravel(), minlength=7)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_floyd_subsets_are_distinct_and_uniform():
    draw = jax.jit(jax.vmap(lambda k: _floyd_subset(k, jnp.int32(10), 3)))
    idx = np.sort(np.asarray(draw(jax.random.split(jax.random.key(3), 120_000))), axis=1)
    assert np.all(np.diff(idx, axis=1) > 0) and idx.min() >= 0 and idx.max() <= 9
    counts = collections.Counter(map(tuple, idx))
    assert len(counts) == 120  # C(10, 3)
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_fused_threefry_is_bit_identical_to_jax():
    from jax.extend.random import threefry_2x32

    raw = jax.random.key_data(jax.random.key(2024))
    count = jax.random.bits(jax.random.key(5), (64,), jnp.uint32)
    y0, y1 = keys.threefry2x32(raw[0], raw[1], count[:32], count[32:])
    np.testing.assert_array_equal(np.concatenate([y0, y1]), threefry_2x32(raw, count))


@pytest.mark.parametrize("data", [0, 1, 6, 12_345, 2**31 - 1, 2**32 - 1])
def test_fused_fold_in_is_bit_identical_to_jax(data):
    key = jax.random.key(77)
    np.testing.assert_array_equal(jax.random.key_data(keys.fold_in(key, data)),
                                  jax.random.key_data(jax.random.fold_in(key, data)))


def test_fused_fold_in_under_vmap_and_jit_with_traced_data():
    chain_keys = jax.random.split(jax.random.key(1), 257)
    ts = jnp.arange(257) * 3 + 1  # int64 under x64, converted to uint32 as jax.random.fold_in does
    ours = jax.jit(jax.vmap(keys.fold_in))(chain_keys, ts)
    np.testing.assert_array_equal(jax.random.key_data(ours),
                                  jax.random.key_data(jax.vmap(jax.random.fold_in)(chain_keys, ts)))


@pytest.mark.parametrize("num", [1, 3, 100])
def test_fused_split_is_bit_identical_to_jax(num):
    """``keys.split`` (the d-dim exact Gaussian's noise keys) gives ``jax.random.split``'s keys, under vmap and jit
    too, so the exact path's random streams did not change when it replaced it."""
    key = jax.random.fold_in(jax.random.key(3), 99)
    np.testing.assert_array_equal(jax.random.key_data(keys.split(key, num)),
                                  jax.random.key_data(jax.random.split(key, num)))
    batch = jax.random.split(key, 5)
    ours = jax.jit(jax.vmap(lambda k: keys.split(k, num)))(batch)
    np.testing.assert_array_equal(jax.random.key_data(ours),
                                  jax.random.key_data(jax.vmap(lambda k: jax.random.split(k, num))(batch)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_unit_uniforms_are_uniform_on_the_open_interval(dtype):
    u = np.asarray(jax.vmap(lambda k: unit_uniforms(k, 5, dtype))(jax.random.split(jax.random.key(8), 40_000)))
    assert u.dtype == dtype and u.min() > 0 and u.max() < 1
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    # the five values of one call are independent: neighbouring columns are uncorrelated (4 sd of 1/sqrt(n))
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 4 / np.sqrt(len(u))
    # power: the same KS test rejects u**1.02
    assert stats.kstest(u.ravel() ** 1.02, "uniform").pvalue < 1e-3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_words_give_finite_normals(dtype):
    """A word whose uniform bits are all zero (probability 2^-23 per float32 draw: one chain-generation in 8
    million on the 1-D exact path) must give a finite normal. Catches the floor at the dtype's ``tiny``, for
    which 2u - 1 rounds to -1 and the normal is -inf (a chain's mean, then every later value, non-finite)."""
    from collapse_theory._random import standard_normal_from_uniform, uniforms_from_bits

    word = jnp.uint64 if dtype == jnp.float64 else jnp.uint32
    bits = jnp.asarray([0, 1 << (12 if dtype == jnp.float64 else 9), jnp.iinfo(word).max], word)
    u = uniforms_from_bits(bits, dtype)
    eps = np.finfo(dtype).eps
    np.testing.assert_array_equal(np.asarray(u), [eps / 2, eps, 1 - eps])
    z = np.asarray(standard_normal_from_uniform(u))
    assert np.all(np.isfinite(z)) and -9 < z[0] < z[1] < 0 < z[2] < 9


@pytest.mark.parametrize("a", [1.0, 4.5])
def test_normal_and_log_gamma_are_independent_with_the_right_laws(a):
    """Two proposals up front: at a = 1 (the worst shape) both fail for ~230 of the 10⁵ draws, so the rescue
    round is exercised; its draws must keep the Gamma law."""
    z, lg = jax.vmap(lambda k: normal_and_log_gamma(k, a))(jax.random.split(jax.random.key(9), 100_000))
    z, g = np.asarray(z), np.exp(np.asarray(lg))
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert stats.kstest(g, stats.gamma(a).cdf).pvalue > 1e-3
    assert stats.kstest(g, stats.gamma(1.1 * a).cdf).pvalue < 1e-3  # power: a shape off by 10%
    # independence: Z has the same law whichever half of G's distribution it comes with
    high = g > np.median(g)
    assert stats.ks_2samp(z[high], z[~high]).pvalue > 1e-3
    assert stats.ks_2samp(np.abs(z[high]), np.abs(z[~high])).pvalue > 1e-3


@pytest.mark.parametrize("pool_size, m", [(256, 256), (300, 256), (5000, 300), (4000, 1000)])
def test_floyd_table_gives_the_scan_s_subset(pool_size, m):
    """The table lookup (m >= 256) and the scan of the chosen rows are two membership tests for the same Floyd
    steps: same key, same subset, index for index. Catches a table that misses a repeat (a duplicate row), one
    that marks the draw instead of the kept row, or one smaller than the pool."""
    ks = jax.random.split(jax.random.key(pool_size + m), 64)
    scan = jax.jit(jax.vmap(lambda k: _floyd_subset(k, jnp.int32(pool_size), m)))(ks)
    table = jax.jit(jax.vmap(lambda k: _floyd_subset(k, jnp.int32(pool_size), m, capacity=5000)))(ks)
    np.testing.assert_array_equal(table, scan)
    assert all(len(set(row)) == m for row in np.asarray(table).tolist())
