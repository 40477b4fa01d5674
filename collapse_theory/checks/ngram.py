"""Checks of the tiny language model (:class:`~collapse_theory.models.NGram`) against exact theory.

Every sentence opens with BOS, so the sentence-start row :math:`P(\\cdot \\mid \\mathrm{BOS})` of a bigram model is
refitted, each generation, on exactly M draws from itself: it is an add-α smoothed categorical chain over the
K = V − 2 emittable tokens, and the share of fact sentences :math:`x_t = \\sum_e P(e \\mid \\mathrm{BOS})` follows
:func:`collapse_theory.theory.categorical.expected_smoothed_probs` summed over the entity tokens. The grammar is
small (20 entities, fact fraction 0.1) and M = 20, so the pull of the smoothing towards the uniform row moves the
share by many standard errors within a few fits.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import regimes
from ..corpus import BOS, EOS, PAD, PERIOD, Grammar
from ..models.ngram import NGram
from ..simulate import simulate
from ..theory import categorical as th
from . import Check, Measurement, QuickFull, compile_options, register

GRAMMAR = Grammar(num_entities=20, fact_fraction=0.1)
M, SMOOTHING, FITS, CHAINS = 20, 0.05, (1, 5, 10), QuickFull(1000, 8000)


def _model() -> NGram:
    # the metrics' own samples are not needed here: the smallest sizes keep them cheap
    return NGram.for_grammar(GRAMMAR, smoothing=SMOOTHING, num_metric_samples=2, bleu_samples=2, ttr_tokens=1)


def _one_sentence() -> np.ndarray:
    """A held-out corpus of one fact sentence, "e00 attr(e00) sees this ball .": the engine's metrics need a reference
    (perplexity), the fact share does not read it, and a fixed sentence costs no compile of the grammar's sampler."""
    g = GRAMMAR
    row = [BOS, g.offset("ENTITY"), int(g.attribute_tokens()[0]), g.offset("VERB"), g.offset("ODET"),
           g.offset("ONOUN"), PERIOD, EOS, PAD]
    return np.asarray([row], np.int32)


@functools.lru_cache(maxsize=4)
def _run(quick: bool, seed: int):
    model = _model()
    return simulate(seed, model, regimes.Replace(), num_chains=CHAINS.pick(quick), num_generations=max(FITS),
                    num_samples=M, truth=model.true_params(), reference=_one_sentence(), metrics=["fact_share"],
                    quantiles=(), compiler_options=compile_options(quick))


def expected_fact_share(model: NGram, num_fits, num_samples: int):
    """E Σ_e P_t(e | BOS) after t replace refits of ``model`` (bigram, temperature 1, ``model.smoothing``) on
    ``num_samples`` sentences, the first from its grammar: the sentence-start row restricted to the K = V − 2
    emittable tokens is an add-α smoothed categorical chain (:func:`theory.categorical.expected_smoothed_probs`)."""
    if model.order != 2 or model.temperature != 1 or model.grammar is None:
        raise ValueError(f"order={model.order}, temperature={model.temperature}: the formula needs a bigram model "
                         "with a grammar, sampled at temperature 1")
    grammar = model.grammar
    start = np.asarray(model.true_params().probs[BOS], np.float64)
    emittable = np.ones(grammar.vocab_size, bool)
    emittable[[PAD, BOS]] = False
    position = np.cumsum(emittable) - 1  # index of each emittable token among the K
    entities = position[np.asarray(grammar.entity_tokens())]
    probs = th.expected_smoothed_probs(num_fits, num_samples, start[emittable] / start[emittable].sum(),
                                       model.smoothing)
    return probs[..., entities].sum(axis=-1)


def _fact_share(quick, seed):
    model = _model()
    res = _run(quick, seed)
    rows = []
    for t in FITS:
        rows.append(Measurement(
            quantity=f"E fact_share at t={t}", theory=float(expected_fact_share(model, t, M)),
            simulation=float(res.mean("fact_share")[t - 1]), se=float(res.se("fact_share")[t - 1]),
            planted=float(expected_fact_share(model, 0, M)),
            params={"t": t, "M": M, "smoothing": SMOOTHING, "entities": GRAMMAR.num_entities,
                    "fact_fraction": GRAMMAR.fact_fraction, "K": GRAMMAR.vocab_size - 2,
                    "num_chains": res.num_chains, "regime": "Replace", "path": "sample"},
        ))
    return rows


register(Check(
    name="ngram-fact-share",
    family="ngram",
    reference="tiny LM (bigram, add-α) on the synthetic grammar: its sentence-start row is a smoothed categorical "
              "chain (theory.categorical, derived here)",
    formula="E Σ_e P_t(e | BOS) = Σ_e [1/K + r^t (p_0,e − 1/K)], r = M/(M + Kα), K = V − 2 emittable tokens",
    planted="α ignored: the fact share stays at the grammar's fact fraction (a martingale)",
    run=_fact_share,
    params={"entities": GRAMMAR.num_entities, "fact_fraction": GRAMMAR.fact_fraction, "K": GRAMMAR.vocab_size - 2,
            "M": M, "smoothing": SMOOTHING, "t": FITS, "regime": "Replace", "path": "sample", "num_chains": CHAINS},
))
