r"""Observables over chains: each generation's summaries (mean, standard deviation, quantiles) reduced over the
chain axis inside the scan, so a run keeps O(G) memory whatever the number of chains.

Every sum adds in a fixed binary tree (:func:`pairwise_sum`) and every quantile sorts order-preserving integer keys
(:func:`quantiles_linear`), so a summary is a function of the chain values alone: the same bits chunked or not,
sharded or not, and when :mod:`collapse_theory.merge` recomputes them from trajectories. A model's per-chain
metrics (its ``metrics`` method: log-variance, KL to the truth, heterozygosity, test error, ...) are the inputs;
:func:`summarise_metrics` reduces them all, one tree of additions per dtype, and :func:`pack_summary` lays a
generation's summaries out as one vector per dtype for the scan to write.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def pairwise_sum(values: jax.Array) -> jax.Array:
    r"""Sum over axis 0 by a fixed binary tree of elementwise additions (zero-padded to even length per level).

    :math:`s = \sum_c v_c` with the association order fixed by the index alone, so the bits do not depend on how
    XLA fuses, vectorises or shards the reduction (a plain ``jnp.sum`` does); the error is O(log C) ulps. (Padding
    once to a power of two gives the same bits and two kernels fewer to compile, but up to twice the additions:
    the 1-D exact step at 10⁴ chains measured ~6 ns per chain-generation slower.)
    """
    while values.shape[0] > 1:
        if values.shape[0] % 2:
            values = jnp.concatenate([values, jnp.zeros((1,) + values.shape[1:], values.dtype)])
        values = values[0::2] + values[1::2]
    return values[0]


def summarise(values: jax.Array, quantiles: tuple[float, ...], zero=None) -> dict[str, jax.Array]:
    r"""Mean and sd (ddof=1) over chains: :math:`\bar x = S/n`, :math:`s^2 = \sum_c (x_c-\bar x)^2/(n-1)`.

    Both sums use :func:`pairwise_sum`, so the summaries are a function of the chain values alone: identical bits
    sharded or not, chunked or not, and when :mod:`collapse_theory.merge` recomputes them from trajectories.
    ``zero`` is a 0.0 the compiler cannot see through (derived from a runtime argument); adding it after every
    product stops LLVM from contracting that product into a fused multiply-add with the next addition, which it
    would do or not depending on how XLA fused the surrounding program (``fma(a, b, 0) = a b`` exactly).
    """
    n = values.shape[0]
    if zero is None:
        zero = jnp.zeros((), values.dtype)
    zero = zero.astype(values.dtype)
    values = values + zero
    mean = pairwise_sum(values) / n
    if n > 1:
        centred_sq = jnp.square(values - mean[None]) + zero
        sd = jnp.sqrt(pairwise_sum(centred_sq) / (n - 1))
    else:
        sd = jnp.zeros_like(mean)
    out = {"mean": mean, "sd": sd}
    if quantiles:
        out["quantiles"] = quantiles_linear(values, quantiles, zero)
    return out


def _sorted_floats(values: jax.Array) -> jax.Array:
    """``values`` (1-D, no NaN) in ascending order, sorted as order-preserving integer keys.

    A float's bits read as a signed integer order the non-negative floats correctly; flipping every bit but the
    sign of the negative ones orders those too (−0.0 sorts just below +0.0). XLA:CPU sorts integers with a plain
    comparison but floats through JAX's NaN-aware total-order comparator: 4× slower for 10⁴ values.
    """
    itype = jnp.int32 if values.dtype.itemsize == 4 else jnp.int64
    flip = jnp.asarray(jnp.iinfo(itype).max, itype)
    bits = jax.lax.bitcast_convert_type(values, itype)
    keys = jnp.sort(jnp.where(bits < 0, bits ^ flip, bits))
    return jax.lax.bitcast_convert_type(jnp.where(keys < 0, keys ^ flip, keys), values.dtype)


def summarise_metrics(values: dict, quantiles: tuple[float, ...], zero=None) -> dict[str, dict]:
    """:func:`summarise` of every metric in ``values`` (name -> (chains, ...) array), the means and sds of all
    metrics of one dtype computed together: their columns side by side in one (chains, k) array, so the program
    holds one binary tree of additions per dtype instead of one per metric (fewer kernels to compile). The same
    elementwise operations as summarising each metric alone: the same bits for (chains,) metrics as checked, though
    XLA may fuse, and round, a metric with further axes differently by an ulp. Quantiles stay per metric."""
    if zero is None:
        zero = jnp.zeros(())
    groups: dict = {}
    for name, value in values.items():
        groups.setdefault(jnp.result_type(value), []).append(name)
    out = {}
    for names in groups.values():
        flat = [values[name].reshape(values[name].shape[0], -1) for name in names]
        both = summarise(jnp.concatenate(flat, axis=1) if len(flat) > 1 else flat[0], (), zero)
        start = 0
        for name, part in zip(names, flat, strict=True):
            stop = start + part.shape[1]
            shape = values[name].shape[1:]
            out[name] = {k: v[start:stop].reshape(shape) for k, v in both.items()}
            if quantiles:  # as summarise computes them
                value = values[name] + zero.astype(values[name].dtype)
                out[name]["quantiles"] = quantiles_linear(value, quantiles, zero)
            start = stop
    return out


@jax.tree_util.register_pytree_node_class
class PackedSummary:
    """A generation's summaries as one flat vector per dtype (``vectors``: dtype name -> array), with the layout
    that restores them as static pytree data: compiled programs (jit's cache, ahead-of-time executables) hand it
    back with their outputs, whatever was traced since (the same plan under x64, say)."""

    def __init__(self, vectors: dict, layout: tuple):
        self.vectors = vectors
        self.layout = layout  # (treedef of the summaries, ((dtype name, start, shape), ...) per leaf)

    def tree_flatten(self):
        names = tuple(sorted(self.vectors))
        return tuple(self.vectors[name] for name in names), (names, self.layout)

    @classmethod
    def tree_unflatten(cls, aux, children):
        names, layout = aux
        return cls(dict(zip(names, children, strict=True)), layout)


def pack_summary(summary: dict) -> PackedSummary:
    """A generation's summaries (metric -> statistic -> array) as one flat vector per dtype, so that the scan
    writes one output row per generation instead of one per statistic and metric, each a kernel to compile (a
    Kazdan grid program with three metrics: 70 kernels before, 64 after). The values are unchanged."""
    leaves, treedef = jax.tree.flatten(summary)
    parts: dict[str, list] = {}
    layout = []
    for leaf in leaves:
        name = jnp.dtype(leaf.dtype).name
        start = sum(part.size for part in parts.get(name, []))
        parts.setdefault(name, []).append(jnp.ravel(leaf))
        layout.append((name, start, tuple(leaf.shape)))
    vectors = {name: jnp.concatenate(vs) if len(vs) > 1 else vs[0] for name, vs in parts.items()}
    return PackedSummary(vectors, (treedef, tuple(layout)))


def unpack_summary(packed: PackedSummary) -> dict:
    """The summaries of :func:`pack_summary`'s vectors stacked over generations (host arrays, (generations, k)),
    each as (generations, *shape)."""
    treedef, layout = packed.layout
    leaves = [packed.vectors[name][:, start:start + math.prod(shape)].reshape((-1,) + shape)
              for name, start, shape in layout]
    return jax.tree.unflatten(treedef, leaves)


def quantiles_linear(values: jax.Array, levels, zero=None) -> jax.Array:
    """``jnp.quantile(values, levels)`` (method "linear": NaN if any value is NaN) over a 1-D array, with the sort
    done on integer keys (:func:`_sorted_floats`). ``zero`` as in :func:`summarise` keeps the interpolation's
    products out of fused multiply-adds."""
    n = values.shape[0]
    dtype = values.dtype
    zero = jnp.zeros((), dtype) if zero is None else zero.astype(dtype)
    has_nan = jnp.any(jnp.isnan(values))
    ordered = _sorted_floats(jnp.where(has_nan, jnp.zeros((), dtype), values))
    q = jnp.asarray(levels, dtype) * jnp.asarray(n - 1, dtype)
    low, high = jnp.floor(q), jnp.ceil(q)
    high_weight = q - low
    low_weight = 1.0 - high_weight
    low = jnp.clip(low, 0, n - 1).astype(jnp.int32)
    high = jnp.clip(high, 0, n - 1).astype(jnp.int32)
    result = (ordered[low] * low_weight + zero) + (ordered[high] * high_weight + zero)
    return jnp.where(has_nan, jnp.asarray(jnp.nan, dtype), result)
