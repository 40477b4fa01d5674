r"""Toy 2-D/3-D data distributions drawn in JAX from keys: blobs, circles, moons, swiss roll.

These are the *generating distributions* behind scikit-learn's ``make_blobs``, ``make_circles``, ``make_moons`` and
``make_swiss_roll`` (the datasets of Kazdan et al.'s KDE workflow, THEORY.md §6.2), drawn i.i.d.:

* scikit-learn splits n exactly evenly between clusters/classes and, for circles and moons, places the points at
  evenly spaced angles (``linspace``) before adding noise; here every row independently picks a cluster (uniform)
  and an angle (uniform), which is the continuum limit of the same construction. Training and test rows are draws
  from one and the same distribution.
* **Blobs**: ``num_centers`` centres uniform in ``center_box`` (scikit-learn's defaults: 3 centres in
  (−10, 10)², drawn afresh per seed), or fixed ``centers``; rows are centre + ``cluster_std``·N(0, I).
* **Circles**: radius 1 or ``factor`` (0.8), angle U(0, 2π), + ``noise``·N(0, I).
* **Moons**: outer (cos θ, sin θ), inner (1 − cos θ, 1/2 − sin θ), θ ~ U(0, π), + ``noise``·N(0, I).
* **SwissRoll**: t = 1.5π(1 + 2u), (t cos t, 21 v, t sin t) with u, v ~ U(0, 1), + ``noise``·N(0, I);
  ``dim=2`` keeps the (t cos t, t sin t) plane.

A dataset is a frozen dataclass with ``dim``, ``constants(key)`` (per-chain constants, an array (Q, dim): the blob
centres; a (1, dim) zero placeholder for the others), ``sample(key, constants, n)`` → (n, dim) and
``mean(constants)`` → (dim,), the population mean.

Examples:
  >>> import jax
  >>> from collapse_theory.datasets import Moons
  >>> data = Moons(noise=0.1)
  >>> x = data.sample(jax.random.key(0), data.constants(jax.random.key(1)), 500)
  >>> x.shape
  (500, 2)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


def _check_nonneg(name, value, strict=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (strict and value == 0):
        raise ValueError(f"{name}={value!r} is out of range: need a finite {name} {'>' if strict else '>='} 0")


def _dtype():
    return jnp.zeros(()).dtype


@dataclasses.dataclass(frozen=True)
class Blobs:
    """Isotropic Gaussian blobs (``make_blobs``): random centres per chain, or fixed ``centers``."""

    num_centers: int = 3
    dim: int = 2
    cluster_std: float = 1.0
    center_box: tuple = (-10.0, 10.0)
    centers: tuple | None = None

    def __post_init__(self):
        if self.centers is not None:
            c = np.asarray(self.centers, dtype=np.float64)
            if c.ndim != 2 or c.shape[0] < 1 or not np.all(np.isfinite(c)):
                raise ValueError(f"centers={self.centers!r} must be a finite (num_centers, dim) nested tuple")
            object.__setattr__(self, "centers", tuple(tuple(float(v) for v in row) for row in c))
            object.__setattr__(self, "num_centers", c.shape[0])
            object.__setattr__(self, "dim", c.shape[1])
        for name in ("num_centers", "dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} is out of range: need an int {name} >= 1")
        _check_nonneg("cluster_std", self.cluster_std, strict=True)
        lo, hi = self.center_box
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"center_box={self.center_box!r} is out of range: need finite lo < hi")

    def constants(self, key: jax.Array) -> jax.Array:
        """The chain's centres (num_centers, dim): fixed ``centers`` or uniform in ``center_box``."""
        if self.centers is not None:
            return jnp.asarray(self.centers, _dtype())
        lo, hi = self.center_box
        return jax.random.uniform(key, (self.num_centers, self.dim), _dtype(), lo, hi)

    def sample(self, key: jax.Array, constants: jax.Array, n: int) -> jax.Array:
        k_c, k_z = jax.random.split(key)
        label = jax.random.randint(k_c, (n,), 0, self.num_centers)
        return constants[label] + self.cluster_std * jax.random.normal(k_z, (n, self.dim), constants.dtype)

    def mean(self, constants: jax.Array) -> jax.Array:
        return jnp.mean(constants, axis=0)


@dataclasses.dataclass(frozen=True)
class Circles:
    """Two concentric circles (``make_circles``), radii 1 and ``factor``."""

    noise: float = 0.0
    factor: float = 0.8
    dim: int = dataclasses.field(default=2, init=False)

    def __post_init__(self):
        _check_nonneg("noise", self.noise)
        if not (isinstance(self.factor, (int, float)) and 0 < self.factor < 1):
            raise ValueError(f"factor={self.factor!r} is out of range: need 0 < factor < 1")

    def constants(self, key):
        return jnp.zeros((1, 2), _dtype())

    def sample(self, key, constants, n):
        k_a, k_c, k_z = jax.random.split(key, 3)
        theta = jax.random.uniform(k_a, (n,), constants.dtype, 0.0, 2 * math.pi)
        radius = jnp.where(jax.random.bernoulli(k_c, 0.5, (n,)), self.factor, 1.0)
        x = radius[:, None] * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
        return x + self.noise * jax.random.normal(k_z, (n, 2), constants.dtype)

    def mean(self, constants):
        return jnp.zeros((2,), constants.dtype)


@dataclasses.dataclass(frozen=True)
class Moons:
    """Two interleaving half circles (``make_moons``)."""

    noise: float = 0.0
    dim: int = dataclasses.field(default=2, init=False)

    def __post_init__(self):
        _check_nonneg("noise", self.noise)

    def constants(self, key):
        return jnp.zeros((1, 2), _dtype())

    def sample(self, key, constants, n):
        k_a, k_c, k_z = jax.random.split(key, 3)
        theta = jax.random.uniform(k_a, (n,), constants.dtype, 0.0, math.pi)
        inner = jax.random.bernoulli(k_c, 0.5, (n,))
        outer_xy = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
        inner_xy = jnp.stack([1 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=1)
        x = jnp.where(inner[:, None], inner_xy, outer_xy)
        return x + self.noise * jax.random.normal(k_z, (n, 2), constants.dtype)

    def mean(self, constants):
        # outer: (0, 2/π); inner: (1, 1/2 − 2/π)
        return jnp.asarray([0.5, 0.25], constants.dtype)


@dataclasses.dataclass(frozen=True)
class SwissRoll:
    """The swiss roll (``make_swiss_roll``): 3-D, or its (t cos t, t sin t) plane with ``dim=2``."""

    noise: float = 0.0
    dim: int = 3

    def __post_init__(self):
        _check_nonneg("noise", self.noise)
        if self.dim not in (2, 3) or isinstance(self.dim, bool):
            raise ValueError(f"dim={self.dim!r} is out of range: need dim in {{2, 3}}")

    def constants(self, key):
        return jnp.zeros((1, self.dim), _dtype())

    def sample(self, key, constants, n):
        k_t, k_h, k_z = jax.random.split(key, 3)
        t = 1.5 * math.pi * (1 + 2 * jax.random.uniform(k_t, (n,), constants.dtype))
        cols = [t * jnp.cos(t)]
        if self.dim == 3:
            cols.append(21.0 * jax.random.uniform(k_h, (n,), constants.dtype))
        cols.append(t * jnp.sin(t))
        return jnp.stack(cols, axis=1) + self.noise * jax.random.normal(k_z, (n, self.dim), constants.dtype)

    def mean(self, constants):
        # E[t cos t] = 2, E[t sin t] = 2/(3π) for t ~ U(1.5π, 4.5π); E[21 v] = 10.5
        values = [2.0, 10.5, 2 / (3 * math.pi)] if self.dim == 3 else [2.0, 2 / (3 * math.pi)]
        return jnp.asarray(values, constants.dtype)


DATASETS = {"blobs": Blobs, "circles": Circles, "moons": Moons, "swiss_roll": SwissRoll}
