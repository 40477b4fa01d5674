r"""Exact theory of the Gaussian-KDE replace chain (NumPy only; THEORY.md §2.5).

Setup: a KDE with bandwidth h on n rows; sampling it resamples a row uniformly and adds :math:`h z`,
:math:`z\sim N(0, I)`; the replace chain refits the KDE on n such samples. Per coordinate, let :math:`S_t^2` be the
MLE variance (divide by n) of the rows after t resamplings and :math:`r = (n-1)/n`. Given the rows, the n new rows
are i.i.d. with variance :math:`S_t^2 + h^2` and mean :math:`\bar x_t`, so

.. math:: \mathbb E[S_{t+1}^2 \mid S_t] = r\,(S_t^2 + h^2), \qquad
          \mathbb E S_t^2 = r^t \mathbb E S_0^2 + h^2 \sum_{k=1}^t r^k \;\to\; (n-1)h^2,

and the row mean is a martingale with :math:`\mathbb E[(\bar x_{t+1}-\bar x_t)^2 \mid \cdot] = (S_t^2+h^2)/n`.

**Generation indexing** (the engine's): ``num_fits`` :math:`= t_f` counts fits; fit 1 stores the n real rows
(:math:`S_0^2`, with :math:`\mathbb E S_0^2 = r v` for a real distribution of per-coordinate variance :math:`v`),
fit :math:`t_f` stores rows with spread :math:`S_{t_f-1}^2`. Hence, exactly, per coordinate,

.. math:: \mathbb E\,\mathrm{spread}(t_f) = r^{t_f} v + h^2 \sum_{k=1}^{t_f-1} r^k, \qquad
          \mathbb E(\bar x_{t_f}-\mu)^2 = \frac{v}{n} + \sum_{s=1}^{t_f-1}
          \frac{\mathbb E\,\mathrm{spread}(s) + h^2}{n},

the second growing by about :math:`((n-1)h^2 + h^2)/n = h^2` per generation once the spread is stationary: the
cloud random-walks away from the data, so the test NLL on real data diverges (Kazdan et al.'s replace curves).
No such closed form is claimed here for accumulate or accumulate-subsample chains.

References:
  Kazdan et al., "Collapse or Thrive?" (arXiv 2410.16713), KDE workflow (``src/fit_kdes``); THEORY.md §2.5
  [D, Monte-Carlo checked: n = 20, h = 0.3, t = 200: E S² 1.726 vs 1.710; drift 17.25 vs 17.24, the drift
  there measured from the real sample's mean x̄₀; :func:`expected_sq_mean_error` measures it from μ, which adds
  v/n: 17.29 at fit 201].
"""

from __future__ import annotations

import numpy as np

from . import _validate as _v

__all__ = ["expected_spread", "expected_sq_mean_error", "stationary_spread"]


def _args(num_fits, num_samples, bandwidth, variance):
    fits = _v.require_int_array("num_fits", num_fits, 1)
    n = _v.require_int("num_samples", num_samples, 1)
    h = _v.require_positive("bandwidth", bandwidth)
    v = _v.require_in_interval("variance", variance, 0.0, np.inf)
    return fits, n, h, v


def _geometric(t: np.ndarray, n: int) -> np.ndarray:
    r""":math:`\sum_{k=1}^{t} r^k = (n - 1)(1 - r^t)` for r = (n − 1)/n (closed form: no table of t terms, so a
    huge ``num_fits`` costs nothing); 0 for n = 1."""
    if n == 1:
        return np.zeros(t.shape)
    return (n - 1) * -np.expm1(t * np.log1p(-1.0 / n))


def _spread(t: np.ndarray, n: int, h: float, v: float) -> np.ndarray:
    """E spread(t_f) per coordinate for an int array of t_f >= 1: r^{t_f} v + h² Σ_{k=1}^{t_f-1} r^k."""
    r_t = np.zeros(t.shape) if n == 1 else np.exp(t * np.log1p(-1.0 / n))
    return r_t * v + h**2 * _geometric(t - 1, n)


def expected_spread(num_fits, num_samples, bandwidth, variance=1.0):
    r"""Exact :math:`\mathbb E` of the KDE rows' per-coordinate MLE variance after ``num_fits`` fits (replace).

    :math:`r^{t_f} v + h^2 \sum_{k=1}^{t_f-1} r^k`, :math:`r = (n-1)/n`; ``variance`` is the real distribution's
    per-coordinate variance v (fit 1 is on n real rows). Requires ``num_fits >= 1``, ``num_samples >= 1``,
    ``bandwidth > 0``, ``variance >= 0``.

    Examples:
      >>> round(float(expected_spread(1, 10, 0.5, 1.0)), 6)
      0.9
    """
    fits, n, h, v = _args(num_fits, num_samples, bandwidth, variance)
    out = _spread(fits, n, h, v)
    return out if out.ndim else np.float64(out)


def expected_sq_mean_error(num_fits, num_samples, bandwidth, variance=1.0, dim=1):
    r"""Exact :math:`\mathbb E\|\bar x_{t_f}-\mu\|^2` of the KDE rows' mean after ``num_fits`` fits (replace):
    ``dim`` × :math:`\left[v/n + \sum_{s=1}^{t_f-1} (\mathbb E\,\mathrm{spread}(s) + h^2)/n\right]`.

    Examples:
      >>> round(float(expected_sq_mean_error(1, 10, 0.5, 1.0)), 6)
      0.1
    """
    fits, n, h, v = _args(num_fits, num_samples, bandwidth, variance)
    d = _v.require_int("dim", dim, 1)
    # Σ_{s=1}^{T} spread(s) = v G(T) + h² Σ_{s=1}^{T} G(s − 1), T = t_f − 1, G(j) = Σ_{k=1}^{j} r^k = (n−1)(1 − r^j);
    # the double sum is Σ_{j=1}^{T-1} G(j) = (n − 1) [(T − 1) − G(T − 1)] (closed form, no table of t terms)
    last = fits - 1
    inner = np.maximum(last - 1, 0)
    spreads = v * _geometric(last, n) + h**2 * (n - 1) * (inner - _geometric(inner, n))
    out = d * (v / n + (spreads + last * h**2) / n)
    return out if out.ndim else np.float64(out)


def stationary_spread(num_samples, bandwidth):
    r"""The limit :math:`(n-1)h^2` of :func:`expected_spread` as the number of fits grows.

    Examples:
      >>> float(stationary_spread(10, 1.0))
      9.0
    """
    n = _v.require_int("num_samples", num_samples, 1)
    h = _v.require_positive("bandwidth", bandwidth)
    return np.float64((n - 1) * h**2)
