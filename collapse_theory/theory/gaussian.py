r"""Exact finite-sample theory for Gaussian refitting chains (NumPy/SciPy only).

A *chain* starts from the true distribution :math:`\mathcal N(\mu, \sigma^2)`
(model 0) and repeatedly fits a Gaussian to samples drawn from the current
model.  Conventions used by every function in this module (THEORY.md §0, §14):

* ``num_fits`` :math:`= n` counts **fits**. :math:`n = 0` is the truth,
  :math:`n = 1` is the model fitted on the real sample, :math:`n = 2` the model
  fitted on the first synthetic sample, and so on.  Fit :math:`i`
  (:math:`i = 0, \dots, n-1`) uses :math:`M_i` samples drawn from model :math:`i`.
* ``num_samples`` is :math:`M` (every fit uses :math:`M` samples) or, for the
  replace chains, a 1-D sequence :math:`M_0, M_1, \dots` of per-fit sizes of
  length :math:`\ge \max(n)`; its first :math:`\max(n)` entries are used.
* ``ddof=1`` is the unbiased variance (divide by :math:`M-1`), ``ddof=0`` the
  maximum-likelihood variance (divide by :math:`M`; ``np.std``,
  ``np.cov(bias=True)``).  **Defaults follow the papers**: 1-D replace chain
  ``ddof=1`` (Shumailov et al.), d-dimensional replace and accumulate chains
  ``ddof=0`` (Kazdan et al. code), fresh-data loop ``ddof=1``.
* ``num_fits`` may be an integer or an integer array; scalars give NumPy
  floats, arrays give float arrays of the same shape.

Key fact (THEORY.md §2): for :math:`M` i.i.d. :math:`\mathcal N(\mu,\sigma^2)`
samples, :math:`\bar x \sim \mathcal N(\mu, \sigma^2/M)` is independent of
:math:`SS = \sum_j (x_j - \bar x)^2 \sim \sigma^2\chi^2_{M-1}`, so the replace
chain is the exact recursion

.. math::

    \mu_{i+1} = \mu_i + \sigma_i Z_{i+1}/\sqrt{M_i}, \qquad
    \sigma^2_{i+1} = \sigma^2_i\,\chi^2_{M_i-1}/f_i, \qquad f_i = M_i - \mathrm{ddof},

and every moment below is a product or sum over fits.  Numerically delicate
quantities (ratios of Gamma functions, :math:`\psi(x)-\log x`,
:math:`\log\operatorname{sinc}`) use asymptotic series for large arguments, so
results stay accurate for :math:`M` up to :math:`10^8` and more.

References:
  Shumailov, Shumaylov, Zhao, Papernot, Anderson, Gal, "AI models collapse when
  trained on recursively generated data", Nature 631:755 (2024), Thm 3.1 and
  SI §3.1.1 (arXiv 2305.17493). Kazdan et al., "Collapse or Thrive?" (arXiv
  2410.16713). Gerstgrasser et al. (arXiv 2404.01413). Alemohammad et al., "Self-
  Consuming Generative Models Go MAD" (arXiv 2307.01850). Exact forms: THEORY.md
  §2.1-§2.4 [D].
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from . import _validate as _v

__all__ = [
    # constants
    "c_factor",
    "a_factor",
    # 1-D replace chain
    "expected_variance",
    "expected_variance_squared",
    "variance_of_variance",
    "expected_log_variance",
    "variance_of_log_variance",
    "log_variance_rate",
    "log_variance_quantiles",
    "expected_std",
    "expected_std_power",
    "expected_mean_sq_error",
    "expected_marginal_variance",
    "expected_w2_squared",
    "shumailov_w2_squared_approx",
    # d-dimensional replace chain
    "expected_trace_ratio",
    "expected_det_ratio",
    "expected_log_det_ratio",
    "variance_of_log_det_ratio",
    "expected_mean_sq_norm",
    # accumulate chain
    "expected_accumulate_variance_ratio",
    "accumulate_variance_limit",
    "expected_accumulate_mean_sq_error",
    "accumulate_mean_sq_error_limit",
    "accumulate_mean_sq_error_bound",
    # fresh-data loop
    "fresh_sample_counts",
    "fresh_fraction_moments",
    "stationary_fresh_mean_sq_error",
    "stationary_fresh_variance",
]

# --------------------------------------------------------------------------
# Numerical helpers (private)
# --------------------------------------------------------------------------

_GAMMA_SERIES_TERMS = 14
_BERNOULLI = special.bernoulli(16)  # B_0 .. B_16 (gamma-ratio and digamma series)
_DIGAMMA_SERIES_MIN = 10.0
_SINC_SERIES_MAX = 0.2
_ACCUMULATE_EXACT_TERMS = 1 << 20


def _bernoulli_poly(order: int, a: float) -> float:
    """Bernoulli polynomial B_order(a) from the Bernoulli numbers."""
    return float(sum(math.comb(order, j) * _BERNOULLI[j] * a ** (order - j) for j in range(order + 1)))


def _log_gamma_ratio(x, a: float) -> np.ndarray:
    r"""``log Γ(x+a) − log Γ(x) − a log x`` for ``x > 0``, ``x + a > 0`` (vectorised in x).

    Uses the asymptotic expansion
    :math:`\sum_{k\ge1} (-1)^{k+1}[B_{k+1}(a)-B_{k+1}]/(k(k+1)x^k)` for
    :math:`x \ge 16 + 2a^2` (relative error < 1e-15, checked against mpmath) and
    ``gammaln`` differences below, which would otherwise lose ~x·eps.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    big = x >= 16.0 + 2.0 * a * a
    if np.any(big):
        xb = x[big]
        acc = np.zeros_like(xb)
        for k in range(_GAMMA_SERIES_TERMS, 0, -1):
            coef = (-1) ** (k + 1) * (_bernoulli_poly(k + 1, a) - _BERNOULLI[k + 1]) / (k * (k + 1))
            acc = (acc + coef) / xb
        out[big] = acc
    small = ~big
    if np.any(small):
        xs = x[small]
        out[small] = special.gammaln(xs + a) - special.gammaln(xs) - a * np.log(xs)
    return out


def _digamma_minus_log(x) -> np.ndarray:
    r""":math:`\psi(x) - \log x` for ``x > 0``, with the asymptotic series for large x."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    big = x >= _DIGAMMA_SERIES_MIN
    if np.any(big):
        xb = x[big]
        acc = -0.5 / xb
        for k in range(1, 9):
            acc = acc - _BERNOULLI[2 * k] / (2 * k * xb ** (2 * k))
        out[big] = acc
    small = ~big
    if np.any(small):
        out[small] = special.digamma(x[small]) - np.log(x[small])
    return out


def _log_sinc(x) -> np.ndarray:
    r""":math:`\log(\sin(\pi x)/(\pi x))` for ``0 <= x <= 1`` (``-inf`` at x = 1)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    small = x <= _SINC_SERIES_MAX
    if np.any(small):
        xs = x[small]
        j = np.arange(1, 12)
        out[small] = -np.sum(special.zeta(2 * j) * xs[..., None] ** (2 * j) / j, axis=-1)
    big = ~small
    if np.any(big):
        with np.errstate(divide="ignore"):
            out[big] = np.where(x[big] >= 1.0, -np.inf, np.log(np.sinc(x[big])))
    return out


def _fits(num_fits) -> np.ndarray:
    return _v.require_int_array("num_fits", num_fits, 0)


def _out(values, like: np.ndarray):
    """Shape ``values`` like ``like``; 0-d results become ``np.float64`` scalars."""
    values = np.asarray(values, dtype=np.float64).reshape(like.shape)
    return np.float64(values) if values.ndim == 0 else values


def _sizes(num_samples, n: np.ndarray, ddof: int, *, minimum: int | None = None, reason: str = ""):
    m_min, m_reason = _v.min_samples_for_ddof(ddof)
    if minimum is not None and minimum > m_min:
        m_min, m_reason = minimum, reason
    return _v.sample_sizes(num_samples, n, minimum=m_min, reason=m_reason)


def _per_fit(fn, sizes: np.ndarray) -> np.ndarray:
    """Evaluate ``fn`` on the distinct sample sizes only and map back."""
    if sizes.ndim == 0:
        return np.asarray(fn(sizes.reshape(1))[0], dtype=np.float64)
    uniq, inverse = np.unique(sizes, return_inverse=True)
    return np.asarray(fn(uniq), dtype=np.float64)[inverse]


def _sum_over_fits(per_fit: np.ndarray, n: np.ndarray) -> np.ndarray:
    r"""``Σ_{i<n} h(M_i)`` for every entry of ``n``; ``per_fit`` is 0-d (constant M) or 1-D."""
    if per_fit.ndim == 0:
        with np.errstate(invalid="ignore"):
            return np.where(n == 0, 0.0, n * per_fit.item())
    csum = np.concatenate([[0.0], np.cumsum(per_fit)])
    return csum[n]


def _log_q(m: np.ndarray, ddof: int) -> np.ndarray:
    r"""``log((M−1)/f)``, the per-fit log factor of ``E σ²`` (``−inf`` at M = 1, ddof = 0)."""
    m = np.asarray(m, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log1p((ddof - 1.0) / (m - ddof))


def _log_chi_moment(m: np.ndarray, ddof: int, s: float) -> np.ndarray:
    r"""``log E[(χ²_{M−1}/f)^{s/2}]`` per fit; requires ``M − 1 + s > 0`` unless ``s >= 0``."""
    m = np.asarray(m, dtype=np.float64)
    if s == 0:
        return np.zeros_like(m)
    k = m - 1.0
    out = np.full_like(m, -np.inf)  # k = 0 (M = 1, ddof = 0): chi2_0 = 0, moment 0 for s > 0
    pos = k > 0
    if np.any(pos):
        out[pos] = 0.5 * s * _log_q(m[pos], ddof) + _log_gamma_ratio(0.5 * k[pos], 0.5 * s)
    return out


def _log_variance_ratio(n: np.ndarray, sizes: np.ndarray, ddof: int) -> np.ndarray:
    r"""``log(E σ_n² / σ²) = Σ_{i<n} log((M_i−1)/f_i)``."""
    return _sum_over_fits(_per_fit(lambda m: _log_q(m, ddof), sizes), n)


def _mean_sq_error_ratio(n: np.ndarray, sizes: np.ndarray, ddof: int) -> np.ndarray:
    r"""``E(μ_n−μ)²/σ² = Σ_{i<n} (Π_{j<i} (M_j−1)/f_j) / M_i``."""
    if sizes.ndim == 0:
        m = float(sizes)
        if ddof == 1:
            return n / m
        log_q = float(_log_q(np.array(m), ddof))
        one_minus_q = -math.expm1(log_q) if np.isfinite(log_q) else 1.0
        with np.errstate(invalid="ignore"):
            vals = -np.expm1(n * log_q) / (m * one_minus_q)
        return np.where(n == 0, 0.0, vals)
    log_q = _log_q(sizes, ddof)
    log_prefix = np.concatenate([[0.0], np.cumsum(log_q)[:-1]]) if sizes.size else np.zeros(0)
    terms = np.exp(log_prefix) / sizes
    return np.concatenate([[0.0], np.cumsum(terms)])[n]


# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------


def c_factor(k):
    r"""Mean of a normalised chi: :math:`c(k) = \mathbb E\sqrt{\chi^2_k/k}`.

    .. math::

        c(k) = \sqrt{2/k}\;\frac{\Gamma((k+1)/2)}{\Gamma(k/2)}
             = 1 - \frac{1}{4k} + \frac{1}{32k^2} + O(k^{-3}).

    :math:`c(M-1)` is :math:`\mathbb E[\hat\sigma]/\sigma` for the unbiased
    variance estimator on :math:`M` Gaussian samples (the quality-control
    constant :math:`c_4(M)`), so the unbiased replace chain has
    :math:`\mathbb E\sigma_n = \sigma\,c(M-1)^n`.

    Computed as :math:`\exp(\log\Gamma(x+\tfrac12)-\log\Gamma(x)-\tfrac12\log x)`,
    :math:`x = k/2`, with ``gammaln`` for small :math:`x` and the Bernoulli
    asymptotic series for large :math:`x` (accurate to ~1e-16 for any ``k``).

    Args:
      k: degrees of freedom, a finite real ``> 0`` or an array of them.

    Returns:
      ``np.float64`` (or array matching ``k``) in ``(0, 1)``.

    Raises:
      ValueError: if ``k`` is not finite or not ``> 0``.

    References:
      THEORY.md "Useful constants"; Bertrand et al. (arXiv 2310.00429) as quoted by
      Suresh et al. (arXiv 2412.17646).

    Examples:
      >>> print(f"{c_factor(9):.5f}")
      0.97266
    """
    arr = _positive_array("k", k)
    vals = np.exp(_log_gamma_ratio(0.5 * arr.ravel(), 0.5)).reshape(arr.shape)
    return _out(vals, arr)


def a_factor(num_samples):
    r"""MLE standard-deviation bias factor :math:`a(M) = \mathbb E[\hat\sigma_{\mathrm{MLE}}]/\sigma`.

    .. math::

        a(M) = \sqrt{2/M}\;\frac{\Gamma(M/2)}{\Gamma((M-1)/2)} = \sqrt{\tfrac{M-1}{M}}\;c(M-1),

    where :math:`\hat\sigma^2_{\mathrm{MLE}} = \frac1M\sum_j(x_j-\bar x)^2`.
    :math:`a(1) = 0` (one sample has zero spread).  The MLE replace chain has
    :math:`\mathbb E\sigma_n = \sigma\,a(M)^n`.

    Args:
      num_samples: :math:`M`, a finite real ``>= 1`` or an array of them.

    Returns:
      ``np.float64`` (or array matching ``num_samples``) in ``[0, 1)``.

    Raises:
      ValueError: if ``num_samples`` is not finite or ``< 1``.

    References:
      THEORY.md "Useful constants" and §2.1 [D].

    Examples:
      >>> print(f"{a_factor(10):.5f}")
      0.92275
    """
    arr = np.asarray(num_samples)
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(arr < 1):
        raise ValueError(
            f"num_samples={_v._fmt(num_samples)} is out of range: need finite num_samples >= 1"
        )
    m = arr.astype(np.float64).ravel()
    vals = np.exp(_log_chi_moment(m, 0, 1.0)).reshape(arr.shape)
    return _out(vals, arr)


def _positive_array(name: str, value) -> np.ndarray:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} is not a real number: need finite {name} > 0")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}={_v._fmt(value)} is out of range: need finite {name} > 0")
    return arr.astype(np.float64)


# --------------------------------------------------------------------------
# 1-D replace chain (THEORY.md §2.1)
# --------------------------------------------------------------------------


def expected_variance(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Expected fitted variance :math:`\mathbb E[\sigma_n^2]` of the 1-D replace chain.

    .. math::

        \mathbb E[\sigma_n^2] = \sigma^2\prod_{i<n}\frac{M_i-1}{M_i-\mathrm{ddof}}
        = \begin{cases}\sigma^2 & \mathrm{ddof}=1\ \text{(martingale)}\\
          \sigma^2((M-1)/M)^n & \mathrm{ddof}=0,\ M_i\equiv M.\end{cases}

    Exact for all :math:`n`.  For ``ddof=1`` the mean is constant although
    :math:`\sigma_n^2\to0` almost surely (the distribution is very heavy
    tailed; see :func:`variance_of_variance`).

    Args:
      num_fits: :math:`n \ge 0` (int or int array); :math:`n=1` is the fit on
        the real sample.
      num_samples: :math:`M` or per-fit sizes :math:`M_0,\dots` (length
        :math:`\ge\max n`); :math:`M_i\ge2` for ``ddof=1``, :math:`\ge1` for ``ddof=0``.
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid ``num_fits``, ``num_samples``, ``ddof`` or ``sigma2``.

    References:
      Shumailov et al., Nature 2024, Thm 3.1 (unbiased chain); THEORY.md §2.1 [D].

    Examples:
      >>> print(f"{expected_variance(10, 10, ddof=0):.5f}")
      0.34868
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    return _out(sigma2 * np.exp(_log_variance_ratio(n, sizes, ddof)), n)


def expected_variance_squared(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Second moment :math:`\mathbb E[\sigma_n^4]` of the fitted variance (1-D replace chain).

    .. math::

        \mathbb E[\sigma_n^4] = \sigma^4\prod_{i<n}\frac{(M_i-1)(M_i+1)}{(M_i-\mathrm{ddof})^2}
        = \sigma^4\Big(\tfrac{M+1}{M-1}\Big)^n\ (\mathrm{ddof}=1),\quad
          \sigma^4\Big(\tfrac{(M-1)(M+1)}{M^2}\Big)^n\ (\mathrm{ddof}=0),

    from :math:`\mathbb E[(\chi^2_k)^2] = k(k+2)`.  Exact for all :math:`n`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      THEORY.md §2.1 [D].

    Examples:
      >>> print(f"{expected_variance_squared(1, 5):.4f}")
      1.5000
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    log_m4 = _sum_over_fits(_per_fit(lambda m: _log_fourth(m, ddof), sizes), n)
    with np.errstate(over="ignore"):  # inf only where the true value exceeds the float64 range
        return _out(np.exp(2.0 * np.log(sigma2) + log_m4), n)


def _log_fourth(m: np.ndarray, ddof: int) -> np.ndarray:
    """log E[(χ²_k/f)²] = 2 log(k/f) + log1p(2/k); −inf for k = 0."""
    m = np.asarray(m, dtype=np.float64)
    k = m - 1.0
    out = np.full_like(m, -np.inf)
    pos = k > 0
    out[pos] = 2.0 * _log_q(m[pos], ddof) + np.log1p(2.0 / k[pos])
    return out


def variance_of_variance(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Variance :math:`\operatorname{Var}(\sigma_n^2)` of the fitted variance (1-D replace chain).

    .. math::

        \operatorname{Var}(\sigma_n^2) = \mathbb E\sigma_n^4 - (\mathbb E\sigma_n^2)^2
        = (\mathbb E\sigma_n^2)^2\Big[\prod_{i<n}\Big(1+\frac{2}{M_i-1}\Big) - 1\Big],

    e.g. :math:`\sigma^4[((M+1)/(M-1))^n - 1]` for ``ddof=1``.  Computed in log space
    with ``expm1``, so small values keep full relative precision and long chains neither underflow to NaN nor
    lose digits (the result is ``inf`` only where the true value exceeds the float64 range).  Exact for
    all :math:`n`.  The relative standard error of a Monte-Carlo mean of :math:`\sigma_n^2` over :math:`R`
    chains is
    :math:`\sqrt{\prod(1+2/(M_i-1)) - 1}/\sqrt R` (THEORY.md §2.1 "MC pitfall").

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      THEORY.md §2.1 [D].

    Examples:
      >>> print(f"{variance_of_variance(1, 5):.4f}")
      0.5000
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    log_mean = _log_variance_ratio(n, sizes, ddof)

    def log_growth(m):
        k = np.asarray(m, dtype=np.float64) - 1.0
        with np.errstate(divide="ignore"):
            return np.where(k > 0, np.log1p(2.0 / np.maximum(k, 1.0)), np.inf)

    growth = _sum_over_fits(_per_fit(log_growth, sizes), n)
    # in log space: exp(2 log_mean) underflows to 0 while expm1(growth) overflows to inf for long chains (their
    # product was NaN from n ≈ 3550 at M = 10, ddof = 0, and lost precision before)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_expm1 = np.where(growth > 1.0, growth + np.log(-np.expm1(-np.maximum(growth, 1.0))),
                             np.log(np.expm1(np.minimum(growth, 1.0))))
        vals = np.where(np.isfinite(log_mean), np.exp(2.0 * np.log(sigma2) + 2.0 * log_mean + log_expm1), 0.0)
    return _out(vals, n)


def expected_log_variance(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Expected log fitted variance :math:`\mathbb E[\log\sigma_n^2]` (1-D replace chain).

    .. math::

        \mathbb E[\log\sigma_n^2] = \log\sigma^2 + \sum_{i<n}\Big[\psi\Big(\frac{M_i-1}{2}\Big)
        + \log\frac{2}{M_i-\mathrm{ddof}}\Big],

    because :math:`\log\sigma_n^2 - \log\sigma^2` is a sum of independent
    :math:`\log(\chi^2_{M_i-1}/f_i)` terms and
    :math:`\mathbb E\log\chi^2_k = \psi(k/2)+\log 2`.  Exact for all :math:`n`;
    requires :math:`M_i \ge 2` for both ``ddof`` (:math:`\log\sigma^2=-\infty`
    when :math:`M=1`).  Unlike :math:`\sigma_n^2` itself, this is a light-tailed
    statistic: prefer it in Monte-Carlo tests.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M \ge 2` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0` (``log(sigma2)`` is included).

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Shumailov et al., Nature 2024, Thm 3.1 (:math:`\sigma_n\to0` a.s.);
      THEORY.md §2.1 and STYLE.md §2F [D].

    Examples:
      >>> print(f"{expected_log_variance(10, 10):.5f}")
      -1.15206
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof, minimum=2,
                   reason="(log sigma^2 is -inf when a fit uses one sample)")
    total = _sum_over_fits(_per_fit(lambda m: _log_rate(m, ddof), sizes), n)
    return _out(math.log(sigma2) + total, n)


def _log_rate(m: np.ndarray, ddof: int) -> np.ndarray:
    r"""``ψ((M−1)/2) + log(2/f) = [ψ(x) − log x] + log((M−1)/f)``, ``x = (M−1)/2``."""
    m = np.asarray(m, dtype=np.float64)
    return _digamma_minus_log(0.5 * (m - 1.0)) + _log_q(m, ddof)


def variance_of_log_variance(num_fits, num_samples, ddof=1):
    r"""Variance :math:`\operatorname{Var}(\log\sigma_n^2)` of the log fitted variance (1-D replace).

    .. math::

        \operatorname{Var}(\log\sigma_n^2) = \sum_{i<n}\psi'\Big(\frac{M_i-1}{2}\Big),

    since :math:`\operatorname{Var}\log\chi^2_k = \psi'(k/2)` and the terms are
    independent.  Exact for all :math:`n`; independent of ``ddof`` and
    :math:`\sigma^2` (``ddof`` is only used to validate ``num_samples``).
    Requires :math:`M_i \ge 2`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M \ge 2` or per-fit sizes.
      ddof: 1 (default) or 0.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      THEORY.md §2.1; STYLE.md §2F worked example [D].

    Examples:
      >>> print(f"{variance_of_log_variance(50, 20, ddof=0) ** 0.5:.2f}")
      2.36
    """
    ddof = _v.require_ddof(ddof)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof, minimum=2,
                   reason="(log sigma^2 is -inf when a fit uses one sample)")
    per = _per_fit(lambda m: special.polygamma(1, 0.5 * (np.asarray(m, float) - 1.0)), sizes)
    return _out(_sum_over_fits(per, n), n)


_CF_STEP = 0.05
"""Step of the midpoint rule in the standardised frequency v (the inversion's integrand is even and smooth in v,
so the rule is spectrally accurate; it aliases mass 2π/0.05 ≈ 126 standard deviations away, where there is none)."""
_CF_MAX = 80.0
"""Largest standardised frequency: |φ(v)| < 1e-24 beyond it for every M >= 2 (slowest: M = 2, n = 1,
|φ| ≈ e^{−0.71 v})."""
_CF_SERIES_TERMS = 24
"""Terms of the cumulant series of the centred log characteristic function, used where |u| <= h/4 (h = (M−1)/2):
the k-th term is at most (1/4)^k/k of the first, so 24 terms reach 1e-16."""
QUANTILE_LEVEL_MIN = 1e-9
"""Smallest level (and 1 minus the largest) :func:`log_variance_quantiles` inverts: the inversion's CDF is exact to
~1e-15 absolute, a relative 1e-6 at this level."""


def _log_chi_cf(u: np.ndarray, m: np.ndarray, ddof: int) -> np.ndarray:
    r"""``log E exp(iu log(χ²_k/f)) − iu E log(χ²_k/f)``, ``k = M − 1``, ``f = M − ddof``: the centred log
    characteristic function of one fit's log-variance factor, for ``u`` (..., N) and sizes ``m`` (...,):
    :math:`\log\Gamma(h+iu) - \log\Gamma(h) - iu\,\psi(h)`, ``h = k/2`` (``f`` and the 2 only shift the mean).

    Where :math:`|u| \le h/4` it is summed as the cumulant series :math:`\sum_{j\ge2}\psi^{(j-1)}(h)(iu)^j/j!`:
    the difference of log-gammas loses ~|log Γ(h)|·eps to cancellation (4e-12 at M = 10⁴, times the number of
    fits), the series does not. Elsewhere :math:`|\varphi|` is below e^{-h/40}, where digits no longer matter."""
    h = 0.5 * (np.asarray(m, np.float64) - 1.0)[..., None]
    h = np.broadcast_to(h, np.broadcast_shapes(h.shape, np.shape(u)))
    u = np.broadcast_to(u, h.shape)
    near = np.abs(u) <= 0.25 * h
    out = np.empty(h.shape, np.complex128)
    far = ~near
    if np.any(far):
        hf, uf = h[far], u[far]
        out[far] = special.loggamma(hf + 1j * uf) - special.gammaln(hf) - 1j * uf * special.digamma(hf)
    if np.any(near):
        distinct, which = np.unique(h[near], return_inverse=True)
        orders = np.arange(2, _CF_SERIES_TERMS + 2)
        # ψ^{(j−1)}(h)/j!, per distinct h: the series' coefficients, in Horner order (highest power first)
        coef = special.polygamma(orders[:, None] - 1, distinct[None, :]) / special.factorial(orders)[:, None]
        iu = 1j * u[near]
        total = np.zeros(iu.shape, np.complex128)
        for row in coef[::-1]:
            total = (total + row[which]) * iu
        out[near] = total * iu
    return out


def log_variance_quantiles(num_fits, num_samples, levels, ddof=1, sigma2=1.0):
    r"""Quantiles of the log fitted variance :math:`\log\sigma_n^2` under its exact law (1-D replace).

    :math:`\log\sigma_n^2 = \log\sigma^2 + \sum_{i<n} L_i` with independent
    :math:`L_i = \log(\chi^2_{M_i-1}/f_i)`, :math:`f_i = M_i - \mathrm{ddof}`, whose characteristic function
    is known exactly:

    .. math::

        \mathbb E\, e^{iuL_i} = \Big(\frac{2}{f_i}\Big)^{iu}
        \frac{\Gamma\big(\frac{M_i-1}{2}+iu\big)}{\Gamma\big(\frac{M_i-1}{2}\big)}.

    The CDF of the sum is recovered by Gil-Pelaez inversion,
    :math:`F(y) = \tfrac12 - \tfrac1\pi\int_0^\infty \operatorname{Im}[e^{-iuy}\varphi(u)]\,du/u`,
    evaluated in the standardised variable (mean :func:`expected_log_variance`, variance
    :func:`variance_of_log_variance`) by the midpoint rule, and inverted by Newton steps kept inside a bisection
    bracket. Accuracy: the CDF is exact to ~1e-15 absolute; at n = 1 the quantiles match
    :math:`\log(\chi^2_{M-1,q}/f)` from ``scipy.stats.chi2.ppf`` to ~1e-11 for levels in [1e-3, 1 − 1e-3] and to
    ~1e-6 standard deviations at the extreme levels 1e-9 (M = 2 to 10⁴). Quantiles of :math:`\sigma_n` itself
    are ``exp(q / 2)``: the typical chain, whose spread a mean alone hides (the band of Shumailov et al.'s
    collapse, while :math:`\mathbb E\sigma_n^2` stays :math:`\sigma^2` for ``ddof=1``). Cost: O(P·1600) complex
    evaluations per Newton step for P distinct ``num_fits`` (each level; 0.7 s for n = 0..1000 at three levels), and
    with per-fit sizes O(max(n)·P·1600) characteristic-function terms (~1 s per 10⁴ of P·max(n): a minute for
    n = 0..1000 of a 1000-fit sequence).

    Args:
      num_fits: :math:`n \ge 0` (int or int array); :math:`n = 0` is the truth, :math:`\log\sigma^2` itself.
      num_samples: :math:`M \ge 2` or per-fit sizes (see :func:`expected_variance`).
      levels: quantile levels in [1e-9, 1 − 1e-9] (a float or a 1-D sequence; :data:`QUANTILE_LEVEL_MIN`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      Array of shape ``num_fits.shape + levels.shape``.

    Raises:
      ValueError: for invalid inputs (a level outside [1e-9, 1 − 1e-9], :math:`M_i < 2`).

    References:
      Gil-Pelaez, Biometrika 38 (1951) (inversion); THEORY.md §2.1 (the exact law of the replace chain) [D].

    Examples:
      >>> q = log_variance_quantiles(1, 10, [0.05, 0.5, 0.95], ddof=0)
      >>> print(np.round(q, 4))
      [-1.1011 -0.1812  0.5259]
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    levels_arr = np.asarray(levels, dtype=np.float64) if _v.is_real(levels) or np.ndim(levels) else None
    need = f"levels in [{QUANTILE_LEVEL_MIN:g}, 1 - {QUANTILE_LEVEL_MIN:g}]"
    if levels_arr is None or levels_arr.ndim > 1 or levels_arr.size == 0:
        raise ValueError(f"levels={levels!r} is out of range: need a level or a 1-D sequence of {need}")
    for q in levels_arr.reshape(-1):
        _v.require_in_interval("levels", q, QUANTILE_LEVEL_MIN, 1.0 - QUANTILE_LEVEL_MIN,
                               reason="(the inversion's accuracy ends there)")
    sizes = _sizes(num_samples, n, ddof, minimum=2,
                   reason="(log sigma^2 is -inf when a fit uses one sample)")
    given = sizes if sizes.ndim else int(sizes)
    mean = np.asarray(expected_log_variance(n, given, ddof), np.float64).reshape(-1)
    var = np.asarray(variance_of_log_variance(n, given, ddof), np.float64).reshape(-1)
    flat = n.reshape(-1)
    qs = levels_arr.reshape(-1)
    out = np.zeros((flat.size, qs.size))
    v = (np.arange(int(_CF_MAX / _CF_STEP)) + 0.5) * _CF_STEP
    rows = np.flatnonzero(flat > 0)
    chunk = max(1, 2**20 // (qs.size * v.size))  # bounds the (rows, levels, frequencies) arrays to ~16 MB
    for start in range(0, rows.size, chunk):
        part = rows[start:start + chunk]
        sd = np.sqrt(var[part])
        u = v[None, :] / sd[:, None]  # each n's frequencies of its own standardised variable
        if sizes.ndim == 0:
            log_cf = flat[part][:, None] * _log_chi_cf(u, np.asarray(sizes), ddof)
        else:
            log_cf = np.zeros(u.shape, np.complex128)
            for i in range(int(flat[part].max())):  # Σ_{i<n} of the per-fit terms, for each n
                used = flat[part] > i
                log_cf[used] += _log_chi_cf(u[used], np.full(used.sum(), sizes[i]), ddof)
        cf = np.exp(log_cf)  # of the centred, standardised sum Z
        out[part] = mean[part][:, None] + sd[:, None] * _standard_quantiles(cf, v, qs)
    out += math.log(sigma2)
    return out.reshape(n.shape + levels_arr.shape)


def _standard_quantiles(cf: np.ndarray, v: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles (P, Q) of P standardised laws given their characteristic functions on the midpoint grid ``v``:
    Newton steps on the Gil-Pelaez CDF and density, kept inside a bisection bracket, each entry until its CDF is
    within 1e-12 of its level relative to min(level, 1 − level); raises if one is not."""
    from scipy.stats import norm

    p = cf.shape[0]
    target = np.broadcast_to(levels, (p, levels.size)).copy()
    tol = 1e-12 * np.minimum(target, 1.0 - target) + 1e-16
    z = np.broadcast_to(norm.ppf(levels), (p, levels.size)).copy()
    lo, hi = np.full_like(z, -60.0), np.full_like(z, 60.0)
    live = np.ones(z.shape, bool)
    for _ in range(200):
        idx = np.nonzero(live)
        phase = np.exp(-1j * z[idx][:, None] * v) * cf[idx[0]]  # (live entries, N)
        cdf = 0.5 - _CF_STEP / np.pi * np.sum(phase.imag / v, axis=-1)
        pdf = _CF_STEP / np.pi * np.sum(phase.real, axis=-1)
        err = cdf - target[idx]
        done = np.abs(err) <= tol[idx]
        zl, lol, hil = z[idx], lo[idx], hi[idx]
        lol = np.where(err < 0, zl, lol)
        hil = np.where(err > 0, zl, hil)
        step = zl - err / np.where(pdf > 0, pdf, np.nan)
        inside = np.isfinite(step) & (step > lol) & (step < hil)
        new = np.where(inside, step, 0.5 * (lol + hil))
        z[idx] = np.where(done, zl, new)
        lo[idx], hi[idx] = lol, hil
        live[idx] = ~done
        if not live.any():
            return z
    raise RuntimeError(f"log_variance_quantiles: the inversion did not converge for {int(live.sum())} entries "
                       f"(levels {sorted(set(target[live].tolist()))[:5]})")


def log_variance_rate(num_samples, ddof=1):
    r"""Almost-sure per-fit drift of :math:`\log\sigma_n^2` in the 1-D replace chain.

    .. math::

        \frac1n\log\frac{\sigma_n^2}{\sigma^2}\xrightarrow{\text{a.s.}}
        \psi\Big(\frac{M-1}{2}\Big) + \log\frac{2}{M-\mathrm{ddof}}
        = -\frac{1}{M-1} - \frac{1}{3(M-1)^2} + O(M^{-3})\quad(\mathrm{ddof}=1),

    by the strong law of large numbers for the random walk
    :math:`\log\sigma_n^2`; it is also the exact per-fit increment of
    :math:`\mathbb E\log\sigma_n^2`.  The rate is negative for every
    :math:`M\ge2`, so :math:`\sigma_n\to0` a.s. (typical timescale
    :math:`\approx M` fits) while :math:`\mathbb E\sigma_n^2=\sigma^2` for
    ``ddof=1``.  For ``ddof=0`` add :math:`\log(1-1/M)`.

    Args:
      num_samples: :math:`M \ge 2` (int or int array).
      ddof: 1 (unbiased, default) or 0 (MLE).

    Returns:
      ``np.float64`` or array shaped like ``num_samples``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Shumailov et al., Nature 2024, Thm 3.1; THEORY.md §2.1 "a.s. rate" and §1.6
      recipe 2 [D].

    Examples:
      >>> print(f"{log_variance_rate(10):.6f}")
      -0.115206
    """
    ddof = _v.require_ddof(ddof)
    m = _v.require_int_array("num_samples", num_samples, 2,
                             reason="(log sigma^2 is -inf when a fit uses one sample)")
    return _out(_log_rate(m.ravel(), ddof), m)


def expected_std(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Expected fitted standard deviation :math:`\mathbb E[\sigma_n]` (1-D replace chain).

    .. math::

        \mathbb E[\sigma_n] = \sigma\prod_{i<n}\sqrt{\tfrac{M_i-1}{M_i-\mathrm{ddof}}}\,c(M_i-1)
        = \begin{cases}\sigma\,c(M-1)^n & \mathrm{ddof}=1\\ \sigma\,a(M)^n & \mathrm{ddof}=0,\end{cases}

    with :math:`c, a` from :func:`c_factor`, :func:`a_factor`.  Exact for all
    :math:`n`; decays like :math:`\exp(-n/(4(M-1)))` (``ddof=1``).

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Bertrand et al. (arXiv 2310.00429) as quoted by Suresh et al. (arXiv
      2412.17646); THEORY.md §2.1 and §16 [D].

    Examples:
      >>> print(f"{expected_std(10, 10):.5f}")
      0.75789
    """
    return expected_std_power(1.0, num_fits, num_samples, ddof=ddof, sigma2=sigma2)


def expected_std_power(s, num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Fractional moment :math:`\mathbb E[\sigma_n^s]` of the fitted standard deviation.

    .. math::

        \mathbb E[\sigma_n^s] = \sigma^s\prod_{i<n}
        \frac{\Gamma\big(\frac{M_i-1+s}{2}\big)}{\Gamma\big(\frac{M_i-1}{2}\big)}
        \Big(\frac{2}{M_i-\mathrm{ddof}}\Big)^{s/2}.

    With ``ddof=1`` this is THEORY.md's
    :math:`[\Gamma((M-1+s)/2)/(\Gamma((M-1)/2)((M-1)/2)^{s/2})]^n`; ``ddof=0``
    replaces :math:`(M-1)/2` by :math:`M/2` in the power term.  Exact for all
    :math:`n`; finite iff :math:`s > -(M_i-1)` for every fit used.  With
    Markov's inequality it gives Suresh et al.'s tail bound
    :math:`\Pr(\sigma_n > \varepsilon) \le \mathbb E[\sigma_n^s]/\varepsilon^s`.

    Args:
      s: real power; :math:`s > 1-\min_i M_i`.
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs, including ``s`` at or below
        :math:`1-\min_i M_i` (infinite moment).

    References:
      Suresh, Thangaraj, Khandavally (arXiv 2412.17646), Thm 3 and their code's
      Markov bound with s = 0.7; THEORY.md §2.1 [D].

    Examples:
      >>> print(f"{expected_std_power(2, 10, 10, ddof=0):.5f}")
      0.34868
    """
    s = _v.require_finite("s", s)
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    if s < 0 and sizes.size and s <= 1 - int(sizes.min()):
        m_min = int(sizes.min())
        raise ValueError(
            f"s={s!r} is out of range: need s > 1 - min(num_samples) = {1 - m_min} "
            f"(E[sigma^s] is infinite for s <= -(M-1); min(num_samples)={m_min})"
        )
    if s == 2.0:
        log_total = _log_variance_ratio(n, sizes, ddof)
    else:
        log_total = _sum_over_fits(_per_fit(lambda m: _log_chi_moment(m, ddof, s), sizes), n)
    return _out(sigma2 ** (0.5 * s) * np.exp(log_total), n)


def expected_mean_sq_error(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Expected squared error of the fitted mean :math:`\mathbb E[(\mu_n-\mu)^2]` (1-D replace).

    Since :math:`\mu_{i+1} = \mu_i + \sigma_i Z_{i+1}/\sqrt{M_i}` with
    independent increments,

    .. math::

        \mathbb E(\mu_n-\mu)^2 = \sum_{i<n}\frac{\mathbb E\sigma_i^2}{M_i}, \qquad
        \mathbb E\sigma_i^2 = \sigma^2\prod_{j<i}\frac{M_j-1}{M_j-\mathrm{ddof}},

    i.e. :math:`\sigma^2\sum_{i<n}1/M_i` (``ddof=1``; grows without bound) and
    :math:`\sigma^2(1-((M-1)/M)^n)` (``ddof=0``, constant :math:`M`; bounded by
    :math:`\sigma^2`).  Exact for all :math:`n`, any :math:`M_i`, both ``ddof``.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Shumailov et al., Nature 2024, SI §3.1.1; THEORY.md §2.1 [D].

    Examples:
      >>> print(f"{expected_mean_sq_error(10, 10, ddof=0):.5f}")
      0.65132
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    return _out(sigma2 * _mean_sq_error_ratio(n, sizes, ddof), n)


def expected_marginal_variance(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Marginal variance :math:`\operatorname{Var}(X^n)` of a generation-:math:`n` sample.

    :math:`X^n\mid\mu_n,\sigma_n \sim \mathcal N(\mu_n,\sigma_n^2)`; over all
    randomness

    .. math::

        \operatorname{Var}(X^n) = \mathbb E(\mu_n-\mu)^2 + \mathbb E\sigma_n^2
        = \sigma^2\Big(1+\sum_{i<n}\frac1{M_i}\Big)\ (\mathrm{ddof}=1),\qquad
          \sigma^2\ (\mathrm{ddof}=0,\ M_i\equiv M).

    Shumailov et al.'s first-order expansion :math:`\sigma^2(1+n/M)+O(2)` is
    exact for the unbiased chain (:math:`X^n` is drawn from the model after
    :math:`n` fits).  Exact for all :math:`n`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Shumailov et al., Nature 2024, SI §3.1.1; THEORY.md §1.4 and §2.1 [D].

    Examples:
      >>> print(f"{expected_marginal_variance(10, 100):.4f}")
      1.1000
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    vals = _mean_sq_error_ratio(n, sizes, ddof) + np.exp(_log_variance_ratio(n, sizes, ddof))
    return _out(sigma2 * vals, n)


def expected_w2_squared(num_fits, num_samples, ddof=1, sigma2=1.0):
    r"""Expected squared Wasserstein-2 distance to the truth (1-D replace chain).

    :math:`W_2^2(\mathcal N(\mu,\sigma^2),\mathcal N(\mu_n,\sigma_n^2)) = (\mu_n-\mu)^2 + (\sigma_n-\sigma)^2`, so

    .. math::

        \mathbb E W_2^2 = \mathbb E(\mu_n-\mu)^2 + \mathbb E\sigma_n^2 - 2\sigma\,\mathbb E\sigma_n + \sigma^2
        = \begin{cases}\sigma^2\big[\sum_{i<n}1/M_i + 2(1-\prod_{i<n}c(M_i-1))\big] & \mathrm{ddof}=1\\
          2\sigma^2(1-a(M)^n) & \mathrm{ddof}=0,\ M_i\equiv M.\end{cases}

    Exact for all :math:`n`, any :math:`M_i`, both ``ddof`` (computed with
    ``expm1``).  Diverges linearly for ``ddof=1`` (Shumailov Thm 3.1) and tends
    to :math:`2\sigma^2` for ``ddof=0``.  Compare
    :func:`shumailov_w2_squared_approx`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (see :func:`expected_variance`).
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Shumailov et al., Nature 2024, Thm 3.1 and SI §3.1.1 eq. 6 (first-order
      version); exact form THEORY.md §1.4, §2.1 [D].

    Examples:
      >>> print(f"{expected_w2_squared(10, 10):.5f}")
      1.48422
    """
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    log2 = _log_variance_ratio(n, sizes, ddof)
    log1 = _sum_over_fits(_per_fit(lambda m: _log_chi_moment(m, ddof, 1.0), sizes), n)
    vals = _mean_sq_error_ratio(n, sizes, ddof) + np.expm1(log2) - 2.0 * np.expm1(log1)
    return _out(sigma2 * vals, n)


def shumailov_w2_squared_approx(num_fits, num_samples, sigma2=1.0):
    r"""Shumailov et al.'s first-order approximation of :math:`\mathbb E W_2^2` (unbiased chain).

    .. math::

        \mathbb E W_2^2 \approx \tfrac32\,\sigma^2\sum_{i<n}\frac1{M_i}.

    **Index shift.** Shumailov SI eq. 6 writes
    :math:`\mathbb E[R^{n+1}_{W_2}] = \tfrac32\sigma^2(1/M_0+\dots+1/M_n)+O(2)`,
    where :math:`R^{n+1}` compares the truth with :math:`(\mu_{n+1},\sigma_{n+1})`,
    obtained after fits on :math:`M_0,\dots,M_n` samples, i.e. after :math:`n+1`
    fits in our counting.  Here ``num_fits`` :math:`=n` fits use
    :math:`M_0,\dots,M_{n-1}`.  The exact value (:func:`expected_w2_squared`,
    ``ddof=1``) differs by :math:`O(\sum M_i^{-2})` and by
    :math:`O((\sum 1/M_i)^2)`, e.g. :math:`M=20,n=5`: 0.3773 exact vs 0.375.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M \ge 2` or per-fit sizes (length :math:`\ge\max n`).
      sigma2: true variance :math:`\sigma^2 > 0`.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Shumailov et al., Nature 2024, SI §3.1.1 eq. 6; THEORY.md §1.4 and §1.6 [S].

    Examples:
      >>> print(f"{shumailov_w2_squared_approx(11, 100):.3f}")
      0.165
    """
    sigma2 = _v.require_positive("sigma2", sigma2)
    n = _fits(num_fits)
    sizes = _v.sample_sizes(num_samples, n, minimum=2,
                            reason="(Shumailov's expansion is for the unbiased variance, ddof=1)")
    per = _per_fit(lambda m: 1.0 / np.asarray(m, dtype=np.float64), sizes)
    return _out(1.5 * sigma2 * _sum_over_fits(per, n), n)


# --------------------------------------------------------------------------
# d-dimensional replace chain (THEORY.md §2.2)
# --------------------------------------------------------------------------


def expected_trace_ratio(num_fits, num_samples, ddof=0):
    r"""Expected trace ratio :math:`\mathbb E[\operatorname{tr}\Sigma_n]/\operatorname{tr}\Sigma` (d-dim replace).

    .. math::

        \frac{\mathbb E\operatorname{tr}\Sigma_n}{\operatorname{tr}\Sigma}
        = \prod_{i<n}\frac{M_i-1}{M_i-\mathrm{ddof}} = \Big(\frac{M-1}{M}\Big)^n\ (\mathrm{ddof}=0).

    :math:`\Sigma_{i+1} = L_iW L_i^\top/f_i` with
    :math:`W\sim\mathrm{Wishart}_d(M_i-1,I)` and :math:`\mathbb EW=(M_i-1)I`,
    so this holds for **any** true :math:`\Sigma` and any dimension (including
    :math:`M\le d`).  Exact for all :math:`n`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (length :math:`\ge\max n`);
        :math:`\ge1` for ``ddof=0``, :math:`\ge2` for ``ddof=1``.
      ddof: 0 (MLE, ``np.cov(bias=True)``, default) or 1 (unbiased).

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Kazdan et al., "Collapse or Thrive?" (arXiv 2410.16713), Gaussian workflow
      of their code; THEORY.md §2.2 [D].

    Examples:
      >>> print(f"{expected_trace_ratio(10, 10):.4f}")
      0.3487
    """
    ddof = _v.require_ddof(ddof)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    return _out(np.exp(_log_variance_ratio(n, sizes, ddof)), n)


def _log_det_factor(m: np.ndarray, dim: int, ddof: int) -> np.ndarray:
    r"""``log Π_{i=1}^d (M−i)/f`` per fit; ``−inf`` when ``M <= d`` (singular Wishart)."""
    m = np.asarray(m, dtype=np.float64)
    out = np.full_like(m, -np.inf)
    ok = m > dim
    if np.any(ok):
        i = np.arange(1, dim + 1, dtype=np.float64)
        f = (m[ok] - ddof)[:, None]
        out[ok] = np.sum(np.log1p((ddof - i) / f), axis=1)
    return out


def expected_det_ratio(num_fits, num_samples, dim, ddof=0, *, singular="raise"):
    r"""Expected generalised-variance ratio :math:`\mathbb E[\det\Sigma_n]/\det\Sigma` (d-dim replace).

    By Bartlett's decomposition :math:`\det W = \prod_{i=1}^d\chi^2_{M-i}`
    (independent), so

    .. math::

        \frac{\mathbb E\det\Sigma_n}{\det\Sigma}
        = \prod_{t<n}\prod_{i=1}^d\frac{M_t-i}{M_t-\mathrm{ddof}}
        = \Big(\prod_{i=1}^d\frac{M-i}{M}\Big)^n\ (\mathrm{ddof}=0).

    Exact for all :math:`n` and any :math:`\Sigma`.  If some fit uses
    :math:`M_t \le d` samples, its covariance is singular (rank :math:`\le M_t-1`),
    so the ratio is exactly 0 for every :math:`n` past that fit (the formula's
    factor :math:`M-i` vanishes at :math:`i=M`; later negative factors are not
    used). Such sizes raise unless ``singular="zero"`` asks for that 0 (a grid
    that spans both sides of :math:`M = d`, as Kazdan et al.'s does).

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (length :math:`\ge\max n`);
        :math:`\ge1` for ``ddof=0``, :math:`\ge2` for ``ddof=1``.
      dim: dimension :math:`d \ge 1`.
      ddof: 0 (MLE, default) or 1 (unbiased).
      singular: ``"raise"`` (default): a fit with :math:`M_t \le d` is an error;
        ``"zero"``: it gives the exact value 0.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs, and for :math:`M_t \le d` in a fit
        before :math:`n` unless ``singular="zero"``.

    References:
      Kazdan et al. (arXiv 2410.16713); THEORY.md §2.2 and §14 item 5 [D].

    Examples:
      >>> print(f"{expected_det_ratio(1, 10, 3):.3f}")
      0.504
    """
    ddof = _v.require_ddof(ddof)
    dim = _v.require_int("dim", dim, 1)
    if singular not in ("raise", "zero"):
        raise ValueError(f"singular={singular!r} is out of range: need 'raise' or 'zero'")
    n = _fits(num_fits)
    if singular == "raise" and n.size and n.max() > 0:  # n = 0 uses no fit, so no size can be singular
        sizes = _sizes(num_samples, n, ddof, minimum=dim + 1,
                       reason=f"= dim + 1 (with num_samples <= dim = {dim} a fit's covariance is singular and "
                              f"det Sigma_n = 0 exactly; pass singular='zero' for that value)")
    else:
        sizes = _sizes(num_samples, n, ddof)
    total = _sum_over_fits(_per_fit(lambda m: _log_det_factor(m, dim, ddof), sizes), n)
    return _out(np.exp(total), n)


def _dim_sizes(num_samples, n, dim, ddof):
    return _sizes(num_samples, n, ddof, minimum=max(dim + 1, 2),
                  reason=f"= dim + 1 (log det Sigma_n is -inf when num_samples <= dim = {dim})")


def expected_log_det_ratio(num_fits, num_samples, dim, ddof=0):
    r"""Expected log generalised-variance ratio :math:`\mathbb E[\log\det\Sigma_n-\log\det\Sigma]`.

    .. math::

        \mathbb E\log\frac{\det\Sigma_n}{\det\Sigma}
        = \sum_{t<n}\sum_{i=1}^d\Big[\psi\Big(\frac{M_t-i}{2}\Big)+\log\frac{2}{M_t-\mathrm{ddof}}\Big]

    (Bartlett: :math:`\log\det W = \sum_i\log\chi^2_{M-i}`).  Exact for all
    :math:`n` and any :math:`\Sigma`; requires :math:`M_t \ge d+1` (otherwise
    :math:`\log\det\Sigma_n = -\infty`; this function raises instead).

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M \ge d+1` or per-fit sizes (length :math:`\ge\max n`).
      dim: dimension :math:`d \ge 1`.
      ddof: 0 (MLE, default) or 1 (unbiased).

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs, including :math:`M \le d`.

    References:
      Kazdan et al. (arXiv 2410.16713); THEORY.md §2.2 [D].

    Examples:
      >>> print(f"{expected_log_det_ratio(40, 10, 3):.2f}")
      -43.21
    """
    ddof = _v.require_ddof(ddof)
    dim = _v.require_int("dim", dim, 1)
    n = _fits(num_fits)
    sizes = _dim_sizes(num_samples, n, dim, ddof)

    def per(m):
        m = np.asarray(m, dtype=np.float64)[:, None]
        i = np.arange(1, dim + 1, dtype=np.float64)
        return np.sum(_digamma_minus_log(0.5 * (m - i)) + np.log1p((ddof - i) / (m - ddof)), axis=1)

    return _out(_sum_over_fits(_per_fit(per, sizes), n), n)


def variance_of_log_det_ratio(num_fits, num_samples, dim, ddof=0):
    r"""Variance :math:`\operatorname{Var}(\log\det\Sigma_n)` of the d-dim replace chain.

    .. math::

        \operatorname{Var}\log\det\Sigma_n = \sum_{t<n}\sum_{i=1}^d\psi'\Big(\frac{M_t-i}{2}\Big).

    Exact for all :math:`n` and any :math:`\Sigma` (the Bartlett chi-squares are
    independent within and across fits); independent of ``ddof`` (used only to
    validate).  Requires :math:`M_t \ge d+1`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M \ge d+1` or per-fit sizes.
      dim: dimension :math:`d \ge 1`.
      ddof: 0 (default) or 1.

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs, including :math:`M \le d`.

    References:
      THEORY.md §2.2 [D].

    Examples:
      >>> print(f"{variance_of_log_det_ratio(1, 10, 1):.4f}")
      0.2487
    """
    ddof = _v.require_ddof(ddof)
    dim = _v.require_int("dim", dim, 1)
    n = _fits(num_fits)
    sizes = _dim_sizes(num_samples, n, dim, ddof)

    def per(m):
        m = np.asarray(m, dtype=np.float64)[:, None]
        i = np.arange(1, dim + 1, dtype=np.float64)
        return np.sum(special.polygamma(1, 0.5 * (m - i)), axis=1)

    return _out(_sum_over_fits(_per_fit(per, sizes), n), n)


def expected_mean_sq_norm(num_fits, num_samples, ddof=0, trace=1.0):
    r"""Expected squared mean error :math:`\mathbb E\|\mu_n-\mu\|^2` of the d-dim replace chain.

    .. math::

        \mathbb E\|\mu_n-\mu\|^2 = \sum_{t<n}\frac{\mathbb E\operatorname{tr}\Sigma_t}{M_t}
        = \begin{cases}\operatorname{tr}\Sigma\,(1-((M-1)/M)^n) & \mathrm{ddof}=0\\
          \operatorname{tr}\Sigma\sum_{t<n}1/M_t & \mathrm{ddof}=1.\end{cases}

    Exact for all :math:`n` and any :math:`\Sigma` (only its trace enters).  The
    1-D case is :func:`expected_mean_sq_error` with ``sigma2 = trace``.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` or per-fit sizes (length :math:`\ge\max n`).
      ddof: 0 (MLE, default) or 1 (unbiased).
      trace: :math:`\operatorname{tr}\Sigma > 0` (:math:`d\sigma^2` for
        :math:`\Sigma=\sigma^2I`).

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Kazdan et al. (arXiv 2410.16713); THEORY.md §2.2 [D].

    Examples:
      >>> print(f"{expected_mean_sq_norm(10, 10, trace=3.0):.3f}")
      1.954
    """
    ddof = _v.require_ddof(ddof)
    trace = _v.require_positive("trace", trace)
    n = _fits(num_fits)
    sizes = _sizes(num_samples, n, ddof)
    return _out(trace * _mean_sq_error_ratio(n, sizes, ddof), n)


# --------------------------------------------------------------------------
# Accumulate chain (THEORY.md §2.3)
# --------------------------------------------------------------------------


def _accumulate_sizes(num_samples, ddof: int) -> int:
    if np.ndim(num_samples) != 0:
        raise ValueError(
            f"num_samples={_v._fmt(num_samples)} is not a scalar: the accumulate chain "
            "formulas need a constant batch size num_samples"
        )
    m_min, reason = _v.min_samples_for_ddof(ddof)
    return _v.require_int("num_samples", num_samples, m_min, reason=reason)


def _unbiased_roots(m: int) -> tuple[float, float]:
    """Roots of M k² − k − 1 = 0, so that 1 − 1/(k(kM−1)) = (k−r₊)(k−r₋)/(k(k−1/M))."""
    root = math.sqrt(1.0 + 4.0 * m)
    return (1.0 + root) / (2.0 * m), -2.0 / (1.0 + root)  # r₊, r₋ = (1 − root)/(2M), stably


def _log_accumulate_limit(m: int, ddof: int) -> float:
    if ddof == 0:
        return float(_log_sinc(np.array(1.0 / math.sqrt(m))))
    r_plus, r_minus = _unbiased_roots(m)
    return float(special.gammaln(2.0 - 1.0 / m) - special.gammaln(2.0 - r_plus) - special.gammaln(2.0 - r_minus))


def _log_accumulate_ratio(t: np.ndarray, m: int, ddof: int) -> np.ndarray:
    r"""``log(E Σ̂_t / Σ)`` for an int array ``t`` via the Gamma-function closed form."""
    t = np.asarray(t, dtype=np.int64)
    flat = t.ravel()
    out = np.zeros(flat.shape, dtype=np.float64)
    if ddof == 0:
        active = flat >= 1
        if m == 1:
            out[active] = -np.inf  # first fit on one point: zero variance forever
        elif np.any(active):
            x = 1.0 / math.sqrt(m)
            z = flat[active] + 1.0
            out[active] = _log_accumulate_limit(m, 0) + _log_gamma_ratio(z, -x) + _log_gamma_ratio(z, x)
    else:
        active = flat >= 2
        if np.any(active):
            r_plus, r_minus = _unbiased_roots(m)
            z = flat[active] + 1.0
            out[active] = (_log_accumulate_limit(m, 1) + _log_gamma_ratio(z, -r_plus)
                           + _log_gamma_ratio(z, -r_minus) - _log_gamma_ratio(z, -1.0 / m))
    return out.reshape(t.shape)


def expected_accumulate_variance_ratio(num_fits, num_samples, ddof=0):
    r"""Expected pooled-variance ratio :math:`\mathbb E[\hat\Sigma_n]/\Sigma` of the accumulate chain.

    Batch 1 is :math:`M` real points; fit :math:`t` is the pooled Gaussian fit
    on all :math:`tM` points so far; batch :math:`t+1` is drawn from fit
    :math:`t`.  ``num_fits`` :math:`=n` counts fits (:math:`n=1`: fit on the real
    batch only; :math:`n=0`: the truth, ratio 1).

    .. math::

        \frac{\mathbb E\hat\Sigma_n}{\Sigma} =
        \begin{cases}\prod_{k=1}^{n}\Big(1-\frac{1}{Mk^2}\Big)
            \;\longrightarrow\;\frac{\sin(\pi/\sqrt M)}{\pi/\sqrt M} & \mathrm{ddof}=0\ \text{(pooled MLE)}\\[4pt]
          \prod_{k=2}^{n}\Big(1-\frac{1}{k(kM-1)}\Big) & \mathrm{ddof}=1\ \text{(pooled unbiased)}.\end{cases}

    **Derivation.** Let :math:`S_t` be the pooled scatter matrix of the
    :math:`tM` points (:math:`S_0 = 0`) and :math:`\hat\Sigma_t = S_t/(tM-\mathrm{ddof})`
    (:math:`\hat\Sigma_0 := \Sigma`).  A new batch with mean :math:`b` and
    scatter :math:`B` adds :math:`S_{t+1} = S_t + B + \tfrac{t}{t+1}M(b-\hat\mu_t)(b-\hat\mu_t)^\top`,
    and :math:`\mathbb E[B|\mathcal F_t] = (M-1)\hat\Sigma_t`,
    :math:`\mathbb E[(b-\hat\mu_t)(\cdot)^\top|\mathcal F_t]=\hat\Sigma_t/M`, so
    :math:`\mathbb E[S_{t+1}|\mathcal F_t] = S_t + (M-1+\tfrac{t}{t+1})\hat\Sigma_t`.
    MLE (:math:`S_t = tM\hat\Sigma_t`, valid also at :math:`t=0`):
    :math:`\mathbb E[\hat\Sigma_{t+1}|\mathcal F_t] = \hat\Sigma_t(1-1/(M(t+1)^2))`;
    the :math:`k=1` factor :math:`1-1/M` is the bias of the first (real-data)
    fit, so the product runs over :math:`k=1..n` with :math:`n` = number of fits.
    Unbiased (:math:`S_t=(tM-1)\hat\Sigma_t` for :math:`t\ge1`):
    :math:`\mathbb E[\hat\Sigma_{t+1}|\mathcal F_t] = \hat\Sigma_t(1-1/((t+1)((t+1)M-1)))`,
    while the first fit is unbiased (:math:`\mathbb E\hat\Sigma_1=\Sigma`), hence
    :math:`k` starts at 2.  Both products are evaluated in closed form with
    Gamma functions:

    .. math::

        \prod_{k=1}^n\Big(1-\frac{x^2}{k^2}\Big)
        = \frac{\Gamma(n+1-x)\,\Gamma(n+1+x)}{\Gamma(1-x)\,\Gamma(1+x)\,\Gamma(n+1)^2},

    :math:`x=M^{-1/2}`, and
    :math:`1-\frac1{k(kM-1)} = \frac{(k-r_+)(k-r_-)}{k(k-1/M)}`,
    :math:`r_\pm = (1\pm\sqrt{1+4M})/(2M)`.

    Exact for all :math:`n`, any :math:`\Sigma` and any dimension (the ratio is
    a scalar multiple of :math:`\Sigma`); constant batch size :math:`M` only.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: batch size :math:`M` (scalar int; :math:`\ge1` for ``ddof=0``,
        :math:`\ge2` for ``ddof=1``).
      ddof: 0 (pooled MLE, default) or 1 (pooled unbiased).

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs (including a sequence ``num_samples``).

    References:
      Gerstgrasser et al. (arXiv 2404.01413) and Kazdan et al. (arXiv
      2410.16713) accumulate workflows; Dey & Donoho (arXiv 2410.22812) "π²/6
      pathway"; THEORY.md §2.3 [D]; unbiased product re-derived here.

    Examples:
      >>> print(f"{expected_accumulate_variance_ratio(1, 10):.2f}")
      0.90
      >>> print(f"{expected_accumulate_variance_ratio(10**6, 10):.5f}")
      0.84344
    """
    ddof = _v.require_ddof(ddof)
    n = _fits(num_fits)
    m = _accumulate_sizes(num_samples, ddof)
    return _out(np.exp(_log_accumulate_ratio(n, m, ddof)), n)


def accumulate_variance_limit(num_samples, ddof=0):
    r"""Limit :math:`\lim_{n\to\infty}\mathbb E[\hat\Sigma_n]/\Sigma` of the accumulate chain.

    .. math::

        \prod_{k\ge1}\Big(1-\frac1{Mk^2}\Big) = \frac{\sin(\pi/\sqrt M)}{\pi/\sqrt M}\ (\mathrm{ddof}=0),\qquad
        \prod_{k\ge2}\Big(1-\frac1{k(kM-1)}\Big) = \frac{\Gamma(2-1/M)}{\Gamma(2-r_+)\Gamma(2-r_-)}\ (\mathrm{ddof}=1),

    with :math:`r_\pm=(1\pm\sqrt{1+4M})/(2M)` (the second identity follows from
    :math:`\prod_{k\ge2}\frac{(k+a)(k+b)}{(k+c)(k+d)} = \frac{\Gamma(2+c)\Gamma(2+d)}{\Gamma(2+a)\Gamma(2+b)}`
    for :math:`a+b=c+d`).  No variance collapse: the pooled variance
    stays a fixed fraction of the truth (e.g. 0.84344 for :math:`M=10`,
    0.98363 for :math:`M=100`, MLE).  The categorical accumulate chain has the
    same sinc limit for the heterozygosity (THEORY.md §7.2).

    Args:
      num_samples: batch size :math:`M` (scalar int; :math:`\ge1` for ``ddof=0``,
        :math:`\ge2` for ``ddof=1``).
      ddof: 0 (pooled MLE, default) or 1 (pooled unbiased).

    Returns:
      ``np.float64``.

    Raises:
      ValueError: for invalid inputs.

    References:
      THEORY.md §2.3 and §16 (sinc limit) [D]; Kazdan et al. (arXiv 2410.16713).

    Examples:
      >>> print(f"{accumulate_variance_limit(10):.5f}")
      0.84344
    """
    ddof = _v.require_ddof(ddof)
    m = _accumulate_sizes(num_samples, ddof)
    if ddof == 0 and m == 1:
        return np.float64(0.0)
    return np.float64(math.exp(_log_accumulate_limit(m, ddof)))


def _accumulate_mse_ratio(n: np.ndarray, m: int, ddof: int) -> np.ndarray:
    r"""``(1/M) Σ_{k=1}^{n} P_{k−1}/k²`` (``P`` = variance ratio) for an int array ``n``."""
    flat = n.ravel()
    max_n = int(flat.max()) if flat.size else 0
    exact = min(max_n, _ACCUMULATE_EXACT_TERMS)
    k = np.arange(1, exact + 1, dtype=np.int64)
    terms = np.exp(_log_accumulate_ratio(k - 1, m, ddof)) / (k.astype(np.float64) ** 2)
    csum = np.concatenate([[0.0], np.cumsum(terms)])
    out = csum[np.minimum(flat, exact)]
    far = flat > exact
    if np.any(far):
        # Tail Σ_{exact<k≤n} P_{k−1}/k² with P_{k−1} = P_∞(1 + O(1/(M k))):
        # P_∞ (ψ'(exact+1) − ψ'(n+1)), absolute error < 1/(M·exact²) ≈ 1e-12/M.
        p_inf = 0.0 if (ddof == 0 and m == 1) else math.exp(_log_accumulate_limit(m, ddof))
        out[far] += p_inf * (special.polygamma(1, exact + 1.0) - special.polygamma(1, flat[far] + 1.0))
    return (out / m).reshape(n.shape)


def expected_accumulate_mean_sq_error(num_fits, num_samples, trace=1.0, ddof=0):
    r"""Expected squared error of the pooled mean :math:`\mathbb E\|\hat\mu_n-\mu\|^2` (accumulate chain).

    The pooled mean updates as
    :math:`\hat\mu_t = \hat\mu_{t-1} + (b_t-\hat\mu_{t-1})/t` with
    :math:`b_t-\hat\mu_{t-1}\sim\mathcal N(0,\hat\Sigma_{t-1}/M)`, a martingale
    with orthogonal increments (:math:`\hat\mu_0=\mu`, :math:`\hat\Sigma_0=\Sigma`), so

    .. math::

        \mathbb E\|\hat\mu_n-\mu\|^2 = \frac1M\sum_{k=1}^{n}\frac{\mathbb E\operatorname{tr}\hat\Sigma_{k-1}}{k^2}
        = \frac{\operatorname{tr}\Sigma}{M}\sum_{k=1}^{n}\frac{P_{k-1}}{k^2}
        \;\le\;\frac{\pi^2}{6}\,\frac{\operatorname{tr}\Sigma}{M},

    with :math:`P_j` = :func:`expected_accumulate_variance_ratio` ``(j, M, ddof)``:
    :math:`P_j = \prod_{i=1}^{j}(1-1/(Mi^2))` (MLE) or
    :math:`\prod_{i=2}^{j}(1-1/(i(iM-1)))` (unbiased, :math:`P_0=P_1=1`).
    :math:`\operatorname{tr}\Sigma/M` is the error of the first, real-data fit.
    Exact for all :math:`n` (terms beyond :math:`2^{20}` use the limit
    :math:`P_\infty` with absolute error :math:`<10^{-12}\operatorname{tr}\Sigma/M^2`).

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: batch size :math:`M` (scalar int).
      trace: :math:`\operatorname{tr}\Sigma > 0`.
      ddof: 0 (pooled MLE, default) or 1 (pooled unbiased).

    Returns:
      ``np.float64`` or array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Gerstgrasser et al. (arXiv 2404.01413) Σ1/i² bound for regression; Dey &
      Donoho (arXiv 2410.22812); THEORY.md §2.3 and §16 [D]; ddof=1 derived here.

    Examples:
      >>> print(f"{expected_accumulate_mean_sq_error(40, 10, trace=3.0):.4f}")
      0.4634
    """
    ddof = _v.require_ddof(ddof)
    trace = _v.require_positive("trace", trace)
    n = _fits(num_fits)
    m = _accumulate_sizes(num_samples, ddof)
    return _out(trace * _accumulate_mse_ratio(n, m, ddof), n)


def accumulate_mean_sq_error_limit(num_samples, trace=1.0, ddof=0):
    r"""Limit :math:`\lim_{n\to\infty}\mathbb E\|\hat\mu_n-\mu\|^2` of the accumulate chain.

    .. math::

        \frac{\operatorname{tr}\Sigma}{M}\sum_{k\ge1}\frac{P_{k-1}}{k^2}
        \;\in\;\Big[P_\infty\frac{\pi^2}{6},\ \frac{\pi^2}{6}\Big]\frac{\operatorname{tr}\Sigma}{M},

    summed exactly over the first :math:`2^{20}` terms plus the tail
    :math:`P_\infty\,\psi'(2^{20}+1)` (see :func:`expected_accumulate_mean_sq_error`).

    Args:
      num_samples: batch size :math:`M` (scalar int).
      trace: :math:`\operatorname{tr}\Sigma > 0`.
      ddof: 0 (pooled MLE, default) or 1 (pooled unbiased).

    Returns:
      ``np.float64``.

    Raises:
      ValueError: for invalid inputs.

    References:
      THEORY.md §2.3 [D].

    Examples:
      >>> print(f"{accumulate_mean_sq_error_limit(10, trace=3.0):.4f}")
      0.4697
    """
    ddof = _v.require_ddof(ddof)
    trace = _v.require_positive("trace", trace)
    m = _accumulate_sizes(num_samples, ddof)
    n = np.array(_ACCUMULATE_EXACT_TERMS, dtype=np.int64)
    head = float(_accumulate_mse_ratio(n, m, ddof))
    p_inf = 0.0 if (ddof == 0 and m == 1) else math.exp(_log_accumulate_limit(m, ddof))
    tail = p_inf * float(special.polygamma(1, _ACCUMULATE_EXACT_TERMS + 1.0)) / m
    return np.float64(trace * (head + tail))


def accumulate_mean_sq_error_bound(num_samples, trace=1.0):
    r"""The ":math:`\pi^2/6` pathway" bound on the accumulate chain's mean error.

    .. math::

        \mathbb E\|\hat\mu_n-\mu\|^2 \le \frac{\pi^2}{6}\,\frac{\operatorname{tr}\Sigma}{M}
        \quad\text{for all } n \text{ and both ddof},

    i.e. at most :math:`\pi^2/6\approx1.645` times the error of the first
    (real-data) fit, because :math:`\mathbb E\operatorname{tr}\hat\Sigma_k\le\operatorname{tr}\Sigma`.
    The bound is not attained (see :func:`accumulate_mean_sq_error_limit`).

    Args:
      num_samples: batch size :math:`M \ge 1` (scalar int).
      trace: :math:`\operatorname{tr}\Sigma > 0`.

    Returns:
      ``np.float64``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Gerstgrasser et al. (arXiv 2404.01413) Thm 2 analogue; Dey & Donoho (arXiv
      2410.22812); THEORY.md §2.3 [D].

    Examples:
      >>> print(f"{accumulate_mean_sq_error_bound(10, trace=3.0):.4f}")
      0.4935
    """
    trace = _v.require_positive("trace", trace)
    m = _accumulate_sizes(num_samples, 0)
    return np.float64(math.pi**2 / 6.0 * trace / m)


# --------------------------------------------------------------------------
# Fresh-data loop (THEORY.md §2.4)
# --------------------------------------------------------------------------


def fresh_sample_counts(num_samples, gamma):
    r"""Numbers of fresh real and synthetic samples per generation of the fresh-data loop.

    :math:`n_r = \gamma M` fresh real samples and :math:`n_s = M - n_r`
    synthetic ones; :math:`\gamma M` must be an integer (to within 1e-9), since
    the exact formulas use fixed counts.

    Args:
      num_samples: :math:`M \ge 1` (scalar int).
      gamma: fresh fraction :math:`\gamma\in(0,1]`.

    Returns:
      ``(n_real, n_synthetic)`` as Python ints.

    Raises:
      ValueError: if ``gamma`` is outside :math:`(0,1]`, or :math:`\gamma M` is
        not an integer (the message names ``gamma`` and ``num_samples``).

    References:
      THEORY.md §2.4 [D].

    Examples:
      >>> fresh_sample_counts(20, 0.25)
      (5, 15)
    """
    gamma = _v.require_in_interval("gamma", gamma, 0.0, 1.0, lo_open=True,
                                   reason="(fraction of fresh real samples per generation)")
    m = _v.require_int("num_samples", num_samples, 1)
    real = gamma * m
    n_real = int(round(real))
    if abs(real - n_real) > 1e-9 or n_real < 1:
        raise ValueError(
            f"gamma={gamma!r} with num_samples={m} gives gamma*num_samples={real!r} fresh real "
            "samples, which is out of range: need gamma*num_samples to be an integer >= 1 "
            "(within 1e-9)"
        )
    return n_real, m - n_real


def _fresh_affine(num_samples, gamma, ddof, sigma2):
    """(A, c) of the exact first-moment recursion v_{t+1} = A v_t + c, v = (E e², E σ²)."""
    ddof = _v.require_ddof(ddof)
    sigma2 = _v.require_positive("sigma2", sigma2)
    if np.ndim(num_samples) != 0:
        raise ValueError(
            f"num_samples={_v._fmt(num_samples)} is not a scalar: the fresh-data loop "
            "formulas need a constant sample size num_samples"
        )
    m_min, reason = _v.min_samples_for_ddof(ddof)
    m = _v.require_int("num_samples", num_samples, m_min, reason=reason)
    n_r, n_s = fresh_sample_counts(m, gamma)
    f = m - ddof
    a_mat = np.array([
        [(n_s / m) ** 2, n_s / m**2],
        [n_r * n_s / m / f, n_s * (1.0 - 1.0 / m) / f],
    ])
    c_vec = sigma2 * np.array([n_r / m**2, n_r * (1.0 - 1.0 / m) / f])
    return a_mat, c_vec, sigma2


def fresh_fraction_moments(num_fits, num_samples, gamma, ddof=1, sigma2=1.0):
    r"""Exact :math:`(\mathbb E e_n^2,\ \mathbb E\sigma_n^2)` of the 1-D fresh-data loop.

    Every generation fits mean and variance (``ddof``) to :math:`M` samples:
    :math:`n_r=\gamma M` fresh from the truth :math:`\mathcal N(\mu_0,\sigma_0^2)`
    and :math:`n_s=M-n_r` from the current fit :math:`\mathcal N(\mu_t,\sigma_t^2)`.
    With :math:`e_t=\mu_t-\mu_0` and the pooled scatter
    :math:`SS = SS_r+SS_s+\frac{n_rn_s}{M}(\bar x_r-\bar x_s)^2`,

    .. math::

        \mathbb E[SS\mid\mathcal F_t] &= (n_r\sigma_0^2+n_s\sigma_t^2)\Big(1-\frac1M\Big)+\frac{n_rn_s}{M}e_t^2,
        \qquad \mathbb E[\sigma_{t+1}^2\mid\mathcal F_t] = \frac{\mathbb E[SS\mid\mathcal F_t]}{M-\mathrm{ddof}},\\
        \mathbb E[e_{t+1}^2\mid\mathcal F_t] &= \Big(\frac{n_s}{M}\Big)^2e_t^2+\frac{n_r\sigma_0^2+n_s\sigma_t^2}{M^2},

    which is linear in :math:`(e_t^2,\sigma_t^2)`, so the first moments follow
    an exact affine recursion :math:`v_{t+1}=Av_t+c` started from the truth
    :math:`v_0=(0,\sigma_0^2)` (fit 1 mixes real and "synthetic from the truth",
    which is real too, so :math:`v_1` comes out right).  For ``ddof=1`` this is
    THEORY.md's

    .. math::

        \mathbb E[\sigma_{t+1}^2\mid\mathcal F_t]
        = \gamma\sigma_0^2+(1-\gamma)\sigma_t^2+\gamma(1-\gamma)\frac{M}{M-1}e_t^2.

    Evaluated as a power of the 3x3 augmented matrix (exact for all :math:`n`).
    In :math:`d` dimensions the same recursion holds for
    :math:`(\mathbb E\|e_n\|^2, \mathbb E\operatorname{tr}\Sigma_n)` with
    ``sigma2`` :math:`=\operatorname{tr}\Sigma_0`.

    Args:
      num_fits: :math:`n \ge 0` (int or int array).
      num_samples: :math:`M` (scalar int; :math:`\ge2` for ``ddof=1``).
      gamma: fresh fraction :math:`\gamma\in(0,1]` with :math:`\gamma M` an integer.
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma_0^2 > 0`.

    Returns:
      Tuple ``(mean_sq_error, variance)`` = :math:`(\mathbb E(\mu_n-\mu_0)^2,\ \mathbb E\sigma_n^2)`,
      each ``np.float64`` or an array shaped like ``num_fits``.

    Raises:
      ValueError: for invalid inputs (see :func:`fresh_sample_counts`).

    References:
      Alemohammad et al. (arXiv 2307.01850) "fresh data loop"; Shumailov et al.
      Nature 2024 §1.1 mixing weights :math:`\gamma_i`; THEORY.md §2.4 [D];
      general-ddof recursion derived here.

    Examples:
      >>> e2, s2 = fresh_fraction_moments(1, 20, 0.25)
      >>> print(f"{e2:.4f} {s2:.4f}")
      0.0500 1.0000
    """
    a_mat, c_vec, sigma2 = _fresh_affine(num_samples, gamma, ddof, sigma2)
    n = _fits(num_fits)
    aug = np.eye(3)
    aug[:2, :2] = a_mat
    aug[:2, 2] = c_vec
    start = np.array([0.0, sigma2, 1.0])
    flat = n.ravel()
    mse = np.empty(flat.shape)
    var = np.empty(flat.shape)
    for value in np.unique(flat):
        v = np.linalg.matrix_power(aug, int(value)) @ start
        sel = flat == value
        mse[sel], var[sel] = v[0], v[1]
    return _out(mse, n), _out(var, n)


def _fresh_stationary(num_samples, gamma, ddof, sigma2) -> np.ndarray:
    a_mat, c_vec, _ = _fresh_affine(num_samples, gamma, ddof, sigma2)
    # A is non-negative with diagonal < 1 and det(I − A) > 0 for every admissible
    # (M, γ, ddof), so the spectral radius is < 1 and the fixed point is attracting.
    return np.linalg.solve(np.eye(2) - a_mat, c_vec)


def stationary_fresh_mean_sq_error(num_samples, gamma, ddof=1, sigma2=1.0):
    r"""Stationary :math:`\lim_n\mathbb E(\mu_n-\mu_0)^2` of the fresh-data loop.

    Fixed point of the recursion of :func:`fresh_fraction_moments`.  For
    ``ddof=1`` it has the closed form

    .. math::

        \mathbb E e^2 = \sigma_0^2\,\frac{a}{1-a(1-\gamma)b},\qquad
        a=\frac{1}{M(1-(1-\gamma)^2)},\quad b=\frac{(1-\gamma)M}{M-1}
        \qquad\Big(\approx\frac{\sigma_0^2}{M\gamma(2-\gamma)}\Big);

    for ``ddof=0`` the 2x2 linear fixed point is solved.  No collapse for any
    :math:`\gamma>0`.  (THEORY.md writes the ``ddof=1`` form with
    :math:`\sigma_0^2=1`.)

    Args:
      num_samples: :math:`M` (scalar int; :math:`\ge2` for ``ddof=1``).
      gamma: fresh fraction :math:`\gamma\in(0,1]` with :math:`\gamma M` an integer.
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma_0^2 > 0`.

    Returns:
      ``np.float64``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Alemohammad et al. (arXiv 2307.01850); THEORY.md §2.4 and §16 [D].

    Examples:
      >>> print(f"{stationary_fresh_mean_sq_error(20, 0.25):.5f}")
      0.12258
    """
    return np.float64(_fresh_stationary(num_samples, gamma, ddof, sigma2)[0])


def stationary_fresh_variance(num_samples, gamma, ddof=1, sigma2=1.0):
    r"""Stationary :math:`\lim_n\mathbb E\sigma_n^2` of the fresh-data loop.

    For ``ddof=1``:
    :math:`\mathbb E\sigma^2 = \sigma_0^2 + b\,\mathbb Ee^2` with
    :math:`b=(1-\gamma)M/(M-1)` and :math:`\mathbb Ee^2` from
    :func:`stationary_fresh_mean_sq_error` (the variance is *inflated* above
    :math:`\sigma_0^2` by the mean's wandering).  For ``ddof=0``, the 2x2 linear
    fixed point is solved.

    Args:
      num_samples: :math:`M` (scalar int; :math:`\ge2` for ``ddof=1``).
      gamma: fresh fraction :math:`\gamma\in(0,1]` with :math:`\gamma M` an integer.
      ddof: 1 (unbiased, default) or 0 (MLE).
      sigma2: true variance :math:`\sigma_0^2 > 0`.

    Returns:
      ``np.float64``.

    Raises:
      ValueError: for invalid inputs.

    References:
      Alemohammad et al. (arXiv 2307.01850); THEORY.md §2.4 [D].

    Examples:
      >>> print(f"{stationary_fresh_variance(20, 0.25):.4f}")
      1.0968
    """
    return np.float64(_fresh_stationary(num_samples, gamma, ddof, sigma2)[1])
