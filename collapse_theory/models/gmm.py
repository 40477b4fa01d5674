r"""Gaussian mixtures fitted by EM, on the generic sample-level path (no sufficient-statistic shortcut).

Each generation fits a K-component mixture :math:`p(x) = \sum_k \pi_k N(x; \mu_k, \Sigma_k)` to the weighted
training set by expectation–maximisation, exactly as scikit-learn's ``GaussianMixture`` does (the estimator
Shumailov et al. used, THEORY.md §1.5):

* **E step** :math:`r_{ik} \propto \pi_k N(x_i; \mu_k, \Sigma_k)`, and the lower bound
  :math:`\ell = \sum_i w_i \log p(x_i) / \sum_i w_i` (the weighted mean log-likelihood);
* **M step** with frequency weights :math:`w_i` (weight 0 = absent row, so the engine's fixed-size buffers express
  accumulate and accumulate-subsample): :math:`N_k = \sum_i w_i r_{ik} + 10\varepsilon`,
  :math:`\pi_k = N_k/\sum_j N_j`, :math:`\mu_k = \sum_i w_i r_{ik} x_i / N_k`,
  :math:`\Sigma_k = \sum_i w_i r_{ik} (x_i-\mu_k)(x_i-\mu_k)^\top / N_k + \lambda I` (``"full"``) or its diagonal
  (``"diag"``). :math:`\lambda` = ``reg_covar`` is the covariance regularisation (scikit-learn's default 1e-6);
  ``reg_covar=0`` gives the plain maximum-likelihood M step (then a component needs more than d distinct points).
* **Iterations**: at most ``max_iter``; stop once the lower bound changes by less than ``tol`` between two E steps
  (scikit-learn's rule). The loop is a ``lax.while_loop`` whose predicate is per chain, so it stays jit- and
  vmap-friendly (vmapped chains run until the slowest has converged; converged chains keep their parameters).
  Because EM never decreases the likelihood, the lower bound is non-decreasing along the iterations
  (:func:`em_trace` records it).
* **Initialisation** ``init_params`` (key purpose ``FIT``, derived by the engine): ``"kmeans"`` (default, scikit-learn's
  ``init_params="kmeans"``): weighted k-means++ seeding followed by Lloyd iterations (at most ``kmeans_iter``,
  stopping when the squared centre shift is below ``kmeans_tol`` times the data's mean per-coordinate variance),
  then one M step on the hard labels; ``"k-means++"``: the seeding only, hard labels, one M step; ``"warm"``: EM
  starts from the current model (at t = 1 from the chain's start: the truth, or :meth:`init` for a dataset).
  ``warm_start=True`` is scikit-learn's option of that name: a chain's first fit initialises as ``init_params``
  says, and every later fit starts EM from the previous fit. Under accumulate, consecutive pools share a fraction
  (t − 1)/t of their rows, so the previous fit is close to the next optimum and EM stops after a few iterations
  instead of re-running k-means and EM on the whole pool; the stopping rule (``tol``) is the same, but where the
  likelihood is flat (two components fitted to one Gaussian blob) the two starts stop at different points of the
  flat ridge, so ``warm_start`` is a different estimator, not a faster route to the same one
  (``experiments/fig_gmm_shumailov_accumulate.py`` compares them).
  The k-means++ seeding draws each next centre with probability :math:`\propto w_i D(x_i)^2` (plain k-means++,
  without scikit-learn's extra local trials).

**Generation-0 anchor.** Shumailov et al. measure the distance of each generation's mixture to the *first* fit
(the fit on the real data, t = 1 here; "generation 0" in their figures). :meth:`metrics` only sees the current
parameters, so :class:`GMMParams` carries that fit: ``anchor`` is the mixture of the first fit once
``anchored == 1``; :meth:`fit` sets it when ``anchored == 0`` (true for the truth and for :meth:`init`) and passes it
through afterwards.

**Sampling**: a component :math:`k \sim \pi`, then :math:`\mu_k + L_k z`, :math:`z \sim N(0, I)`, with
:math:`L_k` the Cholesky factor of :math:`\Sigma_k`.

References:
  Shumailov et al., "AI models collapse when trained on recursively generated data", Nature 631 (2024), SI §4.1
  and SI Figs. 6, 8 (THEORY.md §1.5: ``GaussianMixture(n_components=2, covariance_type="full", tol=1e-5,
  max_iter=2000)`` on 2-D data, N = 1000 per generation). Dempster, Laird, Rubin (1977) for EM.

Examples:
  >>> import jax
  >>> from collapse_theory.models import GaussianMixture
  >>> model = GaussianMixture(num_components=2, dim=2)
  >>> truth = model.params(weights=[0.5, 0.5], means=[[-3.0, 0.0], [3.0, 0.0]], covs=1.0)
  >>> x = model.sample(jax.random.key(0), truth, 100)
  >>> x.shape
  (100, 2)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp, ndtr

from .. import _linalg
from ..theory._validate import is_real

_LOG_2PI = math.log(2 * math.pi)
_UNROLL_MAX_DIM = 4  # dimensions up to this use unrolled (fused, LAPACK-free) Cholesky and triangular solves
_EM_BLOCK = 16384  # rows per block of the EM step (d <= 4) on large pools: a block's E step and moments stay in cache
_EM_ONE_PASS_MAX = 32768  # up to this many rows the EM step is one pass without blocks (measured crossover)
_MAX_PERMUTATION_K = 6  # component_w2 enumerates the K! matchings up to this K
COVARIANCE_TYPES = ("full", "diag")
INITS = ("kmeans", "k-means++", "warm")


class Mixture(NamedTuple):
    r"""A Gaussian mixture: ``log_weights`` (K,), ``means`` (K, d), ``chol`` (K, d, d) lower Cholesky factors of
    the component covariances :math:`\Sigma_k = L_k L_k^\top` (diagonal for ``covariance_type="diag"``)."""

    log_weights: jax.Array
    means: jax.Array
    chol: jax.Array


class GMMParams(NamedTuple):
    """Parameters of a chain: the current ``mixture``, the first fit ``anchor`` (valid once ``anchored == 1``; a
    copy of ``mixture`` before) and the flag ``anchored`` (shape (), 0.0 or 1.0)."""

    mixture: Mixture
    anchor: Mixture
    anchored: jax.Array


# ----------------------------------------------------------------------------------------------- small linear algebra
def cholesky(a: jax.Array, floor: float = 0.0) -> jax.Array:
    """Lower Cholesky factor of symmetric PSD matrices ``a`` (..., d, d).

    For d ≤ 4 the factorisation is unrolled into elementwise operations (XLA fuses them), above it is a loop of
    XLA operations (:func:`collapse_theory._linalg.cholesky`): no LAPACK call, which could deadlock beside
    another (:mod:`collapse_theory._linalg`). A non-positive pivot gives a zero column (a singular factor)
    instead of NaN. ``floor``: squared pivots below it are raised to it (the M steps pass ``reg_covar``, below
    which no squared pivot of a covariance + ``reg_covar``·I falls but by rounding).
    """
    d = a.shape[-1]
    if d > _UNROLL_MAX_DIM:
        return _linalg.cholesky(a, floor)
    rows = [[jnp.zeros(a.shape[:-2], a.dtype) for _ in range(d)] for _ in range(d)]
    for j in range(d):
        s = a[..., j, j] - sum((rows[j][k] ** 2 for k in range(j)), jnp.zeros((), a.dtype))
        pivot = jnp.sqrt(jnp.maximum(s, floor))
        safe = jnp.where(pivot > 0, pivot, 1.0)
        rows[j][j] = pivot
        for i in range(j + 1, d):
            v = a[..., i, j] - sum((rows[i][k] * rows[j][k] for k in range(j)), jnp.zeros((), a.dtype))
            rows[i][j] = jnp.where(pivot > 0, v / safe, 0.0)
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def _forward_rows(lower: jax.Array, b: jax.Array) -> list:
    """Rows of the solution of ``lower @ y = b`` (small d, unrolled), as a list of d arrays (..., n)."""
    d = lower.shape[-1]
    inv_diag = 1.0 / jnp.diagonal(lower, axis1=-2, axis2=-1)  # d reciprocals per matrix, not per row of b
    ys = []
    for i in range(d):
        v = b[..., i, :]
        for k in range(i):
            v = v - lower[..., i, k, None] * ys[k]
        ys.append(v * inv_diag[..., i, None])
    return ys


def forward_substitution(lower: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``lower @ y = b`` for lower-triangular ``lower`` (..., d, d) and ``b`` (..., d, n)."""
    if lower.shape[-1] > _UNROLL_MAX_DIM:
        return _linalg.solve_lower(lower, b)
    return jnp.stack(_forward_rows(lower, b), axis=-2)


def _nuclear_norm(a: jax.Array) -> jax.Array:
    """Sum of singular values of (..., d, d) matrices (closed form for d ≤ 2, Newton–Schulz above)."""
    d = a.shape[-1]
    if d == 1:
        return jnp.abs(a[..., 0, 0])
    if d == 2:
        frob = jnp.sum(a**2, axis=(-2, -1))
        det = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
        return jnp.sqrt(frob + 2 * jnp.abs(det))
    return _linalg.nuclear_norm(a)


def _log_gauss(delta: jax.Array, lower: jax.Array) -> jax.Array:
    """log N(delta; 0, L Lᵀ) for ``delta`` (..., d, n) and ``lower`` (..., d, d): shape (..., n)."""
    d = lower.shape[-1]
    if d > _UNROLL_MAX_DIM:
        quad = jnp.sum(_linalg.solve_lower(lower, delta) ** 2, axis=-2)
    else:
        quad = sum(y**2 for y in _forward_rows(lower, delta))
    log_det = jnp.sum(jnp.log(jnp.diagonal(lower, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * quad - log_det[..., None] - 0.5 * d * _LOG_2PI


def _log_density_terms(mix: Mixture, x_t: jax.Array) -> jax.Array:
    """``log π_k + log N(x_i; μ_k, Σ_k)``, shape (K, n), for data ``x_t`` in (d, n) layout."""
    delta = x_t[None, :, :] - mix.means[:, :, None]
    return mix.log_weights[:, None] + _log_gauss(delta, mix.chol)


def log_density(mix: Mixture, x: jax.Array) -> jax.Array:
    """Log density of the mixture at the rows of ``x`` (n, d): shape (n,)."""
    return logsumexp(_log_density_terms(mix, x.T), axis=0)


def l2_distance_squared(a: Mixture, b: Mixture) -> jax.Array:
    r"""Closed-form squared L2 distance :math:`\int (f-g)^2` between two Gaussian mixtures (THEORY.md §1.5):

    .. math:: \|f-g\|^2 = \sum_{ij} a_i a_j N(m_i-m_j; 0, C_i+C_j) + \sum_{ij} b_i b_j N(n_i-n_j; 0, D_i+D_j)
              - 2\sum_{ij} a_i b_j N(m_i-n_j; 0, C_i+D_j),

    each sum evaluated by log-sum-exp. Clamped at 0 (round-off can make a tiny distance negative).

    The three terms cancel when f ≈ g, so the result carries a round-off floor of a few ε·(∫f² + ∫g²): about
    10⁻⁷ of ∫f² in float32 (ε = 1.2·10⁻⁷), 10⁻¹⁶ with ``jax_enable_x64``. Distances near that floor are noise;
    run in float64 to resolve smaller ones (e.g. a long accumulate chain converging to the truth).
    """

    def cross(p: Mixture, q: Mixture) -> jax.Array:
        cov_p = p.chol @ jnp.swapaxes(p.chol, -1, -2)
        cov_q = q.chol @ jnp.swapaxes(q.chol, -1, -2)
        total = cov_p[:, None] + cov_q[None, :]  # (K, K', d, d)
        lower = cholesky(total)
        delta = (p.means[:, None, :] - q.means[None, :, :])[..., None]  # (K, K', d, 1)
        log_n = _log_gauss(delta, lower)[..., 0]
        return logsumexp(p.log_weights[:, None] + q.log_weights[None, :] + log_n)

    aa, bb, ab = cross(a, a), cross(b, b), cross(a, b)
    top = jnp.maximum(jnp.maximum(aa, bb), ab)
    value = jnp.exp(aa - top) + jnp.exp(bb - top) - 2 * jnp.exp(ab - top)
    return jnp.maximum(value, 0.0) * jnp.exp(top)


def gaussian_w2_squared(mean_a, chol_a, mean_b, chol_b) -> jax.Array:
    r""":math:`W_2^2` between Gaussians given Cholesky factors (broadcasting over leading axes):
    :math:`\|\Delta\mu\|^2 + \mathrm{tr}\,\Sigma_a + \mathrm{tr}\,\Sigma_b - 2\|L_b^\top L_a\|_*`."""
    cross = jnp.swapaxes(chol_b, -1, -2) @ chol_a
    value = (
        jnp.sum((mean_a - mean_b) ** 2, axis=-1)
        + jnp.sum(chol_a**2, axis=(-2, -1))
        + jnp.sum(chol_b**2, axis=(-2, -1))
        - 2 * _nuclear_norm(cross)
    )
    return jnp.maximum(value, 0.0)


def _moments(mix: Mixture):
    """Mean (d,) and covariance (d, d) of the mixture distribution."""
    w = jnp.exp(mix.log_weights)
    mean = w @ mix.means
    cov_k = mix.chol @ jnp.swapaxes(mix.chol, -1, -2)
    second = jnp.einsum("k,kij->ij", w, cov_k) + jnp.einsum("k,ki,kj->ij", w, mix.means, mix.means)
    return mean, second - mean[:, None] * mean[None, :]


# ----------------------------------------------------------------------------------------------- EM pieces
def _m_step(x_t, w, resp, full: bool, reg: float) -> Mixture:
    """Weighted M step on data ``x_t`` (d, n), weights (n,), responsibilities (K, n)."""
    dtype = x_t.dtype
    rw = resp * w[None, :]
    nk = jnp.sum(rw, axis=1) + 10 * jnp.finfo(dtype).eps
    means = (rw @ x_t.T) / nk[:, None]
    delta = x_t[None, :, :] - means[:, :, None]  # (K, d, n)
    d = x_t.shape[0]
    if full:
        if d <= _UNROLL_MAX_DIM:  # fused elementwise reductions beat a batched dot for tiny d
            entries = {}
            for i in range(d):
                wi = rw * delta[:, i, :]
                for j in range(i + 1):
                    entries[i, j] = entries[j, i] = jnp.sum(wi * delta[:, j, :], axis=-1)
            cov = jnp.stack([jnp.stack([entries[i, j] for j in range(d)], -1) for i in range(d)], -2)
            cov = cov / nk[:, None, None]
        else:
            cov = jnp.einsum("kn,kin,kjn->kij", rw, delta, delta) / nk[:, None, None]
        cov = cov + reg * jnp.eye(d, dtype=dtype)[None]
        chol = cholesky(cov, floor=reg)
    else:
        var = jnp.einsum("kn,kin->ki", rw, delta**2) / nk[:, None] + reg
        chol = jnp.sqrt(var)[:, :, None] * jnp.eye(d, dtype=dtype)[None]
    log_weights = jnp.log(nk) - jnp.log(jnp.sum(nk))
    return Mixture(log_weights, means, chol)


def _e_step(x_t, w, mix: Mixture):
    """Weighted mean log-likelihood (the lower bound) and responsibilities (K, n).

    One exponential per (component, row): ``resp = e / Σ e`` with ``e = exp(terms − max_k terms)``.
    """
    terms = _log_density_terms(mix, x_t)
    top = jnp.max(terms, axis=0)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(terms - top[None, :])
    total = jnp.sum(e, axis=0)
    log_norm = top + jnp.log(total)
    bound = jnp.sum(jnp.where(w > 0, w * log_norm, 0.0)) / jnp.sum(w)
    return bound, e / total[None, :]


def _block_moments(x_t, w, mix: Mixture, full: bool, contract: bool):
    """E step on the rows of one block ``x_t`` (d, b): the weighted moments of every component shifted by its old
    mean, (K, P) with columns :math:`N_k, s_1 (d), S_2` (the d(d+1)/2 lower-triangle entries, or the d diagonal
    ones for ``"diag"``), and the block's weighted log-likelihood sum.

    ``contract=False`` computes each moment as its own reduction (XLA fuses the E step into each: fastest for one
    pass over a small training set); ``contract=True`` materialises the responsibilities and the features once
    and contracts them (fastest inside the block loop, measured 2-3x)."""
    d = x_t.shape[0]
    delta = x_t[None, :, :] - mix.means[:, :, None]  # (K, d, b)
    rows = _forward_rows(mix.chol, delta)
    log_det = jnp.sum(jnp.log(jnp.diagonal(mix.chol, axis1=-2, axis2=-1)), axis=-1)
    terms = mix.log_weights[:, None] - 0.5 * sum(y**2 for y in rows) - log_det[:, None] - 0.5 * d * _LOG_2PI
    top = jnp.max(terms, axis=0)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(terms - top[None, :])
    total = jnp.sum(e, axis=0)
    loglik = jnp.sum(jnp.where(w > 0, w * (top + jnp.log(total)), 0.0))
    rw = e * (w / total)[None, :]
    pairs = _moment_pairs(d, full)
    if not contract:  # one fused reduction per moment
        columns = [jnp.sum(rw, axis=1)] + [jnp.sum(rw * delta[:, i], axis=1) for i in range(d)]
        columns += [jnp.sum(rw * delta[:, i] * delta[:, j], axis=1) for i, j in pairs]
        return jnp.stack(columns, axis=1), loglik
    features = [jnp.ones_like(delta[:, 0])] + [delta[:, i] for i in range(d)]
    features += [delta[:, i] * delta[:, j] for i, j in pairs]
    return jnp.einsum("kb,kpb->kp", rw, jnp.stack(features, axis=1)), loglik


def _moment_pairs(d: int, full: bool) -> list:
    """(i, j) of the second moments :func:`_block_moments` returns, in column order: the lower triangle row by row
    (``"full"``) or the diagonal (``"diag"``)."""
    return [(i, j) for i in range(d) for j in range(i + 1)] if full else [(i, i) for i in range(d)]


def _weighted_rows(data, weights, dtype):
    """The rows and weights a fit works on, in ``dtype``; rows of weight 0 set to 0, so that a non-finite value
    there cannot reach the fit (0 · inf = NaN)."""
    w = weights.astype(dtype)
    return jnp.where(w[:, None] > 0, data.astype(dtype), 0.0), w


def _blocked_rows(x_t, w):
    """``x_t`` (d, n) and ``w`` padded with zero-weight rows to a whole number of blocks, and the number of blocks
    up to the last row of positive weight (accumulate pools fill their buffer from the front). Pools of at most
    ``_EM_ONE_PASS_MAX`` rows are returned as they are, with one block."""
    n = x_t.shape[1]
    if n <= _EM_ONE_PASS_MAX:
        return x_t, w, jnp.int32(1)
    extra = -n % _EM_BLOCK
    if extra:
        x_t, w = jnp.pad(x_t, ((0, 0), (0, extra))), jnp.pad(w, (0, extra))
    last = jnp.max(jnp.where(w > 0, jnp.arange(w.shape[0], dtype=jnp.int32), -1))
    return x_t, w, last // _EM_BLOCK + 1


def _em_step(x_t, w, mix: Mixture, full: bool, reg: float, live_blocks=None):
    """One EM iteration (E step at ``mix``, then the M step); returns (new mixture, lower bound at ``mix``).

    The residuals δ = x − μ_old of the E step also give the M step, through moments shifted by the old means:
    with :math:`s_1 = \\sum_i w_i r_{ik}\\delta_i` and :math:`S_2 = \\sum_i w_i r_{ik}\\delta_i\\delta_i^\\top`,
    :math:`\\mu_k = \\mu_{\\rm old} + s_1/N_k` and :math:`\\Sigma_k = S_2/N_k - (s_1/N_k)(s_1/N_k)^\\top + \\lambda I`
    (algebraically the M step of :func:`_m_step`). The subtraction cancels the mean's shift, small near
    convergence but not on a first step from a distant start (``init_params="warm"``, or chains started at
    ``init()`` and fed ``real_data``): in float32 its rounding, ~eps·shift², can then exceed λ and make the
    covariance indefinite, so the Cholesky pivots are floored at λ (which changes nothing otherwise); the next
    step, from the moved means, recomputes the covariance without that cancellation.

    For d ≤ 4 and more than ``_EM_ONE_PASS_MAX`` rows, the rows are visited in blocks of ``_EM_BLOCK`` (a
    ``fori_loop`` over blocks, each block's E step and moments computed while it sits in cache, instead of one
    pass over all rows per moment; measured 2.5-4x faster on pools of 10^5-10^6 rows), stopping after
    ``live_blocks`` blocks: rows beyond the last positive weight are skipped, so a fit on a fixed-size accumulate
    buffer costs the rows filled so far, not the whole buffer. Callers that iterate pass ``x_t``, ``w`` and
    ``live_blocks`` from :func:`_blocked_rows` (computed once per fit); without ``live_blocks`` the step computes
    them itself.
    """
    d, n = x_t.shape
    if d > _UNROLL_MAX_DIM:
        bound, resp = _e_step(x_t, w, mix)
        return _m_step(x_t, w, resp, full, reg), bound
    dtype = x_t.dtype
    if n <= _EM_ONE_PASS_MAX:
        moments, loglik = _block_moments(x_t, w, mix, full, contract=False)
    else:
        if live_blocks is None:
            x_t, w, live_blocks = _blocked_rows(x_t, w)

        def body(b, acc):
            start = b * _EM_BLOCK
            xb = jax.lax.dynamic_slice_in_dim(x_t, start, _EM_BLOCK, axis=1)
            wb = jax.lax.dynamic_slice_in_dim(w, start, _EM_BLOCK)
            m, ll = _block_moments(xb, wb, mix, full, contract=True)
            return acc[0] + m, acc[1] + ll

        num_features = 1 + d + len(_moment_pairs(d, full))
        zero = (jnp.zeros((mix.means.shape[0], num_features), dtype), jnp.zeros((), dtype))
        moments, loglik = jax.lax.fori_loop(0, live_blocks, body, zero)
    bound = loglik / jnp.sum(w)
    nk = moments[:, 0] + 10 * jnp.finfo(dtype).eps
    shift = [moments[:, 1 + i] / nk for i in range(d)]  # (K,) each
    means = mix.means + jnp.stack(shift, axis=1)
    second = moments[:, 1 + d:] / nk[:, None]
    if full:
        entries = {}
        for col, (a, b) in enumerate(_moment_pairs(d, full)):
            entries[a, b] = entries[b, a] = second[:, col] - shift[a] * shift[b]
        cov = jnp.stack([jnp.stack([entries[i, j] for j in range(d)], -1) for i in range(d)], -2)
        chol = cholesky(cov + reg * jnp.eye(d, dtype=dtype)[None], floor=reg)
    else:
        var = jnp.stack([second[:, i] - shift[i] ** 2 for i in range(d)], 1)
        chol = jnp.sqrt(jnp.maximum(var, 0.0) + reg)[:, :, None] * jnp.eye(d, dtype=dtype)[None]
    log_weights = jnp.log(nk) - jnp.log(jnp.sum(nk))
    return Mixture(log_weights, means, chol), bound


def _kmeanspp(key, x, w, num_components: int) -> jax.Array:
    """Weighted k-means++ seeding: centres (K, d); centre j+1 drawn with probability ∝ w_i D(x_i)²."""
    keys = jax.random.split(key, num_components)
    log_w = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
    first = jax.random.categorical(keys[0], log_w)
    centres = jnp.zeros((num_components, x.shape[1]), x.dtype).at[0].set(x[first])
    d2 = jnp.sum((x - x[first][None, :]) ** 2, axis=1)

    def step(j, carry):
        centres, d2 = carry
        score = w * d2
        logits = jnp.where(score > 0, jnp.log(jnp.where(score > 0, score, 1.0)), -jnp.inf)
        logits = jnp.where(jnp.sum(score) > 0, logits, log_w)  # every point already a centre: fall back to w
        pick = jax.random.categorical(keys[j], logits)
        centres = centres.at[j].set(x[pick])
        return centres, jnp.minimum(d2, jnp.sum((x - x[pick][None, :]) ** 2, axis=1))

    centres, _ = jax.lax.fori_loop(1, num_components, step, (centres, d2))
    return centres


def _assign(x, centres):
    """Index of each row's nearest centre, from the differences x − c_j themselves. The expanded
    |x|² − 2x·c + |c|² cancels in float32 wherever the products are large next to the distances: about the origin
    a quarter of the rows of two clusters 1 apart at 3·10³ went to the wrong centre, and about any other fixed point
    a far centre (k-means++ seeds outliers) did the same to the near ones."""
    return jnp.argmin(jnp.sum((x[:, None, :] - centres[None, :, :]) ** 2, axis=2), axis=1)


def _lloyd(x, w, centres, max_iter: int, tol_scale: float):
    """Weighted Lloyd iterations until the squared centre shift is ≤ ``tol_scale`` × mean coordinate variance."""
    total = jnp.sum(w)
    mean = w @ x / total
    threshold = tol_scale * jnp.mean(w @ (x - mean[None, :]) ** 2 / total)
    k = centres.shape[0]

    def body(state):
        it, _, centres = state
        onehot = jax.nn.one_hot(_assign(x, centres), k, dtype=x.dtype) * w[:, None]
        counts = jnp.sum(onehot, axis=0)
        sums = onehot.T @ x
        new = jnp.where(counts[:, None] > 0, sums / jnp.where(counts > 0, counts, 1.0)[:, None], centres)
        return it + 1, jnp.sum((new - centres) ** 2), new

    def cond(state):
        it, shift, _ = state
        return (it < max_iter) & (shift > threshold)

    _, _, centres = jax.lax.while_loop(cond, body, (jnp.int32(0), jnp.asarray(jnp.inf, x.dtype), centres))
    return centres


def _validate_mixture_arrays(weights, means, covs, num_components, dim, covariance_type):
    k, d = num_components, dim
    weights = np.asarray(weights, dtype=np.float64)
    try:
        weights = np.broadcast_to(weights, (k,)).copy()
    except ValueError:
        raise ValueError(f"weights has shape {weights.shape}: need ({k},) for num_components={k}") from None
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"weights={weights.tolist()} are out of range: need {k} finite weights > 0")
    weights = weights / weights.sum()
    means = np.asarray(means, dtype=np.float64)
    if not np.all(np.isfinite(means)):
        raise ValueError(f"means={means.tolist()} is out of range: need finite means")
    try:
        means = np.broadcast_to(means, (k, d))
    except ValueError:
        raise ValueError(f"means has shape {means.shape}: need ({k}, {d}) for num_components={k}, dim={d}") from None
    covs = np.asarray(covs, dtype=np.float64)
    if not np.all(np.isfinite(covs)):
        raise ValueError(f"covs={covs.tolist()} is out of range: need finite covariances")
    if covs.ndim == 0:
        covs = np.broadcast_to(covs * np.eye(d), (k, d, d))
    elif covs.shape == (k, d) and not (k == d and covariance_type == "full"):
        covs = np.stack([np.diag(c) for c in covs])
    elif covs.shape == (d, d):
        covs = np.broadcast_to(covs, (k, d, d))
    if covs.shape != (k, d, d):
        raise ValueError(f"covs has shape {covs.shape}: need ({k}, {d}, {d}), ({k}, {d}) variances or a scalar")
    chols = []
    for j, c in enumerate(covs):
        if not np.allclose(c, c.T):
            raise ValueError(f"covs[{j}] must be symmetric")
        if covariance_type == "diag" and np.any(np.abs(c - np.diag(np.diag(c))) > 0):
            raise ValueError(f"covs[{j}] has off-diagonal entries: covariance_type='diag' needs diagonal covariances")
        try:
            chols.append(np.linalg.cholesky(c))
        except np.linalg.LinAlgError:
            raise ValueError(
                f"covs[{j}] is singular or indefinite (eigenvalues {np.linalg.eigvalsh(c).tolist()}): "
                "need positive definite covariances"
            ) from None
    return weights, np.array(means), np.stack(chols)


def _run_if(pred: jax.Array, fn, default):
    """``fn(trip)`` where the scalar ``pred`` holds, else ``default``, computing ``fn`` only when some chain needs it.

    A ``lax.cond`` with a vmapped predicate becomes a select that evaluates both branches for every chain; a while
    loop of at most one trip keeps its per-chain predicate, so a batch of chains where ``pred`` is false everywhere
    (every fit after a chain's first, with ``warm_start``) skips ``fn`` altogether. ``fn`` receives the trip count
    (0, traced) and must depend on it: a body that does not read the loop state is hoisted out of the loop by XLA
    and runs unconditionally (measured: a warm-started fit then cost as much as a k-means one).
    """

    def body(state):
        todo, _, trip = state
        return jnp.zeros_like(todo), fn(trip), trip + 1

    return jax.lax.while_loop(lambda state: state[0], body, (jnp.asarray(pred), default, jnp.int32(0)))[1]


# ----------------------------------------------------------------------------------------------- the model
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    r"""K-component Gaussian mixture refitted by EM (scikit-learn's ``GaussianMixture`` algorithm, in JAX).

    Args:
      num_components: K ≥ 1.
      dim: dimension d ≥ 1.
      covariance_type: ``"full"`` or ``"diag"``.
      reg_covar: λ ≥ 0 added to every covariance's diagonal in the M step (scikit-learn default 1e-6).
      max_iter: maximum EM iterations per fit (Shumailov et al.: 2000).
      tol: stop when the weighted mean log-likelihood changes by less than ``tol`` (Shumailov et al.: 1e-5).
      init_params: ``"kmeans"`` (default), ``"k-means++"`` or ``"warm"`` (see the module docstring).
      warm_start: scikit-learn's ``warm_start=True``: the first fit of a chain starts as ``init_params`` says,
        every later fit starts EM from the previous fit (see the module docstring).
      kmeans_iter: maximum Lloyd iterations of the ``"kmeans"`` initialisation (scikit-learn's KMeans: 300).
      kmeans_tol: Lloyd stops when the squared centre shift is below this times the mean coordinate variance
        (scikit-learn's KMeans ``tol=1e-4``).
      num_heldout: fresh real draws (from the reference mixture, metric key) scored by ``heldout_loglik``.
      tail_k: ``tail_mass`` is :math:`P_{\rm model}(|X_1 - m_{0}| > k\,s_{0})`, with :math:`m_0, s_0` the mean and
        standard deviation of the reference mixture's first coordinate.
    """

    num_components: int
    dim: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    max_iter: int = 100
    tol: float = 1e-3
    init_params: str = "kmeans"
    warm_start: bool = False
    kmeans_iter: int = 300
    kmeans_tol: float = 1e-4
    num_heldout: int = 1000
    tail_k: float = 3.0

    def __post_init__(self):
        for name, low in (("num_components", 1), ("dim", 1), ("max_iter", 1), ("kmeans_iter", 0),
                          ("num_heldout", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}={value!r} is out of range: need an int {name} >= {low}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type={self.covariance_type!r} is not one of {COVARIANCE_TYPES}")
        if self.init_params not in INITS:
            raise ValueError(f"init_params={self.init_params!r} is not one of {INITS}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start={self.warm_start!r} is out of range: need True or False")
        for name, strict in (("reg_covar", False), ("tol", False), ("kmeans_tol", False), ("tail_k", True)):
            value = getattr(self, name)  # any real number (np.float32(1e-3) too), not a bool
            ok = is_real(value) and math.isfinite(value)
            if not ok or value < 0 or (strict and value == 0):
                raise ValueError(f"{name}={value!r} is out of range: need a finite {name} {'>' if strict else '>='} 0")
            object.__setattr__(self, name, float(value))

    @property
    def min_samples(self) -> int:
        """A K-component fit needs at least K points."""
        return self.num_components

    def check_sizes(self, sizes, path) -> None:
        """Reject sample sizes below K (a component would have no data)."""
        sizes = np.asarray(sizes)
        if sizes.min() < self.num_components:
            t_bad = int(np.argmin(sizes)) + 1
            raise ValueError(
                f"num_samples={int(sizes.min())} at generation t={t_bad} is out of range: a "
                f"{self.num_components}-component mixture needs num_samples >= {self.num_components}"
            )

    # ------------------------------------------------------------------------------------------- parameters
    def params(self, weights=None, means=0.0, covs=1.0) -> GMMParams:
        """Parameters of the mixture (not yet anchored): ``weights`` (K,) > 0 (normalised; default uniform),
        ``means`` (K, d), ``covs`` (K, d, d) positive definite, (K, d) variances, (d, d) shared, or a scalar σ²
        (when K = d, a (d, d) array is read as one shared covariance for ``"full"`` and as K variance rows for
        ``"diag"``). Raises ``ValueError`` for non-positive weights and singular or indefinite covariances."""
        k, d = self.num_components, self.dim
        weights = np.full(k, 1.0 / k) if weights is None else weights
        w, m, chol = _validate_mixture_arrays(weights, means, covs, k, d, self.covariance_type)
        dtype = jnp.zeros(()).dtype
        mix = Mixture(jnp.asarray(np.log(w), dtype), jnp.asarray(m, dtype), jnp.asarray(chol, dtype))
        return GMMParams(mix, mix, jnp.zeros((), dtype))

    def init(self, key: jax.Array) -> GMMParams:
        """Uniform weights, identity covariances and means N(0, I): the start of chains fed from a dataset."""
        k, d = self.num_components, self.dim
        dtype = jnp.zeros(()).dtype
        means = jax.random.normal(key, (k, d), dtype)
        chol = jnp.broadcast_to(jnp.eye(d, dtype=dtype), (k, d, d))
        mix = Mixture(jnp.full((k,), -math.log(k), dtype), means, chol)
        return GMMParams(mix, mix, jnp.zeros((), dtype))

    @staticmethod
    def covariances(mix: Mixture) -> jax.Array:
        """Component covariances :math:`L_k L_k^\\top`, (K, d, d)."""
        return mix.chol @ jnp.swapaxes(mix.chol, -1, -2)

    # ------------------------------------------------------------------------------------------- sample path
    def sample(self, key: jax.Array, params: GMMParams, n: int) -> jax.Array:
        """``n`` draws (n, d): component k ~ π, then μ_k + L_k z."""
        mix = params.mixture
        k_comp, k_z = jax.random.split(key)
        comp = jax.random.categorical(k_comp, mix.log_weights, shape=(n,))
        z = jax.random.normal(k_z, (self.dim, n), mix.means.dtype)  # long axis last
        chol = mix.chol[comp]  # (n, d, d)
        x = mix.means[comp] + jnp.einsum("nij,jn->ni", chol, z)
        return x

    def _initial_mixture(self, key, x, w, params: GMMParams) -> Mixture:
        if self.init_params == "warm":
            return params.mixture
        if self.warm_start:
            def fresh(trip):  # the same key and rows (trip is 0), read through the loop state: nothing is hoisted
                if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                    data = jax.random.key_data(key)
                    trip_key = jax.random.wrap_key_data(jnp.where(trip == 0, data, data + 1),
                                                        impl=jax.random.key_impl(key))
                else:  # a raw uint32 key
                    trip_key = jnp.where(trip == 0, key, key + 1)
                return self._fresh_mixture(trip_key, x + jnp.zeros((), x.dtype) * trip, w)

            return _run_if(params.anchored == 0, fresh, params.mixture)
        return self._fresh_mixture(key, x, w)

    def _fresh_mixture(self, key, x, w) -> Mixture:
        full = self.covariance_type == "full"
        centres = _kmeanspp(key, x, w, self.num_components)
        if self.init_params == "kmeans" and self.kmeans_iter > 0:
            centres = _lloyd(x, w, centres, self.kmeans_iter, self.kmeans_tol)
        resp = jax.nn.one_hot(_assign(x, centres), self.num_components, dtype=x.dtype).T
        return _m_step(x.T, w, resp, full, self.reg_covar)

    def fit(self, key: jax.Array, data: jax.Array, weights: jax.Array, params: GMMParams) -> GMMParams:
        """EM on the weighted rows (see the module docstring); sets ``anchor`` at the first fit. Rows of weight 0
        are set to 0 first, so that a non-finite value there (0 · inf = NaN) cannot reach the fit. A training set
        of total weight 0 (a gate that rejected every row) has no fit (EM would divide 0 by 0): the previous
        mixture is kept, as the VAE keeps its network."""
        x, w = _weighted_rows(data, weights, params.mixture.means.dtype)
        mix = self._initial_mixture(key, x, w, params)
        mix, _, _ = self._em(x, w, mix)
        empty = jnp.sum(w) <= 0
        mix = jax.tree.map(lambda old, new: jnp.where(empty, old, new), params.mixture, mix)
        anchored = (params.anchored > 0) | empty
        anchor = jax.tree.map(lambda old, new: jnp.where(anchored, old, new), params.anchor, mix)
        return GMMParams(mix, anchor, jnp.where(empty, params.anchored, jnp.ones_like(params.anchored)))

    def _em(self, x, w, mix: Mixture):
        """EM iterations from ``mix``; returns (mixture, iterations, last lower bound)."""
        full = self.covariance_type == "full"
        x_t, w, live = _blocked_rows(x.T, w)
        dtype = x.dtype

        def body(state):
            it, _, bound, mix = state
            mix, new_bound = _em_step(x_t, w, mix, full, self.reg_covar, live)
            return it + 1, new_bound - bound, new_bound, mix

        def cond(state):
            it, change, _, _ = state
            return (it < self.max_iter) & (jnp.abs(change) >= self.tol)

        init = (jnp.int32(0), jnp.asarray(jnp.inf, dtype), jnp.asarray(-jnp.inf, dtype), mix)
        it, _, bound, mix = jax.lax.while_loop(cond, body, init)
        return mix, it, bound

    def em_trace(self, data: jax.Array, weights: jax.Array, start: Mixture, num_iter: int):
        """Run exactly ``num_iter`` EM iterations from ``start`` (no early exit) and return the mixture and the
        weighted mean log-likelihood before each M step and after the last, shape (num_iter + 1,)."""
        full = self.covariance_type == "full"
        x_t = data.T
        w = weights.astype(data.dtype)
        x_pad, w_pad, live = _blocked_rows(x_t, w)

        def step(mix, _):
            return _em_step(x_pad, w_pad, mix, full, self.reg_covar, live)

        mix, bounds = jax.lax.scan(step, start, None, length=num_iter)
        final, _ = _e_step(x_t, w, mix)
        return mix, jnp.concatenate([bounds, final[None]])

    def fit_info(self, key, data, weights, params: GMMParams):
        """The EM of :meth:`fit` as diagnostics: ``(mixture, iterations, bound)``, the bare fitted
        :class:`Mixture` (no anchor bookkeeping), the EM iteration count, and the mean weighted log-likelihood
        evaluated in the last E step, i.e. at the mixture *before* the last M step (EM stops once it changes by
        less than ``tol``)."""
        x, w = _weighted_rows(data, weights, params.mixture.means.dtype)
        mix = self._initial_mixture(key, x, w, params)
        return self._em(x, w, mix)

    # ------------------------------------------------------------------------------------------- observables
    def metrics(self, params: GMMParams, reference: GMMParams, key: jax.Array) -> dict[str, jax.Array]:
        r"""Per-chain observables against the reference (true) mixture ``reference`` (a :class:`GMMParams`; with
        ``real_data=`` and no ``reference=``, the engine passes ``None`` and the first fit stands in for the truth).

        * ``l2_to_anchor``: closed-form squared L2 distance to the first fit (Shumailov's metric, SI Figs. 6, 8);
        * ``l2_to_truth``: the same to the reference mixture;
        * ``component_w2`` (K ≤ 6): :math:`\min_\pi \frac1K\sum_k W_2^2(N_k, N^0_{\pi(k)})`, the mean W2² between
          fitted and true components under the best matching (meaningful when the truth has K separated
          components);
        * ``heldout_loglik``: mean log-likelihood of ``num_heldout`` fresh draws from the reference (metric key);
        * ``tail_mass``: :math:`P_{\rm model}(|X_1-m_0|>k s_0)` (first coordinate, truth's mean and sd);
        * ``weight_entropy`` :math:`-\sum_k\pi_k\log\pi_k` (nats; log K = no mode collapse), ``min_weight``;
        * mixture moments against the reference's: ``sq_mean_error`` :math:`\|m-m_0\|^2`, ``trace_ratio``
          :math:`\mathrm{tr}\,\mathrm{Cov}/\mathrm{tr}\,\mathrm{Cov}_0`, ``log_det_ratio``. For K = 1 these are
          the Gaussian family's metrics of the same names.
        """
        mix = params.mixture
        ref = params.anchor if reference is None else reference.mixture
        out = {
            "l2_to_anchor": l2_distance_squared(mix, params.anchor),
            "l2_to_truth": l2_distance_squared(mix, ref),
        }
        if self.num_components <= _MAX_PERMUTATION_K:
            pair = gaussian_w2_squared(mix.means[:, None], mix.chol[:, None], ref.means[None, :], ref.chol[None, :])
            perms = np.array(list(itertools.permutations(range(self.num_components))))
            rows = np.broadcast_to(np.arange(self.num_components), perms.shape)
            out["component_w2"] = jnp.min(jnp.mean(pair[rows, perms], axis=1))
        held = self.sample(key, GMMParams(ref, ref, params.anchored), self.num_heldout)
        out["heldout_loglik"] = jnp.mean(log_density(mix, held))
        mean, cov = _moments(mix)
        mean0, cov0 = _moments(ref)
        sd0 = jnp.sqrt(cov0[0, 0])
        sd_k = jnp.sqrt(jnp.sum(mix.chol[:, 0, :] ** 2, axis=1))
        safe = jnp.where(sd_k > 0, sd_k, 1.0)
        lo = (mean0[0] - self.tail_k * sd0 - mix.means[:, 0]) / safe
        hi = (mix.means[:, 0] - mean0[0] - self.tail_k * sd0) / safe
        weights = jnp.exp(mix.log_weights)
        out["tail_mass"] = jnp.sum(weights * (ndtr(lo) + ndtr(hi)))
        out["weight_entropy"] = -jnp.sum(jnp.where(weights > 0, weights * mix.log_weights, 0.0))
        out["min_weight"] = jnp.min(weights)
        out["sq_mean_error"] = jnp.sum((mean - mean0) ** 2)
        out["trace_ratio"] = jnp.trace(cov) / jnp.trace(cov0)
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(cholesky(cov))))
        log_det0 = 2 * jnp.sum(jnp.log(jnp.diagonal(cholesky(cov0))))
        out["log_det_ratio"] = log_det - log_det0
        return out
