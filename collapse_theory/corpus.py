r"""A small synthetic language: a grammar whose frequent words carry *fluency* and whose rare pairs carry *facts*.

The corpus of the tiny-language-model experiment ("fluency survives, facts fail"; THEORY.md §12 for the diversity
metrics, §7–8 for tails). Every sentence is a fixed-length row of ``max_len`` int32 tokens,

.. code-block:: text

   [BOS, w_1, ..., w_k, EOS, PAD, ..., PAD]

with the reserved tokens ``PAD = 0``, ``BOS = 1``, ``EOS = 2`` (shared with :mod:`collapse_theory.models.ngram`).
Two sentence types, over word classes:

.. code-block:: text

   fluency sentence (probability 1 - f):  BOS SDET SNOUN  VERB ODET [ADJ] ONOUN . EOS
   fact sentence    (probability f):      BOS ENTITY ATTR VERB ODET [ADJ] ONOUN . EOS   with ATTR = attr(ENTITY)

* **Template words** (``SDET`` = the/a, ``SNOUN``, ``VERB``, ``ODET`` = this/that/some, ``ADJ``, ``ONOUN``, ``.``)
  are frequent: they carry fluency. Within each class a word of rank r (0-based) has probability
  :math:`\propto (r+1)^{-s_w}` (``word_zipf`` :math:`s_w`); the adjective is present with probability
  ``adjective_prob``.
* **Facts**: entity ``e`` (rank 0 = most frequent) opens a fact sentence with probability
  :math:`f\,p_e`, :math:`p_e \propto (e+1)^{-s}` (Zipfian fact frequencies, ``entity_zipf`` s), and is always
  followed by its one true attribute ``attr(e)`` (a fixed random map from ``attribute_seed``). A fact is therefore
  an **adjacent pair** ``ENTITY ATTR``: a bigram model can store it, and the fact prompt is ``[BOS, e]``.
* Facts are bucketed by frequency rank into thirds: **head**, **torso**, **tail** (``numpy.array_split`` of the
  ranks into 3).

The classes are chosen so that the language is **bigram-exact**: each class has a fixed set of successor classes
and every choice is independent, so the corpus distribution *is* a first-order Markov chain over tokens
(:meth:`Grammar.bigram_probs` gives its exact transition matrix). A bigram model fitted on infinite real text is
therefore 100% grammatical and 100% factual; what is lost over generations is lost to finite samples, smoothing
and temperature.

Predicates (pure JAX on one row, usable in the engine's scan and by :class:`~collapse_theory.regimes.Gate`):

* :class:`GrammarCheck`: the row is a complete sentence of the grammar (a deterministic finite automaton over word
  classes: exact membership test, including EOS and PAD-only padding).
* :class:`FactCheck`: grammatical **and** every ``ENTITY ATTR`` pair it states is a fact of the real corpus.

Real sentences are drawn by :meth:`Grammar.sample` (direct construction, independent of the bigram table).

Examples:
  >>> import jax
  >>> from collapse_theory.corpus import Grammar, GrammarCheck
  >>> g = Grammar()
  >>> x = g.sample(jax.random.key(0), 3)
  >>> x.shape, bool(jax.vmap(GrammarCheck(g))(x).all())
  ((3, 9), True)
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

PAD, BOS, EOS = 0, 1, 2
"""Reserved tokens of every sentence array."""
PERIOD = 3

SUBJECT_DETERMINERS = ("the", "a")
SUBJECT_NOUNS = ("cat", "dog", "child", "farmer", "bird", "teacher", "horse", "sailor", "miner", "baker", "poet",
                 "judge")
VERBS = ("sees", "likes", "finds", "takes", "wants", "moves", "paints", "carries", "sells", "hides", "counts",
         "keeps")
OBJECT_DETERMINERS = ("this", "that", "some")
ADJECTIVES = ("red", "old", "small", "green", "heavy", "bright", "quiet", "round", "soft", "long", "cold", "dark")
OBJECT_NOUNS = ("ball", "apple", "box", "stone", "book", "cup", "rope", "coin", "map", "key", "lamp", "shell")

CLASSES = ("PAD", "BOS", "EOS", "PERIOD", "SDET", "SNOUN", "VERB", "ODET", "ADJ", "ONOUN", "ENTITY", "ATTR")
"""Word classes; the class id of a token is its index in this tuple."""
_C = {name: i for i, name in enumerate(CLASSES)}

# DFA over classes. States: 0 expect BOS; 1 after BOS; 2 SDET; 3 SNOUN; 4 ENTITY; 5 ATTR; 6 VERB; 7 ODET; 8 ADJ;
# 9 ONOUN; 10 PERIOD; 11 after EOS (accepting; only PAD may follow); 12 reject (absorbing).
_REJECT = 12
_ACCEPT = 11
_TRANSITIONS = {
    (0, "BOS"): 1,
    (1, "SDET"): 2, (1, "ENTITY"): 4,
    (2, "SNOUN"): 3,
    (3, "VERB"): 6,
    (4, "ATTR"): 5,
    (5, "VERB"): 6,
    (6, "ODET"): 7,
    (7, "ADJ"): 8, (7, "ONOUN"): 9,
    (8, "ONOUN"): 9,
    (9, "PERIOD"): 10,
    (10, "EOS"): 11,
    (11, "PAD"): 11,
}


def _dfa_table() -> np.ndarray:
    table = np.full((13, len(CLASSES)), _REJECT, np.int32)
    for (state, cls), nxt in _TRANSITIONS.items():
        table[state, _C[cls]] = nxt
    return table


def zipf_probs(num: int, exponent: float) -> np.ndarray:
    r"""Zipf law on ranks 0..num-1: :math:`p_r = (r+1)^{-s} / \sum_{q<num} (q+1)^{-s}` (float64)."""
    w = np.arange(1, num + 1, dtype=np.float64) ** (-float(exponent))
    return w / w.sum()


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is out of range: need an int with {lo} <= {name} <= {hi}")


def _check_float(name, value, lo, hi, lo_open=False, hi_open=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise ValueError(f"{name}={value!r} is out of range: need a finite number in {left}{lo}, {hi}{right}")


@dataclasses.dataclass(frozen=True)
class Grammar:
    r"""The synthetic language (static, hashable): word classes, Zipfian facts, sentence sampler, exact bigram law.

    Args:
      num_entities: E entities (facts), 3 <= E <= 200 (at least one per frequency bucket).
      num_attributes: A attribute values, 2 <= A <= 100.
      fact_fraction: f, probability that a sentence is a fact sentence, 0 < f < 1.
      entity_zipf: s >= 0, exponent of the Zipfian fact frequencies :math:`p_e \propto (e+1)^{-s}`.
      word_zipf: :math:`s_w \ge 0`, exponent of the within-class template-word frequencies.
      adjective_prob: probability of the optional adjective, 0 <= p <= 1.
      num_subject_nouns, num_verbs, num_adjectives, num_object_nouns: template class sizes, 1..12 each.
      attribute_seed: seed of the fixed entity -> attribute map (NumPy, drawn uniformly with replacement).

    Token ids: PAD 0, BOS 1, EOS 2, '.' 3, then SDET, SNOUN, VERB, ODET, ADJ, ONOUN, ENTITY, ATTR blocks in that
    order (:meth:`class_of`). ``max_len`` = 9 (the longest sentence, adjective present).
    """

    num_entities: int = 60
    num_attributes: int = 12
    fact_fraction: float = 0.4
    entity_zipf: float = 1.0
    word_zipf: float = 1.0
    adjective_prob: float = 0.5
    num_subject_nouns: int = 8
    num_verbs: int = 8
    num_adjectives: int = 8
    num_object_nouns: int = 10
    attribute_seed: int = 0

    max_len = 9

    def __post_init__(self):
        _check_int("num_entities", self.num_entities, 3, 200)
        _check_int("num_attributes", self.num_attributes, 2, 100)
        _check_float("fact_fraction", self.fact_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        _check_float("entity_zipf", self.entity_zipf, 0.0, 10.0)
        _check_float("word_zipf", self.word_zipf, 0.0, 10.0)
        _check_float("adjective_prob", self.adjective_prob, 0.0, 1.0)
        _check_int("num_subject_nouns", self.num_subject_nouns, 1, len(SUBJECT_NOUNS))
        _check_int("num_verbs", self.num_verbs, 1, len(VERBS))
        _check_int("num_adjectives", self.num_adjectives, 1, len(ADJECTIVES))
        _check_int("num_object_nouns", self.num_object_nouns, 1, len(OBJECT_NOUNS))
        _check_int("attribute_seed", self.attribute_seed, 0, 2**32 - 1)

    # ---- vocabulary -------------------------------------------------------------------------------------------
    def _sizes(self) -> dict[str, int]:
        return {"PAD": 1, "BOS": 1, "EOS": 1, "PERIOD": 1, "SDET": len(SUBJECT_DETERMINERS),
                "SNOUN": self.num_subject_nouns, "VERB": self.num_verbs, "ODET": len(OBJECT_DETERMINERS),
                "ADJ": self.num_adjectives, "ONOUN": self.num_object_nouns, "ENTITY": self.num_entities,
                "ATTR": self.num_attributes}

    def offset(self, cls: str) -> int:
        """First token id of word class ``cls`` (one of :data:`CLASSES`)."""
        sizes = self._sizes()
        return sum(sizes[c] for c in CLASSES[: CLASSES.index(cls)])

    @property
    def vocab_size(self) -> int:
        """V, the number of token ids (reserved tokens included)."""
        return sum(self._sizes().values())

    def class_of(self) -> np.ndarray:
        """(V,) int32: the class id (index into :data:`CLASSES`) of every token."""
        return np.repeat(np.arange(len(CLASSES), dtype=np.int32), [self._sizes()[c] for c in CLASSES])

    def words(self) -> tuple[str, ...]:
        """Readable spelling of every token id."""
        out = ["<pad>", "<s>", "</s>", "."]
        out += list(SUBJECT_DETERMINERS) + list(SUBJECT_NOUNS[: self.num_subject_nouns])
        out += list(VERBS[: self.num_verbs]) + list(OBJECT_DETERMINERS) + list(ADJECTIVES[: self.num_adjectives])
        out += list(OBJECT_NOUNS[: self.num_object_nouns])
        out += [f"e{e:02d}" for e in range(self.num_entities)] + [f"a{a:02d}" for a in range(self.num_attributes)]
        return tuple(out)

    def decode(self, row) -> str:
        """One sentence row as text (PAD dropped)."""
        words = self.words()
        return " ".join(words[int(t)] for t in np.asarray(row) if int(t) != PAD)

    # ---- facts ------------------------------------------------------------------------------------------------
    def attributes(self) -> np.ndarray:
        """(E,) int32: the true attribute index (0..A-1) of every entity."""
        return _attributes(self.num_entities, self.num_attributes, self.attribute_seed)

    def entity_tokens(self) -> np.ndarray:
        """(E,) int32 token ids of the entities, most frequent first."""
        return self.offset("ENTITY") + np.arange(self.num_entities, dtype=np.int32)

    def attribute_tokens(self) -> np.ndarray:
        """(E,) int32 token id of the true attribute of every entity."""
        return (self.offset("ATTR") + self.attributes()).astype(np.int32)

    def entity_probs(self) -> np.ndarray:
        r"""(E,) :math:`p_e`, the Zipfian frequency of fact e among fact sentences."""
        return zipf_probs(self.num_entities, self.entity_zipf)

    def buckets(self) -> dict[str, np.ndarray]:
        """Entity indices of the head / torso / tail thirds of the Zipfian fact distribution (by rank)."""
        parts = np.array_split(np.arange(self.num_entities), 3)
        return {"head": parts[0], "torso": parts[1], "tail": parts[2]}

    # ---- exact law --------------------------------------------------------------------------------------------
    def bigram_probs(self) -> np.ndarray:
        r"""(V, V) exact next-token law :math:`P(w_{i} = b \mid w_{i-1} = a)` of the corpus (float64).

        Rows of tokens that never precede a word (PAD, EOS) put all mass on PAD (the padding convention), so
        every row sums to 1. Sampling this chain from BOS gives exactly the law of :meth:`sample`.
        """
        v = self.vocab_size
        p = np.zeros((v, v))
        block = {c: self.offset(c) + np.arange(self._sizes()[c]) for c in CLASSES}
        wz = functools.partial(zipf_probs, exponent=self.word_zipf)
        f = self.fact_fraction
        p[BOS, block["SDET"]] = (1 - f) * wz(len(SUBJECT_DETERMINERS))
        p[BOS, block["ENTITY"]] = f * self.entity_probs()
        p[np.ix_(block["SDET"], block["SNOUN"])] = wz(self.num_subject_nouns)
        p[np.ix_(block["SNOUN"], block["VERB"])] = wz(self.num_verbs)
        p[block["ENTITY"], self.attribute_tokens()] = 1.0
        p[np.ix_(block["ATTR"], block["VERB"])] = wz(self.num_verbs)
        p[np.ix_(block["VERB"], block["ODET"])] = wz(len(OBJECT_DETERMINERS))
        a = self.adjective_prob
        p[np.ix_(block["ODET"], block["ADJ"])] = a * wz(self.num_adjectives)
        p[np.ix_(block["ODET"], block["ONOUN"])] = (1 - a) * wz(self.num_object_nouns)
        p[np.ix_(block["ADJ"], block["ONOUN"])] = wz(self.num_object_nouns)
        p[block["ONOUN"], PERIOD] = 1.0
        p[PERIOD, EOS] = 1.0
        p[[PAD, EOS], PAD] = 1.0
        # Attributes no entity uses are never reached; give them the same successor law as used ones.
        return p

    # ---- sampling ---------------------------------------------------------------------------------------------
    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` real sentences, shape (n, 9) int32 (direct construction from the grammar, not the bigram table).

        One compiled program per (grammar, n): run op by op, its dozen random draws cost a compile each (3 s)."""
        return _sample_sentences(self, key, n)

    def _sample_eager(self, key: jax.Array, n: int) -> jax.Array:
        keys = jax.random.split(key, 9)
        wz = functools.partial(zipf_probs, exponent=self.word_zipf)

        def pick(k, probs, offset):
            logits = jnp.log(jnp.asarray(probs))
            return (offset + jax.random.categorical(k, logits, shape=(n,))).astype(jnp.int32)

        is_fact = jax.random.bernoulli(keys[0], self.fact_fraction, (n,))
        ent_index = jax.random.categorical(keys[1], jnp.log(jnp.asarray(self.entity_probs())), shape=(n,))
        ent = (self.offset("ENTITY") + ent_index).astype(jnp.int32)
        attr = jnp.asarray(self.attribute_tokens())[ent_index]
        sdet = pick(keys[2], wz(len(SUBJECT_DETERMINERS)), self.offset("SDET"))
        snoun = pick(keys[3], wz(self.num_subject_nouns), self.offset("SNOUN"))
        verb = pick(keys[4], wz(self.num_verbs), self.offset("VERB"))
        odet = pick(keys[5], wz(len(OBJECT_DETERMINERS)), self.offset("ODET"))
        adj = pick(keys[6], wz(self.num_adjectives), self.offset("ADJ"))
        onoun = pick(keys[7], wz(self.num_object_nouns), self.offset("ONOUN"))
        has_adj = jax.random.bernoulli(keys[8], self.adjective_prob, (n,))
        first = jnp.where(is_fact, ent, sdet)
        second = jnp.where(is_fact, attr, snoun)
        full = jnp.stack([jnp.full((n,), BOS), first, second, verb, odet, adj, onoun,
                          jnp.full((n,), PERIOD), jnp.full((n,), EOS)], axis=1).astype(jnp.int32)
        short = jnp.concatenate([full[:, :5], full[:, 6:], jnp.full((n, 1), PAD, jnp.int32)], axis=1)
        return jnp.where(has_adj[:, None], full, short)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample_sentences(grammar: Grammar, key: jax.Array, n: int) -> jax.Array:
    return grammar._sample_eager(key, n)


@functools.lru_cache(maxsize=64)
def _attributes(num_entities: int, num_attributes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, num_attributes, size=num_entities).astype(np.int32)
    out.setflags(write=False)
    return out


def grammatical(grammar: Grammar, row: jax.Array) -> jax.Array:
    """Whether one token row (any length >= 9, PAD-padded) is a sentence of ``grammar`` (DFA; bool scalar)."""
    classes = jnp.asarray(grammar.class_of())[row]
    table = jnp.asarray(_dfa_table())

    def step(state, cls):
        return table[state, cls], None

    final, _ = jax.lax.scan(step, jnp.int32(0), classes)
    return final == _ACCEPT


def facts_consistent(grammar: Grammar, row: jax.Array) -> jax.Array:
    """Whether every ENTITY token of the row is immediately followed by its true attribute (bool scalar)."""
    v = grammar.vocab_size
    lookup = np.full(v, -1, np.int32)
    lookup[grammar.entity_tokens()] = grammar.attribute_tokens()
    expected = jnp.asarray(lookup)[row[:-1]]
    ok = (expected < 0) | (row[1:] == expected)
    # an entity in the last position states no attribute: it is not a fact (and not grammatical either)
    return jnp.all(ok)


@dataclasses.dataclass(frozen=True)
class GrammarCheck:
    """Predicate ``row -> bool``: the row is a grammatical sentence (hashable, usable by ``Gate``)."""

    grammar: Grammar

    def __call__(self, row: jax.Array) -> jax.Array:
        return grammatical(self.grammar, row)


@dataclasses.dataclass(frozen=True)
class FactCheck:
    """Predicate ``row -> bool``: grammatical **and** every stated ENTITY→ATTR fact agrees with the real corpus."""

    grammar: Grammar

    def __call__(self, row: jax.Array) -> jax.Array:
        return grammatical(self.grammar, row) & facts_consistent(self.grammar, row)
