"""Ready-made set-ups of the models that need more than their own parameters: the tiny language model on the
synthetic grammar and the VAE on offline images. ``collapse-theory run``, ``collapse-theory sweep`` and scripts
build them here, so a sweep cell and a ``run`` with the same options are the same simulation.

Each function returns a :class:`Setup`: the model, the keyword arguments :func:`~collapse_theory.simulate.simulate`
needs besides it (``truth``, ``real_data``, ``reference``), the verification-gate predicate named by ``gate`` (or
``None``) and a JSON-ready description of the data for the result file's metadata.

Examples:
  >>> from collapse_theory import Replace, setups, simulate
  >>> s = setups.ngram(0, num_reference=50, smoothing=0.05, grammar={"num_entities": 20})
  >>> res = simulate(0, s.model, Replace(), num_chains=4, num_generations=2, num_samples=100, **s.simulate_kwargs())
  >>> res.mean("fact_share").shape
  (2,)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

NGRAM_GATES = ("grammar", "facts")
"""``gate`` names of :func:`ngram`: a complete sentence of the grammar; grammatical and every stated fact true."""
VAE_GATES = ("confident",)
"""``gate`` names of :func:`vae`: the classifier's top class probability is at least ``gate_threshold``."""


class Setup(NamedTuple):
    """A model with its data: what :func:`~collapse_theory.simulate.simulate` needs to run it."""

    model: Any
    truth: Any
    real_data: Any
    reference: Any
    gate: Any
    note: dict

    def simulate_kwargs(self) -> dict:
        """``truth``, ``real_data`` and ``reference`` for :func:`~collapse_theory.simulate.simulate`."""
        return {"truth": self.truth, "real_data": self.real_data, "reference": self.reference}


def _check_gate(gate, allowed: tuple[str, ...], model: str) -> None:
    if gate is not None and gate not in allowed:
        raise ValueError(f"gate={gate!r} is not one of {allowed} (the gates of the {model} set-up) or None")


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is out of range: need an int {name} >= 1")
    return value


def ngram(seed: int, *, grammar=None, num_reference: int = 2000, gate: str | None = None,
          **model_options) -> Setup:
    """The n-gram language model on :class:`~collapse_theory.corpus.Grammar` sentences.

    Args:
      seed: the run's integer seed; the held-out corpus is drawn from
        :func:`~collapse_theory.keys.shared_key` ``(root_key(seed), REFERENCE)``, a key no chain has, and is
        shared by every chain (perplexity is measured on it).
      grammar: a :class:`~collapse_theory.corpus.Grammar`, or a dict of its options (default: ``Grammar()``).
      num_reference: held-out real sentences, >= 1.
      gate: ``None``, ``"grammar"`` (:class:`~collapse_theory.corpus.GrammarCheck`) or ``"facts"``
        (:class:`~collapse_theory.corpus.FactCheck`).
      **model_options: keyword arguments of :class:`~collapse_theory.models.NGram` (``order``, ``smoothing``,
        ``temperature``, ...) besides its vocabulary, which the grammar fixes.

    Returns:
      A :class:`Setup` whose truth is the grammar's exact law (:meth:`NGram.true_params`).
    """
    from .corpus import FactCheck, Grammar, GrammarCheck
    from .keys import REFERENCE, root_key, shared_key
    from .models.ngram import NGram

    _check_gate(gate, NGRAM_GATES, "ngram")
    if grammar is None:
        grammar = Grammar()
    elif isinstance(grammar, dict):
        grammar = Grammar(**grammar)
    elif not isinstance(grammar, Grammar):
        raise ValueError(f"grammar={grammar!r} must be a Grammar, a dict of its options or None")
    _check_count("num_reference", num_reference)
    model = NGram.for_grammar(grammar, **model_options)
    reference = grammar.sample(shared_key(root_key(seed), REFERENCE), num_reference)
    predicate = {None: None, "grammar": GrammarCheck(grammar), "facts": FactCheck(grammar)}[gate]
    note = {"grammar": dataclasses.asdict(grammar), "vocab_size": grammar.vocab_size, "num_reference": num_reference,
            "reference_key": "shared_key(root_key(seed), REFERENCE)"}
    return Setup(model, model.true_params(), None, reference, predicate, note)


def vae(seed: int, *, images: str = "shapes", num_real: int = 5000, classifier_steps: int = 1500,
        gate: str | None = None, gate_threshold: float = 0.9, **model_options) -> Setup:
    """A VAE on offline images, with the classifier that measures it (and gates it).

    Args:
      seed: the run's integer seed (the images of ``shapes``, the train/test split and the classifier's training).
      images: ``"shapes"`` (procedural 8×8 shapes with rare classes), ``"digits"`` (needs scikit-learn) or
        ``"mnist:DIR"`` (the IDX files in DIR).
      num_real: real training images, >= 1; min(1000, N // 5) further images are held out for the metrics, N the
        images generated or loaded (num_real + 1000 for shapes and MNIST; the 1797 digits: then fewer than
        num_real may remain for training, and the note records how many).
      classifier_steps: training steps of the one-hidden-layer classifier, >= 1.
      gate: ``None`` or ``"confident"`` (:class:`~collapse_theory.models.classifier.Confident`).
      gate_threshold: the gate's probability threshold, in [0, 1].
      **model_options: keyword arguments of :class:`~collapse_theory.models.VAE` besides ``image_shape``;
        ``hidden`` may be one int (one hidden layer).

    Returns:
      A :class:`Setup` with the real training images as ``real_data`` and the held-out images and classifier as
      ``reference``; its note records the classes, the rare ones and the classifier's held-out accuracy.
    """
    import jax.numpy as jnp

    from .models import classifier as clf_mod
    from .models.vae import VAE

    _check_gate(gate, VAE_GATES, "vae")
    if not isinstance(images, str) or (images not in ("shapes", "digits") and not images.startswith("mnist:")):
        raise ValueError(f"images={images!r} is not one of 'shapes', 'digits', 'mnist:DIR'")
    _check_count("num_real", num_real)
    _check_count("classifier_steps", classifier_steps)
    if isinstance(model_options.get("hidden"), int):
        model_options["hidden"] = (model_options["hidden"],)
    train, test, clf, reference = _image_setup(images, num_real, seed, classifier_steps)
    model = VAE(image_shape=train.image_shape, **model_options)
    predicate = None if gate is None else clf_mod.Confident(clf, gate_threshold)
    rare = [train.class_names[i] for i in range(train.num_classes) if float(reference.rare[i]) > 0]
    note = {"images": images, "num_real": len(train.labels), "num_test": len(test.labels),
            "classes": list(train.class_names), "rare_classes": rare,
            "classifier_accuracy": clf_mod.accuracy(clf, test.images, test.labels)}
    return Setup(model, None, jnp.asarray(train.images), reference, predicate, note)


@functools.lru_cache(maxsize=4)
def _image_setup(images: str, num_real: int, seed: int, classifier_steps: int):
    """The images, split and trained classifier of :func:`vae`, kept for the cells of a sweep that share them."""
    from .checks.vae import image_setup

    return image_setup(images, num_real=num_real, seed=seed, classifier_steps=classifier_steps)
