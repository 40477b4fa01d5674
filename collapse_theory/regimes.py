r"""Data regimes: how each generation's training set is built, for every model, with fixed shapes.

Generation ``t = 1`` always trains on real data (``M_1`` draws from the real source); for ``t >= 2`` the regime
decides. The notation :math:`M_t` is the schedule's sample size at generation ``t``.

=====================  ==================================================================================
regime                 training set of generation t
=====================  ==================================================================================
``Replace``            the :math:`M_t` samples drawn from model ``t-1`` only.
``Accumulate``         the real data and every synthetic batch so far (:math:`\sum_{k\le t} M_k` points).
``AccumulateSubsample`` :math:`M_t` points drawn without replacement from that pool (Kazdan et al.).
``ReplaceGrown``       :math:`\sum_{k\le t} M_k` fresh draws from model ``t-1``: as large as the pool but all
                       synthetic (the compute-matched ablation of ``Accumulate``).
``FreshFraction(γ)``   :math:`\mathrm{round}(\gamma M_t)` fresh real draws plus the rest from model ``t-1``
                       (THEORY.md §2.4; Shumailov's :math:`\gamma_i`, the "fresh data loop" of MAD).
``Gate(inner, pred)``  as ``inner``, with synthetic rows failing ``pred`` weighted 0 (or redrawn): verification.
=====================  ==================================================================================

Each regime implements both paths of the engine:

* **sample level**: ``buffer_rows(layout)`` rows are preallocated per chain; ``assemble(...)`` returns
  ``(data, weights, buffer)`` where ``weights`` are frequency weights (0 = absent), so shapes never grow;
  ``draw_rows(layout)`` is the number of sample rows a generation holds at once besides that buffer (the engine
  refuses runs whose draws would not fit in memory; a regime without it is taken to draw ``m_max`` rows);
* **exact**: ``assemble_stats(...)`` returns ``(stats, pool)`` for models with sufficient statistics;
  accumulation is a running :meth:`combine_stats` (or the model's ``grow_pool``: the pool combined with draws from
  its own fit), O(1) memory per chain. ``draw_stats(key, n, noise=None)`` draws from the current model; given
  ``noise`` (the model's ``stats_noise(key, n, dtype)``) it uses those draws.

``closed`` (a class attribute) is true when every training set after generation 1 is built from the model's own
samples only (and, accumulating, from earlier training sets): then a state the model can never leave by refitting
its own samples is absorbing for the whole chain (``simulate(stop_when_absorbed=True)``), and outcomes the model
has lost never return (``simulate(compact=True)``). ``exact`` (a class attribute) is true when the regime also
builds training sets from sufficient statistics (``assemble_stats``): false for ``AccumulateSubsample`` (its
subsets reuse pool points) and ``Gate`` (its predicate reads samples), which run on the sample path only.
An optional ``check_sizes(sizes)`` refuses, before anything is traced, schedules the regime cannot honour
(``FreshFraction``: a γ M_t that rounds to no real or no synthetic row).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._random import integers_below
from .keys import GATE, REAL, SAMPLE, SUBSAMPLE
from .theory._validate import is_real


class Layout(NamedTuple):
    """Static sizes: ``m_max`` = max_t M_t (rows drawn per generation), ``total_generations`` of the run,
    ``constant_size`` (every M_t equals ``m_max``, so the valid pool rows are a prefix of the buffer) and
    ``real_dataset`` (real rows come from a finite dataset, without replacement, not from the truth)."""

    m_max: int
    total_generations: int
    constant_size: bool = False
    real_dataset: bool = False


class Sizes(NamedTuple):
    """Traced per-generation sizes: ``m`` = :math:`M_t`; ``pool`` = :math:`\\sum_{k \\le t} M_k`."""

    m: jax.Array
    pool: jax.Array


def check_exact_sizes(what: str, sizes) -> None:
    """Sample sizes a run reads are integers the working float dtype holds exactly: float32 rounds integers above
    2**24 (M = 16 777 217 ran as 16 777 216)."""
    values = np.asarray(sizes, np.float64)
    dtype = jnp.zeros(()).dtype
    inexact = values.astype(dtype).astype(np.float64) != values
    if np.any(inexact):
        t = int(np.flatnonzero(inexact)[0]) + 1
        raise ValueError(f"{what} = {int(values[t - 1])} at generation t={t} is not exact in {dtype.name}, which "
                         f"rounds integers above 2**24: enable float64 (jax.config.update('jax_enable_x64', True), "
                         f"or --x64) or keep the sizes <= 2**24")


def _mask(num_rows: int, count) -> jax.Array:
    return (jnp.arange(num_rows) < count).astype(jnp.zeros(()).dtype)


def _tree_rows(tree, fn):
    return jax.tree.map(fn, tree)


def _empty_buffer(example, rows: int):
    return _tree_rows(example, lambda leaf: jnp.zeros((rows,) + leaf.shape[1:], leaf.dtype))


def _write(buffer, block, start):
    return jax.tree.map(
        lambda buf, new: jax.lax.dynamic_update_slice_in_dim(buf, new.astype(buf.dtype), start, axis=0), buffer, block
    )


_FLOYD_TABLE_FROM = 256
"""Subsets of at least this many rows test membership in a table over the pool instead of scanning the rows
chosen so far (the same draws and the same subset; measured on 2 CPU cores with 100 chains: M = 1000 from a
10⁵-row pool 229 → 90 µs per chain-generation, M = 316 27 → 21 µs; at M = 100 the scan is faster, 6.8 vs 8.7)."""


def _floyd_subset(key, pool_size, m: int, capacity: int | None = None) -> jax.Array:
    """``m`` distinct indices, a uniformly random subset of ``range(pool_size)`` (Floyd's algorithm).

    Step j draws r uniform on [0, J] with J = pool_size - m + j (:func:`~collapse_theory._random.integers_below`)
    and keeps r unless it was already chosen, in which case it keeps J (which cannot have been chosen). ``pool_size
    >= m`` may be traced; ``m`` is static. "Already chosen" is a scan of the rows chosen so far (O(m) per step), or,
    when ``m >= _FLOYD_TABLE_FROM`` and the static ``capacity >= pool_size`` is given, a lookup in a boolean table
    of ``capacity`` entries (O(1) per step after an O(capacity) fill): both give the same subset from the same key.
    """
    tops = pool_size - m + jnp.arange(m, dtype=jnp.int32)
    draws = integers_below(key, tops + 1)
    if capacity is None or m < _FLOYD_TABLE_FROM:

        def step(j, chosen):
            r = draws[j]
            return chosen.at[j].set(jnp.where(jnp.any(chosen == r), tops[j], r))

        return jax.lax.fori_loop(0, m, step, jnp.full((m,), -1, jnp.int32))

    def table_step(j, state):
        chosen, taken = state
        r = draws[j]
        pick = jnp.where(taken[r], tops[j], r)
        return chosen.at[j].set(pick), taken.at[pick].set(True)

    start = (jnp.zeros((m,), jnp.int32), jnp.zeros((capacity,), bool))
    return jax.lax.fori_loop(0, m, table_step, start)[0]


def _one_draw(layout) -> int:
    """Rows held at once by a regime that draws one batch of :math:`M_t` rows per generation."""
    return layout.m_max


class _NoBuffer:
    exact = True

    def buffer_rows(self, layout) -> int:
        return 0

    draw_rows = staticmethod(_one_draw)

    def init_pool(self, model, like):
        return jnp.zeros(())


@dataclasses.dataclass(frozen=True)
class Replace(_NoBuffer):
    """Generation t trains only on the :math:`M_t` samples of model t-1."""

    closed = True

    def assemble(self, key_for, t, sizes: Sizes, layout, draw, draw_real, buffer):
        m_max = layout.m_max
        data = draw(key_for(SAMPLE), m_max)
        return data, _mask(m_max, sizes.m), buffer

    def assemble_stats(self, key_for, t, sizes, model, draw_stats, draw_real_stats, pool):
        return draw_stats(key_for(SAMPLE), sizes.m), pool

    def max_exact_draw(self, sizes) -> int:
        """The largest ``sample_stats`` draw of a run with per-generation sizes ``sizes`` (exact path)."""
        return int(np.max(sizes))


@dataclasses.dataclass(frozen=True)
class ReplaceGrown:
    """All-synthetic training set as large as the accumulated pool, :math:`\\sum_{k\\le t} M_k` draws."""

    closed = True
    exact = True

    def buffer_rows(self, layout) -> int:
        return 0

    def draw_rows(self, layout) -> int:
        """Every generation draws the largest pool, :math:`\\max_t M_t` times the number of generations."""
        return layout.m_max * layout.total_generations

    def init_pool(self, model, like):
        return jnp.zeros(())

    def assemble(self, key_for, t, sizes, layout, draw, draw_real, buffer):
        rows = self.draw_rows(layout)
        data = draw(key_for(SAMPLE), rows)
        return data, _mask(rows, sizes.pool), buffer

    def assemble_stats(self, key_for, t, sizes, model, draw_stats, draw_real_stats, pool):
        return draw_stats(key_for(SAMPLE), sizes.pool), pool

    def max_exact_draw(self, sizes) -> int:
        """The whole pool at the last generation, :math:`\\sum_t M_t`."""
        return int(np.sum(sizes))

    def check_sizes(self, sizes) -> None:
        """Each generation draws the whole pool, :math:`\\sum_{k\\le t} M_k` rows: that count must fit the
        engine's 32-bit counts, as M_t itself does."""
        pool = np.cumsum(np.asarray(sizes, np.float64))
        if pool[-1] > 2**31 - 1:
            t = int(np.flatnonzero(pool > 2**31 - 1)[0]) + 1
            raise ValueError(f"num_samples: ReplaceGrown draws sum_(k<=t) M_k = {pool[t - 1]:.4g} rows at generation "
                             f"t={t}, out of range: need the pool <= 2**31 - 1 (32-bit counts); use fewer generations "
                             f"or smaller M_t")
        check_exact_sizes("the ReplaceGrown pool sum_(k<=t) M_k", pool)


@dataclasses.dataclass(frozen=True)
class Accumulate:
    """Train on the real data plus every synthetic batch so far (pooled fit)."""

    closed = True
    exact = True

    def buffer_rows(self, layout) -> int:
        return layout.m_max * layout.total_generations

    draw_rows = staticmethod(_one_draw)

    def _pool(self, key_for, t, sizes, m_max, draw, buffer):
        data_buf, weight_buf = buffer
        block = draw(key_for(SAMPLE), m_max)
        start = (t - 1) * m_max
        data_buf = _write(data_buf, block, start)
        weight_buf = jax.lax.dynamic_update_slice_in_dim(weight_buf, _mask(m_max, sizes.m), start, axis=0)
        return data_buf, weight_buf

    def assemble(self, key_for, t, sizes, layout, draw, draw_real, buffer):
        m_max = layout.m_max
        data_buf, weight_buf = self._pool(key_for, t, sizes, m_max, draw, buffer)
        return data_buf, weight_buf, (data_buf, weight_buf)

    def init_pool(self, model, like):
        return model.empty_stats(like)

    def assemble_stats(self, key_for, t, sizes, model, draw_stats, draw_real_stats, pool):
        key = key_for(SAMPLE)
        grow = getattr(model, "grow_pool", None)
        if grow is None:
            pool = model.combine_stats(pool, draw_stats(key, sizes.m))
        else:  # generation 1 fills the empty pool; later draws come from the pool's own fit (t is not batched)
            dtype = jnp.result_type(*jax.tree.leaves(pool))
            noise = model.stats_noise(key, sizes.m, dtype)  # drawn once: compiled once, not per branch
            pool = jax.lax.cond(t == 1, lambda: draw_stats(key, sizes.m, noise=noise),
                                lambda: grow(pool, noise, sizes.m))
        return pool, pool

    def max_exact_draw(self, sizes) -> int:
        return int(np.max(sizes))


@dataclasses.dataclass(frozen=True)
class AccumulateSubsample(Accumulate):
    """Pool as in :class:`Accumulate`; each fit uses :math:`M_t` pool points drawn without replacement.

    With a constant sample size the valid pool rows are the prefix of length :math:`tM` and the subset is drawn by
    Floyd's algorithm (M random integers and M membership tests: O(M²) per generation, independent of the pool
    size; from M = 256 on, each test is a lookup in a boolean table over the pool's rows, O(M) plus a fill of one
    byte per pool row). With a varying schedule the subset is the :math:`M_t` valid rows with the largest Gumbel
    keys (O(pool) per generation). Both draw without replacement, uniformly (Floyd's integer draws to within a
    relative pool/2³², 2.3·10⁻⁵ for a pool of 10⁵ rows: :func:`~collapse_theory._random.integers_below`). There is
    no exact path: the subset shares points across generations, so the pool itself must be kept.
    """

    exact = False

    def assemble(self, key_for, t, sizes, layout, draw, draw_real, buffer):
        m_max = layout.m_max
        data_buf, weight_buf = self._pool(key_for, t, sizes, m_max, draw, buffer)
        if layout.constant_size:
            index = _floyd_subset(key_for(SUBSAMPLE), sizes.pool.astype(jnp.int32), m_max, weight_buf.shape[0])
        else:
            scores = jax.random.gumbel(key_for(SUBSAMPLE), weight_buf.shape, weight_buf.dtype)
            scores = jnp.where(weight_buf > 0, scores, -jnp.inf)
            _, index = jax.lax.top_k(scores, m_max)
        data = jax.tree.map(lambda leaf: leaf[index], data_buf)
        return data, _mask(m_max, sizes.m), (data_buf, weight_buf)

    def init_pool(self, model, like):
        raise ValueError(
            "regime=AccumulateSubsample has no exact path: its subsets reuse pool points across generations; "
            "use path='sample'"
        )

    def assemble_stats(self, *args, **kwargs):
        raise ValueError("regime=AccumulateSubsample has no exact path; use path='sample'")


@dataclasses.dataclass(frozen=True)
class FreshFraction(_NoBuffer):
    r"""A fraction γ of each generation is fresh real data: :math:`\mathrm{round}(\gamma M_t)` real draws and
    :math:`M_t - \mathrm{round}(\gamma M_t)` draws from model t-1 (THEORY.md §2.4 assumes γM integer)."""

    gamma: float
    closed = False

    def __post_init__(self):
        g = self.gamma
        if not is_real(g):  # np.float32(0.5) is a number; True is not
            raise ValueError(f"gamma={g!r} is not a real number: need 0 < gamma <= 1")
        if not (math.isfinite(g) and 0 < g <= 1):
            raise ValueError(f"gamma={g!r} is out of range: need 0 < gamma <= 1")

    def _counts(self, sizes):
        n_real = jnp.round(self.gamma * sizes.m)
        return n_real, sizes.m - n_real

    def check_sizes(self, sizes) -> None:
        """Refuse sizes for which the rounding makes this another regime at some generation t >= 2 (t = 1 is all
        real anyway): round(γ M_t) = 0 real rows (pure replace) or, with γ < 1, M_t real rows and no synthetic one
        (fresh real data only)."""
        m = np.asarray(sizes)[1:]
        dtype = np.dtype(jnp.zeros(()).dtype)  # round as the device does (float32 unless x64): near-half γM agree
        real = np.round(np.asarray(self.gamma, dtype) * m.astype(dtype))
        for bad, what, need in (
                (real < 1, "0 fresh real rows, so that generation would be pure replace", "round(gamma*M) >= 1"),
                ((real >= m) & (self.gamma < 1), "no synthetic row, so that generation would be all real data",
                 "round(gamma*M) <= M - 1, or gamma=1")):
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"gamma={self.gamma!r} with num_samples={int(m[i])} (generation t={i + 2}) gives round(gamma*M) "
                    f"= {int(real[i])}: {what}; need {need} at every generation t >= 2")

    def draw_rows(self, layout) -> int:
        """A real and a synthetic batch of :math:`\\max_t M_t` rows each, joined."""
        return 2 * layout.m_max

    def assemble(self, key_for, t, sizes, layout, draw, draw_real, buffer):
        m_max = layout.m_max
        n_real, n_synth = self._counts(sizes)
        real = draw_real(key_for(REAL), m_max)
        synth = draw(key_for(SAMPLE), m_max)
        if layout.real_dataset:
            # generation 1 is all real: `draw` then returns dataset rows without replacement, and both parts are
            # taken from that one draw, rows [0, n_real) and [n_real, M_1), so no dataset row is used twice (two
            # independent draws overlapped: a dataset of exactly M_1 rows did not give its own fit)
            first = t == 1
            real = jax.tree.map(lambda a, b: jnp.where(first, b, a), real, synth)
            synth = jax.tree.map(lambda b: jnp.where(first, jnp.roll(b, -n_real.astype(jnp.int32), axis=0), b),
                                 synth)
        data = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), real, synth)
        return data, jnp.concatenate([_mask(m_max, n_real), _mask(m_max, n_synth)]), buffer

    def assemble_stats(self, key_for, t, sizes, model, draw_stats, draw_real_stats, pool):
        n_real, n_synth = self._counts(sizes)
        stats = model.combine_stats(draw_real_stats(key_for(REAL), n_real), draw_stats(key_for(SAMPLE), n_synth))
        return stats, pool

    def max_exact_draw(self, sizes) -> int:
        return int(np.max(sizes))


@dataclasses.dataclass(frozen=True)
class Gate:
    r"""A verification gate around any regime: synthetic rows that fail ``predicate`` get weight 0.

    ``Gate(inner=Replace(), predicate=check)`` builds each training set exactly as ``inner`` does, with every
    **synthetic** row :math:`x` kept only if ``predicate(x)`` is true (a grammar check, a fact check against the real
    corpus, a classifier that is confident on a VAE's sample). **Real rows are never gated**: the real data of
    generation 1, the fresh real rows of :class:`FreshFraction` and the real rows kept in an accumulated pool always
    keep their weight.

    Fixed shapes, stated:

    * ``retries = 0`` (default): a rejected row stays in the array with **weight 0**. The effective training-set
      size of generation t is :math:`\sum_r w_r = M_t\,\hat a_t` synthetic rows (plus the inner regime's real
      rows), :math:`\hat a_t` the fraction of model t−1's samples that pass, so a strict gate shrinks the data.
    * ``retries = R > 0``: a rejected row is **replaced by further draws**: each row slot draws up to R further
      candidates (rounds of the same size from the same model, keys derived from purpose ``GATE``) and keeps the
      first that passes, so a kept row has exactly the model's law conditioned on passing; a slot whose R + 1
      candidates all fail keeps weight 0. Each slot passes with probability :math:`1-(1-a)^{R+1}`; the cost is
      R + 1 draws of the sampler per generation.

    A training set can be left with too little weight for a fit: a Gaussian chain whose accepted rows weigh
    :math:`\le` ddof in total has no variance estimate and stays NaN (``simulate`` then warns and records a note in
    the metadata); ``retries`` and a larger :math:`M_t` make it rarer, and ``trajectories=True`` finds those chains.

    With an accumulating inner regime a rejected row keeps weight 0 in every later generation (the gate's verdict
    is stored with the pool: the buffer's weight column holds :math:`w` for accepted rows and :math:`-(1+w)` for
    rejected ones, decoded before the inner regime sees it). Rows flow through the inner regime as a pytree
    ``(data, accepted)``, so any regime that moves rows with ``jax.tree.map`` (all of this module) is supported.
    There is no exact path: a predicate acts on individual samples, not on sufficient statistics.

    Args:
      inner: the regime that builds the training set (:class:`Replace`, :class:`Accumulate`, ...).
      predicate: a **hashable** pure function of one sample row (the model's sample pytree without its leading
        axis) returning a bool scalar; it is traced inside the engine's scan and vmapped over rows. Use a module
        level function or a frozen dataclass with ``__call__`` (a new lambda per call recompiles the engine).
      retries: R >= 0 further draws per rejected row.

    References:
      Feng et al., "Beyond Model Collapse: Scaling Up with Synthesized Data Requires Verification" (arXiv
      2406.07515) for verification-based selection; Gerstgrasser et al. (COLM 2024) for accumulation.
    """

    inner: object
    predicate: Callable
    retries: int = 0
    closed = False  # a gate may reject every sample of an absorbed model
    exact = False

    def check_sizes(self, sizes) -> None:
        """The inner regime's host-side check of the sizes, if it has one."""
        if hasattr(self.inner, "check_sizes"):
            self.inner.check_sizes(sizes)

    def __post_init__(self):
        if not (hasattr(self.inner, "assemble") and hasattr(self.inner, "buffer_rows")):
            raise ValueError(f"inner={self.inner!r} is not a regime: need an object with assemble and buffer_rows")
        if isinstance(self.inner, Gate):
            raise ValueError(f"inner={self.inner!r} is a Gate: gates do not nest; combine the predicates in one "
                             f"(a function returning p(row) & q(row))")
        if not callable(self.predicate):
            raise ValueError(f"predicate={self.predicate!r} must be callable: row -> bool")
        try:
            hash(self.predicate)
        except TypeError:
            raise ValueError(
                f"predicate={self.predicate!r} must be hashable (a function or a frozen dataclass)") from None
        r = self.retries
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"retries={r!r} is out of range: need an int >= 0")

    def buffer_rows(self, layout) -> int:
        return self.inner.buffer_rows(layout)

    def draw_rows(self, layout) -> int:
        """The inner regime's draws; with retries, each draw and its round of further candidates at once."""
        return draw_rows(self.inner, layout) * (2 if self.retries else 1)

    def init_pool(self, model, like):
        raise ValueError("regime=Gate has no exact path: its predicate acts on samples; use path='sample'")

    def assemble_stats(self, *args, **kwargs):
        raise ValueError("regime=Gate has no exact path: its predicate acts on samples; use path='sample'")

    def _accept(self, data):
        verdict = jax.vmap(self.predicate)(data)
        rows = jax.tree.leaves(data)[0].shape[0]
        if jnp.shape(verdict) != (rows,):  # checked while tracing: a (1,)-shaped verdict broke the scan's carry
            raise ValueError(f"predicate={self.predicate!r} returned shape {jnp.shape(verdict)[1:]} for one row: it "
                             f"must return one bool scalar per row (e.g. jnp.all(...) over the row)")
        return verdict.astype(bool)

    def assemble(self, key_for, t, sizes, layout, draw, draw_real, buffer):
        dtype = jnp.zeros(()).dtype

        def gated_draw(key, n):
            data = draw(key, n)
            accepted = self._accept(data) | (t == 1)  # at t = 1 `draw` returns real data
            if self.retries:
                gate_key = jax.random.fold_in(key, GATE)

                def retry(r, carry):
                    data, accepted = carry
                    extra = draw(jax.random.fold_in(gate_key, r), n)
                    ok = self._accept(extra)
                    take = ~accepted & ok
                    data = jax.tree.map(
                        lambda a, b: jnp.where(take.reshape((n,) + (1,) * (a.ndim - 1)), b, a), data, extra)
                    return data, accepted | ok

                data, accepted = jax.lax.fori_loop(1, self.retries + 1, retry, (data, accepted))
            return data, accepted.astype(dtype)

        def flagged_real(key, n):
            return draw_real(key, n), jnp.ones((n,), dtype)

        pooled = self.inner.buffer_rows(layout) > 0
        if pooled:
            data_buf, stored = buffer
            ok = stored >= 0
            inner_buffer = ((data_buf, ok.astype(dtype)), jnp.where(ok, stored, -stored - 1.0))
        else:
            inner_buffer = buffer
        (data, accepted), weights, new_buffer = self.inner.assemble(
            key_for, t, sizes, layout, gated_draw, flagged_real, inner_buffer)
        if pooled:
            (data_buf, acc_buf), w_buf = new_buffer
            new_buffer = (data_buf, jnp.where(acc_buf > 0, w_buf, -1.0 - w_buf))
        return data, weights * accepted, new_buffer


def draw_rows(regime, layout) -> int:
    """Sample rows ``regime`` holds at once in one generation, its buffer aside (``m_max`` for a regime without a
    ``draw_rows`` method)."""
    method = getattr(regime, "draw_rows", None)
    return _one_draw(layout) if method is None else int(method(layout))


Regime = Replace | Accumulate | AccumulateSubsample | ReplaceGrown | FreshFraction | Gate

REGIMES: dict[str, Callable[..., Regime]] = {
    "replace": Replace,
    "accumulate": Accumulate,
    "accumulate-subsample": AccumulateSubsample,
    "replace-grown": ReplaceGrown,
    "fresh-fraction": FreshFraction,
    "gate": Gate,
}
