r"""Random-key derivation.

Every random draw of a simulation uses a key derived from the root seed, the global chain id, the absolute
generation index and a purpose constant:

.. math:: k(c, t, p) = \mathrm{fold\_in}(\mathrm{fold\_in}(\mathrm{fold\_in}(\mathrm{root}, c), t), p).

Nothing is threaded through the scan carry, so a run split into chunks of generations, a run with more chains,
or a run sharded over devices reproduces the same chains bit for bit.
"""

from __future__ import annotations

import jax

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


def root_key(seed: int) -> jax.Array:
    """Typed root key of a run from its integer seed."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed={seed!r} must be a Python int")
    if seed < 0:
        raise ValueError(f"seed={seed} is out of range: need seed >= 0")
    return jax.random.key(seed)


def derive_key(root: jax.Array, chain, t, purpose: int) -> jax.Array:
    """Key for (chain, generation, purpose); ``chain`` and ``t`` may be traced integers."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, chain), t), purpose)
