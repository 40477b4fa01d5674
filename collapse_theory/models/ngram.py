r"""A tiny n-gram language model (bigram/trigram, add-α smoothed, sampled with temperature): knowledge collapse.

"Fluency survives, facts fail." Each generation samples a corpus of M sentences from the current model, refits the
smoothed n-gram counts, and repeats (the engine's replace / accumulate / fresh-fraction / gate regimes decide the
training set). Sentences are fixed-length int32 rows (n, L) in the corpus convention of
:mod:`collapse_theory.corpus`: ``[BOS, w_1, ..., w_k, EOS, PAD, ...]`` with PAD = 0, BOS = 1, EOS = 2; a row that
reaches length L without EOS is a truncated sentence.

**Model.** Order k (2 = bigram, 3 = trigram). The context of position i >= 1 is the k−1 previous tokens, with
positions before 0 read as BOS (so a trigram predicts :math:`w_1` from (BOS, BOS)). Parameters are the table
``probs[c, v]`` = :math:`P(v \mid c)` over the :math:`V^{k-1}` contexts (context id
:math:`c = \sum_j x_{i-k+1+j} V^{k-2-j}`). The emittable tokens are the :math:`V-2` ids other than PAD and BOS:
PAD and BOS have probability 0 in every row.

**Fit** (add-α / Lidstone smoothing, frequency weights :math:`w_r`):

.. math:: P(v \mid c) = \frac{N(c, v) + \alpha}{N(c) + (V-2)\alpha}, \qquad
          N(c, v) = \sum_r w_r\,\#\{i \ge 1 : \mathrm{ctx}_i(x_r) = c,\ x_{r,i} = v \ne \mathrm{PAD}\},

for emittable v. Every token up to and including EOS is counted as a target (after EOS only PADs follow and are not
counted). A context never seen with α = 0 gets the uniform row. ``fit`` ignores its key and the current params.

**Sampling with temperature τ.** The next token is drawn from :math:`q(v\mid c) \propto P(v \mid c)^{1/\tau}`
(computed in log space; zeros stay zero), by inverse CDF (one uniform per position, a scan over the L−1
positions); after EOS every position is PAD. τ = 1 takes exactly the untempered code path
(:func:`sample_sentences` on ``probs`` itself), bit for bit. The real distribution is never tempered: parameters
carry a flag ``tempered`` (0 for the truth of :meth:`NGram.true_params`, 1 for every fitted model), as in
:class:`~collapse_theory.models.Categorical`.

**Metrics** (``metrics(params, reference, key)``; ``reference`` = a held-out real corpus, int (N, L')):

* exact (deterministic functions of the params): ``perplexity`` = :math:`\exp(-\frac1T\sum \log P(x_i \mid
  \mathrm{ctx}_i))` over the T target tokens of the held-out corpus (EOS included; +inf if a held-out token has
  probability 0, only possible with α = 0); with a grammar also ``perplexity_fluency`` and ``perplexity_facts``
  (the same over the held-out fluency sentences and fact sentences only), and **fact accuracy**: fact
  e → attr(e) is *known* when the model's most likely completion of the prompt ``[BOS, e]`` is attr(e),
  strictly (:math:`P(\mathrm{attr}(e) \mid \mathrm{ctx}) > P(v \mid \mathrm{ctx})` for every other v; a tie, e.g.
  a uniform row, counts as not known). Reported as the unweighted fraction of facts known, ``fact_accuracy``, and
  per frequency bucket ``fact_accuracy_head`` / ``_torso`` / ``_tail`` (:meth:`Grammar.buckets`); and
  ``fact_share`` = :math:`\sum_e q(e \mid \mathrm{BOS})`, the probability that a generated sentence is a fact
  sentence, under the law the model samples from (tempered with τ for a fitted model; the grammar's
  ``fact_fraction`` for the truth). ``perplexity_fluency`` / ``perplexity_facts`` are NaN when the held-out corpus
  has no sentence of that kind.
* empirical (on ``num_metric_samples`` sentences sampled from the model with temperature τ using ``key``):
  ``grammaticality`` (fraction accepted by :class:`~collapse_theory.corpus.GrammarCheck`), ``fact_check_rate``
  (fraction accepted by :class:`~collapse_theory.corpus.FactCheck`: the acceptance rate a fact gate would have),
  ``mean_length`` (words per sentence), ``perplexity_self`` (the model's perplexity on its own samples: how
  confident it is on the text it generates; the samples are drawn at temperature τ and scored by the fitted,
  untempered table :math:`P`, so at τ < 1 it measures how typical the sharpened text is of :math:`P`, not the
  perplexity of the tempered law on itself), and the lexical-diversity metrics of Guo et al.
  (:mod:`collapse_theory.diversity`): ``ttr`` on the first ``ttr_tokens`` words, ``distinct_2``, ``distinct_3`` and
  ``one_minus_self_bleu`` (BLEU+1, orders 1–3, over the first ``bleu_samples`` sentences).

Facts need only a bigram: a fact is the adjacent pair ``ENTITY ATTR`` (sentence design of
:mod:`collapse_theory.corpus`), so order 2 is the default; order 3 stores the same fact under the context
(BOS, e). The table has :math:`V^k` entries per chain (about 13 000 for the default grammar's V = 115 with k = 2).

References:
  Shumailov et al., "AI models collapse when trained on recursively generated data", Nature 631 (2024) (recursive
  training of language models; loss of the tails); Guo et al., "The Curious Decline of Linguistic Diversity",
  NAACL Findings 2024 (diversity metrics); Gerstgrasser et al., "Is Model Collapse Inevitable?", COLM 2024
  (accumulating data).

Examples:
  >>> import jax
  >>> from collapse_theory.corpus import Grammar
  >>> from collapse_theory.models import NGram
  >>> model = NGram.for_grammar(Grammar(), temperature=0.9)
  >>> x = model.sample(jax.random.key(0), model.true_params(), 4)
  >>> x.shape
  (4, 11)
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import diversity
from ..corpus import BOS, EOS, PAD, FactCheck, Grammar, GrammarCheck
from ..theory._validate import require_ids

MAX_TABLE_ENTRIES = 2**26
"""Largest :math:`V^k` accepted (the per-chain probability table)."""


class NGramParams(NamedTuple):
    r"""An n-gram model.

    Attributes:
      probs: (V**(k-1), V) next-token probabilities; rows sum to 1, PAD and BOS columns are 0.
      tempered: () 1.0 for a fitted model (sampled with the model's temperature), 0.0 for the real distribution.
    """

    probs: jax.Array
    tempered: jax.Array


def tempered_probs(probs: jax.Array, temperature: float) -> jax.Array:
    r"""Rows :math:`q_v = p_v^{1/\tau} / \sum_u p_u^{1/\tau}`, in log space (zeros stay zero)."""
    positive = probs > 0
    logits = jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)) / temperature, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1)


def _context_ids(tokens: jax.Array, order: int, vocab_size: int) -> jax.Array:
    """(n, L-1) context id of every target position i = 1..L-1 (positions < 0 read as BOS)."""
    n, length = tokens.shape
    pad = jnp.full((n, order - 2), BOS, tokens.dtype)
    xp = jnp.concatenate([pad, tokens], axis=1)
    ctx = jnp.zeros((n, length - 1), jnp.int32)
    for j in range(order - 1):
        ctx = ctx * vocab_size + xp[:, j: j + length - 1].astype(jnp.int32)
    return ctx


def sample_sentences(key: jax.Array, probs: jax.Array, n: int, max_len: int, order: int) -> jax.Array:
    r"""``n`` sentences (n, max_len) int32 from the next-token table ``probs`` (untempered), by inverse CDF.

    One uniform per (position, sentence): position i draws the token :math:`v` with
    :math:`\mathrm{cdf}(v-1) \le u\,\mathrm{cdf}(V-1) < \mathrm{cdf}(v)` of its context row, so zero-probability
    tokens are never drawn. After EOS every position is PAD.
    """
    vocab_size = probs.shape[-1]
    cdf = jnp.cumsum(probs, axis=-1)
    u = jax.random.uniform(key, (max_len - 1, n), dtype=cdf.dtype)
    history0 = jnp.full((n, order - 1), BOS, jnp.int32)

    def step(carry, u_i):
        history, done = carry
        ctx = jnp.zeros((n,), jnp.int32)
        for j in range(order - 1):
            ctx = ctx * vocab_size + history[:, j]
        rows = cdf[ctx]
        nxt = jnp.sum(rows <= (u_i * rows[:, -1])[:, None], axis=1).astype(jnp.int32)
        nxt = jnp.minimum(nxt, vocab_size - 1)
        nxt = jnp.where(done, PAD, nxt)
        history = jnp.concatenate([history[:, 1:], nxt[:, None]], axis=1)
        return (history, done | (nxt == EOS)), nxt

    _, body = jax.lax.scan(step, (history0, jnp.zeros((n,), bool)), u)
    return jnp.concatenate([jnp.full((n, 1), BOS, jnp.int32), body.T], axis=1)


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (
            hi is not None and value > hi):
        rng = f"{lo} <= {name}" + (f" <= {hi}" if hi is not None else "")
        raise ValueError(f"{name}={value!r} is out of range: need an int with {rng}")


@dataclasses.dataclass(frozen=True)
class NGram:
    r"""Add-α smoothed n-gram language model over fixed-length sentences, sampled with temperature τ.

    Args:
      vocab_size: V >= 4 (PAD, BOS, EOS and at least one word).
      max_len: L >= 2, tokens per sampled sentence (BOS included).
      order: k in {2, 3} (bigram, trigram); :math:`V^k` <= 2**26.
      smoothing: α >= 0 (add-α over the V − 2 emittable tokens).
      temperature: τ > 0 (finite); sampling uses :math:`p^{1/\tau}` renormalised; τ = 1 is untempered.
      grammar: the :class:`~collapse_theory.corpus.Grammar` of the corpus (enables grammaticality and fact
        metrics); its ``vocab_size`` must equal V and its ``max_len`` must be <= L.
      num_metric_samples: sentences sampled in ``metrics`` (grammaticality, diversity), >= 2.
      bleu_samples: sentences used for self-BLEU (the first of those samples), 2..num_metric_samples.
      ttr_tokens: words of the TTR truncation, >= 1.

    See the module docstring for the formulas.
    """

    vocab_size: int
    max_len: int
    order: int = 2
    smoothing: float = 0.01
    temperature: float = 1.0
    grammar: Grammar | None = None
    num_metric_samples: int = 256
    bleu_samples: int = 64
    ttr_tokens: int = 1000

    min_samples = 1

    def __post_init__(self):
        _check_int("vocab_size", self.vocab_size, 4)
        _check_int("max_len", self.max_len, 2)
        _check_int("order", self.order, 2, 3)
        if self.vocab_size**self.order > MAX_TABLE_ENTRIES:
            raise ValueError(f"vocab_size={self.vocab_size} with order={self.order} is out of range: the table "
                             f"has vocab_size**order = {self.vocab_size**self.order} entries; need <= "
                             f"{MAX_TABLE_ENTRIES}")
        s = self.smoothing
        if isinstance(s, bool) or not isinstance(s, (int, float, np.floating)) or not (math.isfinite(s) and s >= 0):
            raise ValueError(f"smoothing={s!r} is out of range: need a finite smoothing >= 0")
        tau = self.temperature
        if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating)) or not (
                math.isfinite(tau) and tau > 0):
            raise ValueError(f"temperature={tau!r} is out of range: need a finite temperature > 0")
        if self.grammar is not None:
            if not isinstance(self.grammar, Grammar):
                raise ValueError(f"grammar={self.grammar!r} must be a collapse_theory.corpus.Grammar or None")
            if self.grammar.vocab_size != self.vocab_size:
                raise ValueError(f"vocab_size={self.vocab_size} does not match the grammar's vocabulary: need "
                                 f"vocab_size == grammar.vocab_size = {self.grammar.vocab_size}")
            if self.max_len < self.grammar.max_len:
                raise ValueError(f"max_len={self.max_len} is out of range: the grammar's sentences need max_len >= "
                                 f"{self.grammar.max_len}")
        _check_int("num_metric_samples", self.num_metric_samples, 2)
        _check_int("bleu_samples", self.bleu_samples, 2, self.num_metric_samples)
        _check_int("ttr_tokens", self.ttr_tokens, 1)

    @classmethod
    def for_grammar(cls, grammar: Grammar, *, max_len: int | None = None, **kwargs) -> "NGram":
        """A model over ``grammar``'s vocabulary; ``max_len`` defaults to ``grammar.max_len + 2`` (room for
        over-long, ungrammatical sentences)."""
        return cls(vocab_size=grammar.vocab_size, max_len=grammar.max_len + 2 if max_len is None else max_len,
                   grammar=grammar, **kwargs)

    # ---- parameters -------------------------------------------------------------------------------------------
    @property
    def num_contexts(self) -> int:
        return self.vocab_size ** (self.order - 1)

    def _emit_mask(self, dtype):
        return jnp.ones((self.vocab_size,), dtype).at[PAD].set(0).at[BOS].set(0)

    def init(self, key: jax.Array) -> NGramParams:
        """The uniform model (every context: uniform over the V − 2 emittable tokens); ignores ``key``."""
        del key
        dtype = jnp.zeros(()).dtype
        row = self._emit_mask(dtype) / (self.vocab_size - 2)
        return NGramParams(jnp.broadcast_to(row, (self.num_contexts, self.vocab_size)), jnp.ones((), dtype))

    def true_params(self) -> NGramParams:
        """The grammar's exact law as n-gram parameters (``tempered = 0``): the real distribution.

        The corpus is bigram-exact (:meth:`Grammar.bigram_probs`); for order 3 the row of context (a, b) is the
        bigram row of b. Rows of contexts that never occur are the bigram rows of their last token.
        """
        if self.grammar is None:
            raise ValueError("grammar=None: true_params needs the model's grammar")
        dtype = jnp.zeros(()).dtype
        p = self.grammar.bigram_probs()
        p[[PAD, EOS]] = 0.0
        p[[PAD, EOS], EOS] = 1.0  # never used (sampling pads after EOS); keeps the PAD column at 0
        if self.order == 3:
            p = np.tile(p, (self.vocab_size, 1))
        return NGramParams(jnp.asarray(p, dtype), jnp.zeros((), dtype))

    # ---- sample / fit -----------------------------------------------------------------------------------------
    def sample(self, key: jax.Array, params: NGramParams, n: int) -> jax.Array:
        """``n`` sentences (n, max_len) int32; fitted models with temperature τ, the truth untempered."""
        probs = params.probs
        if self.temperature != 1:
            probs = jnp.where(params.tempered > 0, tempered_probs(probs, self.temperature), probs)
        return sample_sentences(key, probs, n, self.max_len, self.order)

    def check_rows(self, rows, name: str = "real_data") -> None:
        """Refuse sentences that are not token ids of this vocabulary: whole numbers in [0, V), in an integer or
        float array. (``simulate`` calls it on ``real_data``, and on ``reference`` by :meth:`check_reference`;
        inside a jitted fit, JAX indexing would clip an id >= V to V − 1 silently.)"""
        require_ids(name, rows, self.vocab_size, "token id", f"vocab_size={self.vocab_size}")

    def check_reference(self, reference) -> None:
        """The held-out corpus of the metrics holds token ids of this vocabulary (:meth:`check_rows`); any other
        reference is left to :meth:`metrics`, which names what it needs."""
        if not isinstance(reference, NGramParams) and np.ndim(reference) == 2:
            self.check_rows(reference, "reference")

    def counts(self, data: jax.Array, weights: jax.Array) -> jax.Array:
        """Weighted transition counts N(c, v), shape (V**(k-1), V)."""
        dtype = jnp.zeros(()).dtype
        ctx = _context_ids(data, self.order, self.vocab_size)
        target = data[:, 1:].astype(jnp.int32)
        w = jnp.where(target != PAD, weights.astype(dtype)[:, None], 0.0)
        flat = (ctx * self.vocab_size + target).ravel()
        table = jnp.zeros((self.num_contexts * self.vocab_size,), dtype).at[flat].add(w.ravel())
        return table.reshape(self.num_contexts, self.vocab_size)

    def fit(self, key: jax.Array, data: jax.Array, weights: jax.Array, params: NGramParams) -> NGramParams:
        """Add-α smoothed counts (module docstring); ``key`` and ``params`` are unused."""
        del key, params
        counts = self.counts(data, weights)
        mask = self._emit_mask(counts.dtype)[None, :]
        num = counts * mask + self.smoothing * mask
        den = jnp.sum(num, axis=1, keepdims=True)
        uniform = mask / (self.vocab_size - 2)
        probs = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), uniform)
        return NGramParams(probs, jnp.ones((), counts.dtype))

    # ---- metrics ----------------------------------------------------------------------------------------------
    def log_likelihood(self, params: NGramParams, data: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per sentence: (sum of log P(target | context) over the target tokens, number of target tokens)."""
        ctx = _context_ids(data, self.order, self.vocab_size)
        target = data[:, 1:].astype(jnp.int32)
        valid = target != PAD
        p = params.probs[ctx, target]
        logp = jnp.where(valid, jnp.log(jnp.where(valid, p, 1.0)), 0.0)
        return jnp.sum(logp, axis=1), jnp.sum(valid, axis=1)

    def fact_known(self, params: NGramParams) -> jax.Array:
        """(E,) bool: the argmax completion of ``[BOS, e]`` is attr(e), strictly (ties count as unknown)."""
        g = self.grammar
        ent = jnp.asarray(g.entity_tokens())
        attr = jnp.asarray(g.attribute_tokens())
        ctx = ent if self.order == 2 else BOS * self.vocab_size + ent
        rows = params.probs[ctx]
        p_true = jnp.take_along_axis(rows, attr[:, None], axis=1)[:, 0]
        others = jnp.where(jnp.arange(self.vocab_size)[None, :] == attr[:, None], -jnp.inf, rows)
        return p_true > jnp.max(others, axis=1)

    def metrics(self, params: NGramParams, reference: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        if isinstance(reference, NGramParams) or getattr(reference, "ndim", None) != 2:
            raise ValueError("reference must be a held-out corpus, int sentences (N, L) (simulate(reference=...), "
                             f"e.g. grammar.sample(key, 2000)); got {type(reference).__name__} (simulate's default "
                             "reference is the truth, which is an NGramParams)")
        dtype = jnp.zeros(()).dtype
        out = {}
        ll, count = self.log_likelihood(params, reference)
        out["perplexity"] = jnp.exp(-jnp.sum(ll) / jnp.sum(count)).astype(dtype)
        samples = self.sample(key, params, self.num_metric_samples)
        if self.grammar is not None:
            g = self.grammar
            is_fact = jnp.asarray(g.class_of())[reference[:, 1]] == 10  # CLASSES.index("ENTITY")
            for name, sel in (("perplexity_fluency", ~is_fact), ("perplexity_facts", is_fact)):
                tokens = jnp.sum(jnp.where(sel, count, 0))
                value = jnp.exp(-jnp.sum(jnp.where(sel, ll, 0.0)) / jnp.maximum(tokens, 1))
                out[name] = jnp.where(tokens > 0, value, jnp.nan).astype(dtype)  # no such sentence: undefined
            start = BOS if self.order == 2 else BOS * self.vocab_size + BOS
            first = params.probs[start]  # the law of a sentence's first word, as sample() draws it
            if self.temperature != 1:
                first = jnp.where(params.tempered > 0, tempered_probs(first, self.temperature), first)
            out["fact_share"] = jnp.sum(first[jnp.asarray(g.entity_tokens())])
            known = self.fact_known(params).astype(dtype)
            out["fact_accuracy"] = jnp.mean(known)
            for bucket, index in g.buckets().items():
                out[f"fact_accuracy_{bucket}"] = jnp.mean(known[jnp.asarray(index)])
            out["grammaticality"] = jnp.mean(jax.vmap(GrammarCheck(g))(samples).astype(dtype))
            out["fact_check_rate"] = jnp.mean(jax.vmap(FactCheck(g))(samples).astype(dtype))
        ll_self, count_self = self.log_likelihood(params, samples)
        out["perplexity_self"] = jnp.exp(-jnp.sum(ll_self) / jnp.maximum(jnp.sum(count_self), 1)).astype(dtype)
        v = self.vocab_size
        out["mean_length"] = jnp.mean(jnp.sum(diversity.word_mask(samples), axis=1).astype(dtype))
        out["ttr"] = diversity.type_token_ratio(samples, self.ttr_tokens, v)
        out["distinct_2"] = diversity.distinct_n(samples, 2, v)
        out["distinct_3"] = diversity.distinct_n(samples, 3, v)
        out["one_minus_self_bleu"] = (1.0 - diversity.self_bleu(samples[: self.bleu_samples], v, 3)).astype(dtype)
        return out
