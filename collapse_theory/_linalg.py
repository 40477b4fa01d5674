r"""Linear algebra that cannot deadlock XLA:CPU: batched eigh, SVD and singular values through NumPy; a
triangular solve, a Cholesky factor and a nuclear norm in XLA operations.

jaxlib 0.10's CPU LAPACK kernels split a batched call over XLA's intra-op thread pool and block the calling pool
thread until the pieces finish. When as many independent batched calls as the pool has threads run at once (two on
a 2-core machine), every pool thread waits for work that no thread is free to run, and the program hangs with all
workers idle. Observed here twice: vmapped regression chains (two ``lapack_dsyevd_ffi`` frames in
``ParallelBatchMap`` → ``BlockingCounter::Wait``), and the d-dim Gaussian's metrics, whose W2 SVD and KL
triangular solves are independent (``Gaussian(dim=31)``, 1000 chains, default metrics: ``lapack_sgesdd_ffi`` and
``lapack_strsm_ffi`` waiting). ``lax.optimization_barrier`` does not order them: XLA:CPU drops barriers before its
executor runs independent operations concurrently. The wrappers here run the decomposition in NumPy through
``jax.pure_callback`` instead: the batch arrives whole (``vmap_method="expand_dims"``), NumPy loops over it in one
C call with ``OPENBLAS_NUM_THREADS=1``, and no XLA pool thread ever waits on another. The results are the same
LAPACK routines' (``syevd``, ``gesdd``), so values agree with ``jnp.linalg`` to round-off. :func:`solve_lower`,
:func:`cholesky` and :func:`nuclear_norm` need no LAPACK at all. A program may keep one jaxlib LAPACK call at a
time (the Gaussian fit's QR, whose outputs everything else in a generation waits for; or the sample-path fit's
Cholesky factor of the Gram matrix, the triangular solves of its condition estimate and, after them, the QR of
the chains where that factor is ill-conditioned: each call waits for the one before).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _host_call(host_fn, a: jax.Array, out_shapes: tuple[tuple[int, ...], ...]) -> tuple[jax.Array, ...]:
    """``host_fn(numpy array) -> tuple of numpy arrays`` of ``a``'s dtype and the given shapes, through
    ``jax.pure_callback``, with float64 carried as raw uint32 pairs.

    JAX converts a callback's arguments and results under the *calling thread's* x64 setting, and XLA runs the
    callback on a pool thread, which does not see a ``with jax.enable_x64(True):`` block: a float64 input arrived
    rounded to float32 and the float64 results were refused ("Incorrect output dtype"). Bits are not converted."""
    dtype = a.dtype
    wide = dtype == jnp.float64

    def host(x):
        x = np.asarray(x)
        if wide:
            x = x.view(np.float64)[..., 0]
        outs = host_fn(x)
        return tuple(np.ascontiguousarray(o, dtype).view(np.uint32).reshape(o.shape + (2,)) if wide
                     else np.asarray(o, dtype) for o in outs)

    arg = jax.lax.bitcast_convert_type(a, jnp.uint32) if wide else a
    specs = tuple(jax.ShapeDtypeStruct(shape + (2,), jnp.uint32) if wide else jax.ShapeDtypeStruct(shape, dtype)
                  for shape in out_shapes)
    outs = jax.pure_callback(host, specs, arg, vmap_method="expand_dims")
    return tuple(jax.lax.bitcast_convert_type(o, jnp.float64) if wide else o for o in outs)


def eigh(a: jax.Array):
    """Eigenvalues (ascending) and eigenvectors of symmetric ``a`` (..., n, n), like ``jnp.linalg.eigh``."""
    return _host_call(np.linalg.eigh, a, (a.shape[:-1], a.shape))


def svd(a: jax.Array):
    """Thin SVD ``u, s, vt`` of ``a`` (..., m, n), like ``jnp.linalg.svd(a, full_matrices=False)``."""
    m, n = a.shape[-2:]
    k = min(m, n)
    batch = a.shape[:-2]
    return _host_call(lambda x: np.linalg.svd(x, full_matrices=False), a,
                      (batch + (m, k), batch + (k,), batch + (k, n)))


def singular_values(a: jax.Array) -> jax.Array:
    """Singular values (descending) of ``a`` (..., m, n), like ``jnp.linalg.svd(a, compute_uv=False)``, from
    NumPy (a host callback: the program is then not kept by JAX's persistent compilation cache)."""
    shape = a.shape[:-2] + (min(a.shape[-2:]),)
    return _host_call(lambda x: (np.linalg.svd(x, compute_uv=False),), a, (shape,))[0]


def nuclear_norm(c: jax.Array, iterations: int = 40) -> jax.Array:
    r"""Sum of the singular values of ``c`` (..., m, n), :math:`\mathrm{tr}(U^\top c)` with :math:`U` the polar
    factor of ``c`` from the Newton–Schulz iteration :math:`X \leftarrow X(3I - X^\top X)/2` on
    :math:`c/\|c\|_F`.

    Matrix products only (no LAPACK call, no host callback: cheap under ``vmap``, never deadlocks beside another
    call, and the compiled program stays cacheable). Each singular value follows :math:`s \leftarrow s(3-s^2)/2`,
    which cannot change sign, so rank-deficient inputs and round-off are harmless; singular values down to
    ~1e-7·‖c‖_F converge in 40 iterations and a smaller one contributes at most itself.
    """
    norm = jnp.sqrt(jnp.sum(c**2, axis=(-2, -1), keepdims=True))
    x = c / jnp.maximum(norm, jnp.finfo(c.dtype).tiny)
    n = c.shape[-1]
    eye = jnp.eye(n, dtype=c.dtype).reshape((1,) * (c.ndim - 2) + (n, n))

    def step(x, _):
        return 0.5 * x @ (3.0 * eye - jnp.swapaxes(x, -1, -2) @ x), None

    x, _ = jax.lax.scan(step, x, None, length=iterations)
    return jnp.sum(x * c, axis=(-2, -1))


def solve_lower(lower: jax.Array, rhs: jax.Array) -> jax.Array:
    """:math:`L^{-1}` ``rhs`` for lower-triangular ``L`` (..., d, d) and ``rhs`` (..., d) or (..., d, k) with
    the same leading axes, by forward substitution in XLA operations: no LAPACK call
    (``jax.scipy.linalg.solve_triangular`` is jaxlib's batched ``trsm`` on CPU), so it can run beside any other
    call. One row per step (unrolled for d ≤ 8, a ``fori_loop`` above); as accurate as ``trsm`` (the same
    recurrence, summed in another order)."""
    d = lower.shape[-1]
    vector = rhs.ndim == lower.ndim - 1
    b = rhs[..., None] if vector else rhs

    def row(i, y):  # rows >= i of y are still zero and L[i, j > i] = 0, so the full product is the partial sum
        done = jnp.einsum("...j,...jk->...k", lower[..., i, :], y)
        return y.at[..., i, :].set((b[..., i, :] - done) / lower[..., i, i][..., None])

    y = jnp.zeros_like(b)
    if d <= 8:
        for i in range(d):
            y = row(i, y)
    else:
        y = jax.lax.fori_loop(0, d, row, y)
    return y[..., 0] if vector else y


def cholesky(a: jax.Array, floor: float = 0.0) -> jax.Array:
    """Lower Cholesky factor of symmetric PSD ``a`` (..., d, d) in XLA operations (no LAPACK ``potrf``), one
    column per ``fori_loop`` step; a non-positive pivot gives a zero column (a singular factor) instead of NaN.

    ``floor``: squared pivots below it are raised to it. For ``a = C + λI`` with C positive semi-definite every
    squared pivot is at least λ in exact arithmetic, so ``floor=λ`` changes nothing unless rounding in forming
    ``a`` (cancellation) made it indefinite, where it keeps the factor regular instead of singular."""
    d = a.shape[-1]
    index = jnp.arange(d).reshape((1,) * (a.ndim - 2) + (d,))  # explicit ranks: rank promotion may be 'raise'

    def column(j, low):
        row = low[..., j, :]  # entries k < j are set
        pivot = jnp.sqrt(jnp.maximum(a[..., j, j] - jnp.sum(row * row, axis=-1), floor))
        safe = jnp.where(pivot > 0, pivot, 1.0)[..., None]
        rest = a[..., :, j] - jnp.einsum("...ik,...k->...i", low, row)
        below = (index > j) & (pivot > 0)[..., None]
        col = jnp.where(below, rest / safe, 0.0)
        col = jnp.where(index == j, pivot[..., None], col)
        return low.at[..., :, j].set(col)

    return jax.lax.fori_loop(0, d, column, jnp.zeros_like(a))


__all__ = ["cholesky", "eigh", "nuclear_norm", "singular_values", "solve_lower", "svd"]
