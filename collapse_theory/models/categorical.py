r"""Categorical (K-outcome) refitting chains: Wright–Fisher resampling, tail loss, sampling temperature.

Each generation draws :math:`M` outcomes from the current model and refits the **empirical frequencies**, with
optional add-α (Laplace/Lidstone) smoothing over the K outcomes,

.. math::
   \hat p_i = \frac{c_i + \alpha}{\sum_j c_j + K\alpha}, \qquad c_i = \sum_{\text{rows } r:\, x_r = i} w_r,

(``smoothing=0``, the default, is the maximum-likelihood estimate used by Shumailov et al. §3.1 and Kazdan et al.'s
discrete workflow; frequency weights :math:`w_r` express every regime). With α = 0 a category that draws no sample
is lost for good: the replace chain is the neutral haploid **Wright–Fisher** model with population M
(THEORY.md §7.1) and every chain ends on a single category (probability :math:`p_{0,i}` of ending on i).

**Sampling temperature.** A fitted model *generates* from :math:`q_i \propto p_i^{1/\tau}` (``temperature`` τ);
the fitted parameters themselves stay the empirical frequencies. τ < 1 sharpens the distribution, so rare outcomes
are drawn even less and the tail is lost faster; τ = 1 (the default) samples :math:`p` itself and takes exactly the
untempered code path. The real distribution is never tempered: parameters carry a flag ``tempered`` (0 for the
truth from :meth:`Categorical.params`, 1 for every fitted model), so the real data of generation 1 and the fresh
real data of ``FreshFraction`` are drawn from :math:`p_0` itself.

**Exact path.** The sufficient statistics of M draws are the counts :math:`c \sim \mathrm{Multinomial}(M, q)`,
drawn exactly with a traced M by one of three samplers (``exact_sampler``; all exact, they differ in cost):

* **binomial tree** (any M): conditional binomials on a binary tree over the categories: the root holds M; a node
  with count n and children of masses (a, b) sends :math:`\mathrm{Binomial}(n, a/(a+b))` to the left child and the
  rest to the right; :math:`\lceil\log_2 K\rceil` vectorised levels and K − 1 binomial draws (:func:`binomial`)
  per chain-generation, whatever M is;
* **inverse CDF** (M <= ``max_samples``): ``max_samples`` i.i.d. draws of which the first M are counted;
* **sorted-uniform spacings** (M <= ``max_samples``): the M order statistics of uniforms from exponential spacings,
  counted against the CDF by K binary searches (:func:`spacings_counts`).

Accumulation is a running sum of counts (O(K) memory per chain). Counts are stored in the default float dtype:
exact integers up to :math:`2^{24}` in float32 and :math:`2^{53}` in float64.

**Sample path.** :meth:`sample` draws M category indices by inverse CDF (:math:`O(K + M\log K)`: one cumulative
sum and a binary search per draw; no (M, K) Gumbel matrix), and :meth:`fit` counts them with their weights. Both
paths have the same law (a test compares them). In float32 the cumulative sum carries an absolute error
of order :math:`10^{-7}` per category boundary, a relative bias of order :math:`10^{-7} K` on the probability of a
category of mass 1/K: use float64 (``jax_enable_x64``) for quantitative work at K ≳ 10⁴.

Theory: :mod:`collapse_theory.theory.categorical` (THEORY.md §7–8): heterozygosity
:math:`\mathbb E H_t = (1-1/M)^t H_0` (replace) and :math:`H_0\prod_{k\le t}(1-1/(Mk^2))` (accumulate);
fixation probabilities; exact survival through the (M+1)×(M+1) binomial transition matrix; the first-fit zero count
:math:`\sum_i (1-p_{0,i})^M`; the memorizer error :math:`\sum_i p_i(1-p_i)^T`. Generation indexing follows the
engine: ``t`` counts fits, ``t = 1`` is the fit on the M real samples (THEORY.md's "t samplings, the first from the
truth").

References:
  Shumailov et al., "AI models collapse when trained on recursively generated data", Nature 631 (2024), §3.1
  (discrete distributions with exact approximation); Kazdan et al., "Collapse or Thrive?" (arXiv 2410.16713), the
  discrete workflow; Dohmatob et al., "A Tale of Tails" (arXiv 2402.07043), Zipf data and tail cutting.

Examples:
  >>> import jax
  >>> from collapse_theory.models import Categorical
  >>> model = Categorical(num_categories=100, temperature=0.8)
  >>> truth = model.zipf(1.5)
  >>> x = model.sample(jax.random.key(0), truth, 1000)
  >>> x.shape
  (1000,)
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._random import unit_uniforms
from ..keys import fold_in
from ..theory._validate import is_real, require_ids

EXACT_SAMPLERS = ("auto", "tree", "inverse-cdf", "spacings")
PROB_SUM_TOL = 1e-6
"""``Categorical.params`` accepts probabilities whose sum is within this of 1 (and renormalises them)."""


class CategoricalParams(NamedTuple):
    r"""A categorical distribution over K outcomes.

    Attributes:
      probs: (K,) probabilities (non-negative, summing to 1).
      tempered: () 1.0 for a fitted model (its samples use the model's temperature), 0.0 for the real
        distribution (sampled as is).
      ids: ``None`` (``probs`` covers the K outcomes in order), or, for a model compacted to a support of L slots
        (``Categorical(support=L)``, ``simulate(compact=True)``), (L,) int32 outcome of each slot (K marks an
        unused slot, whose probability is 0).
    """

    probs: jax.Array
    tempered: jax.Array
    ids: jax.Array | None = None


class CategoricalStats(NamedTuple):
    """Sufficient statistics of a sample: ``counts`` (K,) (weighted counts, float dtype)."""

    counts: jax.Array


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def tempered_probs(probs: jax.Array, temperature: float) -> jax.Array:
    r""":math:`q_i = p_i^{1/\tau} / \sum_j p_j^{1/\tau}`, computed in log space (zeros stay zero)."""
    positive = probs > 0
    logits = jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)) / temperature, -jnp.inf)
    return jax.nn.softmax(logits)


_STIRLING_TAIL = (0.0810614667953272, 0.0413406959554092, 0.0276779256849983, 0.02079067210376509,
                  0.0166446911898211, 0.0138761288230707, 0.0118967099458917, 0.0104112652619720,
                  0.00925546218271273, 0.00833056343336287)


def _stirling_tail(k):
    """log k! − (Stirling's approximation), tabulated for k <= 9 (as in jax.random.binomial's BTRS)."""
    table = jnp.asarray(_STIRLING_TAIL, k.dtype)
    kc = jnp.clip(k, 0.0, 9.0)
    kp1sq = (k + 1) * (k + 1)
    approx = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / (k + 1)
    return jnp.where(k <= 9, table[jnp.floor(kc).astype(jnp.int32)], approx)


_BTRS_PROPOSALS = 3
"""BTRS proposals drawn at once per element; a ``while_loop`` draws more only when all of them are rejected."""


def _btrs_constants(n, q):
    stddev = jnp.sqrt(n * q * (1 - q))
    b = 1.15 + 2.53 * stddev
    a = -0.0873 + 0.0248 * b + 0.01 * q
    c = n * q + 0.5
    v_r = 0.92 - 4.2 / b
    r = q / (1 - q)
    alpha = (2.83 + 5.1 / b) * stddev
    m = jnp.floor((n + 1) * q)
    const = ((m + 0.5) * jnp.log((m + 1) / (r * (n - m + 1))) + _stirling_tail(m) + _stirling_tail(n - m))
    return a, b, c, v_r, r, alpha, m, const


def _btrs_proposals(u, v, n, constants):
    """Hörmann's BTRS test of proposals ``(u, v)`` (leading axis = proposals): (any accepted, first accepted k)."""
    a, b, c, v_r, r, alpha, m, const = (x[None] for x in constants)
    n = n[None]
    uu = u - 0.5
    us = 0.5 - jnp.abs(uu)
    k = jnp.floor((2 * a / us + b) * uu + c)
    accept1 = (us >= 0.07) & (v <= v_r)
    reject = (k < 0) | (k > n)
    safe_k = jnp.clip(k, 0.0, n)
    log_v = jnp.log(v * alpha / (a / (us * us) + b))
    bound = (const + (n + 1) * jnp.log((n - m + 1) / (n - safe_k + 1))
             + (safe_k + 0.5) * jnp.log(r * (n - safe_k + 1) / (safe_k + 1))
             - _stirling_tail(safe_k) - _stirling_tail(n - safe_k))
    accept = accept1 | (~reject & (log_v <= bound))
    first = jnp.argmax(accept, axis=0)
    return jnp.any(accept, axis=0), jnp.take_along_axis(k, first[None], axis=0)[0]


def binomial(key: jax.Array, count: jax.Array, prob: jax.Array) -> jax.Array:
    r"""Exact Binomial(count, prob) draws, elementwise over arrays of the same shape (float counts).

    The same two algorithms as ``jax.random.binomial`` (inversion when :math:`nq < 10`, Hörmann's BTRS
    transformed rejection otherwise; :math:`q = \min(p, 1-p)`, the draw for p > 1/2 is n minus a draw at 1 − p),
    arranged for vectorised CPU code: every uniform of a call comes from one Threefry call (:func:`unit_uniforms`,
    two words per hash); the inversion searches the CDF sequentially (a ``while_loop`` of arithmetic only); BTRS
    tests :data:`_BTRS_PROPOSALS` proposals at once and keeps the first accepted (the law of sequential
    rejection), drawing more in a ``while_loop`` only when all are rejected. The inversion's CDF is summed in
    floating point, so its law is exact up to rounding of order 1e-16 (float64). count = 0 or p in {0, 1} return
    the trivial value.
    """
    dtype = prob.dtype
    shape = prob.shape
    size = max(1, math.prod(shape))
    flip = prob > 0.5
    q = jnp.where(flip, 1.0 - prob, prob)
    trivial = (count <= 0) | (q <= 0)
    use_inv = (count * q < 10.0) | trivial
    u = unit_uniforms(key, (1 + 2 * _BTRS_PROPOSALS) * size, dtype).reshape((1 + 2 * _BTRS_PROPOSALS,) + shape)

    # inversion by sequential search of the CDF
    n_i = jnp.where(use_inv & ~trivial, count, 0.0)
    q_i = jnp.where(use_inv & ~trivial, q, 0.25)
    ratio = q_i / (1.0 - q_i)
    pk = jnp.exp(n_i * jnp.log1p(-q_i))

    def inv_body(state):
        k, pk, cdf, done = state
        k_new = k + 1.0
        pk_new = pk * (n_i - k) / k_new * ratio
        cdf_new = cdf + pk_new
        k = jnp.where(done, k, k_new)
        pk = jnp.where(done, pk, pk_new)
        cdf = jnp.where(done, cdf, cdf_new)
        done = done | (u[0] <= cdf) | (k >= n_i)
        return k, pk, cdf, done

    state = (jnp.zeros(shape, dtype), pk, pk, (u[0] <= pk) | (n_i <= 0))
    x_inv = jax.lax.while_loop(lambda s: jnp.any(~s[3]), inv_body, state)[0]

    # BTRS (Hörmann 1993) for n q >= 10
    n_b = jnp.where(use_inv, 1e4, count)
    q_b = jnp.where(use_inv, 0.5, q)
    constants = _btrs_constants(n_b, q_b)
    ok, k = _btrs_proposals(u[1:1 + _BTRS_PROPOSALS], u[1 + _BTRS_PROPOSALS:], n_b, constants)

    def btrs_body(state):
        i, k_out, accepted = state
        fresh = unit_uniforms(fold_in(key, i), 2 * _BTRS_PROPOSALS * size, dtype)
        fresh = fresh.reshape((2 * _BTRS_PROPOSALS,) + shape)
        ok_i, k_i = _btrs_proposals(fresh[:_BTRS_PROPOSALS], fresh[_BTRS_PROPOSALS:], n_b, constants)
        take = ~accepted & ok_i
        return i + 1, jnp.where(take, k_i, k_out), accepted | ok_i

    init = (jnp.int32(1), k, ok | use_inv)
    x_btrs = jax.lax.while_loop(lambda s: jnp.any(~s[2]), btrs_body, init)[1]
    x = jnp.where(trivial, 0.0, jnp.where(use_inv, x_inv, x_btrs))
    return jnp.where(flip, count - x, x)


def multinomial_tree(key: jax.Array, probs: jax.Array, n) -> jax.Array:
    r"""Exact :math:`\mathrm{Multinomial}(n, p)` counts by conditional binomials on a binary tree.

    ``probs`` (K,) need not be normalised; ``n`` may be traced (a float or int scalar). Returns float counts (K,)
    summing to n exactly. A node of count m whose children have masses (a, b) sends
    :math:`\mathrm{Binomial}(m, a/(a+b))` left; nodes of zero mass or zero count send nothing.
    """
    k = probs.shape[0]
    dtype = probs.dtype
    levels = max(1, (k - 1).bit_length())
    padded = jnp.pad(probs, (0, 2**levels - k))
    masses = [padded]
    for _ in range(levels):
        masses.append(masses[-1].reshape(-1, 2).sum(axis=1))
    masses = masses[::-1]  # masses[l] has 2**l nodes
    counts = jnp.reshape(jnp.asarray(n, dtype), (1,))
    keys = jax.random.split(key, levels)
    for level in range(levels):
        children = masses[level + 1].reshape(-1, 2)
        total = children[:, 0] + children[:, 1]
        frac = jnp.clip(children[:, 0] / jnp.where(total > 0, total, 1.0), 0.0, 1.0)
        left = binomial(keys[level], counts, frac)
        counts = jnp.stack([left, counts - left], axis=1).reshape(-1)
    return counts[:k]


def spacings_counts(key: jax.Array, probs: jax.Array, n, cap: int) -> jax.Array:
    r"""Exact :math:`\mathrm{Multinomial}(n, p)` counts for ``n <= cap`` (``cap`` static, ``n`` may be traced) from
    **sorted uniforms**, without drawing category indices.

    The order statistics of n uniforms are :math:`U_{(j)} = S_j/S_{n+1}` with :math:`S_j` the partial sums of
    i.i.d. Exp(1) variables (Rényi's representation), so the number of samples at or below the CDF value
    :math:`F_i` is a binary search of :math:`F_i` among the :math:`U_{(j)}`, and the counts are its differences.
    Cost: ``cap + 1`` exponentials, a cumulative sum and K searches of :math:`\log_2` cap steps (no scatter).
    """
    dtype = probs.dtype
    n_int = jnp.asarray(n).astype(jnp.int32)
    sums = jnp.cumsum(jax.random.exponential(key, (cap + 1,), dtype))
    total = sums[n_int]  # S_{n+1}
    u_sorted = sums[:cap] / total  # the first n are the sorted uniforms; entries j >= n are >= 1
    cdf = jnp.cumsum(probs)
    below = jnp.minimum(jnp.searchsorted(u_sorted, cdf / cdf[-1], side="right"), n_int)
    below = below.at[-1].set(n_int)
    return jnp.diff(below, prepend=0).astype(dtype)


def inverse_cdf_sample(key: jax.Array, probs: jax.Array, n: int) -> jax.Array:
    """``n`` (static) i.i.d. category indices (int32) from ``probs`` by inverse CDF; zero-mass categories are never
    drawn (the search is clipped to the last category of positive mass)."""
    cdf = jnp.cumsum(probs)
    u = jax.random.uniform(key, (n,), probs.dtype) * cdf[-1]
    # same result either way; comparing against all K boundaries is faster for small K on CPU
    method = "compare_all" if probs.shape[0] <= 64 else "scan"
    index = jnp.searchsorted(cdf, u, side="right", method=method)
    last = probs.shape[0] - 1 - jnp.argmax(probs[::-1] > 0)
    return jnp.minimum(index, last).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Categorical:
    r"""Categorical distribution over K outcomes, refitted by (optionally smoothed) empirical frequencies.

    Args:
      num_categories: K >= 2.
      temperature: τ > 0; a fitted model generates from :math:`p^{1/\tau}` renormalised (1 = untempered).
      smoothing: α >= 0, add-α smoothing of the refit (0 = maximum likelihood; α > 0 never loses a category).
      head_size: h, 1 <= h < K; ``tail_mass`` is the mass on the categories of index >= h (0-based). With the Zipf
        truth of :meth:`zipf` (probabilities decreasing in the index) these are the ranks beyond the head.
        Default: max(1, K // 10).
      collapse_threshold: a chain is ``collapsed`` when its entropy (nats) is below this (Kazdan et al.: 1e-8).
      max_samples: optional static bound for the exact path: a draw of n <= max_samples outcomes uses a
        capped sampler (below), larger n fall back to the binomial tree. Set it to max_t M_t (to the pool size for
        ``ReplaceGrown``, which draws the whole pool). None (default): always the binomial tree.
      exact_sampler: how the exact path draws Multinomial(n, q) counts, all exact: ``"tree"`` (conditional
        binomials, K − 1 binomial draws, any n), ``"inverse-cdf"`` (``max_samples`` inverse-CDF draws, the first n
        counted by a scatter-add), ``"spacings"`` (sorted uniforms from exponential spacings, K binary searches, no
        scatter; :func:`spacings_counts`), or ``"auto"`` (default): the tree without ``max_samples`` or when
        ``max_samples > 50 K``, spacings when ``4 K <= max_samples``, inverse CDF otherwise (the fastest of the three
        on a 2-core CPU; ``benchmarks/bench_categorical.py``).
      tree_fallback: compile the binomial-tree fallback of a capped sampler for draws larger than
        ``max_samples``. ``simulate`` turns it off (:meth:`specialise`) when the regime's draws never exceed
        ``max_samples``, which saves compiling the tree (about 11 s for K = 1000 on a 2-core CPU); results are
        unchanged.
      support: ``None`` (default: parameters over all K outcomes), or L, 1 <= L <= K: the **compacted** form
        that ``simulate(compact=True)`` moves chains to once at most L outcomes are alive. Parameters then hold
        L slots and the outcome of each (``CategoricalParams.ids``); the exact path samples and refits on the L
        slots (an outcome with probability 0 never returns without smoothing), and :meth:`metrics` reads the
        truth's probabilities of the slots' outcomes, so the metrics are those of the full model (to rounding).
        Needs ``smoothing=0``; exact path only.
    """

    num_categories: int
    temperature: float = 1.0
    smoothing: float = 0.0
    head_size: int | None = None
    collapse_threshold: float = 1e-8
    max_samples: int | None = None
    exact_sampler: str = "auto"
    tree_fallback: bool = True
    support: int | None = None

    def __post_init__(self):
        k = self.num_categories
        if not _is_int(k) or k < 2:
            raise ValueError(f"num_categories={k!r} is out of range: need an int num_categories >= 2")
        tau = self.temperature
        if not is_real(tau) or not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"temperature={tau!r} is out of range: need a finite temperature > 0")
        alpha = self.smoothing
        if not is_real(alpha) or not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"smoothing={alpha!r} is out of range: need a finite smoothing >= 0")
        if self.head_size is not None and (not _is_int(self.head_size) or not 1 <= self.head_size < k):
            raise ValueError(f"head_size={self.head_size!r} is out of range: need an int 1 <= head_size < {k} (K)")
        thr = self.collapse_threshold
        if not is_real(thr) or not (math.isfinite(thr) and thr > 0):
            raise ValueError(f"collapse_threshold={thr!r} is out of range: need a finite collapse_threshold > 0")
        for name in ("temperature", "smoothing", "collapse_threshold"):  # plain floats: the model is static
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.max_samples is not None and (not _is_int(self.max_samples) or self.max_samples < 1):
            raise ValueError(f"max_samples={self.max_samples!r} is out of range: need None or an int >= 1")
        if self.exact_sampler not in EXACT_SAMPLERS:
            raise ValueError(f"exact_sampler={self.exact_sampler!r} is not one of {EXACT_SAMPLERS}")
        if not isinstance(self.tree_fallback, bool):
            raise ValueError(f"tree_fallback={self.tree_fallback!r} is out of range: need True or False")
        if self.exact_sampler in ("inverse-cdf", "spacings") and self.max_samples is None:
            raise ValueError(f"exact_sampler={self.exact_sampler!r} needs max_samples (its static number of draws)")
        if self.support is not None:
            if not _is_int(self.support) or not 1 <= self.support <= k:
                raise ValueError(f"support={self.support!r} is out of range: need None or an int 1 <= support <= "
                                 f"{k} (K)")
            self.check_compact()

    @property
    def slots(self) -> int:
        """Entries of the parameter vector: ``support`` when compacted, else K."""
        return self.support if self.support is not None else self.num_categories

    @property
    def sampler(self) -> str:
        """The exact-path sampler in use (``exact_sampler`` with ``"auto"`` resolved)."""
        if self.exact_sampler != "auto":
            return self.exact_sampler
        if self.max_samples is None or self.max_samples > 50 * self.slots:
            return "tree"
        return "spacings" if 4 * self.slots <= self.max_samples else "inverse-cdf"

    @property
    def min_samples(self) -> int:
        """Empirical frequencies need one sample."""
        return 1

    @property
    def head(self) -> int:
        """The head size h actually used (``head_size`` or max(1, K // 10))."""
        return self.head_size if self.head_size is not None else max(1, self.num_categories // 10)

    # ----------------------------------------------------------------- parameters
    def params(self, probs=None) -> CategoricalParams:
        """The real distribution with probabilities ``probs`` (default uniform), validated and renormalised.

        Raises ValueError when ``probs`` has the wrong shape, a negative or non-finite entry, or a sum further than
        ``PROB_SUM_TOL`` from 1.
        """
        k = self.num_categories
        if probs is None:
            p = np.full(k, 1.0 / k)
        else:
            p = np.asarray(probs, dtype=np.float64)
            if p.shape != (k,):
                raise ValueError(f"probs has shape {p.shape}: need ({k},) for num_categories={k}")
            if not np.all(np.isfinite(p)):
                raise ValueError("probs contains non-finite values: every probability must be finite")
            if np.any(p < 0):
                raise ValueError(f"probs has a negative entry (min {p.min():.3g}): need probs >= 0")
            total = float(p.sum())
            if abs(total - 1.0) > PROB_SUM_TOL:
                raise ValueError(f"probs sums to {total!r}: need a sum within {PROB_SUM_TOL:g} of 1")
            p = p / total
        dtype = jnp.zeros(()).dtype
        return CategoricalParams(jnp.asarray(p, dtype), jnp.zeros((), dtype))

    def zipf(self, beta: float) -> CategoricalParams:
        r"""Zipf truth :math:`p_i \propto i^{-\beta}`, i = 1..K (index 0 is the most likely), β >= 0."""
        from ..theory.categorical import zipf_probs

        return self.params(zipf_probs(self.num_categories, beta))

    def dirichlet(self, seed: int, concentration: float = 1.0) -> CategoricalParams:
        """A truth drawn once from Dirichlet(concentration·1) with NumPy's ``default_rng(seed)`` (reproducible)."""
        if isinstance(concentration, bool) or not (math.isfinite(concentration) and concentration > 0):
            raise ValueError(f"concentration={concentration!r} is out of range: need a finite concentration > 0")
        rng = np.random.default_rng(seed)
        return self.params(rng.dirichlet(np.full(self.num_categories, float(concentration))))

    def init(self, key: jax.Array) -> CategoricalParams:
        """Uniform over the K outcomes: the start of chains whose real data is a dataset of indices."""
        del key
        return self.params()

    def sampling_probs(self, params: CategoricalParams) -> jax.Array:
        """The distribution samples are drawn from: :math:`p^{1/\\tau}` renormalised for a fitted model, ``p`` for
        the truth; exactly ``p`` when τ = 1."""
        if self.temperature == 1:
            return params.probs
        return jnp.where(params.tempered > 0, tempered_probs(params.probs, self.temperature), params.probs)

    # ----------------------------------------------------------------- sample-level path
    def check_rows(self, rows) -> None:
        """Refuse ``real_data`` that is not category indices in [0, K) (JAX indexing would drop or clip the rest
        silently in the fit)."""
        require_ids("real_data", rows, self.num_categories, "category index", f"num_categories={self.num_categories}")

    def sample(self, key: jax.Array, params: CategoricalParams, n: int) -> jax.Array:
        """``n`` category indices (int32, shape (n,)) by inverse CDF of :meth:`sampling_probs`."""
        return inverse_cdf_sample(key, self.sampling_probs(params), n)

    def fit(self, key, data: jax.Array, weights: jax.Array, params=None) -> CategoricalParams:
        """Weighted counts of the indices in ``data``, then :meth:`fit_from_stats`; ``key`` unused. A training set
        of total weight 0 (a gate that rejected every row) without smoothing has no fit (0/0): ``params``, the
        previous model, is kept, as the other families keep theirs."""
        del key
        dtype = weights.dtype
        counts = jnp.zeros((self.num_categories,), dtype).at[data].add(weights)
        fitted = self.fit_from_stats(CategoricalStats(counts), params)
        if params is None or self.smoothing > 0:
            return fitted
        empty = jnp.sum(weights) <= 0
        return jax.tree.map(lambda old, new: jnp.where(empty, old, new), params, fitted)

    # ----------------------------------------------------------------- exact path
    def sample_stats(self, key: jax.Array, params: CategoricalParams, n) -> CategoricalStats:
        """Exact Multinomial(n, q) counts, q = :meth:`sampling_probs` (``n`` may be traced), by :attr:`sampler`
        (a capped sampler falls back to the binomial tree when ``n > max_samples``)."""
        q = self.sampling_probs(params)
        sampler = self.sampler
        if sampler == "tree":
            return CategoricalStats(multinomial_tree(key, q, n))
        cap = self.max_samples

        def by_inverse_cdf(key, q, n):
            index = inverse_cdf_sample(key, q, cap)
            mask = (jnp.arange(cap) < n).astype(q.dtype)
            return jnp.zeros((self.slots,), q.dtype).at[index].add(mask)

        def by_spacings(key, q, n):
            return spacings_counts(key, q, n, cap)

        capped = by_spacings if sampler == "spacings" else by_inverse_cdf
        n = jnp.asarray(n, q.dtype)
        if not self.tree_fallback:
            return CategoricalStats(capped(key, q, n))
        return CategoricalStats(jax.lax.cond(n <= cap, capped, multinomial_tree, key, q, n))

    def specialise(self, max_draw: int) -> Categorical:
        """This model without the tree fallback when no draw exceeds ``max_samples`` (engine hook)."""
        if not self.tree_fallback and max_draw > (self.max_samples or 0):
            raise ValueError(f"tree_fallback=False with max_samples={self.max_samples}, but this run draws up to "
                             f"{max_draw} outcomes at once: need max_samples >= {max_draw} or tree_fallback=True")
        if self.sampler != "tree" and self.max_samples is not None and max_draw <= self.max_samples:
            return dataclasses.replace(self, tree_fallback=False)
        return self

    def empty_stats(self, like: CategoricalParams) -> CategoricalStats:
        return CategoricalStats(jnp.zeros((self.slots,), like.probs.dtype))

    def combine_stats(self, a: CategoricalStats, b: CategoricalStats) -> CategoricalStats:
        """Pooled sample: counts add."""
        return CategoricalStats(a.counts + b.counts)

    def fit_from_stats(self, stats: CategoricalStats, params=None) -> CategoricalParams:
        r""":math:`\hat p = (c + \alpha)/(\sum c + K\alpha)`; the result is a fitted (tempered) model."""
        counts = stats.counts
        dtype = counts.dtype
        alpha = self.smoothing
        total = jnp.sum(counts) + self.num_categories * alpha
        probs = (counts + alpha) / total
        return CategoricalParams(probs, jnp.ones((), dtype), None if params is None else params.ids)

    # ----------------------------------------------------------------- absorbing states and compaction
    def absorbed(self, params: CategoricalParams) -> jax.Array:
        """True when one outcome holds all the mass: without smoothing, every later fit under a closed regime
        (:mod:`collapse_theory.regimes`) returns the same parameters (engine hook of
        ``simulate(stop_when_absorbed=True)``; the metrics are deterministic)."""
        return (jnp.sum(params.probs > 0) == 1) & (self.smoothing == 0)

    def check_compact(self) -> None:
        """Raise unless lost outcomes stay lost (no smoothing): the condition for :attr:`support`."""
        if self.smoothing != 0:
            raise ValueError(f"smoothing={self.smoothing} keeps every outcome alive: a compacted support "
                             "(compact=True, support=) needs smoothing=0")

    def support_size(self, params: CategoricalParams) -> jax.Array:
        """The number of live outcomes (probability > 0)."""
        return jnp.sum(params.probs > 0).astype(jnp.int32)

    def compacted(self, size: int) -> Categorical:
        """This model on a support of ``size`` slots (:attr:`support`)."""
        return dataclasses.replace(self, support=int(size))

    def pack(self, source: Categorical, params: CategoricalParams, pool):
        """One chain's parameters and pooled statistics (``CategoricalStats`` or a placeholder) moved from model
        ``source`` to this model's support: the live outcomes, in their order, then unused slots."""
        probs = params.probs
        source_ids = params.ids if params.ids is not None else jnp.arange(probs.shape[0], dtype=jnp.int32)
        index = jnp.nonzero(probs > 0, size=self.slots, fill_value=probs.shape[0])[0]
        ids = source_ids.at[index].get(mode="fill", fill_value=self.num_categories)
        packed = CategoricalParams(probs.at[index].get(mode="fill", fill_value=0), params.tempered, ids)
        if isinstance(pool, CategoricalStats):
            pool = CategoricalStats(pool.counts.at[index].get(mode="fill", fill_value=0))
        return packed, pool

    def expand(self, params: CategoricalParams) -> CategoricalParams:
        """The parameters over all K outcomes (the inverse of :meth:`pack`)."""
        if params.ids is None:
            return params
        full = jnp.zeros((self.num_categories,), params.probs.dtype).at[params.ids].add(params.probs, mode="drop")
        return CategoricalParams(full, params.tempered, None)

    # ----------------------------------------------------------------- observables
    def metrics(self, params: CategoricalParams, reference: CategoricalParams, key=None) -> dict[str, jax.Array]:
        r"""Per-chain observables of the fitted probabilities p against the truth :math:`p_0` (``reference``).

        * ``heterozygosity`` :math:`H = 1 - \sum_i p_i^2` (Gini–Simpson);
        * ``entropy`` :math:`-\sum_i p_i \log p_i` (nats);
        * ``surviving`` :math:`\#\{i: p_i > 0\}`; ``zero_count`` = K − surviving (Kazdan et al.'s count of
          zero-probability outcomes);
        * ``fixed`` 1 when one category holds all the mass; ``collapsed`` 1 when the entropy is below
          ``collapse_threshold``; ``top_prob`` the probability of category 0 (the head of a Zipf truth) and
          ``top_fixed`` 1 when category 0 holds all the mass (fixation on it);
        * ``tail_mass`` :math:`\sum_{i \ge h} p_i` (index >= ``head``);
        * ``lost_mass`` :math:`\sum_i p_{0,i}\,1[p_i = 0]`: the truth's mass on the lost categories, the error of a
          memorizer that knows exactly the categories it has kept (THEORY.md §8);
        * ``tv`` :math:`\tfrac12\sum_i|p_i - p_{0,i}|`; ``kl_model_truth`` :math:`KL(p\|p_0)`;
          ``kl_truth_model`` :math:`KL(p_0\|p)` (+inf once a category of the truth is lost).

        All deterministic: ``key`` is unused.
        """
        del key
        p = params.probs
        p0_all = reference.probs
        if params.ids is None:
            p0, ids = p0_all, jnp.arange(self.num_categories)
            outside = outside_alive = None
        else:
            # compacted: truth of each slot's outcome; outcomes outside the slots have p = 0
            ids = params.ids
            p0 = p0_all.at[ids].get(mode="fill", fill_value=0)
            outside = jnp.sum(p0_all) - jnp.sum(p0)
            outside_alive = jnp.sum(p0_all > 0) - jnp.sum(p0 > 0)
        positive = p > 0
        safe_p = jnp.where(positive, p, 1.0)
        log_p = jnp.log(safe_p)
        entropy = -jnp.sum(jnp.where(positive, p * log_p, 0.0))
        surviving = jnp.sum(positive).astype(p.dtype)
        positive0 = p0 > 0
        safe_p0 = jnp.where(positive0, p0, 1.0)
        kl_model_truth = jnp.sum(jnp.where(positive, p * (log_p - jnp.log(safe_p0)), 0.0))
        kl_model_truth = jnp.where(jnp.any(positive & ~positive0), jnp.inf, kl_model_truth)
        kl_truth_model = jnp.sum(jnp.where(positive0, p0 * (jnp.log(safe_p0) - log_p), 0.0))
        lost_truth = jnp.any(positive0 & ~positive)
        lost_mass = jnp.sum(jnp.where(positive, 0.0, p0))
        abs_diff = jnp.sum(jnp.abs(p - p0))
        if outside is None:
            top_prob = p[0]
        else:
            top_prob = jnp.sum(jnp.where(ids == 0, p, 0.0))
            lost_truth = lost_truth | (outside_alive > 0)
            lost_mass = lost_mass + outside
            abs_diff = abs_diff + outside
        kl_truth_model = jnp.where(lost_truth, jnp.inf, kl_truth_model)
        tail = ids >= self.head
        return {
            "heterozygosity": 1.0 - jnp.sum(p * p),
            "entropy": entropy,
            "surviving": surviving,
            "zero_count": self.num_categories - surviving,
            "fixed": (surviving == 1).astype(p.dtype),
            "collapsed": (entropy < self.collapse_threshold).astype(p.dtype),
            "top_prob": top_prob,
            "top_fixed": (top_prob >= 1.0).astype(p.dtype),
            "tail_mass": jnp.sum(jnp.where(tail, p, 0.0)),
            "lost_mass": lost_mass,
            "tv": 0.5 * abs_diff,
            "kl_model_truth": kl_model_truth,
            "kl_truth_model": kl_truth_model,
        }


def collapse_time_summary(fraction_collapsed) -> dict:
    r"""Collapse-time statistics from the per-generation fraction of collapsed chains (no trajectories needed).

    With ``F(t)`` = ``result.mean("collapsed")[t-1]`` (the fraction of chains whose entropy is below the threshold
    after t fits; for the replace chain with α = 0 collapse is absorbing, so ``F`` is the CDF of the collapse time
    T = first t with entropy < threshold, Kazdan et al.'s stopping rule), over G recorded generations:

    * ``mean``: :math:`\mathbb E[\min(T, G+1)] = 1 + \sum_{t=1}^{G} (1 - F(t))` (equals E T when every chain has
      collapsed by G, i.e. ``censored`` = 0);
    * ``median``: the first t with F(t) >= 1/2 (None if not reached);
    * ``censored``: 1 − F(G), the fraction of chains not collapsed by the last generation.
    """
    f = np.asarray(fraction_collapsed, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"fraction_collapsed has shape {f.shape}: need a non-empty 1-D array (one per generation)")
    if np.any((f < 0) | (f > 1)) or not np.all(np.isfinite(f)):
        raise ValueError("fraction_collapsed must lie in [0, 1]")
    reached = np.flatnonzero(f >= 0.5)
    return {
        "mean": float(1.0 + np.sum(1.0 - f)),
        "median": int(reached[0]) + 1 if reached.size else None,
        "censored": float(1.0 - f[-1]),
        "generations": int(f.size),
    }
