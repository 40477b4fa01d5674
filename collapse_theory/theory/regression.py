r"""Closed-form theory of linear-regression collapse chains (THEORY.md §3–5; NumPy only).

Conventions, shared by every function here and by :class:`collapse_theory.models.LinearRegression`:

* **Test error is the excess risk** :math:`E\|\hat w - w^*\|_\Sigma^2 = E[(x^\top\hat w - y)^2] - \sigma^2` — the
  noise floor is *subtracted* (Gerstgrasser et al. Eq. 1; Dohmatob et al.'s :math:`E_{\rm test}`). Add σ² for noisy
  test labels.
* ``num_fits`` = n counts fits; the fit ``n = 1`` uses the real labels (Gerstgrasser's round 1).
* ``rows`` = T rows per fit, ``dim`` = d, ``noise_var`` = σ² of the label noise.
* Where an expectation is infinite (:math:`E\,\mathrm{tr}(X^\top X)^{-1} = \infty` for ``T <= d + 1``) the functions
  raise :class:`ValueError` instead of returning a number, so a simulation can never "verify" a finite value there.

Exact results (finite samples):

* Replace, fixed design X (any Σ): :math:`E[\|\hat w_n - w^*\|_\Sigma^2 \mid X] = n\sigma^2\,
  \mathrm{tr}(\Sigma(X^\top X)^{-1})`; averaged over Gaussian X: :math:`n\sigma^2 d/(T-d-1)` (THEORY.md §3.1).
* Accumulate, fixed X: :math:`\sigma^2 \mathrm{tr}(\Sigma(X^\top X)^{-1}) \sum_{i\le n} i^{-2} \le
  (\pi^2/6)\,\sigma^2 d/(T-d-1)`. With a fresh X each round the replace formula still holds, the accumulate
  identity does not (the chain runs below it, by an amount that grows with d/T: 2–3 % at d/T = 0.1, about 10 %
  at d/T = 5/16; THEORY.md §14.3).
* Downstream OLS (Dohmatob, Feng & Kempe 2024, Thm 4.1, exact): :math:`\sigma^2 d/(T-d-1) + n\sigma_0^2
  d/(T_0-d-1)`.
* Noiseless over-parametrised generator (Σ = I, σ0 = 0, T0 < d, minimum-norm fits): the fit is a projection of
  w0, so :math:`E\|\hat w_n\|^2 = \|w_0\|^2 (T_0/d)` for a fixed design and :math:`\|w_0\|^2 (T_0/d)^n` for
  independent designs (exact versions of Dohmatob et al. Thms 4.5/4.6).
* Strong model collapse (Dohmatob et al. 2025; isotropic, λ = 0, n1 real + n2 shifted rows, p2 = n2/n): the noise
  term :math:`(p_1\sigma_1^2 + p_2\sigma_2^2)\,d/(n-d-1)` and the mean shift :math:`E[\hat w] = w_1 + p_2\delta`
  are exact; the full error is the deterministic equivalent (THEORY.md §5.2, [D]):
  :math:`(p_1\sigma_1^2+p_2\sigma_2^2)\frac{\varphi}{1-\varphi} + \|\delta\|^2\big(p_2^2 +
  p_1p_2\frac{\varphi}{1-\varphi}\big)`, φ = d/n, with the plateau :math:`p_2^2\|\delta\|^2`.

Asymptotic (random-matrix) results are marked as such in their docstrings: the isotropic ridge Corollary 4.4 and
the power-law rates of Dohmatob et al. §5.

References:
  Gerstgrasser et al., "Is Model Collapse Inevitable?" (arXiv 2404.01413), §3; Dohmatob, Feng & Kempe, "Model
  Collapse Demystified: The Case of Regression" (NeurIPS 2024); Dohmatob, Feng, Subramonian & Kempe, "Strong
  Model Collapse" (ICLR 2025); Kazdan et al., "Collapse or Thrive?" (arXiv 2410.16713).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ._validate import require_finite, require_in_interval, require_int, require_int_array, require_positive

__all__ = [
    "inverse_trace",
    "replace_excess_risk",
    "accumulate_excess_risk",
    "accumulate_factor",
    "accumulate_bound",
    "inverse_trace_given_design",
    "replace_excess_risk_given_design",
    "accumulate_excess_risk_given_design",
    "downstream_ols_excess_risk",
    "isotropic_kappa",
    "downstream_ridge_isotropic",
    "noiseless_weight_norm",
    "noiseless_excess_risk",
    "mixture_noise_term",
    "mixture_mean_shift",
    "mixture_plateau",
    "mixture_excess_risk",
    "power_law_rate",
    "optimal_ridge_exponent",
]


def _nonneg(name, value) -> float:
    return require_in_interval(name, value, 0.0, np.inf)


def _fits(num_fits, minimum: int = 1) -> np.ndarray:
    return require_int_array("num_fits", num_fits, minimum)


def _out(values, like: np.ndarray):
    values = np.asarray(values, dtype=np.float64)
    return float(values) if like.ndim == 0 else values


def inverse_trace(dim, rows, *, name: str = "rows") -> float:
    r""":math:`E\,\mathrm{tr}(\Sigma(X^\top X)^{-1}) = d/(T-d-1)` for T i.i.d. rows :math:`N(0, \Sigma)`, any Σ
    (Dohmatob et al. Lemma F.3: :math:`E\hat\Sigma^{-1} = \frac{T}{T-d-1}\Sigma^{-1}`).

    Raises:
      ValueError: ``rows <= dim + 1``, where the expectation is infinite.

    Examples:
      >>> round(inverse_trace(10, 40), 6)
      0.344828
    """
    d = require_int("dim", dim, 1)
    t = require_int(name, rows, 1)
    if t <= d + 1:
        raise ValueError(
            f"{name}={t} is out of range: need {name} >= dim + 2 = {d + 2}; E tr((X^T X)^-1) is infinite for "
            f"{name} <= dim + 1 (and X^T X is singular for {name} < dim)"
        )
    return d / (t - d - 1)


_EXACT_TERMS = 100_000
r"""Fit counts summed term by term; beyond, the tail is :math:`\psi'(k+1) - \psi'(n+1)` (trigamma), so a huge
``num_fits`` builds no table."""


def accumulate_factor(num_fits):
    r""":math:`\sum_{i=1}^n 1/i^2` (1, 1.25, 1.3611, …, → π²/6 ≈ 1.6449), for n >= 1."""
    n = _fits(num_fits)
    flat = n.reshape(-1)
    exact = min(int(flat.max()), _EXACT_TERMS)
    table = np.cumsum(1.0 / np.arange(1, exact + 1) ** 2)
    out = table[np.minimum(flat, exact) - 1]
    far = flat > exact
    if np.any(far):
        out[far] += special.polygamma(1, exact + 1.0) - special.polygamma(1, flat[far] + 1.0)
    return _out(out.reshape(n.shape), n)


def replace_excess_risk(num_fits, dim, rows, noise_var=1.0):
    r"""Replace chain, fixed (or fresh) Gaussian design: :math:`E\|\hat w_n - w^*\|_\Sigma^2 =
    n\sigma^2 d/(T-d-1)` (Gerstgrasser et al. §3.1; exact, any Σ).

    Examples:
      >>> round(replace_excess_risk(10, 10, 40), 4)
      3.4483
    """
    n = _fits(num_fits)
    return _out(n * _nonneg("noise_var", noise_var) * inverse_trace(dim, rows), n)


def accumulate_excess_risk(num_fits, dim, rows, noise_var=1.0):
    r"""Accumulate chain, **fixed** design: :math:`\sigma^2 \frac{d}{T-d-1}\sum_{i=1}^n i^{-2}` (exact, any Σ).

    Does not apply to fresh designs: the chain then runs below it, by 2–3 % at d/T = 0.1 and about 10 % at
    d/T = 5/16 (THEORY.md §14.3).

    Examples:
      >>> round(accumulate_excess_risk(10, 10, 40), 4)
      0.5344
    """
    n = _fits(num_fits)
    return _out(_nonneg("noise_var", noise_var) * inverse_trace(dim, rows) * np.asarray(accumulate_factor(n)), n)


def accumulate_bound(dim, rows, noise_var=1.0) -> float:
    r"""The accumulate ceiling :math:`(\pi^2/6)\,\sigma^2 d/(T-d-1)`."""
    return math.pi**2 / 6 * _nonneg("noise_var", noise_var) * inverse_trace(dim, rows)


def _spectrum(spectrum, d: int) -> np.ndarray:
    if spectrum is None:
        return np.ones(d)
    spec = np.asarray(spectrum, dtype=np.float64)
    if spec.shape != (d,) or not np.all(np.isfinite(spec)) or np.any(spec <= 0):
        raise ValueError(f"spectrum={spectrum!r} is out of range: need {d} finite eigenvalues > 0")
    return spec


def inverse_trace_given_design(design, spectrum=None) -> float:
    r""":math:`\mathrm{tr}(\Sigma (X^\top X)^{-1})` for a given design ``X`` (T, d), Σ = diag(``spectrum``).

    Raises:
      ValueError: when :math:`X^\top X` is singular (T < d or collinear rows): the OLS error is then not this
        formula (the minimum-norm fit keeps a bias; Dohmatob et al. Thms 4.5/4.6).
    """
    x = np.asarray(design, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("design must be a finite (rows, dim) array")
    t, d = x.shape
    spec = _spectrum(spectrum, d)
    if t < d or np.linalg.matrix_rank(x) < d:
        raise ValueError(f"design has rank {np.linalg.matrix_rank(x)} < dim={d}: X^T X is singular (rows={t})")
    gram_inv = np.linalg.inv(x.T @ x)
    return float(np.sum(spec * np.diag(gram_inv)))


def replace_excess_risk_given_design(num_fits, design, noise_var=1.0, spectrum=None):
    r"""Replace chain conditional on the fixed design: :math:`n\sigma^2 \mathrm{tr}(\Sigma(X^\top X)^{-1})`."""
    n = _fits(num_fits)
    return _out(n * _nonneg("noise_var", noise_var) * inverse_trace_given_design(design, spectrum), n)


def accumulate_excess_risk_given_design(num_fits, design, noise_var=1.0, spectrum=None):
    r"""Accumulate chain conditional on the fixed design: :math:`\sigma^2\mathrm{tr}(\Sigma(X^\top X)^{-1})
    \sum_{i\le n} i^{-2}`."""
    n = _fits(num_fits)
    scale = _nonneg("noise_var", noise_var) * inverse_trace_given_design(design, spectrum)
    return _out(scale * np.asarray(accumulate_factor(n)), n)


def downstream_ols_excess_risk(num_fits, dim, rows, generator_rows, noise_var=1.0, generator_noise_var=1.0):
    r"""Dohmatob, Feng & Kempe (2024) Thm 4.1, exact in finite samples: OLS on T rows labelled (noise σ²) by the
    n-th generator of an OLS chain with :math:`T_0` rows and noise :math:`\sigma_0^2` per generation,

    .. math:: E_{\rm test} = \sigma^2\frac{d}{T-d-1} + n\,\sigma_0^2\frac{d}{T_0-d-1}

    (fresh or fixed generator designs). ``num_fits = n >= 0`` (n = 0: the downstream fit on clean data).

    Examples:
      >>> round(downstream_ols_excess_risk(2, 10, 100, 50, 1.0, 0.5), 5)
      0.36877
    """
    n = _fits(num_fits, minimum=0)
    clean = _nonneg("noise_var", noise_var) * inverse_trace(dim, rows)
    per_fit = _nonneg("generator_noise_var", generator_noise_var) * inverse_trace(
        dim, generator_rows, name="generator_rows"
    )
    return _out(clean + n * per_fit, n)


def isotropic_kappa(ridge, phi) -> float:
    r"""κ(λ, φ) for Σ = I: :math:`\kappa = \tfrac12(\lambda + \varphi - 1 + \sqrt{(\lambda + \varphi - 1)^2 +
    4\lambda})` (Dohmatob et al. §4; at λ = 0 it is max(φ − 1, 0))."""
    lam = _nonneg("ridge", ridge)
    phi = require_positive("phi", phi)
    bar = lam + phi - 1.0
    return 0.5 * (bar + math.sqrt(bar * bar + 4 * lam))


def downstream_ridge_isotropic(
    num_fits, dim, rows, generator_rows, ridge, noise_var=1.0, generator_noise_var=1.0, weight_norm_sq=1.0
):
    r"""**Asymptotic** (random-matrix limit T, d → ∞, d/T → φ): Dohmatob, Feng & Kempe Corollary 4.4, Σ = I,
    downstream ridge(λ) on T rows after n OLS generations with :math:`T_0 \ge d` rows,

    .. math:: E_{\rm test} \simeq \frac{\kappa^2\|w_0\|^2 + \sigma^2\varphi}{(1+\kappa)^2 - \varphi}
        + n\sigma_0^2\frac{\varphi_0}{1-\varphi_0}\,\frac{1}{(1+\kappa)^2}
        \Big[1 + \frac{\varphi\kappa^2}{(1+\kappa)^2-\varphi}\Big],

    φ = d/T, φ0 = d/T0, κ = :func:`isotropic_kappa` (λ, φ). At d = 200 it is within about 1 % of a simulation
    (THEORY.md §4.2), so compare it with a relative tolerance, not a z-score.

    Domain: :math:`T_0 \ge d + 2` (the OLS generator's finite-sample expected error is infinite for
    :math:`T_0 \le d + 1`), and for λ = 0 also T ∉ {d − 1, d, d + 1}, where the ridgeless downstream fit's
    expected error is infinite (at T = d the formula divides by zero).
    """
    n = _fits(num_fits, minimum=0)
    d = require_int("dim", dim, 1)
    t = require_int("rows", rows, 1)
    t0 = require_int("generator_rows", generator_rows, 1)
    if t0 <= d + 1:
        raise ValueError(f"generator_rows={t0} is out of range: need generator_rows >= dim + 2 = {d + 2} (the OLS "
                         f"generator's expected error is infinite for generator_rows <= dim + 1; Corollary 4.4)")
    lam = _nonneg("ridge", ridge)
    if lam == 0 and abs(t - d) <= 1:
        raise ValueError(f"rows={t} is out of range for ridge=0: need rows <= dim - 2 = {d - 2} or rows >= dim + 2 = "
                         f"{d + 2}; the ridgeless fit's expected error is infinite for |rows - dim| <= 1")
    phi, phi0 = d / t, d / t0
    kappa = isotropic_kappa(lam, phi)
    gap = (1 + kappa) ** 2 - phi
    clean = (kappa**2 * _nonneg("weight_norm_sq", weight_norm_sq) + _nonneg("noise_var", noise_var) * phi) / gap
    rho = phi0 / (1 - phi0) / (1 + kappa) ** 2 * (1 + phi * kappa**2 / gap)
    return _out(clean + n * _nonneg("generator_noise_var", generator_noise_var) * rho, n)


def noiseless_weight_norm(num_fits, dim, rows, design="fixed", weight_norm_sq=1.0):
    r"""Σ = I, noiseless labels (σ0 = 0), minimum-norm fits on ``rows`` = T0 < d rows: the n-th fit is
    :math:`P_{n-1}\cdots P_0 w_0` with :math:`P_m` the orthogonal projection on a uniformly random T0-dimensional
    row space, so (exactly)

    .. math:: E\|\hat w_n\|^2 = \|w_0\|^2 \cdot (T_0/d) \;\text{(fixed design)}, \qquad
              \|w_0\|^2 (T_0/d)^n \;\text{(fresh designs)},

    the finite-sample versions of Dohmatob et al. Thm 4.5 (bias jump constant in n) and Thm 4.6 (catastrophic,
    exponential in n). For T0 ≥ d the fit is exact and the norm stays :math:`\|w_0\|^2`.
    """
    n = _fits(num_fits)
    d = require_int("dim", dim, 1)
    t0 = require_int("rows", rows, 1)
    if not isinstance(design, str) or design not in ("fixed", "fresh"):
        raise ValueError(f"design={design!r} is not one of ('fixed', 'fresh')")
    ratio = min(t0 / d, 1.0)
    values = ratio * np.ones(n.shape) if design == "fixed" else ratio ** n.astype(np.float64)
    return _out(_nonneg("weight_norm_sq", weight_norm_sq) * values, n)


def noiseless_excess_risk(num_fits, dim, rows, design="fixed", weight_norm_sq=1.0):
    r"""The same chain's error :math:`E\|\hat w_n - w_0\|^2` (the bias jump ΔBias of Dohmatob et al. Thms
    4.5/4.6, exact in finite samples): :math:`\|w_0\|^2 (1 - T_0/d)` (fixed design) and
    :math:`\|w_0\|^2 (1 - (T_0/d)^n)` (fresh designs).

    Derivation: :math:`\hat w_n = Q w_0` with :math:`Q = P_{n-1}\cdots P_0`, so :math:`E\|\hat w_n - w_0\|^2 =
    \|w_0\|^2 - 2 E\langle Q w_0, w_0\rangle + E\|Q w_0\|^2`; a uniformly random T0-dimensional projection has
    :math:`E P = (T_0/d) I`, and independent ones multiply, so the middle term is twice
    :func:`noiseless_weight_norm`'s value (a fixed design repeats one projection, :math:`P_0^n = P_0`).

    Examples:
      >>> float(noiseless_excess_risk(3, 40, 20, "fresh"))
      0.875
    """
    norm = noiseless_weight_norm(num_fits, dim, rows, design, weight_norm_sq)
    return _nonneg("weight_norm_sq", weight_norm_sq) - norm


def _mixture_args(num_total, dim, p2):
    n = require_int("num_total", num_total, 1)
    d = require_int("dim", dim, 1)
    p2 = require_in_interval("p2", p2, 0.0, 1.0)
    return n, d, p2


def mixture_noise_term(num_total, dim, p2, noise_var_real=1.0, noise_var_synth=1.0) -> float:
    r"""Strong model collapse, exact noise term (δ = 0): :math:`(p_1\sigma_1^2 + p_2\sigma_2^2)\,d/(n-d-1)` for
    OLS on n = n1 + n2 isotropic Gaussian rows (exchangeability of rows; THEORY.md §5.2)."""
    n, d, p2 = _mixture_args(num_total, dim, p2)
    noise = (1 - p2) * _nonneg("noise_var_real", noise_var_real) + p2 * _nonneg("noise_var_synth", noise_var_synth)
    return noise * inverse_trace(d, n, name="num_total")


def mixture_mean_shift(p2, delta_norm_sq=1.0) -> float:
    r"""Strong model collapse, exact: :math:`E\langle \hat w - w_1, \delta\rangle = p_2\|\delta\|^2`, since
    :math:`E[(X^\top X)^{-1}X_2^\top X_2] = p_2 I` (n ≥ d; exchangeable rows)."""
    return require_in_interval("p2", p2, 0.0, 1.0) * _nonneg("delta_norm_sq", delta_norm_sq)


def mixture_plateau(p2, delta_norm_sq=1.0) -> float:
    r"""The strong-collapse floor :math:`\lim_{n\to\infty} E_{\rm test} = p_2^2\|\delta\|_\Sigma^2`.

    The paper writes the floor as :math:`p_2^2 c^2` with the quality :math:`c^2 = \frac1d\mathrm{tr}\,\Sigma\Delta`
    (as paraphrased); the derivation gives :math:`p_2^2\,\mathrm{tr}\,\Sigma\Delta = p_2^2 E\|\delta\|_\Sigma^2`,
    which matches only if :math:`c^2` carries no 1/d. This function uses the derived form (THEORY.md §5.2 remark).
    """
    return require_in_interval("p2", p2, 0.0, 1.0) ** 2 * _nonneg("delta_norm_sq", delta_norm_sq)


def mixture_excess_risk(num_total, dim, p2, delta_norm_sq=1.0, noise_var_real=1.0, noise_var_synth=1.0):
    r"""Strong model collapse (Dohmatob et al., ICLR 2025), isotropic, ridgeless, **deterministic equivalent**:

    .. math:: E_{\rm test} \approx (p_1\sigma_1^2 + p_2\sigma_2^2)\frac{\varphi}{1-\varphi}
        + \|\delta\|^2\Big(p_2^2 + p_1 p_2 \frac{\varphi}{1-\varphi}\Big), \qquad \varphi = d/n < 1.

    The first-order term :math:`p_1p_2\|\delta\|^2\varphi/(1-\varphi)` is what the paper's Corollary 1 folds into
    :math:`O(\varphi^2)`; here the noise part uses the exact finite-sample factor d/(n − d − 1)
    (:func:`mixture_noise_term`). Within about 1 % of simulation at d ≥ 50 (THEORY.md §5.2).
    """
    n, d, p2 = _mixture_args(num_total, dim, p2)
    if d >= n:
        raise ValueError(f"num_total={n} is out of range: need num_total > dim={d} (φ = d/n < 1)")
    phi = d / n
    noise = mixture_noise_term(n, d, p2, noise_var_real, noise_var_synth)
    delta = _nonneg("delta_norm_sq", delta_norm_sq)
    return noise + delta * (p2**2 + (1 - p2) * p2 * phi / (1 - phi))


def power_law_rate(rows, beta, r, ell, num_fits=0, generator_rows=None, dim=None, noise_var=1.0,
                   generator_noise_var=1.0):
    r"""**Rate up to constants** (≍) of Dohmatob, Feng & Kempe Thm 5.1: power-law spectrum
    :math:`\lambda_k \asymp k^{-\beta}`, source exponent r, ridge :math:`\lambda = T^{-\ell}`, ``0 <= ell < beta``:

    .. math:: E_{\rm test} \asymp \max(\sigma^2, T^{1-2r_\wedge\ell-\ell/\beta})\,T^{-(1-\ell/\beta)}
        + \frac{n\sigma_0^2}{1-\varphi_0}\max(T/T_0, \varphi_0)\,T^{-(1-\ell/\beta)},

    :math:`r_\wedge = \min(r, 1)`, φ0 = d/T0. Returns the expression without its unknown constants: use it for
    slopes on log-log axes, not for values.
    """
    t = np.asarray(rows, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t < 1):
        raise ValueError(f"rows={rows!r} is out of range: need rows >= 1")
    beta = require_in_interval("beta", beta, 1.0, np.inf, lo_open=True)
    r = require_positive("r", r)
    ell = require_in_interval("ell", ell, 0.0, beta, hi_open=True)
    n = require_int("num_fits", num_fits, 0)
    r_min = min(r, 1.0)
    base = t ** (-(1 - ell / beta))
    clean = np.maximum(_nonneg("noise_var", noise_var), t ** (1 - 2 * r_min * ell - ell / beta)) * base
    if n == 0:
        return clean
    if generator_rows is None or dim is None:
        raise ValueError("num_fits > 0 needs generator_rows and dim")
    t0 = require_int("generator_rows", generator_rows, 1)
    d = require_int("dim", dim, 1)
    if t0 <= d + 1:
        raise ValueError(f"generator_rows={t0} is out of range: need generator_rows >= dim + 2 = {d + 2} (Thm 5.1; "
                         f"the OLS generator's expected error is infinite for generator_rows <= dim + 1)")
    phi0 = d / t0
    synth = n * _nonneg("generator_noise_var", generator_noise_var) / (1 - phi0) * np.maximum(t / t0, phi0) * base
    return clean + synth


def optimal_ridge_exponent(beta, r, a=0.0, b=1.0) -> float:
    r"""Dohmatob et al. Cor 5.2: with :math:`T_0 \asymp T^b` and :math:`n\sigma_0^2 \asymp T^a`, the optimal
    ridge exponent is :math:`\ell^* = \min((b-a)\ell_{\rm crit}, \beta)`, :math:`\ell_{\rm crit} =
    \beta/(2\beta r_\wedge + 1)` (a = 0, b = 1 gives the clean-data ℓ_crit)."""
    beta = require_in_interval("beta", beta, 1.0, np.inf, lo_open=True)
    r_min = min(require_positive("r", r), 1.0)
    a = require_finite("a", a)
    b = require_finite("b", b)
    if b < a:
        raise ValueError(f"b={b!r} is out of range: need b >= a={a!r}; the ridge exponent ℓ* = (b − a)·ℓ_crit must "
                         f"be in [0, β) (Thm 5.1), and no ℓ >= 0 makes the error vanish when b < a")
    return min((b - a) * beta / (2 * beta * r_min + 1), beta)
