r"""Linear-regression chains: ridgeless / ridge refits on labels from the previous fit, both paths.

**The chain** (Gerstgrasser et al. 2024, §3; Dohmatob, Feng & Kempe 2024; THEORY.md §3–4). Inputs
:math:`x \sim N(0, \Sigma)` with :math:`\Sigma = \mathrm{diag}(\lambda_1, \dots, \lambda_d)` (isotropic by default,
or any spectrum, e.g. the power law :math:`\lambda_k \propto k^{-\beta}` of :func:`power_law_spectrum`); labels
:math:`y = x^\top w + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma^2)` with ``noise_sd`` = σ. The fit at
generation ``t = 1`` uses real labels (``w = w*``); generation ``t + 1`` relabels with the fit ``ŵ_t`` plus fresh
noise. The regime (:mod:`collapse_theory.regimes`) decides which labelled rows each fit sees.

**Design.** ``design="fixed"`` (Gerstgrasser et al., Kazdan et al.): every chain draws its own design
:math:`X \in \mathbb{R}^{T \times d}` once (``T = design_rows``) and every generation relabels the *same* rows;
a request for ``n`` rows returns rows ``i mod T`` (so ``n = kT`` is ``k`` stacked copies of X, the
``ReplaceGrown`` ablation). ``design="fresh"`` (Dohmatob et al.): new inputs every generation.

**Fit.** Ridge with the per-sample normalisation of Dohmatob et al.,

.. math:: \hat w = \arg\min_w \tfrac{1}{n}\textstyle\sum_i f_i (y_i - x_i^\top w)^2 + \lambda \|w\|^2
          = (X^\top F X + n\lambda I)^{+} X^\top F y, \qquad n = \textstyle\sum_i f_i,

with frequency weights :math:`f_i`; ``ridge=0`` is ordinary least squares, and the minimum-norm (pseudo-inverse)
solution when :math:`X^\top F X` is singular (under-determined ``T < d``, as ``numpy.linalg.pinv`` in Kazdan et
al.'s code). With ``model_size=m`` the model is the **random-projections** model :math:`f(x) = v^\top S x` of
Dohmatob et al. (ICLR 2025): each chain draws a fixed :math:`S \in \mathbb{R}^{m \times d}` with i.i.d.
:math:`N(0, 1/d)` entries, ``v`` is the (ridge / min-norm) fit on the features ``Sx``, and the parameters store the
effective weights :math:`S^\top v`; the interpolation threshold is at ``m = n``.

**Test error** (every metric name says which): ``excess_risk`` is :math:`\|\hat w - w^*\|_\Sigma^2 =
E_{x,y}[(x^\top \hat w - y)^2] - \sigma^2`, the noise floor subtracted (Gerstgrasser's Eq. 1, Dohmatob's
:math:`E_{\rm test}`; equal to Kazdan et al.'s noiseless-target test MSE up to its Monte-Carlo error);
``test_mse_noisy`` adds σ² (noisy test labels). ``test_error`` is whichever ``test_labels`` selects.

**Exact path.** The fit depends on the data only through :math:`(X^\top F X, X^\top F y, n)`. For a *fresh*
design, :math:`X^\top X = \Sigma^{1/2} B B^\top \Sigma^{1/2}` with ``B`` the Bartlett factor of a
:math:`\mathrm{Wishart}_d(n, I)` matrix (singular when ``n < d``) and, given it,
:math:`X^\top \varepsilon = \sigma \Sigma^{1/2} B z` — :math:`d(d+3)/2` random numbers whatever ``n`` is. For a
*fixed* design the Gram matrix is known and :math:`X^\top E = \sigma X^\top (\sqrt{c} \odot z)` with the row
multiplicities ``c`` (T normal draws, O(Td) work; the stacked data are never formed). Accumulation is a running
sum, which is the recursion :math:`\hat w_n = \hat w_{n-1} + A E_n / n` of THEORY.md §3.1 in statistic form.

Theory: :mod:`collapse_theory.theory.regression`.

Examples:
  >>> import jax
  >>> from collapse_theory.models import LinearRegression
  >>> model = LinearRegression(dim=3, design="fixed", design_rows=20)
  >>> truth = model.chain_truth(jax.random.key(1), model.params())
  >>> data = model.sample(jax.random.key(0), truth, 20)
  >>> data["x"].shape, data["y"].shape
  ((20, 3), (20,))
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _linalg, keys
from .._random import log_gamma
from ..theory._validate import is_integer, is_real

DESIGNS = ("fixed", "fresh")
TEST_LABELS = ("clean", "noisy")


class RegressionParams(NamedTuple):
    r"""A linear model and the chain's constants.

    Attributes:
      weights: (d,) the effective weights :math:`w` (``S^T v`` for the random-projections model).
      noise_sd: () σ, the label noise this model generates with (carried, so one compiled program serves every
        σ; a fit keeps the σ of the model it refits, i.e. later generations relabel with the same noise level).
      design: (T, d) the chain's fixed design X (``design="fixed"``), else shape (0, d).
      projection: (m, d) the chain's random projection S (``model_size=m``), else shape (0, d).
    """

    weights: jax.Array
    noise_sd: jax.Array
    design: jax.Array
    projection: jax.Array


class RegressionStats(NamedTuple):
    r"""Sufficient statistics: ``gram`` :math:`X^\top F X` (d, d), ``moment`` :math:`X^\top F y` (d,), ``count``."""

    gram: jax.Array
    moment: jax.Array
    count: jax.Array


@dataclasses.dataclass(frozen=True)
class Downstream:
    r"""The downstream model of Dohmatob, Feng & Kempe (2024): ridge(``ridge``) on ``rows`` fresh samples
    :math:`x \sim N(0, \Sigma)`, :math:`y = x^\top \hat w_t + N(0, \mathrm{noise\_sd}^2)` labelled by the chain's
    current generator :math:`\hat w_t`; reported as ``downstream_excess_risk`` :math:`\|\hat w^{\rm pred} -
    w^*\|_\Sigma^2` (no σ²). ``ridge`` may be a tuple of penalties: all are fitted on the same downstream sample
    (one eigendecomposition) and reported as ``downstream_excess_risk_0``, ``_1``, … (a λ sweep in one run)."""

    rows: int
    noise_sd: float = 1.0
    ridge: float | tuple[float, ...] = 0.0

    def __post_init__(self):
        if not is_integer(self.rows) or self.rows < 1:
            raise ValueError(f"downstream rows={self.rows!r} is out of range: need an int rows >= 1")
        object.__setattr__(self, "rows", int(self.rows))
        _check_nonneg("downstream noise_sd", self.noise_sd)
        object.__setattr__(self, "noise_sd", float(self.noise_sd))
        if isinstance(self.ridge, (tuple, list)):
            if not self.ridge:
                raise ValueError("downstream ridge=() is empty: give a penalty or a tuple of penalties")
            for lam in self.ridge:
                _check_nonneg("downstream ridge", lam)
            object.__setattr__(self, "ridge", tuple(float(v) for v in self.ridge))
        else:
            _check_nonneg("downstream ridge", self.ridge)
            object.__setattr__(self, "ridge", float(self.ridge))

    @property
    def ridges(self) -> tuple[float, ...]:
        return self.ridge if isinstance(self.ridge, tuple) else (self.ridge,)


def _check_nonneg(name, value):
    if not is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is out of range: need a finite {name.split()[-1]} >= 0")


def power_law_spectrum(dim: int, beta: float) -> tuple[float, ...]:
    r"""Eigenvalues :math:`\lambda_k = k^{-\beta}`, ``k = 1..dim`` (Dohmatob et al.'s capacity condition)."""
    if not is_integer(dim) or dim < 1:
        raise ValueError(f"dim={dim!r} is out of range: need an int dim >= 1")
    if not (is_real(beta) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r} is out of range: need a finite beta >= 0")
    return tuple(float(k) ** (-float(beta)) for k in range(1, dim + 1))


def _solve(gram, moment, count, ridge: float, dim: int, rank=None):
    r""":math:`(G + n\lambda I)^{+} b` by a symmetric eigendecomposition (see :func:`_solve_many` for ``rank``)."""
    return _solve_many(gram, moment, count, (ridge,), dim, rank)[0]


def _solve_many(gram, moment, count, ridges: tuple[float, ...], dim: int, rank=None):
    """:func:`_solve` for several penalties from one eigendecomposition; shape (len(ridges), d).

    Ridgeless (λ = 0) the solution is the minimum-norm one: ``rank`` (may be traced), the Gram matrix's rank when the
    caller knows it (the number of distinct rows it sums, capped at d), keeps exactly the ``rank`` largest
    eigenvalues (those above 0). Without it, eigenvalues below ``4·d·eps·max`` count as zero; that cut is wrong for
    a full-rank but badly conditioned Gram matrix in float32 (a power-law spectrum k^-2 at d = 300 spans 9·10⁴, above
    the cut's 1/(1.4·10⁻⁴)), where it dropped most directions and made the excess risk 5× too small."""
    evals, evecs = _linalg.eigh(gram)  # ascending
    if rank is None:
        tol = 4 * dim * jnp.finfo(gram.dtype).eps * jnp.maximum(jnp.max(jnp.abs(evals)), jnp.finfo(gram.dtype).tiny)
        nonzero = evals > tol
    else:
        nonzero = (jnp.arange(dim) >= dim - rank) & (evals > 0)
    projected = evecs.T @ moment
    out = []
    for ridge in ridges:
        shifted = evals + count * ridge
        keep = nonzero if ridge == 0 else shifted > 0
        inverse = jnp.where(keep, 1.0 / jnp.where(keep, shifted, 1.0), 0.0)
        out.append(evecs @ (inverse * projected))
    return jnp.stack(out)


@dataclasses.dataclass(frozen=True)
class LinearRegression:
    r"""Linear regression refitted on labels generated by the previous fit.

    Args:
      dim: input dimension d.
      noise_sd: σ, the default label-noise standard deviation of :meth:`params` (the real data's and, since a
        fit keeps it, every synthetic relabelling's); it lives in the parameters, so runs that differ only in σ
        share one compiled program.
      ridge: λ ≥ 0 in the normalised ridge objective above (0 = OLS / minimum norm).
      design: ``"fixed"`` (one X per chain, relabelled every generation) or ``"fresh"`` (new X each time).
      design_rows: T, rows of the fixed design (required for ``design="fixed"``).
      spectrum: eigenvalues of Σ (length d; default isotropic, all 1).
      model_size: m for the random-projections model :math:`v^\top S x` (default: plain linear model).
      random_weights: each chain draws its own :math:`w^* \sim N(0, I_d)` (Kazdan et al.'s code) instead of the
        ``weights`` of ``truth``.
      test_labels: what ``test_error`` reports — ``"clean"`` (excess risk, no σ²) or ``"noisy"`` (+σ²).
      downstream: a :class:`Downstream` model evaluated on every generation's generator (Dohmatob et al.).
    """

    dim: int
    noise_sd: float = 1.0
    ridge: float = 0.0
    design: str = "fresh"
    design_rows: int | None = None
    spectrum: tuple[float, ...] | None = None
    model_size: int | None = None
    random_weights: bool = False
    test_labels: str = "clean"
    downstream: Downstream | None = None

    def __post_init__(self):
        if not is_integer(self.dim) or self.dim < 1:
            raise ValueError(f"dim={self.dim!r} is out of range: need an int dim >= 1")
        object.__setattr__(self, "dim", int(self.dim))
        _check_nonneg("noise_sd", self.noise_sd)
        _check_nonneg("ridge", self.ridge)
        object.__setattr__(self, "noise_sd", float(self.noise_sd))
        object.__setattr__(self, "ridge", float(self.ridge))
        if self.design not in DESIGNS:
            raise ValueError(f"design={self.design!r} is not one of {DESIGNS}")
        if self.design == "fixed":
            rows = self.design_rows
            if not is_integer(rows) or rows < 1:
                raise ValueError(f"design_rows={rows!r} is out of range: design='fixed' needs an int design_rows >= 1")
            object.__setattr__(self, "design_rows", int(rows))
        elif self.design_rows is not None:
            raise ValueError("design_rows is only used with design='fixed'")
        if self.spectrum is not None:
            spec = tuple(self.spectrum)
            if len(spec) != self.dim:
                raise ValueError(f"spectrum has {len(spec)} entries: need dim={self.dim}")
            if not all(is_real(v) and math.isfinite(v) and v > 0 for v in spec):
                raise ValueError("spectrum entries must be finite and > 0 (the eigenvalues of Σ)")
            object.__setattr__(self, "spectrum", tuple(float(v) for v in spec))
        if self.model_size is not None:
            m = self.model_size
            if not is_integer(m) or m < 1:
                raise ValueError(f"model_size={m!r} is out of range: need an int model_size m >= 1")
            object.__setattr__(self, "model_size", int(m))
        if self.test_labels not in TEST_LABELS:
            raise ValueError(f"test_labels={self.test_labels!r} is not one of {TEST_LABELS}")
        if self.downstream is not None and not isinstance(self.downstream, Downstream):
            raise TypeError("downstream must be a Downstream(rows, noise_sd, ridge)")

    min_samples = 1

    # ----------------------------------------------------------------- parameters
    def _scales(self, dtype):
        if self.spectrum is None:
            return jnp.ones((self.dim,), dtype)
        return jnp.sqrt(jnp.asarray(self.spectrum, dtype))

    def params(self, weights=None, noise_sd=None) -> RegressionParams:
        """The real model with true weights ``weights`` (default :math:`w^* = (1, \\dots, 1)/\\sqrt d`,
        ‖w*‖ = 1) and label noise ``noise_sd`` (default the model's). Per-chain constants (design, projection)
        are filled in by :meth:`chain_truth`."""
        noise_sd = self.noise_sd if noise_sd is None else noise_sd
        _check_nonneg("noise_sd", noise_sd)
        d = self.dim
        if weights is None:
            weights = np.full(d, 1.0 / math.sqrt(d))
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), (d,))
        if not np.all(np.isfinite(weights)):
            raise ValueError("weights must be finite")
        if not np.any(weights != 0):
            raise ValueError("weights=0 is out of range: need ||w*|| > 0 (relative_weight_norm divides by it)")
        dtype = jnp.zeros(()).dtype
        rows = self.design_rows if self.design == "fixed" else 0
        m = self.model_size or 0
        return RegressionParams(jnp.asarray(weights, dtype), jnp.asarray(noise_sd, dtype),
                                jnp.zeros((rows, d), dtype), jnp.zeros((m, d), dtype))

    def chain_truth(self, key: jax.Array, truth: RegressionParams) -> RegressionParams:
        """Each chain's design X (fixed design), projection S (random projections) and, with ``random_weights``,
        its true weights :math:`w^* \\sim N(0, I_d)`; drawn once per chain."""
        k_design, k_proj, k_weights = jax.random.split(key, 3)
        dtype = truth.weights.dtype
        design = truth.design
        if self.design == "fixed":
            design = self._inputs(k_design, self.design_rows, dtype)
        projection = truth.projection
        if self.model_size is not None:
            projection = jax.random.normal(k_proj, (self.model_size, self.dim), dtype) / math.sqrt(self.dim)
        weights = truth.weights
        if self.random_weights:
            weights = jax.random.normal(k_weights, (self.dim,), dtype)
        return RegressionParams(weights, truth.noise_sd, design, projection)

    def init(self, key: jax.Array) -> RegressionParams:
        """The default parameters (chains whose real data is a dataset start from them; the first fit
        replaces the weights)."""
        del key
        return self.params()

    # ----------------------------------------------------------------- sample-level path
    def _inputs(self, key, n: int, dtype):
        return jax.random.normal(key, (n, self.dim), dtype) * self._scales(dtype)[None, :]

    def sample(self, key: jax.Array, params: RegressionParams, n: int) -> dict:
        """``n`` rows ``{"x": (n, d), "y": (n,)}`` with :math:`y = x^\\top w + \\sigma\\varepsilon`."""
        k_x, k_noise = jax.random.split(key)
        dtype = params.weights.dtype
        if self.design == "fixed":
            x = params.design[jnp.arange(n) % self.design_rows]
        else:
            x = self._inputs(k_x, n, dtype)
        y = x @ params.weights + params.noise_sd * jax.random.normal(k_noise, (n,), dtype)
        return {"x": x, "y": y}

    def _features(self, x, params):
        return x if self.model_size is None else x @ params.projection.T

    def _from_features(self, v, params):
        return v if self.model_size is None else params.projection.T @ v

    def fit(self, key, data: dict, weights: jax.Array, params: RegressionParams) -> RegressionParams:
        r"""Ridge / minimum-norm least squares with frequency weights, by the SVD of :math:`F^{1/2}X`
        (singular values below ``max(n, d)·eps·s_max`` count as zero, as ``numpy.linalg.pinv``). Rows of weight 0
        are set to 0 first, so that a non-finite value there (√0 · NaN = NaN) cannot reach the fit."""
        del key
        live = weights > 0
        feats = jnp.where(live[:, None], self._features(data["x"], params), 0.0)
        root = jnp.sqrt(weights)
        u, s, vt = _linalg.svd(root[:, None] * feats)
        count = jnp.sum(weights)
        tol = max(feats.shape) * jnp.finfo(s.dtype).eps * jnp.max(s)
        keep = s > tol
        gain = jnp.where(keep, s / jnp.where(keep, s**2 + count * self.ridge, 1.0), 0.0)
        v = vt.T @ (gain * (u.T @ (root * jnp.where(live, data["y"], 0.0))))
        return params._replace(weights=self._from_features(v, params))

    # ----------------------------------------------------------------- exact path
    def _fresh_stats(self, key, w, n, noise_sd, dtype):
        """Exact (XᵀX, Xᵀy) of ``n`` fresh rows by Bartlett: O(d²) random numbers whatever ``n`` is."""
        d = self.dim
        k_diag, k_off, k_noise = keys.split(key, 3)  # jax.random.split's keys, as fused arithmetic
        dof = n - jnp.arange(d, dtype=dtype)
        log_chi2 = jnp.log(2.0) + jax.vmap(log_gamma)(keys.split(k_diag, d), jnp.maximum(dof, 1.0) / 2)
        diag = jnp.where(dof > 0, jnp.exp(0.5 * log_chi2), 0.0)
        alive = jnp.arange(d) < n
        below = jnp.tril(jax.random.normal(k_off, (d, d), dtype), -1) * alive[None, :]
        factor = self._scales(dtype)[:, None] * (below + jnp.diag(diag))  # Σ^{1/2} B
        gram = factor @ factor.T
        moment = gram @ w + noise_sd * (factor @ jax.random.normal(k_noise, (d,), dtype))
        return gram, moment

    def sample_stats(self, key: jax.Array, params: RegressionParams, n) -> RegressionStats:
        """Exact sufficient statistics of ``n`` labelled rows (``n`` may be traced)."""
        dtype = params.weights.dtype
        n = jnp.asarray(n, dtype)
        if self.design == "fixed":
            t_rows = self.design_rows
            x = params.design
            copies = jnp.floor(n / t_rows) + (jnp.arange(t_rows) < jnp.mod(n, t_rows))
            gram = x.T @ (copies[:, None] * x)
            noise = jax.random.normal(key, (t_rows,), dtype)
            moment = gram @ params.weights + params.noise_sd * (x.T @ (jnp.sqrt(copies) * noise))
        else:
            gram, moment = self._fresh_stats(key, params.weights, n, params.noise_sd, dtype)
        return RegressionStats(gram, moment, n)

    def empty_stats(self, like: RegressionParams) -> RegressionStats:
        dtype, d = like.weights.dtype, self.dim
        return RegressionStats(jnp.zeros((d, d), dtype), jnp.zeros((d,), dtype), jnp.zeros((), dtype))

    def combine_stats(self, a: RegressionStats, b: RegressionStats) -> RegressionStats:
        return RegressionStats(a.gram + b.gram, a.moment + b.moment, a.count + b.count)

    def fit_from_stats(self, stats: RegressionStats, params: RegressionParams) -> RegressionParams:
        """The estimator of :meth:`fit` from (XᵀFX, XᵀFy, n), by an eigendecomposition of the Gram matrix, whose
        rank is known: the distinct rows it sums (n fresh rows, or at most T rows of a fixed design), capped at the
        dimension."""
        rows = stats.count if self.design != "fixed" else jnp.minimum(stats.count, self.design_rows)
        if self.model_size is None:
            w = _solve(stats.gram, stats.moment, stats.count, self.ridge, self.dim, jnp.minimum(rows, self.dim))
        else:
            s = params.projection
            rank = jnp.minimum(jnp.minimum(rows, self.dim), self.model_size)
            v = _solve(s @ stats.gram @ s.T, s @ stats.moment, stats.count, self.ridge, self.model_size, rank)
            w = s.T @ v
        return params._replace(weights=w)

    # ----------------------------------------------------------------- observables
    def metrics(self, params: RegressionParams, reference: RegressionParams, key=None) -> dict[str, jax.Array]:
        r"""Per-chain observables against the true weights ``reference.weights``.

        ``excess_risk`` :math:`\|\hat w-w^*\|_\Sigma^2` (clean test labels: the noise floor σ² is *not*
        included) and its log; ``test_mse_noisy`` = excess risk + σ² (noisy test labels); ``test_error`` = one of
        the two per ``test_labels``; ``weight_norm_sq`` :math:`\|\hat w\|^2` and ``relative_weight_norm``
        :math:`\|\hat w\|^2/\|w^*\|^2` (Dohmatob et al. Thms 4.5/4.6); with ``downstream``,
        ``downstream_excess_risk`` of a ridge fit on fresh data labelled by :math:`\hat w` (uses ``key``).
        """
        dtype = params.weights.dtype
        spec = self._scales(dtype) ** 2
        delta = params.weights - reference.weights
        excess = jnp.sum(spec * delta**2)
        noisy = excess + reference.noise_sd**2
        norm_sq = jnp.sum(params.weights**2)
        true_sq = jnp.sum(reference.weights**2)
        out = {
            "excess_risk": excess,
            "log_excess_risk": jnp.log(excess),
            "test_mse_noisy": noisy,
            "test_error": excess if self.test_labels == "clean" else noisy,
            "weight_norm_sq": norm_sq,
            "relative_weight_norm": norm_sq / true_sq,
        }
        if self.downstream is not None:
            if key is None:
                raise ValueError("metrics: the downstream model needs a key")
            ds = self.downstream
            gram, moment = self._fresh_stats(key, params.weights, jnp.asarray(ds.rows, dtype), ds.noise_sd, dtype)
            preds = _solve_many(gram, moment, jnp.asarray(ds.rows, dtype), ds.ridges, self.dim, min(ds.rows, self.dim))
            risks = jnp.sum(spec[None, :] * (preds - reference.weights[None, :]) ** 2, axis=1)
            out["downstream_excess_risk"] = risks[0]
            if len(ds.ridges) > 1:
                out.update({f"downstream_excess_risk_{i}": risks[i] for i in range(len(ds.ridges))})
        return out
