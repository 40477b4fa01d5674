r"""A small image classifier trained once on real labelled data: the VAE family's measuring instrument and gate.

One hidden ReLU layer (its activations are the *features* of the Fréchet-style distance) and a softmax output,
trained with optax Adam on the cross-entropy of minibatches drawn uniformly with replacement, plus an L2 penalty
``weight_decay``·‖W‖² on the weights. It is trained **once**, on real data, before any chain runs; the chains only
evaluate it, so its errors are the same at every generation and every regime (a bias of the instrument, not of
the dynamics). :func:`accuracy` reports its accuracy on held-out real data; report it next to class shares.

:class:`Confident` turns a trained classifier into a verification predicate for
:class:`collapse_theory.regimes.Gate`: a generated image passes when the classifier's top class probability is at
least ``threshold``.

Examples:
  >>> import numpy as np
  >>> from collapse_theory.images import Shapes
  >>> from collapse_theory.models.classifier import Classifier, accuracy
  >>> train, test = Shapes().generate(3000, seed=0).split(1000, seed=1)
  >>> params = Classifier(steps=300).train(0, train.images, train.labels, train.num_classes)
  >>> bool(accuracy(params, test.images, test.labels) > 0.9)
  True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..theory._validate import is_real
from . import nn


class ClassifierParams(NamedTuple):
    """``hidden``: dense layer (D → H); ``out``: dense layer (H → K)."""

    hidden: dict
    out: dict


def features(params: ClassifierParams, x: jax.Array) -> jax.Array:
    """Hidden-layer activations (..., H) of flattened images ``x`` (..., D)."""
    return jax.nn.relu(nn.dense(params.hidden, x))


def logits(params: ClassifierParams, x: jax.Array) -> jax.Array:
    """Class logits (..., K)."""
    return nn.dense(params.out, features(params, x))


def predict(params: ClassifierParams, x: jax.Array) -> jax.Array:
    """Most probable class (...,)."""
    return jnp.argmax(logits(params, x), axis=-1)


def accuracy(params: ClassifierParams, x, labels) -> float:
    """Fraction of rows of ``x`` whose predicted class equals ``labels``."""
    return float(jnp.mean(predict(params, jnp.asarray(x)) == jnp.asarray(labels)))


def check_positive(name, value, integer=False):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number > 0 (an int >= 1 if ``integer``)."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if integer and not bad:
        bad = not isinstance(value, (int, np.integer))
    if bad or not math.isfinite(value) or value <= 0:
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{name}={value!r} is out of range: need {kind} {name} > 0" + (" (>= 1)" if integer else ""))


@dataclasses.dataclass(frozen=True)
class Classifier:
    """Training settings of the one-hidden-layer classifier.

    Args:
      hidden: hidden units H (the feature dimension).
      steps: Adam steps.
      batch_size: rows per step (uniform with replacement).
      learning_rate: Adam step size > 0.
      weight_decay: L2 penalty on the weight matrices (≥ 0).
    """

    hidden: int = 64
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4

    def __post_init__(self):
        for name in ("hidden", "steps", "batch_size"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("learning_rate", self.learning_rate)
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not math.isfinite(wd) or wd < 0:
            raise ValueError(f"weight_decay={wd!r} is out of range: need a finite weight_decay >= 0")

    def init(self, key: jax.Array, dim: int, num_classes: int) -> ClassifierParams:
        k1, k2 = jax.random.split(key)
        return ClassifierParams(nn.dense_init(k1, dim, self.hidden), nn.dense_init(k2, self.hidden, num_classes, 1.0))

    def train(self, seed, images, labels, num_classes: int) -> ClassifierParams:
        """Train on real ``images`` (N, D) in [0, 1] with integer ``labels`` (N,) in [0, num_classes)."""
        images = jnp.asarray(images, jnp.zeros(()).dtype)
        labels = np.asarray(labels)
        if images.ndim != 2 or labels.shape != (images.shape[0],):
            raise ValueError(f"images {images.shape} and labels {labels.shape} must be (N, D) and (N,)")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must lie in [0, num_classes={num_classes}); got [{labels.min()}, "
                             f"{labels.max()}]")
        key = seed if isinstance(seed, jax.Array) else jax.random.key(int(seed))
        k_init, k_train = jax.random.split(key)
        return self._train(k_init, k_train, images, jnp.asarray(labels, jnp.int32), int(num_classes))

    @functools.partial(jax.jit, static_argnames=("self", "num_classes"))
    def _train(self, k_init, k_train, images, labels, num_classes):
        params = self.init(k_init, images.shape[1], num_classes)
        opt = optax.adam(self.learning_rate)

        def loss_fn(p, x, y):
            ce = optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()
            return ce + self.weight_decay * (jnp.sum(p.hidden["w"] ** 2) + jnp.sum(p.out["w"] ** 2))

        def step(carry, key):
            p, state = carry
            index = jax.random.randint(key, (self.batch_size,), 0, images.shape[0])
            grads = jax.grad(loss_fn)(p, images[index], labels[index])
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(k_train, self.steps))
        return params


@dataclasses.dataclass(frozen=True, eq=False)
class Confident:
    """Gate predicate ``row -> bool``: the classifier's top class probability on the image is ≥ ``threshold``.

    Hashable by identity (``eq=False``), as :class:`~collapse_theory.regimes.Gate` requires; its weights enter the
    compiled program as constants, so reuse one instance across runs to reuse the compiled program.
    """

    params: ClassifierParams = dataclasses.field(repr=False)
    threshold: float = 0.9

    def __post_init__(self):
        t = self.threshold
        if not is_real(t) or not 0.0 <= t <= 1.0:
            raise ValueError(f"threshold={t!r} is out of range: need 0 <= threshold <= 1")
        object.__setattr__(self, "params", jax.tree.map(np.asarray, self.params))

    def __call__(self, row: jax.Array) -> jax.Array:
        p = jax.nn.softmax(logits(jax.tree.map(jnp.asarray, self.params), row))
        return jnp.max(p) >= self.threshold
