r"""Random-key derivation.

Every random draw of a simulation uses a key derived from the root seed, the global chain id, the absolute
generation index and a purpose constant:

.. math:: k(c, t, p) = \mathrm{fold\_in}(\mathrm{fold\_in}(\mathrm{fold\_in}(\mathrm{root}, c), t), p).

Nothing is threaded through the scan carry, so a run split into chunks of generations, a run with more chains,
or a run sharded over devices reproduces the same chains bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SAMPLE = 0
"""Purpose: synthetic draws from the current model (or real draws at the first generation)."""
FIT = 1
"""Purpose: randomness used inside ``fit`` (minibatches, initialisation)."""
INIT = 2
"""Purpose: initial parameters of a chain."""
REAL = 3
"""Purpose: fresh real draws (``FreshFraction``)."""
SUBSAMPLE = 4
"""Purpose: choosing a subset of the pool (``AccumulateSubsample``)."""
GATE = 5
"""Purpose: randomness of a verification gate."""
METRIC = 6
"""Purpose: randomness inside ``metrics`` (a downstream fit, Monte-Carlo estimates of an observable)."""
TRUTH = 7
"""Purpose: a chain's own real distribution, drawn once per chain at generation 0 (``model.chain_truth``)."""
REFERENCE = 8
"""Purpose: data shared by every chain and drawn once per run (a held-out reference corpus): :func:`shared_key`."""
CLASSIFIER = 9
"""Purpose: training a run's measuring classifier (the VAE set-up), once per run: :func:`shared_key`."""

SHARED_CHAIN = 2**32 - 1
"""The chain id of :func:`shared_key`: no chain has it (chain ids are int32, < 2³¹)."""


def root_key(seed: int) -> jax.Array:
    """Typed root key of a run from its integer seed."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed={seed!r} must be a Python int")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed} is out of range: need 0 <= seed < 2**32 (JAX keeps 32 bits of a seed in "
                         f"float32 mode, so a larger seed would repeat a smaller one's stream there and not with x64)")
    return jax.random.key(seed)


def derive_key(root: jax.Array, chain, t, purpose: int) -> jax.Array:
    """Key for (chain, generation, purpose); ``chain`` and ``t`` may be traced integers."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, chain), t), purpose)


def shared_key(root: jax.Array, purpose: int) -> jax.Array:
    """Key of draws shared by every chain of a run (a held-out corpus every chain is measured on):
    ``derive_key(root, SHARED_CHAIN, 0, purpose)``, disjoint from every chain's keys."""
    return derive_key(root, SHARED_CHAIN, 0, purpose)


# ---------------------------------------------------------------------------------------------------------------
# Fused Threefry-2x32
# ---------------------------------------------------------------------------------------------------------------
# jax lowers its Threefry hash on CPU as a rolled loop (five trips of four rounds), so every ``fold_in`` in a
# vmapped step costs a small XLA while loop: for the exact paths, whose step has O(1) arithmetic, that loop
# overhead is most of the step. ``threefry2x32`` below is the same hash (Salmon et al., SC 2011: 20 rounds, key
# injection every 4) written as straight-line uint32 arithmetic, which XLA fuses with its neighbours. It is
# bit-identical to ``jax.extend.random.threefry_2x32`` and ``fold_in`` below to ``jax.random.fold_in`` (tests).

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x, r: int):
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 (20 rounds) of the counter pair ``(x0, x1)`` under the key ``(k0, k1)``; uint32, broadcast."""
    k0, k1, x0, x1 = (jnp.asarray(v, jnp.uint32) for v in (k0, k1, x0, x1))
    return _threefry_rounds(k0, k1, x0, x1)


@jax.jit
def _threefry_rounds(k0, k1, x0, x1):
    """The rounds, jitted: a program traces them once per argument shape instead of at every call (a key
    derivation, a block of words): each call traced ~120 small operations, ~0.15 s of tracing per simulation
    program (measured over 12 Gaussian programs: 17.3-17.8 -> 14.9-16.4 s from cold). XLA inlines the call;
    the bits are the same."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def split(key: jax.Array, num: int) -> jax.Array:
    """``jax.random.split(key, num)`` as fused arithmetic: in JAX's partitionable Threefry mode (the default) key
    ``i`` of the split is ``fold_in(key, i)``, one hash of the counter pair (0, i). Other modes and other key
    implementations go to ``jax.random.split``, and so does a raw uint32 key, which stays raw. (JAX's split
    compiles a rolled Threefry loop, ~16 kernels in a d-dim exact Gaussian program when that step used it; here
    each key is one fused hash. The regression's fresh design draws its keys with it.)"""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not (typed and jax.config.jax_threefry_partitionable and jax.random.key_data(key).shape == (2,)):
        return jax.random.split(key, num)
    return fold_in(key, jnp.arange(num, dtype=jnp.uint32))


def fold_in(key: jax.Array, data) -> jax.Array:
    """``jax.random.fold_in(key, data)`` for a Threefry key and a non-negative integer ``data`` (< 2³²), as fused
    arithmetic (any other key implementation goes to ``jax.random.fold_in``)."""
    raw = jax.random.key_data(key)
    if raw.shape[-1:] != (2,):  # not a Threefry key
        return jax.random.fold_in(key, data)
    # converted as jax.random.fold_in converts it
    low = jnp.asarray(data, jnp.uint32) if isinstance(data, int) else jnp.asarray(data).astype(jnp.uint32)
    y0, y1 = threefry2x32(raw[..., 0], raw[..., 1], jnp.zeros_like(low), low)
    return jax.random.wrap_key_data(jnp.stack([y0, y1], axis=-1), impl=jax.random.key_impl(key))
