"""The tiny n-gram language model, its grammar and the lexical-diversity metrics (Guo et al.)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects

from collapse_theory import Accumulate, FreshFraction, Gate, Replace, simulate
from collapse_theory import diversity as dv
from collapse_theory.corpus import BOS, EOS, PAD, FactCheck, Grammar, GrammarCheck
from collapse_theory.models import NGram, NGramParams
from collapse_theory.models.ngram import sample_sentences, tempered_probs

GRAMMAR = Grammar()

# Every metric call is jitted: op-by-op execution would compile each small kernel separately (slow on CPU).
ttr_j = jax.jit(dv.type_token_ratio, static_argnums=(1, 2))
distinct_j = jax.jit(dv.distinct_n, static_argnums=(1, 2))
self_bleu_j = jax.jit(dv.self_bleu, static_argnums=(1, 2))
grammar_check_j = jax.jit(jax.vmap(GrammarCheck(GRAMMAR)))
fact_check_j = jax.jit(jax.vmap(FactCheck(GRAMMAR)))
SMALL = NGram.for_grammar(GRAMMAR, num_metric_samples=16, bleu_samples=8, ttr_tokens=50)
small_metrics_j = jax.jit(SMALL.metrics)
sample_j = jax.jit(lambda model, key, params, n: model.sample(key, params, n), static_argnums=(0, 3))
fit_j = jax.jit(lambda model, data, weights: model.fit(None, data, weights, None), static_argnums=0)
grammar_sample_j = jax.jit(lambda grammar, key, n: grammar.sample(key, n), static_argnums=(0, 2))
sample_sentences_j = jax.jit(sample_sentences, static_argnums=(2, 3, 4))


FIT_MODEL = NGram.for_grammar(GRAMMAR, smoothing=0.3)  # shared by several tests (one compile of fit and sample)
NUM_FIT = 300


@jax.jit
def _noisy_corpus(key):
    """NUM_FIT grammar sentences (length 11) with random words spliced in (every kind of row and context occurs)."""
    k1, k2, k3 = jax.random.split(key, 3)
    x = GRAMMAR.sample(k1, NUM_FIT)
    x = jnp.concatenate([x, jnp.full((NUM_FIT, 11 - x.shape[1]), PAD, jnp.int32)], axis=1)
    noise = jax.random.randint(k2, x.shape, 3, GRAMMAR.vocab_size)
    swap = jax.random.bernoulli(k3, 0.1, x.shape) & (x > EOS)
    return jnp.where(swap, noise, x)


# ---------------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order, smoothing", [(2, 0.3), (3, 0.0)])
def test_probabilities_sum_to_one(order, smoothing):
    model = NGram.for_grammar(GRAMMAR, order=order, smoothing=smoothing)
    data = _noisy_corpus(jax.random.key(order))
    weights = jax.random.uniform(jax.random.key(7), (NUM_FIT,)) * 3.0
    for params in (fit_j(model, data, weights), model.init(None), model.true_params()):
        probs = np.asarray(params.probs)
        assert probs.shape == (GRAMMAR.vocab_size ** (order - 1), GRAMMAR.vocab_size)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        assert probs.min() >= 0
        assert np.all(probs[:, [PAD, BOS]] == 0), "PAD and BOS are never emitted"


def test_fit_hand_example_and_weights():
    model = NGram(vocab_size=5, max_len=4, smoothing=0.5)
    data = jnp.array([[BOS, 3, 4, EOS], [BOS, 3, EOS, PAD]])
    p = np.asarray(fit_j(model, data, jnp.array([2.0, 1.0])).probs)
    # counts: BOS->3: 3, 3->4: 2, 3->EOS: 1, 4->EOS: 2; add 0.5 to the 3 emittable tokens (EOS, 3, 4)
    np.testing.assert_allclose(p[BOS, [EOS, 3, 4]], np.array([0.5, 3.5, 0.5]) / 4.5, atol=1e-15)
    np.testing.assert_allclose(p[3, [EOS, 3, 4]], np.array([1.5, 0.5, 2.5]) / 4.5, atol=1e-15)
    np.testing.assert_allclose(p[4, [EOS, 3, 4]], np.array([2.5, 0.5, 0.5]) / 3.5, atol=1e-15)
    np.testing.assert_allclose(p[EOS, [EOS, 3, 4]], np.ones(3) / 3, atol=1e-15)  # unseen: smoothing only
    # weight 2 == the row twice; weight 0 == absent
    dup = jnp.array([[BOS, 3, 4, EOS], [BOS, 3, 4, EOS], [BOS, 3, EOS, PAD], [BOS, 4, 4, 4]])
    p2 = np.asarray(fit_j(model, dup, jnp.array([1.0, 1.0, 1.0, 0.0])).probs)
    np.testing.assert_allclose(p2, p, atol=1e-15)
    # unseen context with alpha = 0 -> uniform over emittable tokens
    p0 = np.asarray(NGram(vocab_size=5, max_len=4, smoothing=0.0).fit(None, data, jnp.ones(2), None).probs)
    np.testing.assert_allclose(p0[EOS], [0, 0, 1 / 3, 1 / 3, 1 / 3], atol=1e-15)
    np.testing.assert_allclose(p0[3, [EOS, 4]], [0.5, 0.5], atol=1e-15)


def test_trigram_contexts():
    v = 5
    model = NGram(vocab_size=v, max_len=4, order=3, smoothing=0.0)
    data = jnp.array([[BOS, 3, 4, EOS], [BOS, 4, 4, EOS]])
    p = np.asarray(fit_j(model, data, jnp.ones(2)).probs)
    np.testing.assert_allclose(p[BOS * v + BOS, [3, 4]], [0.5, 0.5])   # (BOS, BOS) -> first word
    assert p[BOS * v + 3, 4] == 1.0 and p[3 * v + 4, EOS] == 1.0 and p[4 * v + 4, EOS] == 1.0
    assert p[BOS * v + 4, 4] == 1.0


def test_temperature_one_is_the_untempered_sampler_bit_for_bit():
    model = FIT_MODEL
    params = fit_j(model, _noisy_corpus(jax.random.key(3)), jnp.ones(NUM_FIT))
    key = jax.random.key(11)
    ref = sample_sentences_j(key, params.probs, 500, model.max_len, model.order)
    for tau in (1, 1.0):
        got = sample_j(dataclasses.replace(model, temperature=tau), key, params, 500)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    hot_model = dataclasses.replace(model, temperature=1.5)
    hot = sample_j(hot_model, key, params, 500)
    assert not np.array_equal(np.asarray(hot), np.asarray(ref))
    # the truth is never tempered
    truth = model.true_params()
    np.testing.assert_array_equal(np.asarray(sample_j(hot_model, key, truth, 500)),
                                  np.asarray(sample_sentences_j(key, truth.probs, 500, model.max_len, 2)))
    # tempered law: p^(1/tau) renormalised
    p = jnp.array([[0.0, 0.0, 0.2, 0.3, 0.5]])
    np.testing.assert_allclose(tempered_probs(p, 0.5), p**2 / jnp.sum(p**2), atol=1e-15)


def test_fact_share_is_the_share_of_fact_sentences_the_model_samples():
    """``fact_share`` = Σ_e q(e | BOS) under the law the model samples from: tempered with τ for a fitted model. It
    summed the untempered table, which at τ = 0.5 reported 6.6× the share of fact sentences the model generates.
    Checked against 20 000 sampled sentences (binomial SE); power: the untempered sum."""
    model = dataclasses.replace(SMALL, temperature=0.5)
    params = fit_j(model, GRAMMAR.sample(jax.random.key(0), 2000), jnp.ones(2000))
    share = float(jax.jit(model.metrics)(params, GRAMMAR.sample(jax.random.key(9), 100), jax.random.key(1))[
        "fact_share"])
    x = np.asarray(sample_j(model, jax.random.key(2), params, 20_000))
    sampled = float(np.mean(GRAMMAR.class_of()[x[:, 1]] == 10))
    se = math.sqrt(share * (1 - share) / x.shape[0])
    assert_close_to_theory(sampled, se, share, label="fact share at tau = 0.5")
    untempered = float(jnp.sum(params.probs[BOS, jnp.asarray(GRAMMAR.entity_tokens())]))
    assert_rejects(sampled, se, untempered, label="fact share from the untempered table")


def test_perplexity_of_a_kind_absent_from_the_reference_is_nan():
    """A held-out corpus without fluency sentences has no fluency perplexity: NaN, not the perfect score 1 that
    exp(−0/max(0, 1)) gave (a one-sentence reference of a fact reported perplexity_fluency = 1)."""
    ref = grammar_sample_j(GRAMMAR, jax.random.key(9), 64)
    facts = ref[np.asarray(GRAMMAR.class_of())[np.asarray(ref)[:, 1]] == 10]
    m = small_metrics_j(SMALL.true_params(), facts, jax.random.key(0))
    assert np.isnan(float(m["perplexity_fluency"])) and np.isfinite(float(m["perplexity_facts"]))


def test_low_temperature_samples_the_mode():
    probs = jnp.zeros((5, 5)).at[BOS, 3].set(0.6).at[BOS, 4].set(0.4).at[3, EOS].set(1.0).at[4, EOS].set(1.0)
    model = NGram(vocab_size=5, max_len=4, temperature=0.02)
    x = np.asarray(sample_j(model, jax.random.key(0), NGramParams(probs, jnp.ones(())), 2000))
    assert np.all(x[:, 1] == 3) and np.all(x[:, 2] == EOS) and np.all(x[:, 3] == PAD)


def test_sampler_law_matches_the_table():
    """Fitting (alpha = 0) many samples of the exact grammar table recovers it; and the grammar's own sampler
    has the same law (two independent samplers of one language)."""
    model = NGram.for_grammar(GRAMMAR, smoothing=0.0)
    truth = np.asarray(model.true_params().probs)
    n = 20000
    counts_j = jax.jit(model.counts)
    for label, data in (("bigram sampler", sample_j(model, jax.random.key(5), model.true_params(), n)),
                        ("grammar sampler", grammar_sample_j(GRAMMAR, jax.random.key(6), n))):
        counts = np.asarray(counts_j(data, jnp.ones(n)))
        row = BOS
        total = counts[row].sum()
        assert total == n
        for tok in (GRAMMAR.offset("SDET"), GRAMMAR.offset("ENTITY"), GRAMMAR.offset("ENTITY") + 5):
            p = truth[row, tok]
            se = math.sqrt(p * (1 - p) / total)
            assert_close_to_theory(counts[row, tok] / total, se, p, label=f"{label} P({tok}|BOS)")
        ent = GRAMMAR.offset("ENTITY")
        wrong = 1.0 / (GRAMMAR.vocab_size - 2)  # a uniform model
        assert_rejects(counts[row, ent] / total, math.sqrt(truth[row, ent] * (1 - truth[row, ent]) / total), wrong,
                       label=f"{label} uniform law")
        assert bool(jnp.all(fact_check_j(data)))


def test_grammar_and_fact_predicates():
    g = GRAMMAR
    real = grammar_sample_j(g, jax.random.key(1), 400)
    ent, attr = int(g.entity_tokens()[4]), int(g.attribute_tokens()[4])
    wrong_attr = g.offset("ATTR") + (attr - g.offset("ATTR") + 1) % g.num_attributes
    verb, odet, onoun = g.offset("VERB"), g.offset("ODET"), g.offset("ONOUN")
    cases = {
        "fact": ([BOS, ent, attr, verb, odet, onoun, 3, EOS, PAD], True, True),
        "wrong attribute": ([BOS, ent, wrong_attr, verb, odet, onoun, 3, EOS, PAD], True, False),
        "no EOS": ([BOS, ent, attr, verb, odet, g.offset("ADJ"), onoun, 3, 3], False, False),
        "word after EOS": ([BOS, ent, attr, verb, odet, onoun, 3, EOS, verb], False, False),
        "missing object": ([BOS, ent, attr, verb, 3, EOS, PAD, PAD, PAD], False, False),
        "fluency": ([BOS, g.offset("SDET"), g.offset("SNOUN"), verb, odet, g.offset("ADJ"), onoun, 3, EOS], True,
                    True),
    }
    rows = jnp.concatenate([jnp.array([row for row, _, _ in cases.values()], jnp.int32), real])
    got_grammar, got_fact = np.asarray(grammar_check_j(rows)), np.asarray(fact_check_j(rows))
    assert np.all(got_grammar[len(cases):]) and np.all(got_fact[len(cases):]), "real sentences pass both checks"
    for i, (name, (_, grammatical, factual)) in enumerate(cases.items()):
        assert bool(got_grammar[i]) == grammatical, name
        assert bool(got_fact[i]) == factual, name


def test_fact_accuracy_by_bucket_and_ties():
    model = SMALL
    ref = grammar_sample_j(GRAMMAR, jax.random.key(2), 64)
    truth = model.true_params()
    m = small_metrics_j(truth, ref, jax.random.key(0))
    for name in ("fact_accuracy", "fact_accuracy_head", "fact_accuracy_torso", "fact_accuracy_tail"):
        assert float(m[name]) == 1.0
    assert float(small_metrics_j(model.init(None), ref, jax.random.key(0))["fact_accuracy"]) == 0.0  # all ties
    tail = GRAMMAR.entity_tokens()[GRAMMAR.buckets()["tail"]]
    probs = truth.probs.at[tail].set(model.init(None).probs[0])  # forget the tail facts (uniform rows)
    probs = probs.at[GRAMMAR.entity_tokens()[0], GRAMMAR.offset("VERB")].set(2.0)  # head entity 0 now wrong
    m = small_metrics_j(truth._replace(probs=probs), ref, jax.random.key(0))
    n_head = len(GRAMMAR.buckets()["head"])
    assert float(m["fact_accuracy_tail"]) == 0.0 and float(m["fact_accuracy_torso"]) == 1.0
    assert float(m["fact_accuracy_head"]) == pytest.approx((n_head - 1) / n_head, abs=1e-15)
    known = (GRAMMAR.num_entities - len(tail) - 1) / GRAMMAR.num_entities
    assert float(m["fact_accuracy"]) == pytest.approx(known, abs=1e-15)


def test_perplexity_exact():
    ref = grammar_sample_j(GRAMMAR, jax.random.key(9), 64)
    m = small_metrics_j(SMALL.true_params(), ref, jax.random.key(0))
    p = GRAMMAR.bigram_probs()
    x = np.asarray(ref)
    logs = [math.log(p[a, b]) for row in x for a, b in zip(row[:-1], row[1:], strict=True) if b != PAD]
    assert float(m["perplexity"]) == pytest.approx(math.exp(-np.mean(logs)), rel=1e-12)
    fact = GRAMMAR.class_of()[x[:, 1]] == 10
    logs_f = [math.log(p[a, b]) for row in x[fact] for a, b in zip(row[:-1], row[1:], strict=True) if b != PAD]
    assert float(m["perplexity_facts"]) == pytest.approx(math.exp(-np.mean(logs_f)), rel=1e-12)
    # hand example: P(3|BOS) = 3.5/4.5, P(EOS|3) = 1.5/4.5
    small = NGram(vocab_size=5, max_len=4, smoothing=0.5)
    params = fit_j(small, jnp.array([[BOS, 3, 4, EOS], [BOS, 3, EOS, PAD]]), jnp.array([2.0, 1.0]))
    ll, count = jax.jit(small.log_likelihood)(params, jnp.array([[BOS, 3, EOS, PAD]]))
    assert int(count[0]) == 2
    assert float(ll[0]) == pytest.approx(math.log(3.5 / 4.5) + math.log(1.5 / 4.5), rel=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# diversity metrics
# ---------------------------------------------------------------------------------------------------------------


def _rows(sentences, length=8):
    out = np.full((len(sentences), length), PAD, np.int32)
    for i, s in enumerate(sentences):
        row = [BOS] + list(s) + [EOS]
        out[i, : len(row)] = row
    return jnp.asarray(out)


def test_diversity_hand_examples():
    s = [[5, 6, 5], [7, 5]]
    assert dv.ttr_reference(s, 4) == 3 / 4 and dv.ttr_reference(s, 10) == 3 / 5
    assert float(ttr_j(_rows(s), 4, 10)) == 3 / 4
    assert float(ttr_j(_rows(s), 10, 10)) == 3 / 5
    s = [[5, 6, 5, 6], [5, 6]]
    assert dv.distinct_n_reference(s, 2) == 0.5 and dv.distinct_n_reference(s, 3) == 1.0
    assert float(distinct_j(_rows(s), 2, 10)) == 0.5 and float(distinct_j(_rows(s), 3, 10)) == 1.0
    # self-BLEU: A=[5,6,7], B=[5,6,8], C=[9,9]. BLEU(A) = BLEU(B) = (2/3 * 2/3 * 1/2)^(1/3); BLEU(C) = 0.
    s = [[5, 6, 7], [5, 6, 8], [9, 9]]
    expected = (2 / 3) * (2 / 9) ** (1 / 3)
    assert dv.self_bleu_reference(s) == pytest.approx(expected, rel=1e-14)
    assert float(self_bleu_j(_rows(s), 10)) == pytest.approx(expected, rel=1e-14)
    # brevity penalty exp(1 - r/c) with r = 4, c = 2; reference-length ties go to the shorter one (BP = 1)
    assert dv.bleu_reference([5, 6], [[5, 6, 7, 8]]) == pytest.approx(math.exp(-1.0), rel=1e-14)
    assert dv.bleu_reference([5, 6, 7], [[5, 6], [5, 9, 9, 9]]) == pytest.approx((2 / 9) ** (1 / 3), rel=1e-14)
    # BLEU of [5, 6]: p = (1, 1, 1), r = 4 -> exp(1 - 4/2); of [5, 6, 7, 8]: p = (2/4, 2/4, 1/3), r = 5 (closer
    # than 2) -> BP = exp(1 - 5/4); of [9, 9, 9, 9, 9]: no word in common -> 0
    s = [[5, 6], [5, 6, 7, 8], [9, 9, 9, 9, 9]]
    expected = (math.exp(-1.0) + math.exp(-0.25) * (0.5 * 0.5 / 3) ** (1 / 3)) / 3
    assert dv.self_bleu_reference(s) == pytest.approx(expected, rel=1e-14)
    assert float(self_bleu_j(_rows(s), 10)) == pytest.approx(expected, rel=1e-14)


def test_diversity_jax_matches_numpy_reference():
    params = fit_j(FIT_MODEL, _noisy_corpus(jax.random.key(4)), jnp.ones(NUM_FIT))
    x = sample_j(FIT_MODEL, jax.random.key(8), params, 500)[:40]
    words = dv.sentences_to_words(x)
    v = GRAMMAR.vocab_size
    assert float(ttr_j(x, 100, v)) == pytest.approx(dv.ttr_reference(words, 100), abs=1e-15)
    for n in (2, 3):
        assert float(distinct_j(x, n, v)) == pytest.approx(dv.distinct_n_reference(words, n), abs=1e-15)
    assert float(self_bleu_j(x, v)) == pytest.approx(dv.self_bleu_reference(words), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"vocab_size": 3}, "vocab_size"), ({"vocab_size": 4.0}, "vocab_size"), ({"order": 1}, "order"),
    ({"order": 4}, "order"), ({"smoothing": -0.1}, "smoothing"), ({"max_len": 1}, "max_len"),
    ({"vocab_size": 9000, "order": 3}, "vocab_size"), ({"bleu_samples": 300}, "bleu_samples"),
    ({"vocab_size": 50, "grammar": GRAMMAR}, "vocab_size"),
    ({"max_len": 8, "vocab_size": GRAMMAR.vocab_size, "grammar": GRAMMAR}, "max_len"),
])
def test_bad_model_inputs(kwargs, name):
    args = {"vocab_size": 20, "max_len": 10} | kwargs
    with pytest.raises(ValueError, match=name):
        NGram(**args)


@pytest.mark.parametrize("kwargs", [
    {"num_entities": 2}, {"num_entities": 201}, {"num_attributes": 1}, {"fact_fraction": 0.0},
    {"fact_fraction": 1.0}, {"entity_zipf": -1.0}, {"adjective_prob": 1.5}, {"num_verbs": 0},
    {"num_object_nouns": 13}, {"attribute_seed": -1},
])
def test_bad_grammar_inputs(kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=name):
        Grammar(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# in the engine
# ---------------------------------------------------------------------------------------------------------------


def test_simulate_with_a_fact_gate_smoke():
    model = NGram.for_grammar(GRAMMAR, smoothing=1e-4, num_metric_samples=64, bleu_samples=16, ttr_tokens=200)
    ref = grammar_sample_j(GRAMMAR, jax.random.key(1), 200)
    res = simulate(0, model, Gate(FreshFraction(0.5), FactCheck(GRAMMAR)), num_chains=4, num_generations=3,
                   num_samples=400, truth=model.true_params(), reference=ref, quantiles=(), trajectories=True)
    for name, values in res.trajectories.items():
        assert np.all(np.isfinite(values)), name
    traj = res.trajectories
    assert np.all(traj["grammaticality"] >= 0.95) and np.all(traj["fact_check_rate"] >= 0.95)
    assert np.all(np.abs(traj["fact_share"][0] - 0.4) < 0.1)
    probs = res.final_params.probs
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)


def test_simulate_without_a_reference_corpus_is_a_clear_error():
    """The metrics need a held-out corpus; ``simulate``'s default reference is the truth (an ``NGramParams``), which
    used to fail deep inside tracing with "'NGramParams' object has no attribute 'shape'"."""
    model = NGram.for_grammar(GRAMMAR, num_metric_samples=4, bleu_samples=2, ttr_tokens=10)
    with pytest.raises(ValueError, match="reference must be a held-out corpus"):
        simulate(0, model, Replace(), num_chains=2, num_generations=1, num_samples=10, truth=model.true_params())


def test_real_sentences_out_of_the_vocabulary_are_a_clear_error():
    """``real_data`` token ids must lie in [0, V): an id of V or more used to be clipped to V − 1 by JAX indexing
    inside the fit, counting a transition that is not in the data. A negative id, a fraction and a non-number
    are refused too; the corpus itself passes."""
    model = NGram.for_grammar(GRAMMAR, max_len=GRAMMAR.max_len, num_metric_samples=4, bleu_samples=2,
                              ttr_tokens=10)
    ref = np.asarray(grammar_sample_j(GRAMMAR, jax.random.key(1), 40))
    model.check_rows(ref)
    v = GRAMMAR.vocab_size
    for bad, shown in ((v, str(v)), (-1, "-1"), (1.5, "1.5")):
        rows = ref.astype(np.float64 if bad == 1.5 else ref.dtype).copy()
        rows[3, 1] = bad
        with pytest.raises(ValueError, match=rf"real_data holds token id {shown} at \(3, 1\): need whole numbers "
                                             rf"in \[0, {v}\) \(vocab_size={v}\)"):
            simulate(0, model, Replace(), num_chains=2, num_generations=1, num_samples=10, real_data=rows,
                     reference=ref)
    with pytest.raises(ValueError, match=r"real_data has dtype bool: need token ids \(integers in \[0, 115\)\)"):
        model.check_rows(ref > 0)
    with pytest.raises(ValueError, match="real_data has dtype complex128"):
        model.check_rows(ref + 0j)
    with pytest.raises(ValueError, match="real_data has dtype timedelta64"):  # an integer subtype in NumPy
        model.check_rows(ref.astype("timedelta64[s]"))
    bad_ref = ref.copy()
    bad_ref[0, 2] = v + 7  # the held-out corpus of the metrics is checked too
    with pytest.raises(ValueError, match=rf"reference holds token id {v + 7} at \(0, 2\)"):
        simulate(0, model, Replace(), num_chains=2, num_generations=1, num_samples=10, real_data=ref,
                 reference=bad_ref)


def test_real_sentences_in_any_integer_or_whole_float_dtype_run_as_int32():
    """Token arrays in another dtype than the model's int32 samples (uint8, whole-number floats, int64 under x64)
    are cast to int32 before the engine mixes them with samples (a ``lax.cond`` used to fail with "branches must
    have equal output types"); the run equals the int32 one."""
    model = NGram.for_grammar(GRAMMAR, max_len=GRAMMAR.max_len, num_metric_samples=4, bleu_samples=2,
                              ttr_tokens=10)
    ref = np.asarray(grammar_sample_j(GRAMMAR, jax.random.key(1), 40))

    def run(rows):
        res = simulate(0, model, Replace(), num_chains=2, num_generations=2, num_samples=10, real_data=rows,
                       reference=ref, quantiles=(), metrics=["perplexity"])
        return np.asarray(res.mean("perplexity"))

    want = run(ref.astype(np.int32))
    for rows in (ref.astype(np.uint8), ref.astype(np.float64)):
        np.testing.assert_array_equal(run(rows), want)
    with jax.enable_x64(True):
        res64 = simulate(0, model, Replace(), num_chains=2, num_generations=2, num_samples=10,
                         real_data=ref.astype(np.int64), reference=ref, quantiles=(), metrics=["perplexity"])
    assert np.all(np.isfinite(res64.mean("perplexity")))


@pytest.mark.slow
def test_replace_forgets_tail_facts_accumulate_keeps_them():
    """Replace loses tail facts (Zipfian entities drift to extinction); accumulate keeps (nearly) all of them."""
    model = NGram.for_grammar(GRAMMAR, smoothing=1e-4, num_metric_samples=64, bleu_samples=16, ttr_tokens=200)
    ref = grammar_sample_j(GRAMMAR, jax.random.key(1), 500)
    res = {type(r).__name__: simulate(3, model, r, num_chains=16, num_generations=12, num_samples=1000,
                                      truth=model.true_params(), reference=ref, quantiles=(), trajectories=True)
           for r in (Replace(), Accumulate())}
    rep = res["Replace"].trajectories["fact_accuracy_tail"]
    acc = res["Accumulate"].trajectories["fact_accuracy_tail"]
    diff = acc[-1] - rep[-1]  # same chains share generation 1 (same keys)
    z = diff.mean() / (diff.std(ddof=1) / math.sqrt(diff.size))
    print(f"Z [tail fact accuracy, accumulate - replace at t=12]: {diff.mean():.3f}, z={z:.1f}")
    assert z > 4
    np.testing.assert_array_equal(acc[-1] >= acc[0] - 0.2, True)
    assert np.all(res["Replace"].trajectories["grammaticality"][-1] > 0.9)  # fluency survives
