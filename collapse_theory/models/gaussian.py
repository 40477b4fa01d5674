r"""Gaussian fitting chains in :math:`d \ge 1` dimensions, on both the sample-level and the exact path.

Each generation fits a Gaussian by the sample mean and the sample covariance with an explicit ``ddof``,

.. math::
   \hat\mu = \frac{\sum_i w_i x_i}{\sum_i w_i}, \qquad
   \hat\Sigma = \frac{\sum_i w_i (x_i-\hat\mu)(x_i-\hat\mu)^\top}{\sum_i w_i - \mathrm{ddof}},

(``ddof=0``: maximum likelihood, as in Shumailov et al.'s released code and Kazdan et al.; ``ddof=1``: unbiased,
as in Shumailov et al.'s Theorem 3.1), with frequency weights :math:`w_i`.

**Log-scale, standardised state.** The covariance is carried as :math:`\Sigma = e^{2s} F F^\top` with ``F`` lower
triangular of unit Frobenius norm and ``s = log_scale``. A replace chain's variance decays like
:math:`e^{-t/(M-1)}`, below float32's smallest normal after a few hundred generations at M = 10; carrying
:math:`s` keeps :math:`\log\sigma^2` exact there (THEORY.md §14.6). ``F`` may be singular (``M \le d``): its zero
diagonal entries mark the collapsed directions.

**Exact path.** For M i.i.d. draws :math:`x_j = \mu + e^{s} F z_j`, the sufficient statistics are drawn without
the samples: :math:`\bar x = \mu + e^{s} F \bar z` with :math:`\sqrt M \bar z \sim N(0, I_d)`, and the scatter
:math:`\sum_j (x_j-\bar x)(x_j-\bar x)^\top = e^{2s} F W F^\top`, :math:`W \sim \mathrm{Wishart}_d(M-1, I)`,
with :math:`W = B B^\top` by the Bartlett decomposition: :math:`B_{ii}^2 \sim \chi^2_{M-1-i}` (0-based ``i``),
:math:`B_{ij} \sim N(0,1)` below the diagonal. When :math:`M-1 < d` the same formula with the diagonal and the
columns :math:`j \ge M-1` set to zero is the Cholesky factor of the singular Wishart matrix. One generation then
costs :math:`d(d+3)/2` random numbers whatever M is. Statistics combine by Chan's pooled formula, so
accumulation is a running sum; where the draws come from the pool's own fit (``Accumulate``), the pooled factor is
the pool's times a d × d Cholesky factor (:meth:`Gaussian.grow_pool`).

Theory: :mod:`collapse_theory.theory.gaussian` (THEORY.md §2.1–2.4).

References:
  Shumailov et al., "AI models collapse when trained on recursively generated data", Nature 631 (2024), Thm 3.1
  and SI §3.1.1; Kazdan et al., "Collapse or Thrive?" (arXiv 2410.16713), the Gaussian workflow.

Examples:
  >>> import jax
  >>> from collapse_theory.models import Gaussian
  >>> model = Gaussian(dim=1, ddof=1)
  >>> truth = model.params(mean=0.0, cov=1.0)
  >>> x = model.sample(jax.random.key(0), truth, 100)
  >>> x.shape
  (100, 1)
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from .. import _linalg
from .._random import (
    gamma_uniforms,
    log_gamma_from_uniforms,
    normal_and_log_gamma,
    standard_normal_from_uniform,
    standard_normals,
    unit_uniforms,
)
from .base import any_chain


class GaussianParams(NamedTuple):
    r""":math:`N(\mathrm{mean}, e^{2\,\mathrm{log\_scale}} F F^\top)`; shapes (d,), (d, d), ()."""

    mean: jax.Array
    factor: jax.Array
    log_scale: jax.Array


class GaussianStats(NamedTuple):
    r"""Sufficient statistics: count, sample mean (d,), scatter :math:`e^{2\,\mathrm{log\_scale}} F F^\top`."""

    count: jax.Array
    mean: jax.Array
    factor: jax.Array
    log_scale: jax.Array


def _normalise(lower: jax.Array, log_scale: jax.Array):
    """Rescale a factor to unit Frobenius norm, moving its size into ``log_scale`` (zero factor: scale -inf)."""
    norm = jnp.sqrt(jnp.sum(lower**2))
    safe = jnp.where(norm > 0, norm, 1.0)
    return lower / safe, jnp.where(norm > 0, log_scale + jnp.log(safe), -jnp.inf)


_METRIC_ORDER = ("sq_mean_error", "trace_ratio", "log_trace_ratio", "det_ratio", "log_det_ratio", "w2_squared",
                 "kl_truth_model", "kl_model_truth", "tail_mass", "collapsed", "variance", "log_variance", "std",
                 "abs_mean_error")

_BARTLETT_PROPOSALS = 3
"""Gamma proposals drawn up front per Bartlett diagonal entry of the d ≥ 2 exact step: shapes (M−i)/2 near 1/2 (M
close to d) are rejected most often, and with two proposals the extra round would run on almost every step."""

_NEWTON_SCHULZ_MAX_DIM = 8  # W2's nuclear norm: Newton–Schulz up to this d, NumPy's SVD above (measured)


_GRAM_SHARE = 0.01
r"""The sample-path fit keeps the Cholesky factor of the Gram matrix only where its round-off is at most this share
of the fit's own Monte Carlo spread. Forming :math:`G = X^\top X` squares the rows' condition number κ: its
relative error in the smallest directions is about :math:`κ^2 \sqrt M u` (u the unit round-off, 6·10⁻⁸ in
float32), against a spread of :math:`\sqrt{2/M}` for a fit of M rows; so the factor is kept where
:math:`κ^2 \le 0.01\sqrt2/(M u)/4` (float32: 59 at M = 1000, 0.6 at M = 10⁵, so a large accumulated pool always
takes the QR), with κ² from :func:`_condition_squared` and the factor 4 for that estimate's error."""

_CONDITION_STEPS = 4


def _condition_squared(lower: jax.Array) -> jax.Array:
    r"""An estimate of :math:`κ(L)^2 = λ_{max}/λ_{min}` of :math:`G = LL^\top` (L lower triangular, nonsingular):
    four steps of power iteration for :math:`λ_{max}` and of inverse iteration (two triangular solves a step) for
    :math:`λ_{min}`, from one fixed start vector, each read off as a Rayleigh quotient. Both quotients err towards
    the middle of the spectrum, so this is a lower bound; inverse iteration reaches an isolated small eigenvalue
    in a step or two (an ill-conditioned direction is found whatever its orientation)."""
    d = lower.shape[0]
    start = 1.0 + 0.5 * jnp.sin(2.3 * jnp.arange(d, dtype=lower.dtype))

    def unit(v):
        return v / jnp.sqrt(jnp.sum(v * v))

    def step(_, vs):
        up, down = vs
        up = unit(lower @ (lower.T @ up))
        down = jax.lax.linalg.triangular_solve(lower, down[:, None], left_side=True, lower=True)
        down = jax.lax.linalg.triangular_solve(lower, down, left_side=True, lower=True, transpose_a=True)
        return up, unit(down[:, 0])

    up, down = jax.lax.fori_loop(0, _CONDITION_STEPS, step, (unit(start), unit(start)))
    return jnp.sum((lower.T @ up) ** 2) / jnp.sum((lower.T @ down) ** 2)


_GRAM_MIN_WORK = 500_000
"""The sample-path fit forms the Gram matrix only for at least this many rows × d² (and more than 2d rows): below
it the QR costs little, and the Gram path's extra code (a Cholesky factor, its condition estimate, a conditional
QR) costs more compile time than it saves (measured on 2 CPU cores over the Kazdan Gaussian grid, 100 chains ×
100 generations: +0.3 to 0.7 s compile per program, −6 s run at d = 100 and M = 1000)."""


def _fit_factor(rows: jax.Array, dim: int) -> jax.Array:
    """Lower-triangular ``L`` with ``L L^T = rows^T rows``: the Cholesky factor of the Gram matrix (a matrix
    product, ~4× faster than a QR on a CPU) where it is accurate (:data:`_GRAM_SHARE`), the QR factor
    (:func:`_scatter_factor`) elsewhere: for small fits (:data:`_GRAM_MIN_WORK`; at most 2d rows, where a
    scatter is singular or poorly conditioned), decided from the shape, and for a chain whose Gram factor is
    ill-conditioned or not finite. The QR runs only in batches of chains that hold such a chain
    (:func:`~collapse_theory.models.base.any_chain`; under ``simulate(chain_batch=...)`` it runs for every batch);
    each chain takes its own factor, so its result does not depend on the other chains."""
    if rows.shape[0] <= 2 * dim or rows.shape[0] * dim * dim < _GRAM_MIN_WORK:
        return _scatter_factor(rows, dim)
    gram = jnp.matmul(rows.T, rows, precision=jax.lax.Precision.HIGHEST)  # GPUs would round it to TF32 otherwise
    lower = jnp.linalg.cholesky(gram)
    finite = jnp.all(jnp.isfinite(lower)) & jnp.all(jnp.diag(lower) > 0)
    safe = jnp.where(finite, lower, jnp.eye(dim, dtype=lower.dtype))
    bound = _GRAM_SHARE * math.sqrt(2.0) / (rows.shape[0] * float(np.finfo(rows.dtype).eps) / 2) / 4
    good = finite & (_condition_squared(safe) <= bound)
    fallback = jax.lax.cond(any_chain(~good), lambda: _scatter_factor(rows, dim), lambda: jnp.zeros_like(lower))
    return jnp.where(good, lower, fallback)


def _scatter_factor(rows: jax.Array, dim: int) -> jax.Array:
    """Lower-triangular ``L`` (d, d) with ``L L^T = rows^T rows``, by QR (no squaring; singular allowed).

    A rank-deficient scatter (M ≤ d points, or later points in the affine hull of a singular fit) leaves
    round-off of order eps·max|R_ii| on the diagonal instead of zeros; entries below ``4·d·eps·max|R_ii|``
    are treated as exact zeros (with their row of R), so such fits report det = 0 and log det = -inf.
    """
    r = jnp.linalg.qr(rows, mode="r")
    if r.shape[0] < dim:
        r = jnp.concatenate([r, jnp.zeros((dim - r.shape[0], dim), r.dtype)])
    diag = jnp.abs(jnp.diag(r))
    tol = 4 * dim * jnp.finfo(r.dtype).eps * jnp.max(diag)
    r = jnp.where((diag <= tol)[:, None], 0.0, r)
    return r.T


class SingularFitWarning(UserWarning):
    """A d-dim Gaussian fitted on M ≤ d points: its covariance is singular by construction."""


@dataclasses.dataclass(frozen=True)
class Gaussian:
    r"""Gaussian refitted by sample mean and covariance with an explicit ``ddof``.

    Args:
      dim: dimension d.
      ddof: 0 (maximum likelihood, divide by :math:`\sum w`) or 1 (unbiased, divide by :math:`\sum w - 1`).
      tail_k: ``tail_mass`` is :math:`P_{\rm model}(|X_1-\mu_{0,1}| > k\,\sigma_{0,1})` on the first coordinate.
      collapse_threshold: a chain counts as ``collapsed`` when :math:`\sqrt{\mathrm{tr}\Sigma/\mathrm{tr}\Sigma_0}`
        is below this (Shumailov's :math:`\sigma_n < 10^{-3}\sigma`).
    """

    dim: int
    ddof: int
    tail_k: float = 3.0
    collapse_threshold: float = 1e-3

    def __post_init__(self):
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"dim={self.dim!r} is out of range: need an int dim >= 1")
        if self.ddof not in (0, 1) or isinstance(self.ddof, bool):
            raise ValueError(f"ddof={self.ddof!r} is out of range: need ddof in {{0, 1}}")
        if not (math.isfinite(self.tail_k) and self.tail_k > 0):
            raise ValueError(f"tail_k={self.tail_k!r} is out of range: need a finite tail_k > 0")
        if not (math.isfinite(self.collapse_threshold) and 0 < self.collapse_threshold < 1):
            raise ValueError(f"collapse_threshold={self.collapse_threshold!r} is out of range: need 0 < value < 1")

    def check_sizes(self, sizes, path) -> None:
        r"""Warn (:class:`SingularFitWarning`) when some generation draws :math:`M_t \le d` points in d ≥ 2 dims.
        A fit on that few points has a singular covariance (rank ≤ M_t − 1), so ``det_ratio`` is 0,
        ``log_det_ratio`` −inf and ``kl_truth_model`` +inf by construction wherever a fit uses only them (every
        fit from t on under :class:`~collapse_theory.regimes.Replace`: later samples stay in that subspace; a
        pooled fit with more points may recover, and fresh real data restore the rank). A warning, not an error:
        grids such as Kazdan et al.'s span both sides of M = d."""
        sizes = np.asarray(sizes)
        small = np.flatnonzero(sizes <= self.dim)
        if self.dim > 1 and small.size:
            t, m = int(small[0]) + 1, int(sizes[small[0]])
            warnings.warn(
                f"num_samples={m} <= dim={self.dim} at generation t={t}: a fit on M_t <= d points has a singular "
                f"covariance (rank <= {m - 1}), so det_ratio = 0, log_det_ratio = -inf and kl_truth_model = +inf "
                f"wherever a fit uses only them (under Replace, every fit from t = {t} on); need num_samples >= "
                f"dim + 1 = {self.dim + 1} for finite values", SingularFitWarning, stacklevel=3)

    @property
    def min_samples(self) -> int:
        """An unbiased covariance (ddof=1) needs two samples; the MLE needs one."""
        return self.ddof + 1

    # ----------------------------------------------------------------- parameters
    def params(self, mean=0.0, cov=1.0) -> GaussianParams:
        """Parameters of :math:`N(\\mathrm{mean}, \\mathrm{cov})`; scalars broadcast (``cov`` scalar = σ² I)."""
        d = self.dim
        mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (d,))
        cov = np.asarray(cov, dtype=np.float64)
        if cov.ndim == 0:
            cov = cov * np.eye(d)
        elif cov.ndim == 1:
            cov = np.diag(cov)
        if cov.shape != (d, d):
            raise ValueError(f"cov has shape {cov.shape}: need ({d}, {d}) for dim={d}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("mean and cov must be finite")
        if not np.allclose(cov, cov.T):
            raise ValueError("cov must be symmetric")
        try:
            lower = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(f"cov must be positive definite; its eigenvalues are {np.linalg.eigvalsh(cov)}") from None
        norm = np.linalg.norm(lower)
        dtype = jnp.zeros(()).dtype
        # converted by NumPy: jnp.asarray(x, dtype) compiles a conversion per new shape
        return GaussianParams(*(jnp.asarray(np.asarray(x).astype(dtype)) for x in (mean, lower / norm, np.log(norm))))

    @staticmethod
    def covariance(params: GaussianParams) -> jax.Array:
        """:math:`e^{2s} F F^\\top` (may underflow in long chains: prefer the log-scale metrics)."""
        f = params.factor
        return jnp.exp(2 * params.log_scale) * f @ f.T

    def init(self, key: jax.Array) -> GaussianParams:
        """Standard normal N(0, I): the starting point of chains whose real data is a dataset."""
        del key
        return self.params(0.0, 1.0)

    # ----------------------------------------------------------------- sample-level path
    def sample(self, key: jax.Array, params: GaussianParams, n: int) -> jax.Array:
        """``n`` draws :math:`\\mu + e^{s} F z`, shape (n, d)."""
        if self.dim == 1:
            z = jax.random.normal(key, (n,), params.mean.dtype)  # not standard_normals: slower where sums fuse it
            return (params.mean[0] + jnp.exp(params.log_scale) * params.factor[0, 0] * z)[:, None]
        z = standard_normals(key, (self.dim, n), params.mean.dtype)  # long axis last: faster on CPU
        # (F z)^T as one product with the rows' layout: XLA:CPU gives it to Eigen; F @ z went to YNNPACK, ~2x
        # slower for d = 100, M = 1000 and 100 chains, and the transpose after it cost as much again
        return params.mean[None, :] + jnp.exp(params.log_scale) * jnp.einsum("jn,ij->ni", z, params.factor)

    def fit(self, key, data: jax.Array, weights: jax.Array, params=None) -> GaussianParams:
        """Weighted mean and covariance (divisor :math:`\\sum w - \\mathrm{ddof}`); ``key``/``params`` unused."""
        del key, params
        total = jnp.sum(weights)
        log_denominator = 0.5 * jnp.log(total - self.ddof)
        if self.dim == 1:
            x = data[:, 0]  # work on (n,) arrays: a trailing axis of length 1 is slow on CPU
            mean = (weights @ x / total)[None]
            ss = jnp.sum(weights * (x - mean[0]) ** 2)
            factor = jnp.ones((1, 1), data.dtype)
            return GaussianParams(mean, factor, 0.5 * jnp.log(ss) - log_denominator)
        mean = jnp.sum(weights[:, None] * data, axis=0) / total  # weights @ data copied the rows for a gemv
        centred = data - mean[None, :]
        lower = _fit_factor(jnp.sqrt(weights)[:, None] * centred, self.dim)
        factor, log_scale = _normalise(lower, -log_denominator)
        return GaussianParams(mean, factor, log_scale)

    # ----------------------------------------------------------------- exact path
    def sample_stats(self, key: jax.Array, params: GaussianParams, n: jax.Array) -> GaussianStats:
        """Exact sufficient statistics of ``n`` draws (``n`` may be traced), by (z̄, Bartlett)."""
        return self.stats_from_noise(params, self.stats_noise(key, n, params.mean.dtype), n)

    def _bartlett_dof(self, n: jax.Array, dtype):
        """Chi-square degrees of freedom of the Bartlett diagonal, and the gamma shapes drawn for them."""
        dof = jnp.asarray(n, dtype) - 1 - jnp.arange(self.dim, dtype=dtype)
        return dof, jnp.maximum(dof, 1.0) / 2

    @property
    def blocked_noise(self) -> bool:
        """Whether the engine may draw :meth:`stats_noise` for a block of generations before stepping through them.
        In one dimension this changes no bit and halves the cost of the exact step (tests); for d > 1 the step's
        small matrix products round differently in the last bit when their noise comes from outside the step."""
        return self.dim == 1

    def stats_noise(self, key: jax.Array, n: jax.Array, dtype=None) -> tuple:
        """The random input of :meth:`sample_stats`, which does not depend on the parameters: the standard normal
        mean direction ``z`` (d,), the log Gamma draws of the Bartlett diagonal (d,) and, for d > 1, the standard
        normals below the diagonal (d, d), in ``dtype`` (default: JAX's default float). The engine draws it for many
        generations at once."""
        d = self.dim
        _, shapes = self._bartlett_dof(n, jnp.zeros((), dtype).dtype)
        dtype = shapes.dtype
        if d == 1:  # one Threefry call gives the whole step's randomness (the exact path's hot loop)
            z, log_g = normal_and_log_gamma(key, shapes[0])
            return z[None], log_g[None]
        # one Threefry call for the step's uniforms: d for z, gamma_uniforms(3) per Bartlett diagonal entry (the
        # rare extra rejection rounds draw from fold_in(key, i)), d² for the normals of which the step keeps the
        # d(d-1)/2 below the diagonal (drawing only those, a scatter into the triangle, measured no faster)
        g = gamma_uniforms(_BARTLETT_PROPOSALS)
        u = unit_uniforms(key, d * (1 + g + d), dtype)
        normals = standard_normal_from_uniform(jnp.concatenate([u[:d], u[d * (1 + g):]]))
        log_g = log_gamma_from_uniforms(key, u[d:d * (1 + g)].reshape(d, g), shapes)
        return normals[:d], log_g, normals[d:].reshape(d, d)

    def stats_from_noise(self, params: GaussianParams, noise: tuple, n: jax.Array) -> GaussianStats:
        """:meth:`sample_stats` given its random input ``noise`` (:meth:`stats_noise`)."""
        d, dtype = self.dim, params.mean.dtype
        dof, _ = self._bartlett_dof(n, dtype)
        n = jnp.asarray(n, dtype)
        scale = jnp.exp(params.log_scale)
        z, log_g = noise[0], noise[1]
        if d == 1:
            mean = params.mean + scale * params.factor[0, 0] * z[0] / jnp.sqrt(jnp.maximum(n, 1.0))
            half_log_diag = jnp.where(dof[0] > 0, 0.5 * (jnp.log(2.0) + log_g[0]), -jnp.inf)
            return GaussianStats(n, mean, jnp.ones((1, 1), dtype), params.log_scale + half_log_diag)
        mean = params.mean + scale * (params.factor @ z) / jnp.sqrt(jnp.maximum(n, 1.0))
        factor, log_scale = _normalise(params.factor @ self._bartlett(noise, n), params.log_scale)
        return GaussianStats(n, mean, factor, log_scale)

    def _bartlett(self, noise: tuple, n: jax.Array) -> jax.Array:
        """The lower-triangular Bartlett factor B (d, d) of :math:`W = BB^\\top \\sim \\mathrm{Wishart}_d(n-1, I)`
        from :meth:`stats_noise`'s draws (d > 1): zero columns from ``n - 1`` on when ``n - 1 < d``."""
        d = self.dim
        dof, _ = self._bartlett_dof(n, noise[0].dtype)
        half_log_diag = jnp.where(dof > 0, 0.5 * (jnp.log(2.0) + noise[1]), -jnp.inf)
        columns_alive = jnp.arange(d) < n - 1
        below = jnp.tril(noise[2], -1) * columns_alive[None, :]
        return below + jnp.diag(jnp.exp(half_log_diag))

    def empty_stats(self, like: GaussianParams) -> GaussianStats:
        dtype = like.mean.dtype
        d = self.dim
        return GaussianStats(
            jnp.zeros((), dtype), jnp.zeros((d,), dtype), jnp.zeros((d, d), dtype), jnp.full((), -jnp.inf, dtype)
        )

    def combine_stats(self, a: GaussianStats, b: GaussianStats) -> GaussianStats:
        r"""Pooled statistics (Chan et al.): :math:`S = S_a + S_b + \frac{n_a n_b}{n}\delta\delta^\top`."""
        n = a.count + b.count
        safe_n = jnp.maximum(n, 1.0)
        delta = b.mean - a.mean
        mean = a.mean + delta * (b.count / safe_n)
        half_log_cross = 0.5 * jnp.log(a.count * b.count / safe_n)
        if self.dim == 1:
            terms = jnp.stack([2 * a.log_scale, 2 * b.log_scale, 2 * half_log_cross + 2 * jnp.log(jnp.abs(delta[0]))])
            log_scale = 0.5 * _logsumexp(terms)
            return GaussianStats(n, mean, jnp.ones((1, 1), mean.dtype), log_scale)
        log_abs_delta = jnp.log(jnp.abs(delta))
        top = jnp.max(jnp.stack([a.log_scale, b.log_scale, half_log_cross + jnp.max(log_abs_delta)]))
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        cross_row = jnp.sign(delta) * jnp.exp(half_log_cross + log_abs_delta - top)
        rows = jnp.concatenate(
            [jnp.exp(a.log_scale - top) * a.factor.T, jnp.exp(b.log_scale - top) * b.factor.T, cross_row[None, :]]
        )
        factor, log_scale = _normalise(_scatter_factor(rows, self.dim), top)
        return GaussianStats(n, mean, factor, log_scale)

    @property
    def grow_pool(self):
        """The accumulate step from the pool alone (``None`` in one dimension, where :meth:`combine_stats` costs a
        log-sum-exp): see :meth:`_grow_pool`. :class:`~collapse_theory.regimes.Accumulate` calls it from
        generation 2 on, when the draws come from the pool's own fit."""
        return self._grow_pool if self.dim > 1 else None

    def _grow_pool(self, pool: GaussianStats, noise: tuple, n: jax.Array) -> GaussianStats:
        r"""``combine_stats(pool, stats_from_noise(fit_from_stats(pool), noise, n))`` without a QR, where ``noise``
        is :meth:`stats_noise`'s draw for n samples.

        Accumulate's model is the pool's own fit, so the draws' factor is the pool's: with the pool
        :math:`S = e^{2s}FF^\top` of N points, :math:`e^{2s'} = e^{2s}/(N-\mathrm{ddof})` the fit's scale and
        the draws' mean direction :math:`z \sim N(0, I_d)` (:math:`\bar x = \mu + e^{s'}Fz/\sqrt n`) and Bartlett
        factor ``B`` from :meth:`stats_noise`, Chan's pooled scatter is

        .. math:: S' = e^{2s} F \Big[I + \frac{BB^\top + \tfrac{N}{N+n} z z^\top}{N-\mathrm{ddof}}\Big]
           F^\top = e^{2s} (FK)(FK)^\top,

        with ``K`` the Cholesky factor of the bracket, whose eigenvalues are at least 1: the factor ``FK`` is a
        product of lower-triangular matrices, where :meth:`combine_stats` takes a QR of the (2d+1) × d stack (2.4×
        slower at d = 100). A zero diagonal entry of ``F`` (a collapsed direction) stays exactly zero."""
        dtype = pool.mean.dtype
        n = jnp.asarray(n, dtype)
        count = pool.count + n
        rest = pool.count - self.ddof  # >= 1 from generation 2 on: the first training set has >= ddof + 1 points
        bartlett = self._bartlett(noise, n)
        z = noise[0]
        spread = bartlett @ bartlett.T + (pool.count / count) * jnp.outer(z, z)
        bracket = jnp.eye(self.dim, dtype=dtype) + spread / rest
        fit_scale = jnp.exp(pool.log_scale - 0.5 * jnp.log(rest))  # the scale of fit_from_stats(pool)
        mean = pool.mean + (n / count) * fit_scale * (pool.factor @ z) / jnp.sqrt(n)
        factor, log_scale = _normalise(pool.factor @ jnp.linalg.cholesky(bracket), pool.log_scale)
        return GaussianStats(count, mean, factor, log_scale)

    def fit_from_stats(self, stats: GaussianStats, params=None) -> GaussianParams:
        """The estimator of :meth:`fit` from sufficient statistics (``params`` unused)."""
        del params
        return GaussianParams(stats.mean, stats.factor, stats.log_scale - 0.5 * jnp.log(stats.count - self.ddof))

    def result_notes(self, summary: dict, path: str, sizes=None, regime=None) -> list[str]:
        """Warnings for ``simulate`` to raise, on the sample path. A metric whose mean over chains is NaN: some chain
        was fitted to a training set of total weight <= ddof (a :class:`~collapse_theory.regimes.Gate` can leave
        one), which has no fit. A log-scale metric whose mean over chains was finite and later reaches −inf means
        some chain's fit became exactly singular (zero variance in some direction) by losing digits, not by the law
        (which has log det > −inf at every finite t): the refit of raw samples keeps about 7 (float32) or 16
        (float64) digits, so a spread below |mean|·eps is lost. Not when, under a regime that fits each
        generation's draws alone (``Replace``, ``AccumulateSubsample``, also inside a ``Gate``), a generation up
        to then drew too few points for a regular fit (``sizes``: M_t <= d for the determinant, M_t = 1 for a
        variance or trace), which :meth:`check_sizes` has warned of: that −inf is the law's. (A first fit on too
        few points is −inf from the start, which this note never reads as lost digits.)"""
        from ..regimes import AccumulateSubsample, Replace

        inner = getattr(regime, "inner", regime)
        own_draws = isinstance(inner, (Replace, AccumulateSubsample)) and sizes is not None
        if path != "sample":
            return []
        notes = []
        undefined = {}
        for name, stats in summary.items():
            bad = np.flatnonzero(np.isnan(np.asarray(stats["mean"])))
            if bad.size:
                undefined[name] = int(bad[0]) + 1
        if undefined:
            t = min(undefined.values())
            notes.append(
                f"{', '.join(sorted(undefined))}: the mean over chains is NaN from generation t={t} on: some chains "
                f"had a training set of total weight <= ddof={self.ddof} (a Gate that accepted too few of the "
                f"chain's synthetic rows), which has no {'MLE' if self.ddof == 0 else 'unbiased'} fit, and stay "
                f"NaN, and so are the summaries over chains from then on; use the Gate's retries, a larger M, or "
                f"trajectories=True to find and count those chains.")
        first = {}
        for name in ("log_det_ratio", "log_variance", "log_trace_ratio"):
            if name not in summary:
                continue
            mean = np.asarray(summary[name]["mean"])
            lost = np.flatnonzero(np.isneginf(mean))
            if np.isfinite(mean[0]) and lost.size:
                too_few = self.dim if name == "log_det_ratio" else 1
                if not (own_draws and np.any(np.asarray(sizes)[: lost[0] + 1] <= too_few)):  # else the law's
                    first[name] = int(lost[0]) + 1
        if not first:
            return notes
        t = min(first.values())
        where = "" if self.dim == 1 else " in some direction"
        return notes + [
            f"{', '.join(first)}: some chains reach -inf from generation t={t} on, after finite values: their "
            f"fitted spread fell below |mean| x eps{where} and the sample-path refit lost it (digits, not the "
            f"law). The exact path (path='exact') carries the spread in log scale; x64 delays this. Summaries "
            f"from that generation on are biased."]

    # ----------------------------------------------------------------- observables
    def metrics(self, params: GaussianParams, reference: GaussianParams, key=None,
                names=None) -> dict[str, jax.Array]:
        r"""Per-chain observables against the truth ``reference`` (all in log scale where they can underflow).

        ``sq_mean_error`` :math:`\|\mu-\mu_0\|^2`; ``trace_ratio``/``log_trace_ratio``
        :math:`\mathrm{tr}\Sigma/\mathrm{tr}\Sigma_0`; ``det_ratio``/``log_det_ratio``; ``w2_squared``
        :math:`W_2^2(N(\mu,\Sigma), N(\mu_0,\Sigma_0))` in closed form; ``kl_truth_model``
        :math:`KL(P_0\|P)` (+inf once Σ is singular), ``kl_model_truth`` :math:`KL(P\|P_0)`; ``tail_mass``;
        ``collapsed`` (0/1). In one dimension also ``variance``, ``log_variance``, ``std`` and ``abs_mean_error``.
        All are deterministic: ``key`` is unused. ``names`` (the engine passes ``simulate``'s ``metrics``) leaves
        out the W2, KL and tail metrics when they are not named: their triangular solves and nuclear norm were
        a third of a program's tracing time when a grid asked for three cheap metrics.
        """
        del key

        def wanted(name):
            return names is None or name in names

        d = self.dim
        f, s = params.factor, params.log_scale
        f0, s0 = reference.factor, reference.log_scale
        delta = params.mean - reference.mean
        log_tr = 2 * s + jnp.log(jnp.sum(f**2))
        log_tr0 = 2 * s0 + jnp.log(jnp.sum(f0**2))
        log_det = 2 * d * s + 2 * jnp.sum(jnp.log(jnp.abs(jnp.diag(f))))
        log_det0 = 2 * d * s0 + 2 * jnp.sum(jnp.log(jnp.abs(jnp.diag(f0))))
        sq_mean_error = jnp.sum(delta**2)
        sigma = jnp.exp(s) * jnp.abs(f[0, 0])
        out = {
            "sq_mean_error": sq_mean_error,
            "trace_ratio": jnp.exp(log_tr - log_tr0),
            "log_trace_ratio": log_tr - log_tr0,
            "det_ratio": jnp.exp(log_det - log_det0),
            "log_det_ratio": log_det - log_det0,
            "collapsed": (log_tr - log_tr0 < 2 * math.log(self.collapse_threshold)).astype(f.dtype),
        }
        # No jaxlib LAPACK call here (_linalg: two independent ones can deadlock jaxlib 0.10 on 2 cores): the KL
        # solves are forward substitutions in XLA; the W2 nuclear norm is a Newton–Schulz iteration (d <= 8) or
        # NumPy's SVD through a host callback.
        if wanted("w2_squared"):
            if d == 1:
                sigma0 = jnp.exp(s0) * jnp.abs(f0[0, 0])
                w2 = sq_mean_error + (sigma - sigma0) ** 2
            else:
                cross = f0.T @ f
                if d <= _NEWTON_SCHULZ_MAX_DIM:  # 40 steps of d x d products: faster than LAPACK for small d
                    nuclear = _linalg.nuclear_norm(cross)
                else:  # NumPy's SVD (3x faster than the iteration at d = 31); not LAPACK through jaxlib
                    nuclear = jnp.sum(_linalg.singular_values(cross))
                w2 = sq_mean_error + jnp.exp(log_tr) + jnp.exp(log_tr0) - 2 * jnp.exp(s + s0) * nuclear
                w2 = jnp.maximum(w2, 0.0)
            out["w2_squared"] = w2
        if wanted("kl_truth_model"):
            finite = jnp.isfinite(log_det)
            safe_f = jnp.where(finite, f, jnp.eye(d, dtype=f.dtype))
            inv_f_f0 = _solve_lower(safe_f, f0)
            inv_f_delta = _solve_lower(safe_f, delta)
            kl_truth_model = 0.5 * (
                jnp.exp(2 * (s0 - s)) * jnp.sum(inv_f_f0**2)
                + jnp.exp(-2 * s) * jnp.sum(inv_f_delta**2)
                - d
                + log_det
                - log_det0
            )
            out["kl_truth_model"] = jnp.where(finite, kl_truth_model, jnp.inf)
        if wanted("kl_model_truth"):
            if d == 1:
                inv_f0_f, inv_f0_delta = _solve_lower(f0, f), _solve_lower(f0, delta)
            else:
                # the reference is usually shared by the chains: then the inverse is computed once per generation
                inv_f0 = _solve_lower(f0, jnp.eye(d, dtype=f0.dtype))
                inv_f0_f, inv_f0_delta = inv_f0 @ f, inv_f0 @ delta
            out["kl_model_truth"] = 0.5 * (
                jnp.exp(2 * (s - s0)) * jnp.sum(inv_f0_f**2)
                + jnp.exp(-2 * s0) * jnp.sum(inv_f0_delta**2)
                - d
                + log_det0
                - log_det
            )
        if wanted("tail_mass"):
            sd_first = jnp.exp(s) * jnp.sqrt(jnp.sum(f[0] ** 2))
            sd0_first = jnp.exp(s0) * jnp.sqrt(jnp.sum(f0[0] ** 2))
            lo = reference.mean[0] - self.tail_k * sd0_first - params.mean[0]
            hi = params.mean[0] - reference.mean[0] - self.tail_k * sd0_first
            safe_sd = jnp.where(sd_first > 0, sd_first, 1.0)
            tail = jnp.where(sd_first > 0, ndtr(lo / safe_sd) + ndtr(hi / safe_sd), (lo > 0) | (hi > 0))
            out["tail_mass"] = tail.astype(f.dtype)
        if d == 1:
            log_variance = 2 * s + 2 * jnp.log(jnp.abs(f[0, 0]))
            out.update(
                variance=jnp.exp(log_variance),
                log_variance=log_variance,
                std=sigma,
                abs_mean_error=jnp.abs(delta[0]),
            )
        return {**{name: out[name] for name in _METRIC_ORDER if name in out}, **out}  # the documented order first


def _solve_lower(lower: jax.Array, rhs: jax.Array) -> jax.Array:
    """:math:`L^{-1}` ``rhs`` for lower-triangular ``L`` (d, d); a division when d = 1, where a vmapped 1 × 1
    triangular solve cost ~60 ns per chain-generation (four of them were 250 of the 310 ns that the 1-D metrics
    cost at 10⁴ chains); forward substitution without LAPACK otherwise (:func:`collapse_theory._linalg.solve_lower`)."""
    if lower.shape[-1] == 1:
        return rhs / lower[0, 0]
    return _linalg.solve_lower(lower, rhs)


def _logsumexp(x: jax.Array) -> jax.Array:
    """log Σ exp, returning -inf (not NaN) when every term is -inf."""
    top = jnp.max(x)
    safe = jnp.where(jnp.isfinite(top), top, 0.0)
    return jnp.where(jnp.isfinite(top), safe + jnp.log(jnp.sum(jnp.exp(x - safe))), top)
