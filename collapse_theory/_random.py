r"""Fast exact samplers used by the exact paths.

``unit_uniforms(key, n)`` draws ``n`` uniforms on (0, 1) from one Threefry-2x32 call on ``ceil(n/2)`` counters:
every hash yields two 32-bit words. (``jax.random.uniform`` in JAX's default partitionable mode spends one hash per
32-bit value; on a CPU, hashing is most of an exact step's cost.) Its counters are ``(1, i)``, disjoint from the
``(0, i)`` that ``jax.random.fold_in`` and ``jax.random.bits`` use with the same key.

``log_gamma(key, a)`` draws :math:`\log G`, :math:`G \sim \mathrm{Gamma}(a, 1)`, by Marsaglia & Tsang's rejection
method (ACM TOMS 26, 2000) with K proposals drawn at once and the first accepted one kept, which is the same law
as sequential rejection. Only when all K are rejected does a ``while_loop`` draw K more. A proposal is rejected
with probability 4.8e-2 at the worst shape, 1 (a = 1, or a → 0 through the boost below), 2.7e-2 at 1.5, 7.0e-3 at
4.5 and 5.7e-4 at 49.5. Under ``vmap`` a round of the loop costs as much as the first round, for every lane, so K
trades a hash and a proposal on every draw against how often the rescue runs. The 1-D exact Gaussian step
(``normal_and_log_gamma``, shape (M−1)/2) uses K = 2: 16–22 % faster per chain-generation than three at M = 10
and 100 in a plain scan, 37.7 → 34.1 ns in the engine at M = 100, but 57 → 71 ns at M = 10, where both fail for
one draw in 2·10⁴ and the rescue runs in most 32 768-draw noise blocks. The d-dim Bartlett diagonal (all d
shapes (M−i)/2 as one array of lanes, from the step's one Threefry call) and ``log_gamma`` (the regression's fresh
design) keep K = 3: they draw many small shapes at once (M near d), where two proposals would run the rescue on
almost every step. ``jax.random.loggamma`` loops for
every element and is about 4× slower per draw on CPU. For :math:`a < 1` the boost
:math:`G_a = G_{a+1} U^{1/a}` is applied in log space, so tiny values never underflow.
``normal_and_log_gamma(key, a)`` draws an independent standard normal and :math:`\log G` from one call (six
uniforms, three hashes): the whole random input of a one-dimensional exact Gaussian step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .keys import fold_in, threefry2x32


def gamma_uniforms(proposals: int) -> int:
    """Uniforms that :func:`log_gamma_from_uniforms` reads: two per proposal and one for the boost."""
    return 2 * proposals + 1


def _words(key: jax.Array, n: int) -> jax.Array:
    """``n`` pseudo-random uint32 words: Threefry-2x32 of ``key`` on the counters (1, 0), (1, 1), …"""
    data = jax.random.key_data(key)
    if data.shape != (2,):  # not a Threefry key (another PRNG implementation was configured)
        return jax.random.bits(jax.random.fold_in(key, 1), (n,), jnp.uint32)
    half = (n + 1) // 2
    y0, y1 = threefry2x32(data[0], data[1], jnp.ones((half,), jnp.uint32), jnp.arange(half, dtype=jnp.uint32))
    return jnp.concatenate([y0, y1])[:n]


def integers_below(key: jax.Array, spans: jax.Array) -> jax.Array:
    """One integer uniform on ``[0, spans[i])`` per entry of ``spans`` (uint32 or int32, each in [1, 2³¹)), as
    int32: a 32-bit word modulo the span. Value k comes with probability 1/span to within a relative
    span/2³² (2.3·10⁻⁵ at a span of 10⁵ rows). ``jax.random.randint`` combines two words, which brings it closer
    to uniform for spans below 2¹⁶ but not above (its uint32 product of the high word's residue overflows), and
    compiles ~20 more kernels (a rolled Threefry split, two loops), ~17 % of a small sample-path program's
    compile time."""
    spans = spans.astype(jnp.uint32)
    return (_words(key, spans.shape[0]) % spans).astype(jnp.int32)


def unit_uniforms(key: jax.Array, n: int, dtype) -> jax.Array:
    """``n`` uniforms on the open interval (0, 1): multiples k·ε of the dtype's ε (2⁻²³ or 2⁻⁵²), with k = 0
    replaced by ε/2, so that :func:`standard_normal_from_uniform` stays finite (about −5.3 and −8.3 at most)."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64:
        w = _words(key, 2 * n).astype(jnp.uint64)
        return uniforms_from_bits((w[:n] << np.uint64(32)) | w[n:], dtype)
    return uniforms_from_bits(_words(key, n), dtype)


def uniforms_from_bits(bits: jax.Array, dtype) -> jax.Array:
    """Uniforms on (0, 1) from random uint32 (float32) or uint64 (float64) words (their top 23 or 52 bits)."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64:
        mantissa = (bits >> np.uint64(12)) | np.uint64(0x3FF0000000000000)
        u = jax.lax.bitcast_convert_type(mantissa, jnp.float64) - 1.0
        step = np.finfo(np.float64).eps
    else:
        mantissa = (bits >> np.uint32(9)) | np.uint32(0x3F800000)
        u = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
        step = np.finfo(np.float32).eps
    # k = 0 would give 2u - 1 = -1 and an infinite normal; ε/2 is exact and keeps the law within ε/2 of uniform
    return jnp.maximum(u, step / 2).astype(dtype)


def standard_normals(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normals of ``shape``: the inverse CDF of :func:`unit_uniforms` (same key, same counters), one
    fused Threefry hash per two float32 draws (per float64 draw) where ``jax.random.normal`` hashes each in a
    rolled loop. Faster when the draws are materialised (1.6–2.3× per chain-generation for a d ≥ 2 Gaussian
    sample path); when they feed a reduction directly (the 1-D Gaussian fit) it measured 2.4× slower, so the 1-D
    Gaussian keeps ``jax.random.normal``."""
    return standard_normal_from_uniform(unit_uniforms(key, math.prod(shape), dtype)).reshape(shape)


def standard_normal_from_uniform(u: jax.Array) -> jax.Array:
    """Inverse-CDF standard normal of a uniform on (0, 1)."""
    return jnp.sqrt(2.0).astype(u.dtype) * jax.lax.erf_inv(2.0 * u - 1.0)


def _proposals(u, d, c):
    # 2K uniforms on the last axis: K become normals (inverse CDF), K drive the acceptance test.
    k = u.shape[-1] // 2
    x = standard_normal_from_uniform(u[..., :k])
    log_u = jnp.log(u[..., k:])
    v = 1.0 + c[..., None] * x
    v3 = v * v * v
    safe_v3 = jnp.where(v3 > 0, v3, 1.0)
    log_v3 = jnp.log(safe_v3)
    accept = (v3 > 0) & (log_u < 0.5 * x * x + d[..., None] - d[..., None] * safe_v3 + d[..., None] * log_v3)
    first = jnp.argmax(accept, axis=-1)
    kept = log_v3[..., k - 1]
    for j in range(k - 2, -1, -1):  # log_v3[..., first], lane by lane, as selects (not a gather)
        kept = jnp.where(first == j, log_v3[..., j], kept)
    return jnp.any(accept, axis=-1), kept


def log_gamma_from_uniforms(key: jax.Array, u: jax.Array, a: jax.Array) -> jax.Array:
    """log Gamma(a, 1) for shapes ``a > 0`` (a scalar, or an array of lanes) from ``gamma_uniforms(K)`` uniforms
    per lane, ``u`` of shape ``a.shape + (2K + 1,)`` (K proposals drawn up front, K per further round); ``key``
    (which must not be the key of a ``fold_in(key, i)``, i ≥ 1, that produced ``u``) feeds the rarer extra
    rejection rounds: round i draws K proposals for every lane from ``fold_in(key, i)``, and a lane keeps the first
    round in which one of its proposals is accepted (the law of sequential rejection, lane by lane). A whole array
    of lanes is drawn without ``vmap``, which traces 2–3× faster (a d = 100 Bartlett diagonal: one rescue loop, not
    one per lane)."""
    dtype = u.dtype
    k = (u.shape[-1] - 1) // 2
    a = jnp.asarray(a).astype(dtype)
    shape = jnp.where(a < 1, a + 1, a)
    d = shape - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    ok, log_v3 = _proposals(u[..., : 2 * k], d, c)

    def cond(state):
        return ~jnp.all(state[1])

    def body(state):
        i, ok, log_v3 = state
        fresh = unit_uniforms(fold_in(key, i), math.prod(a.shape) * 2 * k, dtype).reshape(a.shape + (2 * k,))
        ok_i, log_v3_i = _proposals(fresh, d, c)
        return i + 1, ok | ok_i, jnp.where(ok, log_v3, log_v3_i)

    _, _, log_v3 = jax.lax.while_loop(cond, body, (jnp.int32(1), ok, log_v3))
    log_g = jnp.log(d) + log_v3
    return jnp.where(a < 1, log_g + jnp.log(u[..., 2 * k]) / a, log_g)


def _float_dtype(a):
    a = jnp.asarray(a)
    return a.dtype if jnp.issubdtype(a.dtype, jnp.floating) else jnp.zeros(()).dtype


def log_gamma(key: jax.Array, a: jax.Array, proposals: int = 3) -> jax.Array:
    """One draw of log Gamma(a, 1) for a scalar shape ``a > 0`` (vmap for arrays), ``proposals`` up front. Three
    by default: its caller (the regression's fresh design) draws many shapes near 1/2 at once when M is close to
    d, where two proposals would run the rescue round on almost every step."""
    dtype = _float_dtype(a)
    return log_gamma_from_uniforms(key, unit_uniforms(key, gamma_uniforms(proposals), dtype), a)


def normal_and_log_gamma(key: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """An independent pair (Z, log G): Z standard normal, G ~ Gamma(a, 1) with two proposals, from one Threefry
    call (six uniforms, three hashes)."""
    dtype = _float_dtype(a)
    u = unit_uniforms(key, gamma_uniforms(2) + 1, dtype)
    return standard_normal_from_uniform(u[0]), log_gamma_from_uniforms(key, u[1:], a)
