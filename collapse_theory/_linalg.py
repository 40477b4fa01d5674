r"""Batched symmetric eigendecomposition and SVD that cannot deadlock XLA:CPU.

jaxlib 0.10's CPU LAPACK kernels split a batched call over XLA's intra-op thread pool and block the calling pool
thread until the pieces finish. When as many independent batched calls as the pool has threads run at once (two on
a 2-core machine), every pool thread waits for work that no thread is free to run, and the program hangs with all
workers idle (observed here in vmapped regression chains: two ``lapack_dsyevd_ffi`` frames in
``ParallelBatchMap`` → ``BlockingCounter::Wait``). These wrappers run the decomposition in NumPy through
``jax.pure_callback`` instead: the batch arrives whole (``vmap_method="expand_dims"``), NumPy loops over it in one
C call with ``OPENBLAS_NUM_THREADS=1``, and no XLA pool thread ever waits on another. The results are the same
LAPACK routines' (``syevd``, ``gesdd``), so values agree with ``jnp.linalg`` to round-off.
"""

from __future__ import annotations

import jax
import numpy as np


def _eigh_host(a):
    w, v = np.linalg.eigh(np.asarray(a))
    return w.astype(a.dtype), v.astype(a.dtype)


def eigh(a: jax.Array):
    """Eigenvalues (ascending) and eigenvectors of symmetric ``a`` (..., n, n), like ``jnp.linalg.eigh``."""
    shapes = (jax.ShapeDtypeStruct(a.shape[:-1], a.dtype), jax.ShapeDtypeStruct(a.shape, a.dtype))
    return jax.pure_callback(_eigh_host, shapes, a, vmap_method="expand_dims")


def _svd_host(a):
    u, s, vt = np.linalg.svd(np.asarray(a), full_matrices=False)
    return u.astype(a.dtype), s.astype(a.dtype), vt.astype(a.dtype)


def svd(a: jax.Array):
    """Thin SVD ``u, s, vt`` of ``a`` (..., m, n), like ``jnp.linalg.svd(a, full_matrices=False)``."""
    m, n = a.shape[-2:]
    k = min(m, n)
    batch = a.shape[:-2]
    shapes = (
        jax.ShapeDtypeStruct(batch + (m, k), a.dtype),
        jax.ShapeDtypeStruct(batch + (k,), a.dtype),
        jax.ShapeDtypeStruct(batch + (k, n), a.dtype),
    )
    return jax.pure_callback(_svd_host, shapes, a, vmap_method="expand_dims")


__all__ = ["eigh", "svd"]
