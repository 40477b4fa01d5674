"""Exact samplers behind the engine: the batched Marsaglia–Tsang log-gamma draw and Floyd's subset draw.

Bugs caught: a wrong acceptance test or boost in ``log_gamma`` (its law would not be Gamma(a)); a Floyd step that
keeps a duplicate or favours some subsets (subset frequencies would not be uniform).
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from collapse_theory._random import log_gamma
from collapse_theory.regimes import _floyd_subset


@pytest.mark.parametrize("a", [0.05, 0.5, 1.0, 4.5, 30.0])
def test_log_gamma_has_the_gamma_law(a):
    keys = jax.random.split(jax.random.key(11), 100_000)
    x = np.exp(np.asarray(jax.vmap(lambda k: log_gamma(k, a))(keys)))
    assert stats.kstest(x, stats.gamma(a).cdf).pvalue > 1e-3
    # power: the same test rejects a shape off by 10%
    assert stats.kstest(x, stats.gamma(1.1 * a).cdf).pvalue < 1e-3


def test_floyd_subsets_are_distinct_and_uniform():
    draw = jax.jit(jax.vmap(lambda k: _floyd_subset(k, jnp.int32(10), 3)))
    idx = np.sort(np.asarray(draw(jax.random.split(jax.random.key(3), 120_000))), axis=1)
    assert np.all(np.diff(idx, axis=1) > 0) and idx.min() >= 0 and idx.max() <= 9
    counts = collections.Counter(map(tuple, idx))
    assert len(counts) == 120  # C(10, 3)
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3
