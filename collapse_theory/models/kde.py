r"""Gaussian kernel density estimates refitted on their own samples (Kazdan et al.'s KDE workflow).

A KDE *is* its (weighted) training set: :math:`\hat p(x) = \sum_i w_i N(x; x_i, h^2 I) / \sum_i w_i`. Fitting
stores the rows and their frequency weights; sampling resamples a row with probability :math:`w_i/\sum w` and adds
:math:`h z`, :math:`z \sim N(0, I)` (scikit-learn's ``KernelDensity.sample``). The accumulate regime hands
:meth:`KernelDensity.fit` the engine's whole pool (weights 0 on the rows not yet filled), so its KDE is the pooled
KDE on the real data and every synthetic batch so far, as in Kazdan et al.

**Fixed shapes.** Parameters must have the same shapes at every generation, including the chain's start, so the
model has a static ``capacity``: the largest number of rows the regime hands ``fit`` (Replace and
AccumulateSubsample: M; FreshFraction: 2M; Accumulate and ReplaceGrown: M·G; :func:`capacity_for` computes it).
``fit`` pads the rows to the capacity with weight 0 and raises a clear error at trace time when they do not fit.

**The real distribution lives in the parameters.** :class:`KDEParams` has a flag ``real``: the truth
(:meth:`KernelDensity.params`) has ``real = 1`` and an empty row set, and sampling it draws from the model's
``dataset`` generating distribution (:mod:`collapse_theory.datasets`), so generation t = 1 fits genuine real data
through the engine's ordinary ``truth=`` path; ``fit`` clears the flag. The parameters also carry the chain's
dataset ``constants`` (blob centres, drawn per chain by :meth:`KernelDensity.chain_truth` from the key of purpose
``TRUTH``, like scikit-learn's per-seed centres) and ``test_key``, the raw key of the chain's fixed test set:
``num_test`` draws from the *same* distribution as the training data, independent of it.

Metrics (Kazdan et al.'s test NLL and the quantities of THEORY.md §2.5):

* ``test_nll``: :math:`-\frac1{n_{\rm test}}\sum_j \log\hat p(x^{\rm test}_j)` on the chain's test set (or on a
  given ``reference=`` array of test rows);
* ``spread``: the weighted MLE variance of the KDE's rows, averaged over coordinates (:math:`S_t^2` of §2.5);
* ``sq_mean_error``: :math:`\|\bar x_t - \mu\|^2`, the squared distance of the rows' weighted mean from the
  dataset's population mean (the random-walk drift of §2.5, summed over coordinates).

Theory: :mod:`collapse_theory.theory.kde` (replace chain, exact).

References:
  Kazdan et al., "Collapse or Thrive?" (arXiv 2410.16713), ``src/fit_kdes`` (scikit-learn ``KernelDensity``,
  Gaussian kernel, bandwidths 0.1/0.5/1; blobs, circles, moons, swiss roll; test NLL per iteration); THEORY.md
  §2.5, §6.2.

Examples:
  >>> import jax
  >>> from collapse_theory.datasets import Moons
  >>> from collapse_theory.models import KernelDensity
  >>> model = KernelDensity(bandwidth=0.1, dataset=Moons(noise=0.05), capacity=100)
  >>> truth = model.chain_truth(jax.random.key(0), model.params())
  >>> model.sample(jax.random.key(1), truth, 100).shape
  (100, 2)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import regimes as _regimes
from ..datasets import Blobs
from ..theory._validate import is_real

_LOG_2PI = math.log(2 * math.pi)


class KDEParams(NamedTuple):
    """A KDE (rows (R, d), weights (R,)) or, with ``real == 1``, the real distribution; plus the chain's dataset
    ``constants`` (Q, d) and ``test_key`` (raw key data of its test set)."""

    points: jax.Array
    weights: jax.Array
    real: jax.Array
    constants: jax.Array
    test_key: jax.Array


def capacity_for(regime, num_samples, num_generations: int) -> int:
    """Rows a KDE must hold for ``regime`` (what ``fit`` receives): ``num_samples`` is a constant M or the
    per-generation sizes M_1..M_G (e.g. ``schedule.sizes(G)``). The engine's buffers give every generation
    max_t M_t rows (weight 0 past M_t), so a pool of G generations has G · max_t M_t rows."""
    g = int(num_generations)
    m = int(np.max(np.asarray(num_samples, dtype=np.int64)))
    if isinstance(regime, _regimes.Gate):  # a gate filters the rows its inner regime hands the fit (no nesting)
        regime = regime.inner
    if isinstance(regime, (_regimes.Accumulate, _regimes.ReplaceGrown)) and not isinstance(
        regime, _regimes.AccumulateSubsample
    ):
        return m * g
    if isinstance(regime, _regimes.FreshFraction):
        return 2 * m
    return m


def _raw_key(key: jax.Array) -> jax.Array:
    return jax.random.key_data(key)


@dataclasses.dataclass(frozen=True)
class KernelDensity:
    r"""Gaussian KDE with bandwidth h, refitted on its own samples.

    Args:
      bandwidth: h > 0 (kernel :math:`N(0, h^2 I)`).
      dataset: the real data's generating distribution (:mod:`collapse_theory.datasets`; default ``Blobs()``,
        scikit-learn's ``make_blobs`` defaults).
      capacity: rows the KDE can hold (≥ the rows its regime hands ``fit``; :func:`capacity_for`).
      num_test: rows of each chain's fixed test set (Kazdan et al.: 500).
      block: rows per block when evaluating the density (memory (num_test × block) per chain); blocks past the
        last row of positive weight are skipped.
    """

    bandwidth: float
    dataset: Any = dataclasses.field(default_factory=Blobs)
    capacity: int = 1000
    num_test: int = 500
    block: int = 1000

    def __post_init__(self):
        h = self.bandwidth  # any real number (np.float32(0.5) too), not a bool
        if not is_real(h) or not math.isfinite(h) or h <= 0:
            raise ValueError(f"bandwidth={h!r} is out of range: need a finite bandwidth h > 0")
        object.__setattr__(self, "bandwidth", float(h))
        for name in ("capacity", "num_test", "block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} is out of range: need an int {name} >= 1")
        if not all(hasattr(self.dataset, a) for a in ("dim", "constants", "sample", "mean")):
            raise ValueError(f"dataset={self.dataset!r} is not a dataset (see collapse_theory.datasets)")

    @property
    def dim(self) -> int:
        return int(self.dataset.dim)

    @property
    def rows(self) -> int:
        """Stored rows: ``capacity`` rounded up to a whole number of blocks."""
        block = min(self.block, self.capacity)
        return -(-self.capacity // block) * block

    @property
    def min_samples(self) -> int:
        return 1

    # ------------------------------------------------------------------------------------------- parameters
    def _empty(self, real: float, constants, test_key) -> KDEParams:
        dtype = jnp.zeros(()).dtype
        return KDEParams(
            jnp.zeros((self.rows, self.dim), dtype), jnp.zeros((self.rows,), dtype), jnp.asarray(real, dtype),
            jnp.asarray(constants, dtype), test_key,
        )

    def params(self) -> KDEParams:
        """The real distribution (``real = 1``); constants and test key are drawn per chain by :meth:`chain_truth`."""
        constants = self.dataset.constants(jax.random.key(0))
        return self._empty(1.0, jnp.zeros_like(constants), _raw_key(jax.random.key(0)))

    def chain_truth(self, key: jax.Array, truth: KDEParams) -> KDEParams:
        """The chain's own dataset constants (e.g. blob centres) and test-set key, from the ``TRUTH`` key."""
        k_const, k_test = jax.random.split(key)
        return truth._replace(constants=self.dataset.constants(k_const).astype(truth.constants.dtype),
                              test_key=_raw_key(k_test))

    def init(self, key: jax.Array) -> KDEParams:
        """An empty KDE (for chains fed from ``real_data=``; its first fit is on the dataset rows)."""
        k_const, k_test = jax.random.split(key)
        return self._empty(0.0, self.dataset.constants(k_const), _raw_key(k_test))

    # ------------------------------------------------------------------------------------------- sample path
    def _sample_kde(self, key, params: KDEParams, n: int) -> jax.Array:
        k_row, k_z = jax.random.split(key)
        cdf = jnp.cumsum(params.weights)
        u = jax.random.uniform(k_row, (n,), cdf.dtype) * cdf[-1]
        index = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), self.rows - 1)
        return params.points[index] + self.bandwidth * jax.random.normal(k_z, (n, self.dim), cdf.dtype)

    def sample(self, key: jax.Array, params: KDEParams, n: int) -> jax.Array:
        """``n`` rows: resample a row ∝ weight and add N(0, h²I); from the dataset when ``params.real``."""
        k_kde, k_real = jax.random.split(key)
        synthetic = self._sample_kde(k_kde, params, n)
        real = self.dataset.sample(k_real, params.constants, n).astype(synthetic.dtype)
        return jnp.where(params.real > 0, real, synthetic)

    def fit(self, key, data: jax.Array, weights: jax.Array, params: KDEParams) -> KDEParams:
        """Store the rows and their frequency weights (padded with weight 0 to the capacity); ``key`` unused. Rows
        of weight 0 are stored as 0 (a non-finite value there would reach the density through 0 · inf = NaN). A
        training set of total weight 0 (a gate that rejected every row) keeps the previous model (a KDE of no rows
        has no density)."""
        del key
        rows = data.shape[0]
        if rows > self.rows:
            raise ValueError(
                f"capacity={self.capacity} is out of range: this regime hands fit {rows} rows; construct "
                f"KernelDensity(capacity >= {rows}) (see collapse_theory.models.kde.capacity_for)"
            )
        dtype = params.points.dtype
        kept = jnp.where(weights[:, None] > 0, data.astype(dtype), 0.0)
        points = jnp.zeros((self.rows, self.dim), dtype).at[:rows].set(kept)
        w = jnp.zeros((self.rows,), dtype).at[:rows].set(weights.astype(dtype))
        fitted = KDEParams(points, w, jnp.zeros_like(params.real), params.constants, params.test_key)
        empty = jnp.sum(weights) <= 0
        return jax.tree.map(lambda old, new: jnp.where(empty, old, new), params, fitted)

    # ------------------------------------------------------------------------------------------- observables
    def log_density(self, params: KDEParams, x: jax.Array) -> jax.Array:
        r""":math:`\log\hat p(x)` at the rows of ``x`` (n, d), by a running log-sum-exp over blocks of KDE rows
        (blocks after the last row of positive weight are skipped)."""
        h2 = self.bandwidth**2
        block = min(self.block, self.rows)
        num_blocks = self.rows // block
        params = jax.tree.map(jnp.asarray, params)
        x = jnp.asarray(x)
        pts = params.points.reshape(num_blocks, block, self.dim)
        w = params.weights.reshape(num_blocks, block)
        log_w = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
        last = jnp.max(jnp.where(params.weights > 0, jnp.arange(self.rows), -1))
        used = (last + block) // block
        n = x.shape[0]
        dtype = x.dtype

        def body(state):
            b, top, total = state
            p, lw = pts[b], log_w[b]
            d2 = sum((x[:, j, None] - p[None, :, j]) ** 2 for j in range(self.dim))  # (n, block), exact
            logits = lw[None, :] - d2 / (2 * h2)
            new_top = jnp.maximum(top, jnp.max(logits, axis=1))
            safe = jnp.where(jnp.isfinite(new_top), new_top, 0.0)
            total = total * jnp.exp(jnp.where(jnp.isfinite(top), top - safe, -jnp.inf)) + jnp.sum(
                jnp.exp(logits - safe[:, None]), axis=1
            )
            return b + 1, new_top, total

        state = (jnp.int32(0), jnp.full((n,), -jnp.inf, dtype), jnp.zeros((n,), dtype))
        _, top, total = jax.lax.while_loop(lambda s: s[0] < used, body, state)
        log_total_weight = jnp.log(jnp.sum(params.weights))
        return top + jnp.log(total) - log_total_weight - 0.5 * self.dim * (_LOG_2PI + math.log(h2))

    def test_set(self, params: KDEParams) -> jax.Array:
        """The chain's fixed test set: ``num_test`` draws from its dataset with its ``test_key``."""
        key = jax.random.wrap_key_data(params.test_key)
        return self.dataset.sample(key, params.constants, self.num_test).astype(params.points.dtype)

    def metrics(self, params: KDEParams, reference, key=None) -> dict[str, jax.Array]:
        """``test_nll``, ``spread``, ``sq_mean_error`` (module docstring). ``reference``: the chain's truth
        (its test set is used) or an array (n_test, d) of test rows. Deterministic: ``key`` is unused."""
        del key
        if isinstance(reference, KDEParams):
            test = self.test_set(reference)
            constants = reference.constants
        elif reference is None:
            test, constants = self.test_set(params), params.constants
        else:
            test, constants = jnp.asarray(reference, params.points.dtype), params.constants
        w = params.weights
        total = jnp.sum(w)
        mean = w @ params.points / total
        var = w @ (params.points - mean[None, :]) ** 2 / total
        return {
            "test_nll": -jnp.mean(self.log_density(params, test)),
            "spread": jnp.mean(var),
            "sq_mean_error": jnp.sum((mean - self.dataset.mean(constants).astype(mean.dtype)) ** 2),
        }
