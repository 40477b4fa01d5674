r"""Small neural-network layers in plain JAX: explicit parameter pytrees, pure functions, vmappable over chains.

The VAE and the classifier need only dense layers and a few 3×3 convolutions, so they are written here directly
instead of through a neural-network library: the parameters are plain nested lists/dicts of arrays (any pytree
tool — ``jax.tree.map``, optax, ``jax.vmap`` over a leading chain axis — works on them unchanged), there is no
module state to thread through ``lax.scan``, and the package keeps its dependency list short.

Initialisation: weights :math:`N(0, \text{gain}^2/\text{fan\_in})` (He for ReLU layers, gain 1 for output layers),
biases zero.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _dtype():
    return jnp.zeros(()).dtype


def dense_init(key: jax.Array, fan_in: int, fan_out: int, gain: float = math.sqrt(2.0)) -> dict:
    """A dense layer ``{"w": (fan_in, fan_out), "b": (fan_out,)}``."""
    w = jax.random.normal(key, (fan_in, fan_out), _dtype()) * (gain / math.sqrt(fan_in))
    return {"w": w, "b": jnp.zeros((fan_out,), _dtype())}


def _bias(b: jax.Array, ndim: int) -> jax.Array:
    """``b`` (k,) reshaped to broadcast against (..., k) activations of rank ``ndim`` (explicit rank promotion)."""
    return jnp.reshape(b, (1,) * (ndim - 1) + b.shape)


def dense(layer: dict, x: jax.Array) -> jax.Array:
    y = x @ layer["w"]
    return y + _bias(layer["b"], y.ndim)


def mlp_init(key: jax.Array, sizes: tuple[int, ...], final_gain: float = 1.0) -> list:
    """Dense layers ``sizes[0] → sizes[1] → … → sizes[-1]`` (ReLU between, linear output)."""
    keys = jax.random.split(key, len(sizes) - 1)
    last = len(sizes) - 2
    return [dense_init(k, a, b, final_gain if i == last else math.sqrt(2.0))
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))]


def mlp(layers: list, x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jax.nn.relu(dense(layer, x))
    return dense(layers[-1], x)


def conv_init(key: jax.Array, c_in: int, c_out: int, size: int = 3, gain: float = math.sqrt(2.0)) -> dict:
    """A ``size``×``size`` convolution ``{"w": (size, size, c_in, c_out), "b": (c_out,)}`` (HWIO)."""
    fan_in = size * size * c_in
    w = jax.random.normal(key, (size, size, c_in, c_out), _dtype()) * (gain / math.sqrt(fan_in))
    return {"w": w, "b": jnp.zeros((c_out,), _dtype())}


def conv(layer: dict, x: jax.Array, stride: int = 1) -> jax.Array:
    """'SAME'-padded convolution of NHWC images ``x``."""
    y = jax.lax.conv_general_dilated(x, layer["w"], (stride, stride), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + _bias(layer["b"], y.ndim)


def upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour ×2 upsampling of NHWC images."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
