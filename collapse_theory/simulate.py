r"""The engine: one orchestration entry point, :func:`simulate`, for every model and regime.

The jitted core scans over generations (``lax.scan``) with the chains ``vmap``-ped **inside** the scan body; the
model, the regime and every size are static, so one compiled program serves any number of generations and is
reused for every chunk. The host loop runs chunks of generations (for the progress bar and bounded output), and
because every key is derived from (seed, chain, generation, purpose) a chunked run equals a single run bit for bit.

Generation indexing: ``t = 1, ..., num_generations`` counts fits; the fit at ``t = 1`` is on real data, so row
``t - 1`` of every output describes the model after ``t`` fits (THEORY.md's ``n``).

Two paths:

* ``path="sample"`` (every model): draw the :math:`M_t` samples, fit them with frequency weights;
* ``path="exact"`` (models with sufficient statistics): draw the statistics of :math:`M_t` samples exactly in O(1)
  random numbers per chain; accumulation is a running sum of statistics. For models with ``blocked_noise`` (the
  1-D Gaussian) the random input of a block of generations is drawn for every chain at once and the scan then
  steps through it (:func:`_run_chunk`): the same bits, and a few wide loops instead of many small ones.

Per-generation summaries over chains (mean, standard deviation, quantiles; :mod:`collapse_theory.observables`) are
reduced inside the scan, so memory is O(generations) whatever the number of chains; per-chain trajectories
(generations × chains) only on request. Means and sds use a fixed-order pairwise sum, so they are a function of the
chain values alone, whatever the chunking, the device count or a later merge (:mod:`collapse_theory.merge`).

Absorbing chains: ``stop_when_absorbed=True`` runs chunks of growing length (one compiled program serves every
length) and stops once every chain sits in a state it can never leave (a categorical chain fixed on one outcome
under a regime without fresh data), filling the remaining rows with their values; ``compact=True`` moves the
chains of a model with a compacted form to a smaller static support between chunks, so a generation costs
O(live outcomes) instead of O(K) (same law, different random numbers).

Scale-out: ``devices=`` shards the chain axis over a 1-D mesh (:mod:`collapse_theory.distributed`, GSPMD);
``chain_offset=`` runs a disjoint range of global chain ids (independent jobs, combined by
:func:`collapse_theory.merge.merge_results`); ``checkpoint=`` / ``resume=`` continue a killed run bit for bit
(:mod:`collapse_theory.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import io as _io
from . import keys
from .keys import FIT, INIT, METRIC, TRUTH, derive_key, root_key
from .models.base import CHAIN_AXIS, has_exact_path
from .observables import pack_summary, summarise_metrics, unpack_summary
from .observables import pairwise_sum as pairwise_sum  # noqa: F401  (its documented home before observables)
from .observables import quantiles_linear as quantiles_linear  # noqa: F401
from .regimes import AccumulateSubsample, Layout, Replace, Sizes, check_exact_sizes, draw_rows
from .schedules import Explicit, as_schedule
from .theory import _validate

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PATHS = ("sample", "exact")
_MAX_BUFFER_BYTES = 6 * 2**30


class ChainState(NamedTuple):
    """Per-chain carry: model parameters and the regime's buffer (sample path) or pooled statistics (exact)."""

    params: Any
    buffer: Any


@dataclasses.dataclass(frozen=True)
class _Plan:
    model: Any
    regime: Any
    path: str
    num_chains: int
    layout: Layout
    metrics: tuple[str, ...] | None
    quantiles: tuple[float, ...]
    trajectories: bool
    real_is_dataset: bool
    chain_truth: bool
    reference_is_truth: bool
    keep: int | None = None  # summarise only the first `keep` chains (padded sharded runs)
    chain_batch: int | None = None  # chains advanced together (vmap) per lax.map step; None: all of them
    after_first: bool = False  # chunks start at t >= 2: the truth never stands in for the params (compacted models)
    stop_when_absorbed: bool = False  # report whether every chain is absorbed after each chunk
    compact: bool = False  # report the largest live support after each chunk
    noise_block: int = 1  # exact path: generations whose random input is drawn together (:func:`_run_chunk`)


@dataclasses.dataclass
class SimulationResult:
    """What :func:`simulate` returns.

    Attributes:
      generations: ``(G,)`` fit counts ``t = 1..G``.
      summary: ``{metric: {"mean": (G,), "sd": (G,), "quantiles": (G, Q)}}`` over chains; the Monte-Carlo
        standard error of a mean is ``sd / sqrt(num_chains)`` (:meth:`se`).
      quantile_levels: ``(Q,)`` levels of ``summary[...]["quantiles"]``.
      trajectories: ``{metric: (G, C)}`` when requested, else ``None``.
      final_params: parameters of every chain after the last generation (NumPy pytree, leading axis C).
      config: the resolved configuration; metadata: versions, backend, x64, seed, wall time.
      snapshots: ``{t: params}`` for each generation t requested with ``simulate(snapshots=...)`` (NumPy pytrees,
        leading axis C; kept in memory, not written to result files).
    """

    generations: np.ndarray
    summary: dict[str, dict[str, np.ndarray]]
    quantile_levels: np.ndarray
    trajectories: dict[str, np.ndarray] | None
    final_params: Any
    config: dict
    metadata: dict
    snapshots: dict | None = None

    @property
    def num_chains(self) -> int:
        return int(self.config["num_chains"])

    def _summary_of(self, metric: str) -> dict:
        if metric not in self.summary:
            raise KeyError(f"metric={metric!r} was not recorded; recorded: {sorted(self.summary)}")
        return self.summary[metric]

    def mean(self, metric: str) -> np.ndarray:
        return self._summary_of(metric)["mean"]

    def se(self, metric: str) -> np.ndarray:
        return self._summary_of(metric)["sd"] / math.sqrt(self.num_chains)

    def __repr__(self) -> str:
        c = self.config
        return (f"SimulationResult({c.get('model')} {c.get('regime')}, path={c.get('path')!r}, "
                f"{self.num_chains} chains x {len(self.generations)} generations, x64={self.metadata.get('x64')}, "
                f"metrics={sorted(self.summary)}, quantile_levels={np.asarray(self.quantile_levels).tolist()}, "
                f"trajectories={self.trajectories is not None})")

    def quantile(self, metric: str, level: float) -> np.ndarray:
        idx = np.flatnonzero(np.isclose(self.quantile_levels, level))
        if idx.size == 0:
            raise KeyError(f"quantile level={level} was not recorded; recorded: {self.quantile_levels.tolist()}")
        return self._summary_of(metric)["quantiles"][:, idx[0]]

    def save(self, path) -> None:
        """Write ``path`` (.npz) and its ``.json`` sidecar atomically (see :func:`collapse_theory.io.save_result`)."""
        _io.save_result(self, path)

    @classmethod
    def load(cls, path) -> "SimulationResult":
        return _io.load_result(cls, path)


def _draw_rows(key, data, n: int):
    """``n`` dataset rows without replacement. A fixed-shape draw larger than the dataset (ReplaceGrown draws
    M_max·G rows at t = 1, of which only the first M_1 carry weight) repeats the permutation beyond its end;
    ``simulate`` ensures every row that carries weight is distinct (dataset rows ≥ max M_t)."""
    num = jax.tree.leaves(data)[0].shape[0]
    perm = jax.random.permutation(key, num)
    index = perm[:n] if n <= num else perm[jnp.arange(n) % num]
    return jax.tree.map(lambda leaf: leaf[index], data)


def _select_params(t, truth, params):
    return jax.tree.map(lambda a, b: jnp.where(t == 1, a.astype(b.dtype), b), truth, params)


def _key_for(chain_key, t):
    """``key_for(purpose) == derive_key(root, c, t, purpose)`` given ``chain_key = fold_in(root, c)``, which is
    computed once per chunk, outside the scan."""
    generation_key = keys.fold_in(chain_key, t)
    return lambda purpose: keys.fold_in(generation_key, purpose)


def _chain_noise(plan: _Plan, chain_key, state: ChainState, t, sizes, truth):
    """The random input (``model.stats_noise``) of every ``sample_stats`` call that generation ``t`` of one chain
    makes, in call order: the regime's ``assemble_stats`` is run with draws that record their noise (its pool
    arithmetic is dead code here and compiled away). The state only supplies dtypes and shapes."""
    model = plan.model
    drawn = []

    def recorder(like):
        def record(key, n, noise=None):  # noise given: the regime draws it in the step itself, nothing to record
            if noise is None:
                drawn.append(model.stats_noise(key, n, jnp.result_type(*jax.tree.leaves(like))))
                noise = drawn[-1]
            return model.stats_from_noise(like, noise, n)

        return record

    size = Sizes(sizes[0][t - 1], sizes[1][t - 1])
    plan.regime.assemble_stats(_key_for(chain_key, t), t, size, model, recorder(state.params), recorder(truth),
                               state.buffer)
    return tuple(drawn)


def _chain_step(plan: _Plan, chain_key, state: ChainState, t, sizes, truth, real_data, reference, noise=None):
    """One generation of one chain. On the exact path ``noise`` (from :func:`_chain_noise`, same chain and
    generation) may carry the random input of the ``sample_stats`` calls, drawn beforehand: same result."""
    model, regime = plan.model, plan.regime
    select = (lambda t, truth, params: params) if plan.after_first else _select_params
    key_for = _key_for(chain_key, t)
    size = Sizes(sizes[0][t - 1], sizes[1][t - 1])

    def draw_real(key, n):
        if plan.real_is_dataset:
            return _draw_rows(key, real_data, n)
        return model.sample(key, truth, n)

    if plan.path == "exact":

        if noise is None:

            def draw_stats(key, n, noise=None):  # noise: this draw's model.stats_noise(key, n), drawn by the regime
                params = select(t, truth, state.params)
                if noise is not None:
                    return model.stats_from_noise(params, noise, n)
                return model.sample_stats(key, params, n)

            def draw_real_stats(key, n):
                return model.sample_stats(key, truth, n)
        else:
            drawn = iter(noise)

            def draw_stats(key, n, noise=None):
                return model.stats_from_noise(select(t, truth, state.params), next(drawn) if noise is None else noise,
                                              n)

            def draw_real_stats(key, n):
                return model.stats_from_noise(truth, next(drawn), n)

        stats, buffer = regime.assemble_stats(key_for, t, size, model, draw_stats, draw_real_stats, state.buffer)
        params = model.fit_from_stats(stats, state.params)
    else:
        if plan.real_is_dataset:

            def draw(key, n):
                return jax.lax.cond(t == 1, lambda: draw_real(key, n), lambda: model.sample(key, state.params, n))
        else:

            def draw(key, n):
                return model.sample(key, select(t, truth, state.params), n)

        data, weights, buffer = regime.assemble(key_for, t, size, plan.layout, draw, draw_real, state.buffer)
        params = model.fit(key_for(FIT), data, weights, state.params)
    if plan.metrics is not None and _metrics_take_names(type(model)):
        values = model.metrics(params, reference, key_for(METRIC), names=plan.metrics)
    else:
        values = model.metrics(params, reference, key_for(METRIC))
    if plan.metrics is not None:
        unknown = [name for name in plan.metrics if name not in values]
        if unknown:
            reported = sorted(model.metrics(params, reference, key_for(METRIC)))
            raise ValueError(f"metrics={list(plan.metrics)}: {unknown} not reported by {type(model).__name__}; "
                             f"it reports {reported}")
        values = {name: values[name] for name in plan.metrics}
    return ChainState(params, buffer), values


def _hook_kwargs(hook, **offered) -> dict:
    """The keyword arguments among ``offered`` that a model's optional hook accepts (a hook written before an
    argument was offered keeps working)."""
    import inspect

    try:
        params = inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


@functools.cache
def _metrics_take_names(model_type: type) -> bool:
    """Whether ``model_type.metrics`` accepts ``names=``, the metric names a run asks for: a model may then leave
    the others out of the program (the Gaussian's W2, KL and tail metrics); any model may ignore it."""
    return "names" in _hook_kwargs(model_type.metrics, names=None)


def _generation_body(plan: _Plan, root, t_start, sizes, truth, real_data, reference, chains):
    """``body(carry, t) -> (carry, outputs)``: one generation of every chain and its per-generation summaries;
    with ``plan.noise_block > 1``, ``body(carry, (t, noise))`` where ``noise`` is the generation's slice of
    ``block_noise(carry, ts)``, the random input of generations ``ts`` of every chain (the second return value)."""
    step = functools.partial(_chain_step, plan)
    chain_keys = jax.vmap(lambda c: keys.fold_in(root, c))(chains)
    truth, truth_axis = _chain_truths(plan, root, truth, chains)
    ref_axis = None
    if plan.reference_is_truth:
        reference, ref_axis = truth, truth_axis

    zero = jnp.minimum(t_start, 0).astype(jnp.zeros(()).dtype)  # 0 at run time (t_start >= 1), opaque to XLA

    def block_noise(carry, ts):
        def generation(t):
            return jax.vmap(functools.partial(_chain_noise, plan), in_axes=(0, 0, None, None, truth_axis))(
                chain_keys, carry, t, sizes, truth)

        return jax.vmap(generation)(ts)

    def body(carry, xs):
        t, noise = xs if plan.noise_block > 1 else (xs, None)
        in_axes = (0, 0, None, None, truth_axis, None, ref_axis, None if noise is None else 0)
        args = (chain_keys, carry, t, sizes, truth, real_data, reference, noise)
        if plan.chain_batch is None:
            carry, values = jax.vmap(step, in_axes=in_axes, axis_name=CHAIN_AXIS)(*args)
        else:
            carry, values = _map_chains(step, plan.chain_batch, in_axes, args)
        if plan.keep is not None:
            values = jax.tree.map(lambda v: v[: plan.keep], values)
        out = {"summary": pack_summary(summarise_metrics(values, plan.quantiles, zero))}
        if plan.trajectories:
            out["trajectories"] = values
        return carry, out

    return body, block_noise


@functools.partial(jax.jit, static_argnames=("plan", "length"), donate_argnames=("state",))
def _run_chunk(plan: _Plan, length: int, root, state, t_start, sizes, truth, real_data, reference, chains):
    body, block_noise = _generation_body(plan, root, t_start, sizes, truth, real_data, reference, chains)
    if plan.noise_block == 1:
        return jax.lax.scan(body, state, t_start + jnp.arange(length))
    # Blocks of equal size covering the chunk; the last block may run up to num_blocks - 1 generations past its
    # end, whose steps leave the state unchanged and whose outputs are dropped (one compiled inner loop).
    num_blocks = -(-length // plan.noise_block)
    size = -(-length // num_blocks)
    padded = num_blocks * size > length
    t_end = t_start + length

    def step(carry, xs):
        new, out = body(carry, xs)
        if padded:
            new = jax.tree.map(lambda a, b: jnp.where(xs[0] < t_end, a, b), new, carry)
        return new, out

    def block(carry, ts):  # the random input of a block of generations at once, then a step per generation
        return jax.lax.scan(step, carry, (ts, block_noise(carry, ts)))

    ts = t_start + jnp.arange(num_blocks * size).reshape(num_blocks, size)
    state, out = jax.lax.scan(block, state, ts)
    return state, jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:])[:length], out)


@functools.partial(jax.jit, static_argnames=("plan", "capacity"), donate_argnames=("state",))
def _run_chunk_dynamic(plan: _Plan, capacity: int, root, state, t_start, length, sizes, truth, real_data,
                       reference, chains):
    """``length`` (traced, 1 <= length <= capacity) generations from ``t_start``: one compiled program serves every
    chunk length. Outputs fill the first ``length`` rows of ``capacity``-row arrays; also returns the chains'
    status (:func:`_chain_status`) for the host's decisions between chunks."""
    body, _ = _generation_body(plan, root, t_start, sizes, truth, real_data, reference, chains)
    _, example = jax.eval_shape(body, state, t_start)
    rows = jax.tree.map(lambda leaf: jnp.zeros((capacity,) + leaf.shape, leaf.dtype), example)

    def loop(i, carry):
        state, rows = carry
        state, out = body(state, t_start + i)
        rows = jax.tree.map(lambda r, o: jax.lax.dynamic_update_index_in_dim(r, o, i, 0), rows, out)
        return state, rows

    state, rows = jax.lax.fori_loop(0, length, loop, (state, rows))
    return state, rows, _chain_status(plan, state.params)


def _chain_status(plan: _Plan, params) -> dict:
    """Whether every chain is absorbed (``model.absorbed``) and the largest live support (``model.support_size``)
    over chains, as the plan asks."""
    status = {}
    if plan.stop_when_absorbed:
        status["absorbed"] = jnp.all(jax.vmap(plan.model.absorbed)(params))
    if plan.compact:
        status["support"] = jnp.max(jax.vmap(plan.model.support_size)(params))
    return status


@functools.partial(jax.jit, static_argnames=("source", "target"))
def _pack_state(source, target, state: ChainState) -> ChainState:
    """Every chain's parameters and pooled statistics moved from model ``source`` to model ``target``."""
    params, pool = jax.vmap(lambda p, b: target.pack(source, p, b))(state.params, state.buffer)
    return ChainState(params, pool)


def _map_chains(step, batch_size: int, in_axes, args):
    """``jax.vmap(step, in_axes)(*args)`` evaluated ``batch_size`` chains at a time (``jax.lax.map``).

    A vmapped ``while_loop`` (EM to a tolerance, a rejection sampler) runs every chain until the slowest one in
    the batch stops; smaller batches waste fewer iterations but vectorise less.
    """
    mapped = [a for a, axis in zip(args, in_axes, strict=True) if axis == 0]

    def one(xs):
        it = iter(xs)
        return step(*[next(it) if axis == 0 else a for a, axis in zip(args, in_axes, strict=True)])

    return jax.lax.map(one, mapped, batch_size=batch_size)


_COMPILED: dict = {}
"""Scan programs compiled ahead of time with ``compiler_options`` (:func:`compiled_call`)."""
_COMPILED_INIT: dict = {}
"""Starting-state programs compiled ahead of time with ``compiler_options``."""
FAST_COMPILE = {"xla_backend_optimization_level": "1", "xla_cpu_use_fusion_emitters": False}
"""``compiler_options`` for :func:`simulate` that cut XLA's CPU compile time 3–4× (less LLVM optimisation, and
XLA's older CPU loop emitters, which emit ~35 % less code to compile than its fusion emitters), for grids of many
short runs where compiling dominates. The price is run time, measured against the default options: unchanged for
linear-algebra-bound programs (d ≥ 10), ~10 % more on the 1-D sample path, and 3–4× more on the hash-bound 1-D
exact step (156 instead of 45 ns per chain-generation at 10⁴ chains, 263 instead of 64 at 100 chains; the older
emitters alone cost 2.1–2.3×), so a long 1-D exact run should keep the defaults. Runs compiled with these
options also skip the exact path's noise blocks, which cost ~12 % more compile time."""


def _call_chunk(plan: _Plan, length: int, args: tuple, compiler_options, dynamic_length=None, lapack_guard=None):
    """``_run_chunk`` (or ``_run_chunk_dynamic`` with capacity ``length`` when ``dynamic_length`` is given) through
    jit's own cache, or ahead-of-time compiled with ``compiler_options`` (cached here by plan, length, argument
    shapes and options).

    Both **donate** the chain state (``args[1]``): the new state is written over the old one's buffers, so a run
    holds one copy of its state, not two (a sample-path pool of 10⁵ rows × d = 100 for 100 chains is 4 GB; the
    second copy cost 4 GB more and ~6 s of fresh-page faults in that cell of the Kazdan grid). The caller must not
    use the state it passed in after the call.

    ``lapack_guard``: ``(hazard, devices)`` from :func:`collapse_theory.distributed.lapack_hazard`; the program is
    lowered first and refused if it calls LAPACK (:func:`collapse_theory.distributed.check_lapack`); with
    ``compiler_options`` that lowering is the one compiled."""
    if dynamic_length is not None:
        fn = _run_chunk_dynamic
        root, state, t_start, *rest = args
        args = (root, state, t_start, jnp.int32(dynamic_length), *rest)
    else:
        fn = _run_chunk
    lowered = None
    if lapack_guard is not None and lapack_guard[0] is not None:
        from . import distributed

        lowered = fn.lower(plan, length, *args)
        distributed.check_lapack(*lapack_guard, lowered.as_text())
    return compiled_call(fn, (plan, length), args, compiler_options, _COMPILED, lowered)


_TRACE_CONFIG = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
                 "jax_default_matmul_precision")
"""JAX settings that change a traced program without changing its arguments' shapes or dtypes."""


def compiled_call(fn, static: tuple, args: tuple, compiler_options, cache: dict, lowered=None):
    """``fn(*static, *args)`` for a jitted ``fn`` whose leading arguments ``static`` are static: through jit's own
    cache without ``compiler_options``, else compiled ahead of time with them and kept in ``cache`` by what jit's
    cache would key on: ``fn``, ``static``, the arguments' shapes, dtypes and shardings (a run on other devices
    compiles anew), the JAX settings that change a trace (:data:`_TRACE_CONFIG`) and the options (``lowered``:
    ``fn.lower(*static, *args)`` if the caller has it already)."""
    if not compiler_options:
        return fn(*static, *args)
    leaves, treedef = jax.tree.flatten(args)
    signature = (fn.__name__, *static, treedef,
                 tuple((jnp.shape(x), jnp.result_type(x), getattr(x, "sharding", None)) for x in leaves),
                 tuple(getattr(jax.config, name) for name in _TRACE_CONFIG),
                 tuple(sorted(compiler_options.items())))
    compiled = cache.get(signature)
    if compiled is None:
        lowered = lowered if lowered is not None else fn.lower(*static, *args)
        compiled = lowered.compile(compiler_options=dict(compiler_options))
        cache[signature] = compiled
    return compiled(*args)


def _donatable(state, others):
    """``state`` with every leaf that is also another of its leaves or a leaf of ``others`` (the chunk's other
    arguments) replaced by a copy: a donated buffer must appear once among a call's arguments. A model may hold one
    array twice (the VAE's trained net and its generation-0 anchor start as the same arrays)."""
    seen = {id(leaf) for leaf in jax.tree.leaves(others)}

    def unique(leaf):
        if id(leaf) in seen:
            return jnp.copy(leaf)
        seen.add(id(leaf))
        return leaf

    return jax.tree.map(unique, state)


def _chain_truths(plan: _Plan, root, truth, chains):
    """Each chain's real distribution (``model.chain_truth``, key purpose TRUTH at t = 0) and its vmap axis."""
    if not plan.chain_truth or truth is None:
        return truth, None
    return jax.vmap(lambda c: plan.model.chain_truth(derive_key(root, c, 0, TRUTH), truth))(chains), 0


@functools.partial(jax.jit, static_argnums=0)
def _init_state(plan: _Plan, root, truth, real_data, chains) -> ChainState:
    """The chains' starting state: parameters (truth, each chain's own truth or ``model.init``) and an empty pool.
    One compiled program: run eagerly, its broadcasts, slices and zero-fills compiled one small program each for
    every new shape (4–10 per cell of a grid, 0.01–0.03 s each)."""
    model, regime = plan.model, plan.regime
    if truth is not None and plan.chain_truth:
        params, _ = _chain_truths(plan, root, truth, chains)
    elif truth is not None:
        params = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (plan.num_chains,) + leaf.shape), truth)
    else:
        params = jax.vmap(lambda c: model.init(derive_key(root, c, 0, INIT)))(chains)
    single = jax.tree.map(lambda leaf: leaf[0], params)
    if plan.path == "exact":
        pool = regime.init_pool(model, single)
    else:
        rows = regime.buffer_rows(plan.layout)
        if rows == 0:
            pool = jnp.zeros(())
        else:
            example = jax.eval_shape(lambda k, p: model.sample(k, p, 1), jax.random.key(0), single)
            data = jax.tree.map(lambda leaf: jnp.zeros((rows,) + leaf.shape[1:], leaf.dtype), example)
            pool = (data, jnp.zeros((rows,), jnp.zeros(()).dtype))
    buffer = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (plan.num_chains,) + jnp.shape(leaf)), pool)
    return ChainState(params, buffer)


_ADAPTIVE_CAPACITY = 4096
"""Default longest chunk (generations) of runs with ``stop_when_absorbed`` or ``compact``."""
_COMPACT_SHRINK = 8
_COMPACT_WORTH = 1.5e7
"""``compact`` moves to a smaller support (a power of two >= the live outcomes) once it is an eighth of the current
one or less, or, when it is at most half, once the slots it saves times the chains times the generations it
expects to be left exceed ``_COMPACT_WORTH``. The live outcomes of a replace chain fall like 1/t, so a support
size lasts about as many generations as have passed: the estimate is min(t, G - t). A slot of one
chain-generation costs ~0.3 µs on a 2-core CPU and a compile ~4 s, hence the threshold."""


def _slots(model) -> int:
    """The static support size of a model with compaction hooks."""
    return int(model.slots)


def _full_params(model, params):
    """Parameters in the model's full form (``model.expand`` of a compacted model), leading axis = chains."""
    if getattr(model, "support", None) is None:
        return params
    return jax.vmap(model.expand)(params)


def _check_absorbing(model, regime, path, stop_when_absorbed, compact, devices, checkpoint) -> None:
    """Refuse ``stop_when_absorbed`` / ``compact`` where a model or regime cannot support them."""
    name = type(model).__name__
    closed = bool(getattr(regime, "closed", False))
    if stop_when_absorbed:
        if not hasattr(model, "absorbed"):
            raise ValueError(f"stop_when_absorbed=True: model {name} has no absorbing states (no absorbed hook)")
        if not closed:
            raise ValueError(
                f"stop_when_absorbed=True needs a regime whose data after generation 1 come only from the model "
                f"(Replace, ReplaceGrown, Accumulate, AccumulateSubsample); regime={type(regime).__name__} "
                "brings in fresh data, so no state is absorbing")
    if compact:
        if path != "exact":
            raise ValueError(f"compact=True works on the exact path: got path={path!r}")
        if not hasattr(model, "compacted"):
            raise ValueError(f"compact=True: model {name} has no compacted representation (no compacted hook)")
        if hasattr(model, "check_compact"):
            model.check_compact()
        if not closed:
            raise ValueError(
                f"compact=True needs a regime whose data after generation 1 come only from the model (Replace, "
                f"ReplaceGrown, Accumulate); regime={type(regime).__name__} brings in fresh data, which revives "
                "lost outcomes")
        if devices is not None:
            raise ValueError(f"compact=True runs on one device: got devices={devices!r}")
        if checkpoint is not None:
            raise ValueError("compact=True cannot be combined with checkpoint=: the chains' state changes shape")


_NOISE_LANES = 32768
_NOISE_BLOCK_MAX = 1024
_NOISE_BYTES = 2**24


@functools.lru_cache(maxsize=64)
def _noise_bytes(model) -> int:
    """Bytes of one ``model.stats_noise`` draw (traced once per model: tracing costs tens of milliseconds)."""
    example = jax.eval_shape(lambda k: model.stats_noise(k, 2), jax.random.key(0))
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(example))


def _noise_block(model, num_chains: int) -> int:
    """Generations per noise block on the exact path: enough that a block holds about ``_NOISE_LANES`` chain-
    generations (XLA:CPU compiles the hash-heavy noise into few wide loops only for arrays of a few thousand
    elements; 100 chains get blocks of 328 generations, and their exact step costs half as much), at most
    ``_NOISE_BLOCK_MAX`` generations and ``_NOISE_BYTES`` of noise (two draws per generation at most)."""
    per_lane = 2 * _noise_bytes(model)
    by_lanes = -(-_NOISE_LANES // num_chains)
    by_bytes = _NOISE_BYTES // (per_lane * num_chains)
    return max(1, min(_NOISE_BLOCK_MAX, by_lanes, by_bytes))


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} must be an int")
    if value < minimum:
        raise ValueError(f"{name}={value} is out of range: need {name} >= {minimum}")
    return int(value)


def _check_finite_tree(name, tree):
    for leaf in jax.tree.leaves(tree):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains non-finite values: every entry must be finite")


def _check_call(key, model, regime) -> None:
    """Clear errors for a key, model or regime of the wrong kind (before anything is traced)."""
    is_seed = isinstance(key, (int, np.integer)) and not isinstance(key, bool)
    is_key = isinstance(key, jax.Array) and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                                            or (key.dtype == jnp.uint32 and key.shape == (2,)))
    if not (is_seed or is_key):
        raise ValueError(f"key={key!r} is out of range: need an int seed or a JAX PRNG key (jax.random.key(seed))")
    for name, obj, needs, example in (("model", model, ("fit", "sample", "metrics"), "Gaussian(dim=1, ddof=1)"),
                                      ("regime", regime, ("assemble", "buffer_rows"), "Replace()")):
        if isinstance(obj, type):
            raise ValueError(f"{name}={obj.__name__} is a class: pass an instance, e.g. {example}")
        if not all(hasattr(obj, a) for a in needs):
            raise ValueError(f"{name}={obj!r} is not a {name}: need an object with {', '.join(needs)} "
                             f"(e.g. {example}; see collapse_theory.{'models' if name == 'model' else 'regimes'})")


def _shape_mismatch(given, expected) -> str | None:
    """How the pytree ``given`` differs from ``expected`` (ShapeDtypeStructs), comparing ``expected``'s shapes
    with ``shape(given)`` by leaf; None when they agree."""
    paths_e, tree_e = jax.tree_util.tree_flatten_with_path(expected)
    leaves_g, tree_g = jax.tree_util.tree_flatten(given)
    if tree_g != tree_e:
        return f"its structure is {tree_g}, not {tree_e}"
    for (path, e), g in zip(paths_e, leaves_g, strict=True):
        if tuple(np.shape(g)) != tuple(e.shape):
            return f"{jax.tree_util.keystr(path) or 'the array'} has shape {tuple(np.shape(g))}, not {tuple(e.shape)}"
    return None


def _check_like_params(name, given, model) -> None:
    """``given`` has the structure and shapes of ``model.params()`` (skipped for models whose ``params`` needs
    arguments)."""
    try:
        expected = jax.eval_shape(model.params)
    except TypeError:
        return
    why = _shape_mismatch(given, expected)
    if why is not None:
        raise ValueError(f"{name} does not fit {model!r}: {why} (as in model.params())")


def _params_like(model):
    """Parameters with the model's shapes, for tracing its methods: ``model.params()`` or ``model.init(key)``."""
    return model.params() if hasattr(model, "params") else model.init(jax.random.key(0))


def _check_real_rows(real_data, model):
    """Every ``real_data`` leaf is rows of the model's samples: its shape after the leading axis is a sample's.
    Returns the shapes and dtypes of one sample (``None`` where the model cannot be traced without a run)."""
    try:
        row = jax.eval_shape(lambda k, p: model.sample(k, p, 1), jax.random.key(0), _params_like(model))
    except Exception:  # noqa: BLE001 - only a nicer message is at stake; the run itself reports real errors
        return None
    if not all(np.ndim(x) >= 1 for x in jax.tree.leaves(real_data)):
        why = "it has no leading row axis"
    else:
        rows = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,) + tuple(np.shape(x))[1:], jnp.float32), real_data)
        why = _shape_mismatch(rows, row)
    if why is not None:
        raise ValueError(f"real_data does not hold rows of {model!r}'s samples: {why} (a row is shaped like "
                         f"model.sample(key, params, 1) without its leading axis)")
    return row


def _as_sample_dtypes(real_data, row):
    """``real_data`` with each leaf in the dtype of the model's own samples (``row``, from :func:`_check_real_rows`),
    which the engine mixes with it (one training set, one ``lax.cond``): an int64 or uint8 token array for int32
    samples, whole-number floats for integer samples, float32 rows for float64 samples. A leaf whose values the
    sample dtype cannot hold exactly (a fraction or an out-of-range integer for an integer dtype) is a
    ``ValueError`` naming the value."""
    if row is None:
        return real_data
    leaves, like = jax.tree.leaves(real_data), jax.tree.leaves(row)
    if len(leaves) != len(like):
        return real_data

    def cast(x, want):
        want = np.dtype(want.dtype)
        if jnp.result_type(x) == want:
            return x
        if np.issubdtype(want, np.integer):
            values = np.asarray(x)
            if values.dtype.kind not in _validate.NUMBER_KINDS:
                raise ValueError(f"real_data has dtype {values.dtype}: the model's samples are {want}")
            info = np.iinfo(want)
            found = _validate.first_not_whole(values, info.min, info.max)
            if found is not None:
                raise ValueError(f"real_data holds {found[1]!r} at {found[0]}: the model's samples are {want}, which "
                                 f"holds whole numbers in [{info.min}, {info.max}]")
        return jnp.asarray(x, want)

    return jax.tree.unflatten(jax.tree.structure(real_data), [cast(x, w) for x, w in zip(leaves, like, strict=True)])


def _check_metrics_without_reference(model) -> None:
    """With ``real_data=`` and no ``reference=`` there is no truth: the model's metrics must not need one."""
    try:
        like = _params_like(model)
    except Exception:  # noqa: BLE001 - only a nicer message is at stake
        return
    try:
        jax.eval_shape(lambda p: model.metrics(p, None, jax.random.key(0)), like)
    except (AttributeError, TypeError, IndexError) as err:
        raise ValueError(f"real_data= without reference=: the metrics of {type(model).__name__} compare each fit "
                         f"with a reference (they failed on None: {err}); pass reference= (e.g. model.params(...) "
                         "of the distribution the data come from)") from None


def simulate(
    key,
    model,
    regime=None,
    *,
    num_chains: int,
    num_generations: int,
    num_samples,
    truth=None,
    real_data=None,
    reference=None,
    path: str = "sample",
    metrics=None,
    quantiles=DEFAULT_QUANTILES,
    trajectories: bool = False,
    chunk_size: int | None = None,
    progress: bool = False,
    chain_offset: int = 0,
    compiler_options: dict | None = None,
    devices=None,
    pad_chains: bool = False,
    checkpoint=None,
    checkpoint_every: float = 60.0,
    resume: bool = False,
    snapshots=(),
    chain_batch: int | None = None,
    stop_when_absorbed: bool = False,
    compact: bool = False,
) -> SimulationResult:
    r"""Run ``num_chains`` independent recursive-training chains for ``num_generations`` fits.

    Args:
      key: an int seed (recorded in the metadata) or a typed JAX key.
      model: a static model (:mod:`collapse_theory.models`).
      regime: a data regime (:mod:`collapse_theory.regimes`); default :class:`~collapse_theory.regimes.Replace`.
      num_chains: C, independent chains (vmapped).
      num_generations: G, fits per chain; ``t = 1`` fits real data.
      num_samples: M, an int, a schedule (:mod:`collapse_theory.schedules`) giving :math:`M_t`, or a 1-D sequence
        of ints :math:`M_1, M_2, \dots` (:class:`~collapse_theory.schedules.Explicit`; at least ``num_generations``).
      truth: parameters of the real distribution (default for models with ``params()``: ``model.params()``).
      real_data: alternatively, a dataset (leading axis = rows) to draw real data from, without replacement.
      reference: what ``model.metrics`` compares against; default ``truth`` (each chain's own truth for models
        with a ``chain_truth`` hook).
      path: ``"sample"`` (draw and fit samples) or ``"exact"`` (sufficient statistics, O(1) per generation).
      metrics: names of the per-chain metrics to keep (default: all the model reports).
      quantiles: quantile levels over chains recorded per generation.
      trajectories: also keep every chain's metrics, arrays (G, C).
      chunk_size: generations per compiled chunk (default: all in one, or 20 chunks with ``progress``).
      progress: show a tqdm bar over chunks.
      chain_offset: global id of the first chain (independent jobs over disjoint chain ranges).
      compiler_options: XLA options for compiling the scan (e.g. :data:`FAST_COMPILE` when compilation
        dominates, as in grids of many short runs); results are unchanged bit for bit only up to the
        floating-point reassociation the options allow.
      devices: shard the chains over devices: an int D (the first D of ``jax.devices()``), a sequence of devices
        or a 1-D :class:`jax.sharding.Mesh` (:mod:`collapse_theory.distributed`). The result is bit-identical
        to the single-device run in float64; in float32 a few ulps can differ (XLA:CPU compiles the per-device
        batch differently). ``None`` (default): no sharding. As many CPU devices as cores and a program
        that calls LAPACK raise ``ValueError`` with jaxlib < 0.11.2 (it would hang; see
        :mod:`~collapse_theory.distributed`).
      pad_chains: with ``devices``, allow a ``num_chains`` that is not a multiple of D by simulating extra
        chains that are dropped before any summary (otherwise such a count raises ``ValueError``).
      checkpoint: path of a checkpoint file (:mod:`collapse_theory.checkpoint`) written atomically after a chunk
        whenever ``checkpoint_every`` seconds have passed, after the last chunk, and on Ctrl-C. Needs an int seed.
      checkpoint_every: seconds between checkpoints (0: after every chunk).
      resume: continue from ``checkpoint`` if it exists (the settings must match); the final result equals an
        uninterrupted run bit for bit. Its metadata carry the checkpoint's record: ``wall_time_s`` sums every
        segment (``wall_time_before_resume_s`` the earlier ones), ``absorbed_at_generation`` survives, and
        ``resumed_from`` holds the writing code's versions and ``compiler_options`` (other options warn: they can
        change the last bits).
      snapshots: generations t (1 ≤ t ≤ G) after which to keep every chain's parameters (e.g. to draw sample
        grids of generations 1, 5, 20); chunks end at these generations, which changes no result.
      chain_batch: advance the chains ``chain_batch`` at a time (a ``lax.map`` over batches, each vmapped)
        instead of all at once. Worth it for models whose ``fit`` iterates to a tolerance (the GMM's EM): a
        vmapped loop runs until the slowest chain of its batch converges. Results agree with the default in
        distribution and to round-off (same keys; XLA may compile batched arithmetic differently). Not with
        ``devices``.
      stop_when_absorbed: stop simulating once every chain is **absorbed** (``model.absorbed``: a state the
        regime's steps can never leave, e.g. a categorical chain fixed on one outcome under a regime that brings
        in no fresh data) and fill the remaining generations with their last values, which is what the full run
        computes (the chains no longer change and absorbed metrics are deterministic). Chunks grow geometrically
        (1, 1, 2, 4, … generations, at most ``chunk_size``, default ``min(G, 4096)``) and the check runs between
        chunks, so a run stops within a chunk of the last absorption. The metadata record
        ``absorbed_at_generation``: the last generation simulated, or None when the run went to the end (some
        chain was still live before the last chunk).
      compact: exact path, models with a ``compacted`` hook (:class:`~collapse_theory.models.Categorical` without
        smoothing): between chunks, move every chain to a smaller static **support** (a power of two) once the
        largest number of live outcomes over chains fits in an eighth of the current one (in half, when enough
        generations are left to repay another compile; the replace chain keeps at most
        min(K, M) outcomes after its first fit and loses most of them within a few generations), so a
        generation costs O(live support) instead of O(K). Same law as the plain run, different random numbers
        (the sampler runs on the smaller support). Regimes that bring in fresh data are refused (they revive lost
        outcomes), as are ``devices`` and ``checkpoint``. ``final_params`` and snapshots are returned in the
        model's full form; the metadata record the support sizes used (``support_schedule``).

    Returns:
      A :class:`SimulationResult`.

    Examples:
      >>> from collapse_theory import Gaussian, simulate
      >>> res = simulate(0, Gaussian(dim=1, ddof=1), num_chains=64, num_generations=5, num_samples=10)
      >>> res.mean("log_variance").shape
      (5,)
    """
    start_time = time.time()
    regime = Replace() if regime is None else regime
    _check_call(key, model, regime)
    num_chains = _positive_int("num_chains", num_chains)
    num_generations = _positive_int("num_generations", num_generations)
    chain_offset = _positive_int("chain_offset", chain_offset, minimum=0)
    if chain_offset + num_chains > 2**31 - 1:
        raise ValueError(f"chain_offset={chain_offset} with num_chains={num_chains} is out of range: chain ids are "
                         f"32-bit, need chain_offset + num_chains <= 2**31 - 1")
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not one of {PATHS}")
    if chain_batch is not None:
        chain_batch = _positive_int("chain_batch", chain_batch)
        if devices is not None:
            raise ValueError(f"chain_batch={chain_batch} cannot be combined with devices={devices!r}: sharding "
                             "splits the vmapped chain axis; use chain_batch=None")
        if chain_batch >= num_chains:
            chain_batch = None  # one batch: the plain vmap
    for name, flag in (("stop_when_absorbed", stop_when_absorbed), ("compact", compact)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name}={flag!r} is out of range: need True or False")
    _check_absorbing(model, regime, path, stop_when_absorbed, compact, devices, checkpoint)
    schedule = as_schedule(num_samples)
    sizes = schedule.sizes(num_generations)
    if isinstance(schedule, Explicit):  # the sizes this run uses: sizes beyond num_generations do not make another run
        schedule = Explicit(tuple(int(m) for m in sizes))
    if path == "exact" and not has_exact_path(model):
        raise ValueError(f"path='exact': model {type(model).__name__} has no sufficient-statistic sampler; "
                         "use path='sample'")
    if hasattr(model, "check_sizes"):
        model.check_sizes(sizes, path)
    if hasattr(regime, "check_sizes"):
        regime.check_sizes(sizes)
    check_exact_sizes("num_samples", sizes)
    min_samples = getattr(model, "min_samples", 1)
    if sizes.min() < min_samples:
        t_bad = int(np.argmin(sizes)) + 1
        raise ValueError(
            f"num_samples={int(sizes.min())} at generation t={t_bad} is out of range: this model "
            f"(ddof={getattr(model, 'ddof', '?')}) needs num_samples >= {min_samples}"
        )
    if path == "exact":
        if isinstance(regime, AccumulateSubsample):
            raise ValueError(
                "regime=AccumulateSubsample has no exact path (subsets reuse pool points); use path='sample'"
            )
        if real_data is not None:
            raise ValueError("path='exact' draws real statistics from truth=; real_data= needs path='sample'")
    if truth is None and real_data is None:
        if not hasattr(model, "params"):
            raise ValueError("give truth= (the real distribution's parameters) or real_data= (a dataset)")
        truth = model.params()
    elif truth is not None and hasattr(model, "params"):
        _check_like_params("truth", truth, model)
    if truth is not None and real_data is not None:
        raise ValueError("give either truth= or real_data=, not both")
    if truth is not None:
        _check_finite_tree("truth", truth)
    if real_data is not None:
        _check_finite_tree("real_data", real_data)
        row = _check_real_rows(real_data, model)
        if hasattr(model, "check_rows"):  # values the model's rows may hold (e.g. token ids in the vocabulary)
            model.check_rows(real_data)
        real_data = _as_sample_dtypes(real_data, row)
        if reference is None:
            _check_metrics_without_reference(model)
        rows = jax.tree.leaves(real_data)[0].shape[0]
        if rows < sizes.max():
            raise ValueError(f"real_data has {rows} rows: need at least max_t M_t = {int(sizes.max())}")
    if reference is not None and hasattr(model, "check_reference"):  # e.g. a held-out corpus's token ids
        model.check_reference(reference)
    reference_is_truth = reference is None
    reference = truth if reference is None else reference
    if quantiles:
        quantiles = tuple(float(q) for q in quantiles)
        if not all(0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError(f"quantiles={quantiles} are out of range: need 0 <= q <= 1")
    else:
        quantiles = ()
    # The exact path never reads the layout: keep it out of the static plan so one program serves every M.
    if path == "sample":
        layout = Layout(int(sizes.max()), num_generations, bool(np.all(sizes == sizes[0])), real_data is not None)
    else:
        layout = Layout(0, 0)
    run_model = model
    if path == "exact" and hasattr(model, "specialise") and hasattr(regime, "max_exact_draw"):
        run_model = model.specialise(regime.max_exact_draw(sizes))
    plan = _Plan(
        model=run_model,
        regime=regime,
        path=path,
        num_chains=num_chains,
        layout=layout,
        metrics=None if metrics is None else tuple(metrics),
        quantiles=quantiles,
        trajectories=bool(trajectories),
        real_is_dataset=real_data is not None,
        chain_truth=hasattr(model, "chain_truth") and truth is not None,
        reference_is_truth=reference_is_truth,
        chain_batch=chain_batch,
        stop_when_absorbed=bool(stop_when_absorbed),
        compact=bool(compact),
    )
    fast_compile = FAST_COMPILE.items() <= dict(compiler_options or {}).items()  # the caller: compiling dominates
    if path == "exact" and getattr(run_model, "blocked_noise", False) and chain_batch is None and not (
            stop_when_absorbed or compact or fast_compile):
        plan = dataclasses.replace(plan, noise_block=_noise_block(run_model, num_chains))
    if path == "sample":
        like = truth if truth is not None else jax.eval_shape(model.init, jax.random.key(0))
        example = jax.eval_shape(lambda k, p: model.sample(k, p, 1), jax.random.key(0), like)
        width = sum(math.prod(leaf.shape[1:]) for leaf in jax.tree.leaves(example))
        itemsize = jnp.zeros(()).dtype.itemsize
        rows_per_chain = regime.buffer_rows(layout)
        if rows_per_chain:
            nbytes = rows_per_chain * (width + 1) * num_chains * itemsize
            if nbytes > _MAX_BUFFER_BYTES:
                raise ValueError(
                    f"regime={type(regime).__name__} on the sample path needs a {nbytes / 2**30:.1f} GiB buffer "
                    f"({num_chains} chains x {rows_per_chain} rows): use path='exact', fewer chains or generations"
                )
        # one generation's draws, for every chain of a batch at once (ReplaceGrown draws the whole pool's rows)
        drawn = draw_rows(regime, layout)
        nbytes = drawn * width * (chain_batch or num_chains) * itemsize
        if nbytes > _MAX_BUFFER_BYTES:
            raise ValueError(
                f"num_samples: the sample path draws {drawn} rows per chain per generation, {nbytes / 2**30:.1f} GiB "
                f"for {chain_batch or num_chains} chains at once (limit {_MAX_BUFFER_BYTES / 2**30:.0f} GiB): use "
                f"path='exact' where the model has one, a smaller chain_batch or smaller M_t")
    seed = key if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else None
    root = root_key(int(seed)) if seed is not None else key
    mesh, total_chains, lapack_guard = None, num_chains, None
    if devices is not None:
        from . import distributed

        mesh = distributed.chain_mesh(devices)
        lapack_guard = (distributed.lapack_hazard(mesh), int(mesh.size))
        total_chains = distributed.padded_count(num_chains, mesh.size, bool(pad_chains))
        plan = dataclasses.replace(plan, num_chains=total_chains,
                                   keep=num_chains if total_chains != num_chains else None)
    int_dtype = jax.dtypes.canonicalize_dtype(np.int64)  # int32 unless x64, as jnp.arange gives
    chains = jnp.asarray(np.arange(chain_offset, chain_offset + total_chains, dtype=int_dtype))  # no compile
    truth_j = None if truth is None else jax.tree.map(jnp.asarray, truth)
    real_j = None if real_data is None else jax.tree.map(jnp.asarray, real_data)
    ref_j = None if reference is None else jax.tree.map(jnp.asarray, reference)
    # the options serve the starting state's program too: the quick check's VAE starting state compiled in 4.4 s
    # with XLA's defaults, 0.9 s with FAST_COMPILE (a fixed-design regression's: 1.2 s, 0.2 s)
    state = compiled_call(_init_state, (plan,), (root, truth_j, real_j, chains), compiler_options, _COMPILED_INIT)
    # M_t and Σ_{k<=t} M_k in the working float dtype (schedules keep M_t < 2**31; _check_size_precision keeps
    # every size a model reads exact in float32)
    table = jax.tree.map(lambda a: jnp.asarray(a.astype(jnp.zeros(()).dtype)),  # converted on the host: no compile
                         (np.asarray(sizes, np.float64), np.cumsum(sizes, dtype=np.float64)))
    config = {
        "model": type(model).__name__,
        "model_options": _io.options_of(model),
        "regime": type(regime).__name__,
        "regime_options": _io.options_of(regime),
        "path": path,
        "num_chains": num_chains,
        "num_generations": num_generations,
        "num_samples": _io.to_jsonable(dataclasses.asdict(schedule) | {"schedule": type(schedule).__name__}),
        "chain_offset": chain_offset,
        "compiler_options": dict(compiler_options or {}),
        "chain_batch": chain_batch,
        "stop_when_absorbed": bool(stop_when_absorbed),
        "compact": bool(compact),
        "generation_index": "t = number of fits; t = 1 is the fit on real data",
        "real_source": "dataset" if real_data is not None else "truth",
        "per_chain_truth": plan.chain_truth,
        # the metrics' reference: runs against other references are different runs (merge and resume refuse them)
        "reference": "truth" if reference_is_truth else {"given": _io.fingerprint(reference)},
        # what the chains start from: runs of other truths or datasets are different runs (merge refuses them)
        "truth": None if truth is None else _io.describe(truth),
        "real_data": None if real_data is None else _io.fingerprint(real_data),
    }
    if mesh is not None:
        config["devices"] = int(mesh.size)
        config["pad_chains"] = total_chains - num_chains

    adaptive = bool(stop_when_absorbed or compact)
    if chunk_size is None:
        chunked = progress or checkpoint is not None
        chunk_size = max(1, math.ceil(num_generations / 20)) if chunked else num_generations
        if adaptive:
            chunk_size = min(num_generations, _ADAPTIVE_CAPACITY)
    chunk_size = _positive_int("chunk_size", chunk_size)
    if checkpoint_every is None or not checkpoint_every >= 0:
        raise ValueError(f"checkpoint_every={checkpoint_every!r} is out of range: need seconds >= 0")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path of the checkpoint file>")
    outputs: list = []
    t_done = 0
    ckpt = None
    resumed_origin = None
    wall_before, absorbed_before = 0.0, None  # the run record of a resumed checkpoint
    if checkpoint is not None:
        from . import checkpoint as _ckpt

        if snapshots:
            raise ValueError(f"snapshots={tuple(snapshots)} cannot be combined with checkpoint=: a checkpoint keeps "
                             f"the chains' current state, not earlier generations' parameters, so a resumed run "
                             f"would lose the snapshots taken before the interruption")
        if seed is None:
            raise ValueError("checkpoint= needs key= to be an int seed (a checkpoint records the seed, not a key)")
        ckpt_path = _ckpt.checkpoint_path(checkpoint)
        fp = _ckpt.fingerprint(config, seed=int(seed), x64=bool(jax.config.jax_enable_x64), metrics=plan.metrics,
                               quantiles=quantiles, trajectories=plan.trajectories)
        ckpt = (_ckpt, ckpt_path, fp)
        if resume and not ckpt_path.exists():
            warnings.warn(f"resume=True: no checkpoint at {str(ckpt_path)!r}; starting from generation 1", stacklevel=2)
        if resume and ckpt_path.exists():
            saved = _ckpt.load_checkpoint(ckpt_path)
            _ckpt.check_fingerprint(saved["fingerprint"], fp, ckpt_path)
            state = _restore_state(state, saved["state_leaves"], num_chains, ckpt_path)
            t_done = saved["t_done"]
            resumed_origin = dict(saved["origin"] or {})
            if saved["origin"] is not None and saved["origin"] != _ckpt.origin():
                warnings.warn(f"checkpoint={str(ckpt_path)!r} was written by other code or libraries "
                              f"({saved['origin']}): generations 1..{t_done} come from it (recorded in the result's "
                              f"metadata['resumed_from'])", stacklevel=2)
            record = saved["run"]
            if "compiler_options" in record:
                resumed_origin["compiler_options"] = record["compiler_options"]
                if record["compiler_options"] != _io.to_jsonable(config["compiler_options"]):
                    warnings.warn(f"checkpoint={str(ckpt_path)!r} was compiled with compiler_options="
                                  f"{record['compiler_options']}, this run with {config['compiler_options']}: "
                                  f"the last bits of float results can differ from an uninterrupted run (recorded "
                                  f"in the result's metadata['resumed_from'])", stacklevel=2)
            wall_before = float(record.get("wall_time_s", 0.0))
            absorbed_before = record.get("absorbed_at_generation")
            if saved["outputs"] is not None and t_done > 0:
                outputs.append(saved["outputs"])
    if mesh is not None:
        sharding = distributed.chain_sharding(mesh)
        state = distributed.place(state, sharding)
        chains = distributed.place(chains, sharding)

    snapshots = sorted({int(t) for t in snapshots})
    if snapshots and not 1 <= snapshots[0] <= snapshots[-1] <= num_generations:
        raise ValueError(f"snapshots={snapshots} are out of range: need 1 <= t <= num_generations={num_generations}")
    starts = list(range(t_done + 1, num_generations + 1, chunk_size))
    starts = sorted(set(starts) | {t + 1 for t in snapshots if t_done < t < num_generations})

    def next_length(t):  # generations of the chunk after generation t
        if not adaptive:
            return min([s for s in starts if s > t + 1] + [num_generations + 1]) - (t + 1)
        stop = min([s for s in snapshots if s > t] + [num_generations])
        return min(chunk_size, max(1, t), stop - t)

    kept: dict = {}
    bar = _Progress(num_generations, t_done, num_chains, progress and (adaptive or len(starts) > 1))
    committed = (state, len(outputs), t_done)  # one assignment: consistent whenever an interrupt arrives
    last_save = time.monotonic()
    run_plan = plan
    support_schedule = [[1, _slots(plan.model)]] if compact else None
    absorbed_at = absorbed_before

    def run_record():  # what a checkpoint carries into the resumed result's metadata
        return {"wall_time_s": wall_before + time.time() - start_time, "absorbed_at_generation": absorbed_at,
                "compiler_options": config["compiler_options"]}

    try:
        while committed[2] < num_generations:
            t_start = committed[2] + 1
            length = next_length(committed[2])
            # the chunk donates (overwrites) the state it is given; a checkpointed run keeps the committed state
            # intact for the Ctrl-C save by giving it a copy
            others = (table, truth_j, real_j, ref_j, chains)
            given = _donatable(committed[0], others) if ckpt is None else jax.tree.map(jnp.copy, committed[0])
            args = (root, given, jnp.int32(t_start), table, truth_j, real_j, ref_j, chains)
            if adaptive:
                new_state, rows, status = _call_chunk(run_plan, chunk_size, args, compiler_options,
                                                      dynamic_length=length)
                out = jax.tree.map(lambda r, n=length: r[:n], _to_host(rows))
                status = jax.device_get(status)
            else:
                new_state, out = _call_chunk(run_plan, length, args, compiler_options, lapack_guard=lapack_guard)
                lapack_guard = None  # checked once: every chunk runs the same operations
                out = _to_host(out)
            out["summary"] = unpack_summary(out["summary"])
            outputs.append(out)
            t_end = t_start + length - 1
            if adaptive and stop_when_absorbed and bool(status["absorbed"]) and t_end < num_generations:
                # every chain sits in an absorbing state: the rest of the run repeats this generation's values
                remaining = num_generations - t_end
                outputs.append(jax.tree.map(lambda a, n=remaining: np.repeat(a[-1:], n, axis=0), out))
                absorbed_at = t_end
                length, t_end = length + remaining, num_generations
            elif adaptive and compact and t_end < num_generations:
                target = max(2, 1 << max(0, int(status["support"]) - 1).bit_length())
                slots = _slots(run_plan.model)
                saved = (slots - target) * min(t_end, num_generations - t_end) * total_chains
                if target * _COMPACT_SHRINK <= slots or (2 * target <= slots and saved >= _COMPACT_WORTH):
                    compacted = run_plan.model.compacted(target)
                    new_state = _pack_state(run_plan.model, compacted, new_state)
                    run_plan = dataclasses.replace(run_plan, model=compacted, after_first=True)
                    support_schedule.append([t_end + 1, target])
            committed = (new_state, len(outputs), t_end)
            for t in snapshots:
                if t_start <= t <= t_end and (t == t_end or absorbed_at is not None):
                    kept[t] = jax.tree.map(lambda leaf: leaf[:num_chains],
                                           _to_host(_full_params(run_plan.model, new_state.params)))
            bar.update(length)
            if ckpt is not None and (time.monotonic() - last_save >= checkpoint_every
                                     or committed[2] == num_generations):
                _save_checkpoint(ckpt, committed, outputs, num_chains, run_record())
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if ckpt is not None and committed[2] > t_done:
            path_written = _save_checkpoint(ckpt, committed, outputs, num_chains, run_record())
            print(f"\ninterrupted after generation {committed[2]}: checkpoint {path_written} "
                  f"(continue with resume=True / --resume)", file=sys.stderr)
        raise
    finally:
        bar.close()
    state = committed[0]
    merged = jax.tree.map(lambda *xs: np.concatenate(xs), *outputs)
    metadata = _io.collect_metadata(seed=seed, wall_time_s=run_record()["wall_time_s"])
    if mesh is not None:
        metadata["mesh"] = {"axis": "chains", "size": int(mesh.size)}
    if t_done:
        metadata["resumed_from_generation"] = t_done
        metadata["wall_time_before_resume_s"] = wall_before
        if resumed_origin:
            metadata["resumed_from"] = resumed_origin
    if stop_when_absorbed:
        metadata["absorbed_at_generation"] = absorbed_at
    if compact:
        metadata["support_schedule"] = support_schedule
    if hasattr(model, "result_notes"):  # a model's own reading of its summaries: numerical limits reached, ...
        notes = list(model.result_notes(merged["summary"], path, **_hook_kwargs(
            model.result_notes, sizes=np.asarray(sizes), regime=regime)))
        if notes:
            metadata["notes"] = notes
            for note in notes:
                warnings.warn(note, RuntimeWarning, stacklevel=2)
    final_params = _to_host(_full_params(run_plan.model, state.params))
    if total_chains != num_chains:
        final_params = jax.tree.map(lambda leaf: leaf[:num_chains], final_params)
    return SimulationResult(
        generations=np.arange(1, num_generations + 1),
        summary=merged["summary"],
        quantile_levels=np.asarray(quantiles),
        trajectories=merged.get("trajectories"),
        final_params=final_params,
        config=config,
        metadata=metadata,
        snapshots=kept if snapshots else None,
    )


def _to_host(tree):
    """NumPy copy of device outputs (gathered across hosts when sharded over several)."""
    leaves = jax.tree.leaves(tree)
    if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in leaves):
        return jax.device_get(tree)
    from .distributed import to_host

    return to_host(tree)


def _save_checkpoint(ckpt, committed, outputs, num_chains, run):
    module, path, fp = ckpt
    state, count, t_done = committed
    leaves = [np.asarray(x)[:num_chains] for x in jax.tree.leaves(_to_host(state))]
    done = jax.tree.map(lambda *xs: np.concatenate(xs), *outputs[:count]) if count else None
    if jax.process_index() != 0:  # multi-host: every process gathers, process 0 writes
        return path
    return module.save_checkpoint(path, fingerprint=fp, t_done=t_done, state_leaves=leaves, outputs=done, run=run)


def _restore_state(state, saved_leaves, num_chains, path):
    """The carry from a checkpoint's leaves (first ``num_chains`` chains; padding chains keep their init)."""
    leaves, treedef = jax.tree.flatten(state)
    if len(saved_leaves) != len(leaves):
        raise ValueError(f"checkpoint={str(path)!r} holds {len(saved_leaves)} state arrays: this run has {len(leaves)}")
    restored = []
    for new, old in zip(saved_leaves, leaves, strict=True):
        if new.shape[1:] != old.shape[1:] or new.shape[0] != num_chains or new.dtype != old.dtype:
            raise ValueError(f"checkpoint={str(path)!r} state array {new.shape} {new.dtype} does not fit this run "
                             f"({(num_chains,) + old.shape[1:]} {old.dtype})")
        restored.append(jnp.concatenate([jnp.asarray(new), old[num_chains:]]) if old.shape[0] > num_chains
                        else jnp.asarray(new))
    return treedef.unflatten(restored)


class _Progress:
    """tqdm over generations (optional import) with throughput in chain-generations per second and an ETA."""

    def __init__(self, total: int, done: int, num_chains: int, enabled: bool):
        self.bar = None
        self.num_chains = num_chains
        self.start = time.monotonic()
        self.count = 0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional
            return
        self.bar = tqdm(total=total, initial=done, unit="gen", desc="generations")

    def update(self, length: int) -> None:
        if self.bar is None:
            return
        self.count += length
        rate = self.count * self.num_chains / max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{rate:.3g} chain-gen/s", refresh=False)
        self.bar.update(length)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
