r"""Exact theory for categorical (K-outcome) refitting chains and Zipf tails (NumPy/SciPy only).

A chain starts from the true distribution :math:`p_0` over K outcomes and repeatedly refits the empirical
frequencies of M samples drawn from the current model (maximum likelihood, no smoothing, temperature 1).
Conventions (THEORY.md §0, §7–8, §14):

* ``num_fits`` :math:`= t` counts **fits**: :math:`t = 0` is the truth, :math:`t = 1` the frequencies of the M
  real samples, :math:`t = 2` those of M samples of fit 1, and so on (THEORY.md §7's "t samplings, the first from
  the truth"); scalars give floats, arrays give arrays.
* **Replace** = the neutral haploid Wright–Fisher chain with population M: counts
  :math:`c_t \sim \mathrm{Multinomial}(M, p_{t-1})`, :math:`p_t = c_t/M`. Each coordinate is a 1-D Wright–Fisher
  chain on {0, …, M} with the binomial transition matrix :math:`P_{jk} = \binom{M}{k}(j/M)^k(1-j/M)^{M-k}`,
  started from :math:`c_1 \sim \mathrm{Binomial}(M, p_{0,i})`; every exact survival and fixation probability below
  is a row vector times a power of P.
* **Accumulate** = the pooled frequencies of every sample so far (the M real ones included), next M drawn from
  them.
* Inputs are validated: a ``ValueError`` names the parameter, the value and the allowed range.

References:
  Shumailov et al., Nature 631 (2024) §3.1 (discrete chain; fixation on i with probability :math:`p_{0,i}`);
  Kazdan et al., arXiv 2410.16713 (discrete workflow: uniform K, zero count, collapse time);
  Dohmatob, Feng, Yang, Charton, Kempe, "A Tale of Tails", arXiv 2402.07043 (Zipf data, the memorizer/"Hutter LLM"
  error and tail cutting); Kimura (1955) and Littler (1975) diffusion approximations (marked as approximations).
  Exact forms: THEORY.md §7.1–7.2 and §8 [D].
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from . import _validate as _v

__all__ = [
    "zipf_probs",
    "heterozygosity",
    "expected_heterozygosity",
    "accumulate_heterozygosity_limit",
    "expected_smoothed_probs",
    "expected_smoothed_heterozygosity",
    "smoothed_heterozygosity_limit",
    "transition_matrix",
    "count_distribution",
    "survival_probability",
    "fixation_probability",
    "eventual_fixation_probability",
    "not_fixed_probability",
    "fixation_time_moments",
    "expected_surviving",
    "expected_zero_count",
    "expected_lost_mass",
    "first_fit_zero_count",
    "expected_tail_mass",
    "zipf_tail_mass",
    "zipf_tail_mass_asymptote",
    "memorizer_error",
    "memorizer_error_asymptote",
    "tail_mass_lost_per_generation",
    "tail_cut_memorizer_error",
    "survival_probability_diffusion",
    "expected_fixation_time_diffusion",
]

MAX_MATRIX_SAMPLES = 5000
"""Largest M for the exact (M+1)×(M+1) transition-matrix computations (200 MB in float64)."""

_SUM_TOL = 1e-6


# ----------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------
def _probs(name: str, value, *, distribution: bool = True) -> np.ndarray:
    """A 1-D float array of probabilities in [0, 1]; a distribution must sum to 1 within 1e-6 (renormalised)."""
    try:
        p = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}={value!r} is not an array of probabilities") from exc
    if p.ndim == 0:
        p = p[None]
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} has shape {p.shape}: need a non-empty 1-D array of probabilities")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains non-finite values: need probabilities in [0, 1]")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"{name} has entries outside [0, 1] (min {p.min():.3g}, max {p.max():.3g}): need "
                         "probabilities in [0, 1]")
    if distribution:
        total = float(p.sum())
        if abs(total - 1.0) > _SUM_TOL:
            raise ValueError(f"{name} sums to {total!r}: need probabilities summing to 1 (within {_SUM_TOL:g})")
        p = p / total
    return p


_EXACT_TERMS = 100_000
"""Factors of the accumulate product multiplied term by term; the rest through a trigamma tail."""


def _fits(num_fits, minimum: int = 0) -> np.ndarray:
    return _v.require_int_array("num_fits", num_fits, minimum)


def _samples(num_samples, *, matrix: bool = False) -> int:
    m = _v.require_int("num_samples", num_samples, 1)
    if matrix and m > MAX_MATRIX_SAMPLES:
        raise ValueError(f"num_samples={m} is out of range: need num_samples <= {MAX_MATRIX_SAMPLES} for the exact "
                         f"(M+1)x(M+1) transition matrix")
    return m


def _shape_like(fits: np.ndarray, values: np.ndarray):
    return values.reshape(fits.shape) if fits.ndim else values.reshape(()).item()


# ----------------------------------------------------------------------------------------------------------------
# distributions
# ----------------------------------------------------------------------------------------------------------------
def zipf_probs(num_categories, beta) -> np.ndarray:
    r"""Zipf probabilities :math:`p_i = i^{-\beta}/\sum_{j\le K} j^{-\beta}`, i = 1..K (returned 0-based).

    Args:
      num_categories: K >= 2.
      beta: exponent β >= 0 (β = 0 is uniform).

    Examples:
      >>> zipf_probs(3, 1.0).round(4)
      array([0.5455, 0.2727, 0.1818])
    """
    k = _v.require_int("num_categories", num_categories, 2)
    beta = _v.require_in_interval("beta", beta, 0.0, np.inf)
    log_w = -beta * np.log(np.arange(1, k + 1, dtype=np.float64))
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def heterozygosity(probs) -> float:
    r"""Gini–Simpson index :math:`H = 1 - \sum_i p_i^2` of a distribution."""
    p = _probs("probs", probs)
    return float(1.0 - np.sum(p * p))


# ----------------------------------------------------------------------------------------------------------------
# heterozygosity (THEORY.md §7.1, §7.2)
# ----------------------------------------------------------------------------------------------------------------
def expected_heterozygosity(num_fits, num_samples, h0, regime: str = "replace"):
    r"""Expected Gini–Simpson index after t fits.

    * replace (Wright–Fisher): :math:`\mathbb E H_t = (1 - 1/M)^t H_0` (exact; THEORY.md §7.1), since
      :math:`\mathbb E[H_t \mid p_{t-1}] = (1-1/M) H_{t-1}`;
    * accumulate (pooled frequencies of tM samples): :math:`\mathbb E H_t = H_0 \prod_{k=1}^t (1 - 1/(Mk^2))`
      (exact; §7.2), tending to :math:`H_0\,\sin(\pi/\sqrt M)/(\pi/\sqrt M)`.

    Args:
      num_fits: t >= 0 (int or int array).
      num_samples: M >= 1 per generation.
      h0: :math:`H_0 = 1 - \sum_i p_{0,i}^2` of the truth, in [0, 1).
      regime: ``"replace"`` or ``"accumulate"``.

    Examples:
      >>> round(expected_heterozygosity(10, 10, 0.8), 5)
      0.27894
    """
    t = _fits(num_fits)
    m = _samples(num_samples)
    h0 = _v.require_in_interval("h0", h0, 0.0, 1.0, hi_open=True)
    if regime == "replace":
        out = h0 * (1.0 - 1.0 / m) ** t.astype(np.float64)
    elif regime == "accumulate":
        flat = t.reshape(-1)
        top = min(int(flat.max()), _EXACT_TERMS)
        k = np.arange(1, top + 1, dtype=np.float64)
        cum = np.concatenate([[1.0], np.cumprod(1.0 - 1.0 / (m * k * k))])
        out = cum[np.minimum(flat, top)]
        far = flat > top
        if np.any(far):  # Π_{top<k<=t} (1 − a/k²) = exp(−a Σ 1/k² + O(a²/top³)), a = 1/M: no table of t terms
            tail = special.polygamma(1, top + 1.0) - special.polygamma(1, flat[far] + 1.0)
            out[far] *= np.exp(-tail / m)
        out = h0 * out.reshape(t.shape)
    else:
        raise ValueError(f"regime={regime!r} is not one of ('replace', 'accumulate')")
    return _shape_like(t, np.asarray(out, dtype=np.float64))


def accumulate_heterozygosity_limit(num_samples, h0=1.0) -> float:
    r""":math:`\lim_t \mathbb E H_t = H_0 \prod_{k\ge1}(1 - 1/(Mk^2)) = H_0\,\sin(\pi/\sqrt M)/(\pi/\sqrt M)`
    (accumulate, temperature 1; M >= 1, H0 in [0, 1]; the default ``h0=1.0`` gives the factor alone)."""
    m = _samples(num_samples)
    h0 = _v.require_in_interval("h0", h0, 0.0, 1.0)
    x = math.pi / math.sqrt(m)
    return float(h0 * math.sin(x) / x)


# ----------------------------------------------------------------------------------------------------------------
# add-α smoothed refits (replace): drift with "mutation" towards uniform
# ----------------------------------------------------------------------------------------------------------------
def _smoothing(smoothing) -> float:
    return _v.require_in_interval("smoothing", smoothing, 0.0)


def expected_smoothed_probs(num_fits, num_samples, p0, smoothing):
    r"""Expected probabilities after t add-α smoothed refits (replace, temperature 1).

    Each fit is :math:`p_t = (c_t + \alpha)/(M + K\alpha)` with :math:`c_t \sim \mathrm{Multinomial}(M, p_{t-1})`,
    the first from the truth :math:`p_0`. The fit is linear in the counts and :math:`\mathbb E[c_t \mid p_{t-1}] =
    M p_{t-1}`, so

    .. math:: \mathbb E p_t = u + r^t (p_0 - u), \qquad r = \frac{M}{M + K\alpha},\ u = \frac1K

    (exact; derived here, Monte-Carlo checked by ``check --name categorical-smoothed-replace``): smoothing pulls
    every probability geometrically to the uniform 1/K, by the factor r per fit. With α = 0, the
    Wright–Fisher martingale :math:`\mathbb E p_t = p_0`. The same law holds for any row of an add-α smoothed
    n-gram table that is refitted on exactly M draws from itself, e.g. the sentence-start row of
    :class:`~collapse_theory.models.NGram` (K = V − 2 emittable tokens).

    Args:
      num_fits: t >= 0 (int or int array).
      num_samples: M >= 1.
      p0: the truth, a distribution over K outcomes.
      smoothing: α >= 0.

    Returns:
      Array (K,) for a scalar t, else shape ``t.shape + (K,)``.

    Examples:
      >>> expected_smoothed_probs(1, 10, [1.0, 0.0], 0.5).round(4).tolist()
      [0.9545, 0.0455]
    """
    t = _fits(num_fits)
    m = _samples(num_samples)
    p = _probs("p0", p0)
    alpha = _smoothing(smoothing)
    k = p.size
    r = m / (m + k * alpha)
    u = 1.0 / k
    out = u + (r ** t.astype(np.float64))[..., None] * (p - u)
    return out.reshape(t.shape + (k,))


def _smoothed_heterozygosity_law(m: int, k: int, alpha: float) -> tuple[float, float]:
    """(a, H*) of :func:`expected_smoothed_heterozygosity`, both free of cancellation."""
    a = m * (m - 1) / (m + k * alpha) ** 2
    limit = alpha * (k - 1) * (2 * m + k * alpha) / (m + 2 * m * k * alpha + (k * alpha) ** 2)
    return a, limit


def expected_smoothed_heterozygosity(num_fits, num_samples, h0, smoothing, num_categories):
    r"""Expected Gini–Simpson index after t add-α smoothed refits (replace, temperature 1).

    With :math:`s_t = \mathbb E\sum_i p_{t,i}^2` and :math:`\mathbb E[(c_i+\alpha)^2 \mid p] = Mp_i(1-p_i) +
    M^2p_i^2 + 2\alpha M p_i + \alpha^2`, :math:`s_t = a\,s_{t-1} + b` with :math:`a = M(M-1)/(M+K\alpha)^2` and
    :math:`b = (M(1+2\alpha) + K\alpha^2)/(M+K\alpha)^2`; in terms of :math:`H = 1 - s`,

    .. math:: \mathbb E H_t = H^* + a^t (H_0 - H^*),\qquad
              H^* = \frac{\alpha (K-1)(2M + K\alpha)}{M + 2MK\alpha + K^2\alpha^2}

    (exact; derived here, Monte-Carlo checked by ``check --name categorical-smoothed-replace``). α = 0 gives
    Wright–Fisher's :math:`(1-1/M)^t H_0`; α > 0 is a drift–mutation balance: H tends to :math:`H^* > 0`, below
    the uniform distribution's 1 − 1/K, whatever the truth.

    Args:
      num_fits: t >= 0 (int or int array).
      num_samples: M >= 1.
      h0: :math:`H_0` of the truth, in [0, 1).
      smoothing: α >= 0.
      num_categories: K >= 1.

    Examples:
      >>> round(expected_smoothed_heterozygosity(10, 10, 0.8, 0.0, 5), 5)  # Wright–Fisher
      0.27894
      >>> round(smoothed_heterozygosity_limit(10, 0.1, 10), 5)
      0.60968
    """
    t = _fits(num_fits)
    m = _samples(num_samples)
    h0 = _v.require_in_interval("h0", h0, 0.0, 1.0, hi_open=True)
    alpha = _smoothing(smoothing)
    k = _v.require_int("num_categories", num_categories, 1)
    if h0 > 1.0 - 1.0 / k + 1e-12:
        raise ValueError(f"h0={h0!r} is out of range: need h0 <= 1 - 1/num_categories = {1.0 - 1.0 / k:.6g} (the "
                         f"uniform distribution's heterozygosity is the largest over {k} categories)")
    a, limit = _smoothed_heterozygosity_law(m, k, alpha)
    out = limit + a ** t.astype(np.float64) * (h0 - limit)
    return _shape_like(t, np.asarray(out, dtype=np.float64))


def smoothed_heterozygosity_limit(num_samples, smoothing, num_categories) -> float:
    r""":math:`H^* = \lim_t \mathbb E H_t` of :func:`expected_smoothed_heterozygosity` (0 when α = 0)."""
    m = _samples(num_samples)
    alpha = _smoothing(smoothing)
    k = _v.require_int("num_categories", num_categories, 1)
    return float(_smoothed_heterozygosity_law(m, k, alpha)[1])


# ----------------------------------------------------------------------------------------------------------------
# exact Wright-Fisher marginals (THEORY.md §7.1, replace chain, temperature 1, no smoothing)
# ----------------------------------------------------------------------------------------------------------------
def transition_matrix(num_samples) -> np.ndarray:
    r"""The (M+1)×(M+1) Wright–Fisher matrix :math:`P_{jk} = \Pr(c' = k \mid c = j) = \mathrm{Binom}(k; M, j/M)`.

    Rows sum to 1; states 0 (lost) and M (fixed) are absorbing.
    """
    from scipy import stats

    m = _samples(num_samples, matrix=True)
    j = np.arange(m + 1)
    return stats.binom.pmf(j[None, :], m, (j / m)[:, None])


def count_distribution(num_fits, num_samples, p0) -> np.ndarray:
    r"""Law of each category's count :math:`c_{t,i} = M p_{t,i}` after t >= 1 fits of the replace chain.

    :math:`c_{1,i} \sim \mathrm{Binomial}(M, p_{0,i})` and :math:`\Pr(c_{t,i} = \cdot) = b_i P^{t-1}` with
    :math:`b_i` that binomial row and P :func:`transition_matrix` (exact).

    Args:
      num_fits: t >= 1, int or 1-D int array.
      num_samples: M (at most ``MAX_MATRIX_SAMPLES``).
      p0: per-category initial probabilities (1-D, each in [0, 1]; they need not sum to 1 here).

    Returns:
      Array of shape ``(len(t), len(p0), M+1)`` (or ``(len(p0), M+1)`` for a scalar t).
    """
    from scipy import stats

    t = _fits(num_fits, 1)
    m = _samples(num_samples, matrix=True)
    p = _probs("p0", p0, distribution=False)
    if t.ndim > 1:
        raise ValueError(f"num_fits has shape {t.shape}: need an int or a 1-D int array")
    flat = np.atleast_1d(t)
    unique, inverse = np.unique(p, return_inverse=True)
    pmf = stats.binom.pmf(np.arange(m + 1)[None, :], m, unique[:, None])  # (U, M+1) after one fit
    trans = transition_matrix(m) if flat.max() > 1 else None
    order = np.argsort(flat, kind="stable")
    out = np.empty((flat.size, unique.size, m + 1))
    current, fits_done = pmf, 1
    for idx in order:
        while fits_done < flat[idx]:
            current = current @ trans
            fits_done += 1
        out[idx] = current
    out = out[:, inverse, :]
    return out[0] if t.ndim == 0 else out


def _marginal(num_fits, num_samples, p0, state: str) -> np.ndarray:
    t = _fits(num_fits, 0)
    p = _probs("p0", p0, distribution=False)
    flat = t.reshape(-1)
    result = np.empty((flat.size, p.size))
    zero = flat == 0
    if np.any(zero):
        result[zero] = (p > 0) if state == "survive" else (p == 1)
    if np.any(~zero):
        m = _samples(num_samples, matrix=True)
        pmf = count_distribution(flat[~zero], m, p)
        result[~zero] = 1.0 - pmf[..., 0] if state == "survive" else pmf[..., m]
    else:
        _samples(num_samples, matrix=True)
    return result[0] if t.ndim == 0 else result.reshape(t.shape + (p.size,))


def survival_probability(num_fits, num_samples, p0) -> np.ndarray:
    r"""Exact :math:`\Pr(p_{t,i} > 0) = 1 - [b_i P^{t-1}]_0` for each category (replace chain; THEORY.md §7.1).

    Shape ``(K,)`` for a scalar t, ``t.shape + (K,)`` otherwise; t = 0 gives :math:`1[p_{0,i} > 0]`.

    Examples:
      >>> float(survival_probability(1, 10, [0.1, 0.9])[0]).__round__(4)   # 1 - 0.9^10
      0.6513
    """
    return _marginal(num_fits, num_samples, p0, "survive")


def fixation_probability(num_fits, num_samples, p0) -> np.ndarray:
    r"""Exact :math:`\Pr(p_{t,i} = 1) = [b_i P^{t-1}]_M` (category i holds all the mass after t fits).

    Increases to :func:`eventual_fixation_probability` :math:`= p_{0,i}` as t → ∞ (Shumailov et al. §3.1).
    """
    return _marginal(num_fits, num_samples, p0, "fix")


def eventual_fixation_probability(p0) -> np.ndarray:
    r""":math:`\Pr(\text{the chain ends on } i) = p_{0,i}` (the counts are a bounded martingale; THEORY.md §1.2,
    §7.1)."""
    return _probs("p0", p0).copy()


def not_fixed_probability(num_fits, num_samples, p0):
    r"""Exact :math:`\Pr(T > t) = 1 - \sum_i \Pr(p_{t,i} = 1)`, T = the first fit after which one category holds all
    the mass (the events are disjoint). With α = 0 this is also Kazdan et al.'s "entropy < 1e-8" stopping time."""
    p = _probs("p0", p0)
    return _reduce(p[None, :] - fixation_probability(np.atleast_1d(num_fits), num_samples, p), num_fits) \
        if np.ndim(num_fits) else float(np.sum(p - fixation_probability(num_fits, num_samples, p)))


def fixation_time_moments(num_samples, p0) -> tuple[float, float]:
    r"""Exact mean and variance of the fixation (collapse) time T >= 1 of the replace chain, in fits.

    With Q the transient block (states 1..M−1) of :func:`transition_matrix`, :math:`N = (I-Q)^{-1}`,
    :math:`h_j = j/M` (the probability of fixing on a category of count j) and :math:`b_i` the Binomial(M, p_{0,i})
    law of the first count restricted to transient states,

    .. math:: \mathbb E T = 1 + \sum_i b_i N h, \qquad \mathbb E T^2 = 1 + \sum_i b_i (2N^2 + N) h,

    because :math:`\Pr(T > t) = \sum_i \Pr(c_{t,i} \text{ transient, later fixed})` for t >= 1 (THEORY.md §7.1).
    """
    from scipy import stats

    m = _samples(num_samples, matrix=True)
    p = _probs("p0", p0)
    if m == 1:
        return 1.0, 0.0
    q = transition_matrix(m)[1:m, 1:m]
    h = np.arange(1, m) / m
    a = np.eye(m - 1) - q
    x = np.linalg.solve(a, h)
    y = np.linalg.solve(a, x)
    b = stats.binom.pmf(np.arange(1, m)[None, :], m, p[:, None]).sum(axis=0)
    mean = 1.0 + float(b @ x)
    second = 1.0 + float(b @ (2.0 * y + x))
    return mean, max(second - mean * mean, 0.0)


def expected_surviving(num_fits, num_samples, p0):
    r"""Expected number of surviving categories :math:`\sum_i \Pr(p_{t,i} > 0)` (exact, via the matrix)."""
    p = _probs("p0", p0)
    return _reduce(survival_probability(num_fits, num_samples, p), num_fits)


def expected_zero_count(num_fits, num_samples, p0):
    r"""Expected number of zero-probability categories :math:`K - \sum_i \Pr(p_{t,i} > 0)` (Kazdan et al.;
    replace chain, temperature 1, exact through the (M+1) × (M+1) Wright–Fisher matrix, so M <= 5000)."""
    p = _probs("p0", p0)
    return _reduce(1.0 - survival_probability(num_fits, num_samples, p), num_fits)


def expected_lost_mass(num_fits, num_samples, p0):
    r"""Expected truth mass of the lost categories :math:`\sum_i p_{0,i}\Pr(p_{t,i} = 0)` (exact).

    At t = 1 this is the memorizer error :math:`\sum_i p_{0,i}(1-p_{0,i})^M` of :func:`memorizer_error`.
    """
    p = _probs("p0", p0)
    return _reduce(p * (1.0 - survival_probability(num_fits, num_samples, p)), num_fits)


def _reduce(per_category: np.ndarray, num_fits):
    total = per_category.sum(axis=-1)
    return float(total) if np.ndim(total) == 0 else total


def first_fit_zero_count(num_categories, num_samples, p0=None):
    r"""Expected number of categories absent from the M real samples: :math:`\sum_i (1 - p_{0,i})^M`.

    Uniform truth (``p0=None``): :math:`K(1 - 1/K)^M` (Kazdan et al.'s discrete start; THEORY.md §7.1).

    Examples:
      >>> round(first_fit_zero_count(10, 10), 4)
      3.4868
    """
    k = _v.require_int("num_categories", num_categories, 2)
    m = _samples(num_samples)
    if p0 is None:
        return float(k * math.exp(m * math.log1p(-1.0 / k)))
    p = _probs("p0", p0)
    if p.size != k:
        raise ValueError(f"p0 has {p.size} entries: need num_categories={k}")
    return float(np.sum(np.exp(m * np.log1p(-np.minimum(p, 1.0 - 1e-300)) * (p < 1)) * (p < 1)))


# ----------------------------------------------------------------------------------------------------------------
# Zipf tails and the memorizer ("Tale of Tails", THEORY.md §8)
# ----------------------------------------------------------------------------------------------------------------
def expected_tail_mass(p0, head):
    r""":math:`\mathbb E \sum_{i\ge h} p_{t,i} = \sum_{i\ge h} p_{0,i}` for every t (replace and accumulate at
    temperature 1: the frequencies are martingales). The *typical* tail mass falls; the mean does not."""
    p = _probs("p0", p0)
    h = _v.require_int("head", head, 1)
    if h >= p.size:
        raise ValueError(f"head={h} is out of range: need 1 <= head < K = {p.size}")
    return float(p[h:].sum())


def zipf_tail_mass(num_categories, beta, head) -> float:
    r"""Zipf mass beyond the head: :math:`\sum_{i > h} p_i` (ranks 1-based; 0-based indices >= h)."""
    p = zipf_probs(num_categories, beta)
    h = _v.require_int("head", head, 1)
    if h >= p.size:
        raise ValueError(f"head={h} is out of range: need 1 <= head < num_categories = {p.size}")
    return float(p[h:].sum())


def zipf_tail_mass_asymptote(head, beta) -> float:
    r"""K = ∞ approximation :math:`\sum_{i>h} i^{-\beta}/\zeta(\beta) \approx h^{1-\beta}/((\beta-1)\zeta(\beta))`
    (β > 1; approximation, accurate for large h)."""
    h = _v.require_int("head", head, 1)
    beta = _v.require_in_interval("beta", beta, 1.0, np.inf, lo_open=True)
    return float(h ** (1.0 - beta) / ((beta - 1.0) * special.zeta(beta)))


def memorizer_error(num_samples, probs):
    r"""Exact test error of a memorizer trained on T i.i.d. samples: :math:`E(T) = \sum_i p_i (1 - p_i)^T`.

    The "Hutter LLM" of Dohmatob et al. (A Tale of Tails, arXiv 2402.07043; THEORY.md §8): a context seen in
    training is answered correctly, an unseen one is an error. It equals the expected truth mass of the categories
    lost by the first fit on T samples (:func:`expected_lost_mass` at t = 1) and the expected Zipf tail mass lost in
    one generation of a chain at :math:`p` (tail loss per generation).

    Args:
      num_samples: T >= 0 (int or int array).
      probs: the distribution p.

    Examples:
      >>> round(memorizer_error(10_000, zipf_probs(10**6, 2.0)), 6)
      0.006909
    """
    t = _v.require_int_array("num_samples", num_samples, 0)
    p = _probs("probs", probs)
    log1m = np.log1p(-np.minimum(p, 1.0))
    vals = np.array([np.sum(np.where(p < 1, p * np.exp(tt * log1m), p * (tt == 0))) for tt in np.atleast_1d(t)])
    return _shape_like(t, vals)


def memorizer_error_asymptote(num_samples, beta):
    r"""Power law of the memorizer error for Zipf(β), K = ∞, β > 1 (approximation, T → ∞):

    .. math:: E(T) \approx \frac1\beta\,\Gamma(1 - 1/\beta)\,\zeta(\beta)^{-1/\beta}\, T^{-(1-1/\beta)}.

    (β = 2, T = 10⁴: 0.0069099 against the exact 0.0069096; THEORY.md §8.)
    """
    t = _v.require_int_array("num_samples", num_samples, 1)
    beta = _v.require_in_interval("beta", beta, 1.0, np.inf, lo_open=True)
    c = math.gamma(1.0 - 1.0 / beta) / beta * special.zeta(beta) ** (-1.0 / beta)
    return _shape_like(t, c * t.astype(np.float64) ** (-(1.0 - 1.0 / beta)))


def tail_mass_lost_per_generation(num_samples, probs, head: int = 0):
    r"""Expected mass lost in one generation by a model at p: :math:`\sum_{i \ge h} p_i (1 - p_i)^M`.

    The categories of index >= h (0-based; the Zipf tail beyond rank h) that draw none of the M samples are lost;
    with h = 0 this is :func:`memorizer_error` with T = M. For Zipf(β), K = ∞ and h = 0 it decays like
    :func:`memorizer_error_asymptote` :math:`\propto M^{-(1-1/\beta)}` (THEORY.md §8): the tail is cut at about
    rank :math:`M^{1/\beta}` per generation.
    """
    p = _probs("probs", probs)
    h = _v.require_int("head", head, 0)
    if h >= p.size:
        raise ValueError(f"head={h} is out of range: need 0 <= head < K = {p.size}")
    return _masked_memorizer(num_samples, p, np.arange(p.size) >= h)


def _masked_memorizer(num_samples, p, mask):
    t = _v.require_int_array("num_samples", num_samples, 0)
    log1m = np.log1p(-np.minimum(p, 1.0))
    vals = np.array([np.sum(np.where(mask & (p < 1), p * np.exp(tt * log1m), 0.0)) for tt in np.atleast_1d(t)])
    return _shape_like(t, vals)


def tail_cut_memorizer_error(num_samples, probs, cut):
    r"""Memorizer error when training data come from p cut at rank k (Tale of Tails' "tail cutting"):

    .. math:: E = \sum_{i \le k} p_i (1 - q_i)^T + \sum_{i > k} p_i, \qquad q_i = p_i / \sum_{j\le k} p_j,

    exact; the second sum is the plateau (":math:`T^{-c} + k^{-\beta c}`" for Zipf).
    """
    p = _probs("probs", probs)
    k = _v.require_int("cut", cut, 1)
    if k > p.size:
        raise ValueError(f"cut={k} is out of range: need 1 <= cut <= K = {p.size}")
    head = p[:k]
    mass = head.sum()
    if mass <= 0:
        raise ValueError("cut leaves no probability mass: need sum(probs[:cut]) > 0")
    t = _v.require_int_array("num_samples", num_samples, 0)
    q = head / mass
    log1m = np.log1p(-np.minimum(q, 1.0))
    vals = np.array([np.sum(np.where(q < 1, head * np.exp(tt * log1m), head * (tt == 0))) + p[k:].sum()
                     for tt in np.atleast_1d(t)])
    return _shape_like(t, vals)


# ----------------------------------------------------------------------------------------------------------------
# Kimura / Littler diffusion approximations (APPROXIMATIONS, not exact)
# ----------------------------------------------------------------------------------------------------------------
def survival_probability_diffusion(num_fits, num_samples, q):
    r"""**Approximation** (Kimura's diffusion, small q, t ≫ 1): :math:`\Pr(p_{t,i} > 0) \approx 1 - e^{-2Mq/t}`.

    Use :func:`survival_probability` for exact values; this form shows the scaling (a category of initial count
    Mq survives about 2Mq generations, Suresh et al.'s :math:`g_k \approx 2/k`).
    """
    t = _fits(num_fits, 1)
    m = _samples(num_samples)
    q = _probs("q", q, distribution=False)
    out = 1.0 - np.exp(-2.0 * m * q[None, :] / np.atleast_1d(t).astype(np.float64)[:, None])
    return out[0] if t.ndim == 0 else out.reshape(t.shape + (q.size,))


def expected_fixation_time_diffusion(num_samples, p0) -> float:
    r"""**Approximation** (Littler 1975; Kimura & Ohta 1969 for K = 2): mean number of generations until one
    category holds all the mass, from frequencies :math:`x = p_0`,

    .. math:: \mathbb E T \approx -2M \sum_i (1 - x_i)\log(1 - x_i)

    (haploid population M; uniform K: :math:`-2MK(1-1/K)\log(1-1/K) \to 2M`, about 1.9 M at K = 10).
    """
    m = _samples(num_samples)
    p = _probs("p0", p0)
    x = p[p < 1]
    return float(-2.0 * m * np.sum((1.0 - x) * np.log1p(-x)))
