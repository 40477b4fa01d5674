r"""The model protocols the engine runs.

A **model** is a frozen dataclass of static hyperparameters (dimensions, estimator convention, optimiser
settings). Its parameters are an explicit pytree, never stored on the object. Every method is pure and
vmappable over chains; keys come first.

Sample-level path (every model):

* ``init(key) -> params``: parameters to start a chain from when the real data is a dataset (a VAE's random
  network, a GMM's initial means). Chains whose real source is a known distribution start from it instead.
* ``sample(key, params, n) -> data``: ``n`` (static) draws, leading axis ``n``; data may be any pytree of arrays.
* ``fit(key, data, weights, params) -> params``: fit on ``data`` with non-negative **frequency weights**
  (weight 2 means the row counts twice; weight 0 means absent), so that fixed-size buffers and masks express
  every regime. ``params`` is the current model: closed-form fits ignore it; iterative fits (EM, optax training)
  may start from it or from a fresh initialisation, as the model documents.
* ``metrics(params, reference, key) -> dict[str, Array]``: per-chain scalar observables. ``reference`` is what the
  metrics compare against (the true parameters, held-out real data); ``key`` (purpose ``METRIC``) serves
  observables that need randomness (a downstream fit on fresh data, samples scored by a grammar); deterministic
  metrics ignore it. A model whose ``metrics`` also takes ``names=`` is given the names ``simulate(metrics=...)``
  asks for and may leave the others out (fewer operations to trace and compile); it must report every named one.
* ``min_samples``: the smallest training-set size ``fit`` accepts (2 for an unbiased variance).

Optional hooks (any model):

* ``chain_truth(key, truth) -> truth``: each chain's own real distribution, drawn once per chain from a key of
  purpose ``TRUTH`` at generation 0 (a regression's fixed design X and random true weights, a random-projection
  matrix). The engine then uses the chain's truth wherever it would use ``truth``: real draws, the start of the
  chain and, unless the caller gives ``reference=``, the metrics' reference. Parameters may carry such per-chain
  constants; ``fit`` and ``fit_from_stats`` pass them through.
* ``check_sizes(sizes, path)``: raise ``ValueError`` naming the parameter when the per-generation sample sizes
  (a NumPy int array) do not suit the model on ``path`` (e.g. a fixed design of T rows needs multiples of T).
* ``check_rows(rows)``: raise ``ValueError`` naming the value and the allowed range when a ``real_data`` array
  holds values the model's samples cannot (e.g. token ids outside the vocabulary); called once, on the host,
  before ``simulate`` casts ``real_data`` to the dtypes of the model's samples. ``check_reference(reference)``:
  the same for a ``reference=`` the metrics read (a held-out corpus).

Exact path (families with sufficient statistics), in addition:

* ``sample_stats(key, params, n) -> stats``: the sufficient statistics of ``n`` i.i.d. draws, drawn exactly in
  O(1) random numbers per chain; ``n`` may be a traced integer.
* ``empty_stats(like) -> stats``, ``combine_stats(a, b) -> stats``: the statistics of an empty sample and of the
  union of two samples (accumulation is a running combination).
* ``fit_from_stats(stats, params) -> params``: the same estimator as ``fit``; ``params`` is the current model
  (closed-form fits use it only to pass per-chain constants through).
* optional ``absorbed(params) -> bool``: the chain can never leave these parameters under a **closed** regime
  (``regime.closed``: no fresh data after generation 1), and the metrics of such parameters do not depend on the
  key; ``simulate(stop_when_absorbed=True)`` stops once every chain is absorbed.
* optional compaction (``simulate(compact=True)``): ``slots`` (the static length of the parameter vector),
  ``support`` (None for the full form), ``support_size(params)`` (live entries), ``compacted(size) -> model`` (the
  same model on ``size`` slots), ``pack(source, params, pool) -> (params, pool)`` (a chain moved from model
  ``source``), ``expand(params)`` (back to the full form) and ``check_compact()`` (raise if lost entries can
  return, e.g. with smoothing).
* optional ``specialise(max_draw) -> model``: an equivalent model for runs whose ``sample_stats`` calls never draw
  more than ``max_draw`` (a static int the engine gets from ``regime.max_exact_draw(sizes)``), e.g. one that need
  not compile a fallback sampler for larger draws. It must give the same results.
* optional noise blocks: ``stats_noise(key, n, dtype) -> noise`` (the random input of ``sample_stats``, which must
  not depend on the parameters), ``stats_from_noise(params, noise, n) -> stats`` and ``blocked_noise = True``, with
  ``sample_stats(key, params, n) == stats_from_noise(params, stats_noise(key, n, dtype), n)`` for ``dtype`` the
  ``jnp.result_type`` of the parameters' leaves: the engine then draws the noise of a block of generations of every
  chain at once before stepping through them, which must change no bit (test it: XLA may round a step's
  arithmetic differently when its input comes from outside).
* optional ``grow_pool`` (with ``stats_noise`` and ``stats_from_noise``): ``None``, or a function
  ``(pool, noise, n) -> stats`` equal to ``combine_stats(pool, stats_from_noise(fit_from_stats(pool), noise, n))``
  up to round-off, computed more cheaply: :class:`~collapse_theory.regimes.Accumulate` calls it from generation 2
  on, where the draws come from the pool's own fit, with ``noise = stats_noise(key, n, dtype)`` for ``dtype`` the
  ``jnp.result_type`` of the pool's leaves (the Gaussian: a Cholesky factor of a well-conditioned d × d
  matrix instead of a QR of the stacked factors).
* ``any_chain(flag)`` (below): whether ``flag`` holds in any chain the engine advances together with this one, an
  unbatched value a ``lax.cond`` can branch on, so that a costly fallback (the Gaussian's QR where its Gram
  matrix is too ill-conditioned) runs only in batches that need it. Each chain must still choose its own result
  from its own flag: a chain's result may not depend on the other chains of its batch.
* optional ``result_notes(summary, path, sizes=None, regime=None) -> list[str]``: the model's reading of a
  finished run's summaries (``{metric: {"mean": (G,), ...}}``, with the run's M_t and regime where the hook takes
  them), e.g. a numerical limit the sample path reached; ``simulate`` raises each note as a ``RuntimeWarning`` and
  records them in ``metadata["notes"]``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

Params = Any
Stats = Any
Data = Any


@runtime_checkable
class Model(Protocol):
    min_samples: int

    def init(self, key: jax.Array) -> Params: ...

    def sample(self, key: jax.Array, params: Params, n: int) -> Data: ...

    def fit(self, key: jax.Array, data: Data, weights: jax.Array, params: Params) -> Params: ...

    def metrics(self, params: Params, reference: Any, key: jax.Array) -> dict[str, jax.Array]: ...


@runtime_checkable
class ExactModel(Model, Protocol):
    def sample_stats(self, key: jax.Array, params: Params, n: jax.Array) -> Stats: ...

    def empty_stats(self, like: Params) -> Stats: ...

    def combine_stats(self, a: Stats, b: Stats) -> Stats: ...

    def fit_from_stats(self, stats: Stats, params: Params) -> Params: ...


CHAIN_AXIS = "chains"
"""The axis name of the engine's ``vmap`` over chains (:func:`any_chain`)."""


def any_chain(flag: jax.Array) -> jax.Array:
    """``flag`` (a bool per chain) OR-reduced over the chains that the engine's ``vmap`` (axis :data:`CHAIN_AXIS`)
    advances together: the same value for each of them, so ``lax.cond`` on it branches once for the batch instead
    of computing both branches for every chain (a ``cond`` on a per-chain predicate becomes a ``select`` under
    ``vmap``). Outside that ``vmap`` (a model called directly), ``flag`` itself."""
    try:
        return jax.lax.psum(flag.astype("int32"), CHAIN_AXIS) > 0
    except NameError:  # no vmap over chains with this axis name
        return flag


def has_exact_path(model) -> bool:
    """Whether ``model`` offers the sufficient-statistic methods of the exact path."""
    return all(hasattr(model, name) for name in ("sample_stats", "empty_stats", "combine_stats", "fit_from_stats"))
