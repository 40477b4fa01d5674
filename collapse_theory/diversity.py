r"""Lexical diversity of generated text (Guo et al. 2024, THEORY.md §12), in JAX with fixed shapes and in NumPy.

A batch of sentences is an int array ``tokens`` of shape (S, L) in the corpus convention
``[BOS, w_1, ..., w_k, EOS, PAD, ...]`` (:mod:`collapse_theory.corpus`; a row without EOS was truncated at L).
The **words** of a sentence are its tokens other than PAD (0), BOS (1) and EOS (2), i.e. ``w_1..w_k`` (the
full stop counts as a word). All metrics are corpus-level over the S sentences and empirical (they are computed
on sampled text):

* **TTR on a fixed-length truncation**: concatenate the words of the sentences in row order, keep the first
  ``num_tokens`` words T, and report #distinct word types / T (if the batch has fewer than ``num_tokens`` words,
  T is their number). Truncating to a fixed length makes TTR comparable across generations whose sentences differ
  in length (TTR falls with text length).
* **distinct-n** (Li et al. 2016): #distinct n-grams / #n-grams, n-grams taken inside sentences (never across a
  sentence boundary); 0 when the batch has no n-gram.
* **self-BLEU** (Zhu et al. 2018): the mean over sentences i of BLEU(hypothesis i; references = all other
  sentences of the batch). The BLEU variant: orders n = 1..N (``max_order``, default 3, as the sentences are short)
  with uniform weights; modified (clipped) n-gram precision :math:`p_n = m_n / l_n` where :math:`m_n` clips each
  hypothesis n-gram count by its maximum count in any single reference; **BLEU+1 smoothing** (Lin & Och 2004) of the
  orders n >= 2, :math:`p_n = (m_n + 1)/(l_n + 1)`, and none at n = 1 (so a hypothesis that shares no word with
  any reference, or has no word, scores 0); brevity penalty :math:`\min(1, e^{1 - r/c})` with c the hypothesis
  length and r the reference length closest to c (ties to the shorter). Diversity is reported as
  1 − self-BLEU.

The NumPy functions (``*_reference``) take lists of word lists and are written for clarity; the tests check the
JAX versions against them and both against hand-computed examples.

References:
  Guo, Shang, Vazirgiannis, Clavel, "The Curious Decline of Linguistic Diversity: Training Language Models on
  Synthetic Text", NAACL Findings 2024 (arXiv 2311.09807); Li et al., "A Diversity-Promoting Objective Function
  for Neural Conversation Models", NAACL 2016 (distinct-n); Zhu et al., "Texygen", SIGIR 2018 (self-BLEU);
  Lin & Och, "ORANGE", COLING 2004 (BLEU+1).
"""

from __future__ import annotations

import math
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np

from .corpus import BOS, EOS, PAD


def word_mask(tokens: jax.Array) -> jax.Array:
    """(S, L) bool: which positions hold words (not PAD, BOS or EOS)."""
    return (tokens != PAD) & (tokens != BOS) & (tokens != EOS)


def _id_dtype(vocab_size: int, n: int):
    if vocab_size**n < 2**31:
        return jnp.int32
    if not jax.config.jax_enable_x64:
        raise ValueError(f"vocab_size={vocab_size} with n={n}: n-gram ids need vocab_size**n < 2**31 without x64")
    return jnp.int64


def _ngrams(tokens: jax.Array, n: int, vocab_size: int):
    """n-gram ids (S, L-n+1) and validity (all n positions are words)."""
    dtype = _id_dtype(vocab_size, n)
    words = word_mask(tokens)
    width = tokens.shape[1] - n + 1
    ids = jnp.zeros((tokens.shape[0], max(width, 0)), dtype)
    valid = jnp.ones((tokens.shape[0], max(width, 0)), bool)
    for j in range(n):
        ids = ids * vocab_size + tokens[:, j: j + width].astype(dtype)
        valid = valid & words[:, j: j + width]
    return ids, valid


def _count_distinct(ids: jax.Array, valid: jax.Array) -> jax.Array:
    flat = jnp.where(valid, ids, jnp.iinfo(ids.dtype).max).ravel()
    flat_valid = valid.ravel()
    order = jnp.argsort(flat)
    s, sv = flat[order], flat_valid[order]
    new = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
    return jnp.sum(new & sv)


def distinct_n(tokens: jax.Array, n: int, vocab_size: int) -> jax.Array:
    """distinct-n of a batch (S, L): #distinct n-grams / #n-grams (within sentences)."""
    ids, valid = _ngrams(tokens, n, vocab_size)
    total = jnp.sum(valid)
    dtype = jnp.zeros(()).dtype
    return jnp.where(total > 0, _count_distinct(ids, valid) / jnp.maximum(total, 1), 0.0).astype(dtype)


def type_token_ratio(tokens: jax.Array, num_tokens: int, vocab_size: int) -> jax.Array:
    """TTR of the first ``num_tokens`` words of the concatenated batch (fewer if the batch is shorter)."""
    words = word_mask(tokens).ravel()
    flat = tokens.ravel()
    rank = jnp.cumsum(words) - 1  # position of each word in the concatenation
    keep = words & (rank < num_tokens)
    present = jnp.zeros((vocab_size,), bool).at[flat].max(keep)
    total = jnp.sum(keep)
    dtype = jnp.zeros(()).dtype
    return jnp.where(total > 0, jnp.sum(present) / jnp.maximum(total, 1), 0.0).astype(dtype)


def self_bleu(tokens: jax.Array, vocab_size: int, max_order: int = 3) -> jax.Array:
    """Mean BLEU+1 (orders 1..max_order) of each sentence against all other sentences of the batch (S, L)."""
    s = tokens.shape[0]
    dtype = jnp.zeros(()).dtype
    lengths = jnp.sum(word_mask(tokens), axis=1)
    other = ~jnp.eye(s, dtype=bool)
    log_p = []
    matched_unigrams = None
    for n in range(1, max_order + 1):
        ids, valid = _ngrams(tokens, n, vocab_size)
        k = ids.shape[1]
        same_in = (ids[:, :, None] == ids[:, None, :]) & valid[:, None, :]  # (S, K, K) hyp self-matches
        hyp_count = jnp.sum(same_in, axis=2)
        first = valid & ~jnp.any(same_in & jnp.tril(jnp.ones((k, k), bool), -1)[None], axis=2)
        ref_match = (ids[:, :, None, None] == ids[None, None, :, :]) & valid[None, None, :, :]  # (S, K, S, K)
        ref_count = jnp.sum(ref_match, axis=3)  # (S, K, S)
        max_ref = jnp.max(jnp.where(other[:, None, :], ref_count, 0), axis=2)
        matched = jnp.sum(jnp.where(first, jnp.minimum(hyp_count, max_ref), 0), axis=1).astype(dtype)
        total = jnp.sum(valid, axis=1).astype(dtype)
        if n == 1:
            matched_unigrams = matched
            p = matched / jnp.maximum(total, 1.0)
        else:
            p = (matched + 1.0) / (total + 1.0)
        log_p.append(jnp.log(jnp.where(p > 0, p, 1.0)))
    c = lengths.astype(dtype)
    r_all = jnp.broadcast_to(lengths[None, :], (s, s)).astype(dtype)
    dist = jnp.where(other, jnp.abs(r_all - c[:, None]), jnp.inf)
    # closest reference length, ties to the shorter: minimise (distance, length) lexicographically
    score = dist * (2.0 * tokens.shape[1] + 2.0) + r_all
    r = jnp.take_along_axis(r_all, jnp.argmin(score, axis=1)[:, None], axis=1)[:, 0]
    log_bp = jnp.where(c > r, 0.0, 1.0 - r / jnp.maximum(c, 1.0))
    bleu = jnp.exp(log_bp + sum(log_p) / max_order)
    bleu = jnp.where(matched_unigrams > 0, bleu, 0.0)
    return jnp.mean(bleu)


# ---------------------------------------------------------------------------------------------------------------
# NumPy references (lists of word lists)
# ---------------------------------------------------------------------------------------------------------------


def sentences_to_words(tokens) -> list[list[int]]:
    """Rows of a token array as lists of words (PAD, BOS, EOS dropped)."""
    return [[int(t) for t in row if int(t) not in (PAD, BOS, EOS)] for row in np.asarray(tokens)]


def ttr_reference(sentences: list[list], num_tokens: int) -> float:
    """TTR of the first ``num_tokens`` words of the concatenated sentences."""
    words = [w for s in sentences for w in s][:num_tokens]
    return len(set(words)) / len(words) if words else 0.0


def distinct_n_reference(sentences: list[list], n: int) -> float:
    """#distinct n-grams / #n-grams, n-grams inside sentences."""
    grams = [tuple(s[i: i + n]) for s in sentences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu_reference(hypothesis: list, references: list[list], max_order: int = 3) -> float:
    """BLEU+1 of one hypothesis against references (the variant stated in the module docstring)."""
    if not hypothesis:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_order + 1):
        hyp = Counter(tuple(hypothesis[i: i + n]) for i in range(len(hypothesis) - n + 1))
        max_ref: Counter = Counter()
        for ref in references:
            for gram, count in Counter(tuple(ref[i: i + n]) for i in range(len(ref) - n + 1)).items():
                max_ref[gram] = max(max_ref[gram], count)
        matched = sum(min(count, max_ref[gram]) for gram, count in hyp.items())
        total = sum(hyp.values())
        if n == 1:
            if matched == 0:
                return 0.0
            p = matched / total
        else:
            p = (matched + 1) / (total + 1)
        log_sum += math.log(p)
    c = len(hypothesis)
    r = min((abs(len(ref) - c), len(ref)) for ref in references)[1]
    log_bp = 0.0 if c > r else 1.0 - r / c
    return math.exp(log_bp + log_sum / max_order)


def self_bleu_reference(sentences: list[list], max_order: int = 3) -> float:
    """Mean over i of BLEU+1(sentence i; all other sentences)."""
    scores = [bleu_reference(h, sentences[:i] + sentences[i + 1:], max_order) for i, h in enumerate(sentences)]
    return float(np.mean(scores))
