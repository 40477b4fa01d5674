"""The categorical model on the engine (float64): exact samplers, exact vs sample path, temperature, smoothing,
large K, collapse times, and input validation. Theory comparisons follow STYLE.md §2F (fixed seeds, |z| <= 4 from
the Monte-Carlo SE of bounded statistics, and a power check rejecting a wrong formula on the same data)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects, chain_mean_se, ks_two_sample

from collapse_theory import Accumulate, Replace, ReplaceGrown, simulate
from collapse_theory.models.categorical import (
    Categorical,
    CategoricalParams,
    CategoricalStats,
    collapse_time_summary,
    multinomial_tree,
    tempered_probs,
)
from collapse_theory.theory import categorical as th

NO_Q = ()


# ----------------------------------------------------------------------------------------------------------------
# exact samplers
# ----------------------------------------------------------------------------------------------------------------
def test_multinomial_tree_counts_are_exact_multinomial():
    """Counts sum to n (n traced), zero-mass categories get nothing, and the means/variances are n p, n p (1-p)."""
    p = np.array([0.3, 0.0, 0.2, 0.15, 0.0, 0.35, 0.0])
    chains, n = 8000, 13
    draw = jax.jit(jax.vmap(multinomial_tree, in_axes=(0, None, None)))
    counts = np.asarray(draw(jax.random.split(jax.random.key(1), chains), jnp.asarray(p), jnp.float64(n)))
    assert np.all(counts.sum(axis=1) == n) and np.all(counts[:, p == 0] == 0) and np.all(counts >= 0)
    assert np.all(counts == np.round(counts))
    for i in np.flatnonzero(p):
        mean, se = chain_mean_se(counts[:, i])
        assert_close_to_theory(mean, se, n * p[i], label=f"tree E c_{i}")
        var_se = np.sqrt(n * p[i] * (1 - p[i]) * 2 / chains) * 1.5  # generous SE of a variance (light tails)
        assert abs(counts[:, i].var() - n * p[i] * (1 - p[i])) < 4 * var_se
    # a traced n of another value reuses the compiled function
    other = np.asarray(draw(jax.random.split(jax.random.key(2), 4), jnp.asarray(p), jnp.float64(1000)))
    assert np.all(other.sum(axis=1) == 1000)


@pytest.mark.parametrize(
    "n, p, wrong",
    [
        (13.0, 0.3, (12.0, 0.3)),  # inversion (n q < 10); wrong law: n - 1 trials
        (1000.0, 0.004, (1000.0, 0.0045)),  # inversion with a small probability; wrong: p + 12 %
        (100_000.0, 0.3, (100_000.0, 0.3006)),  # BTRS; wrong law: p off by 0.2 %
        (400.0, 0.93, (399.0, 0.93)),  # p > 1/2: n minus a BTRS draw at 1 - p
        (60.0, 0.5, (60.0, 0.53)),  # BTRS at its smallest n q
    ],
)
def test_binomial_draws_follow_the_binomial_law(n, p, wrong):
    """Kolmogorov distance between 20000 draws of :func:`binomial` and the exact Binomial CDF (scipy) below the 1 %
    critical value 1.63/sqrt(N) (conservative for a discrete law); the same draws must reject a wrong law."""
    from scipy import stats

    from collapse_theory.models.categorical import binomial

    draws = 20_000
    x = np.asarray(jax.jit(binomial)(jax.random.key(7), jnp.full((draws,), n), jnp.full((draws,), p)))
    assert np.all(x == np.round(x)) and np.all((x >= 0) & (x <= n))
    support = np.arange(int(n) + 1)
    empirical = np.searchsorted(np.sort(x), support, side="right") / draws
    critical = 1.63 / np.sqrt(draws)
    distance = np.max(np.abs(empirical - stats.binom.cdf(support, n, p)))
    assert distance < critical, f"Binomial({n}, {p}): Kolmogorov distance {distance:.4f} >= {critical:.4f}"
    wrong_distance = np.max(np.abs(empirical - stats.binom.cdf(support, *wrong)))
    assert wrong_distance > critical, f"power: Binomial{wrong} not rejected ({wrong_distance:.4f})"
    assert float(binomial(jax.random.key(0), jnp.float64(0.0), jnp.float64(0.4))) == 0.0
    assert float(binomial(jax.random.key(0), jnp.float64(9.0), jnp.float64(1.0))) == 9.0


@pytest.mark.parametrize("sampler", ["inverse-cdf", "spacings"])
def test_capped_samplers_and_tree_fallback_are_exact(sampler):
    """max_samples: n <= cap uses the capped sampler (inverse CDF or sorted-uniform spacings); n > cap falls back
    to the binomial tree; all give exact multinomial counts."""
    model = Categorical(6, max_samples=8, exact_sampler=sampler)
    truth = model.params(th.zipf_probs(6, 1.0))
    keys = jax.random.split(jax.random.key(3), 20000)
    for n in (5, 8, 30):  # below, at and above the cap
        stats = jax.jit(jax.vmap(model.sample_stats, in_axes=(0, None, None)))(keys, truth, n)
        counts = np.asarray(stats.counts)
        assert np.all(counts.sum(axis=1) == n)
        mean, se = chain_mean_se(counts[:, 0])
        assert_close_to_theory(mean, se, n * float(truth.probs[0]), label=f"{sampler} n={n}")
        mean, se = chain_mean_se(counts[:, -1])
        assert_close_to_theory(mean, se, n * float(truth.probs[-1]), label=f"{sampler} n={n}, last")


def test_auto_sampler_choice():
    assert Categorical(10).sampler == "tree"
    assert Categorical(10, max_samples=1000).sampler == "tree"
    assert Categorical(10, max_samples=100).sampler == "spacings"
    assert Categorical(1000, max_samples=100).sampler == "inverse-cdf"
    with pytest.raises(ValueError, match="needs max_samples"):
        Categorical(10, exact_sampler="spacings")
    with pytest.raises(ValueError, match="exact_sampler='fast'"):
        Categorical(10, max_samples=5, exact_sampler="fast")


def test_fit_weights_equal_repeated_rows_and_smoothing():
    model = Categorical(4, smoothing=0.5)
    data = jnp.array([0, 2, 2, 3, 1], jnp.int32)
    weights = jnp.array([2.0, 1.0, 0.0, 1.0, 3.0])
    fitted = model.fit(None, data, weights)
    repeated = model.fit(None, jnp.array([0, 0, 2, 3, 1, 1, 1], jnp.int32), jnp.ones(7))
    np.testing.assert_allclose(fitted.probs, repeated.probs, rtol=1e-15)
    np.testing.assert_allclose(fitted.probs, (np.array([2, 3, 1, 1]) + 0.5) / (7 + 4 * 0.5), rtol=1e-15)
    assert float(fitted.tempered) == 1.0 and float(model.params().tempered) == 0.0
    pooled = model.combine_stats(CategoricalStats(jnp.array([1.0, 0, 2, 0])),
                                 CategoricalStats(jnp.array([0, 3.0, 0, 1])))
    np.testing.assert_allclose(pooled.counts, [1, 3, 2, 1])


# ----------------------------------------------------------------------------------------------------------------
# theory through the engine (exact and sample path)
# ----------------------------------------------------------------------------------------------------------------
K, M, G = 6, 5, 8
P0 = th.zipf_probs(K, 1.0)


@pytest.fixture(scope="module")
def replace_runs():
    model = Categorical(K, max_samples=M)
    truth = model.params(P0)
    common = dict(num_chains=8192, num_generations=G, num_samples=M, truth=truth, quantiles=NO_Q,
                  metrics=["heterozygosity", "surviving", "lost_mass", "entropy", "tv"], trajectories=True)
    return {path: simulate(11, model, Replace(), path=path, **common) for path in ("exact", "sample")}


@pytest.mark.parametrize("path", ["exact", "sample"])
def test_replace_heterozygosity_and_survival(replace_runs, path):
    res = replace_runs[path]
    h0 = th.heterozygosity(P0)
    for t in (3, G):
        h, se = res.mean("heterozygosity")[t - 1], res.se("heterozygosity")[t - 1]
        assert_close_to_theory(h, se, th.expected_heterozygosity(t, M, h0), label=f"{path} H_{t}")
        s, se_s = res.mean("surviving")[t - 1], res.se("surviving")[t - 1]
        assert_close_to_theory(s, se_s, th.expected_surviving(t, M, P0), label=f"{path} survivors t={t}")
    assert_rejects(res.mean("heterozygosity")[G - 1], res.se("heterozygosity")[G - 1],
                   th.expected_heterozygosity(G, M - 1, h0), label=f"{path} H with M-1")
    assert_rejects(res.mean("surviving")[2], res.se("surviving")[2], th.expected_surviving(2, M, P0),
                   label=f"{path} survivors t-1")


def test_exact_and_sample_paths_agree_in_distribution(replace_runs):
    for metric in ("entropy", "tv"):
        a = replace_runs["exact"].trajectories[metric][G - 1]
        b = replace_runs["sample"].trajectories[metric][G - 1]
        ks_two_sample(a, b, label=f"{metric} at t={G}, exact vs sample")


def test_accumulate_exact_vs_sample_and_theory():
    model = Categorical(K, max_samples=M)
    truth = model.params(P0)
    h0 = th.heterozygosity(P0)
    for path, chains in (("exact", 8192), ("sample", 4096)):
        res = simulate(12, model, Accumulate(), num_chains=chains, num_generations=G, num_samples=M, truth=truth,
                       path=path, metrics=["heterozygosity", "zero_count"], quantiles=NO_Q)
        h, se = res.mean("heterozygosity")[-1], res.se("heterozygosity")[-1]
        assert_close_to_theory(h, se, th.expected_heterozygosity(G, M, h0, "accumulate"), label=f"acc {path}")
        assert_rejects(h, se, th.expected_heterozygosity(G, M, h0), label=f"acc {path} vs replace law")
        # support is never lost after the first fit
        np.testing.assert_allclose(res.mean("zero_count"), res.mean("zero_count")[0], rtol=1e-12)


def test_replace_grown_uses_the_tree_fallback_and_matches_theory():
    """ReplaceGrown draws the pool size tM > max_samples = M (binomial-tree fallback): E H_t = H_0 Π (1 − 1/(kM))."""
    model = Categorical(K, max_samples=M)
    res = simulate(13, model, ReplaceGrown(), num_chains=8192, num_generations=4, num_samples=M,
                   truth=model.params(P0), path="exact", metrics=["heterozygosity"], quantiles=NO_Q)
    h0 = th.heterozygosity(P0)
    theory = h0 * np.prod(1 - 1 / (M * np.arange(1, 5)))
    assert_close_to_theory(res.mean("heterozygosity")[-1], res.se("heterozygosity")[-1], theory, label="grown")
    assert_rejects(res.mean("heterozygosity")[-1], res.se("heterozygosity")[-1],
                   th.expected_heterozygosity(4, M, h0), label="grown vs constant-M replace")


def test_engine_drops_the_tree_fallback_only_when_no_draw_needs_it():
    """``simulate`` specialises a capped Categorical to the regime's largest exact draw: without the binomial-tree
    fallback when every draw fits ``max_samples`` (Replace, FreshFraction), with it when the pool is drawn
    (ReplaceGrown). The capped sampler gives the same counts either way; a user's ``tree_fallback=False`` that a
    run would overflow raises instead of silently truncating draws."""
    from collapse_theory import FreshFraction

    model = Categorical(K, max_samples=M)
    sizes = np.full(4, M)
    assert model.specialise(Replace().max_exact_draw(sizes)).tree_fallback is False
    assert model.specialise(FreshFraction(0.5).max_exact_draw(sizes)).tree_fallback is False
    assert model.specialise(ReplaceGrown().max_exact_draw(sizes)) is model  # draws 4M > max_samples
    assert Categorical(K).specialise(M) == Categorical(K)  # the tree sampler has no fallback to drop
    lean = dataclasses.replace(model, tree_fallback=False)
    keys = jax.random.split(jax.random.key(4), 256)
    q = model.params(P0)
    for n in (1, M // 2, M):
        full = jax.vmap(lambda k, n=n: model.sample_stats(k, q, n).counts)(keys)
        np.testing.assert_array_equal(jax.vmap(lambda k, n=n: lean.sample_stats(k, q, n).counts)(keys), full)
    with pytest.raises(ValueError, match="tree_fallback=False"):
        simulate(0, lean, ReplaceGrown(), num_chains=4, num_generations=3, num_samples=M, truth=q, path="exact")
    with pytest.raises(ValueError, match="tree_fallback"):
        Categorical(K, tree_fallback=1)


def test_collapse_time_from_the_fraction_collapsed():
    """Kazdan's stopping rule (entropy < 1e-8) as the fraction of collapsed chains: its mean collapse time matches
    the exact fixation-time moments (uniform K = 4, M = 5)."""
    model = Categorical(4, max_samples=5)
    res = simulate(14, model, Replace(), num_chains=8192, num_generations=120, num_samples=5, path="exact",
                   metrics=["collapsed", "fixed"], quantiles=NO_Q)
    np.testing.assert_array_equal(res.mean("collapsed"), res.mean("fixed"))
    summary = collapse_time_summary(res.mean("collapsed"))
    assert summary["censored"] == 0.0
    mean, var = th.fixation_time_moments(5, np.full(4, 0.25))
    se = np.sqrt(var / res.num_chains)
    assert_close_to_theory(summary["mean"], se, mean, label="collapse time")
    assert_rejects(summary["mean"], se, th.expected_fixation_time_diffusion(5, np.full(4, 0.25)),
                   label="collapse time vs Littler's diffusion approximation")
    assert collapse_time_summary([0.0, 0.5, 1.0]) == {"mean": 2.5, "median": 2, "censored": 0.0, "generations": 3}


# ----------------------------------------------------------------------------------------------------------------
# temperature
# ----------------------------------------------------------------------------------------------------------------
def test_temperature_one_reproduces_the_untempered_chain():
    p = jnp.asarray(P0)
    np.testing.assert_allclose(tempered_probs(p, 1.0), p, rtol=1e-15)
    fitted = CategoricalParams(p, jnp.ones(()))
    assert Categorical(K).sampling_probs(fitted) is p  # tau = 1 takes the untempered code path itself
    common = dict(num_chains=256, num_generations=6, num_samples=M, path="exact", metrics=["entropy", "surviving"],
                  quantiles=NO_Q, trajectories=True)
    plain = simulate(5, Categorical(K, max_samples=M), Replace(), truth=Categorical(K).params(P0), **common)
    near = simulate(5, Categorical(K, temperature=1.0 + 1e-12, max_samples=M), Replace(),
                    truth=Categorical(K).params(P0), **common)
    # the general tempered formula at tau -> 1 draws exactly the same counts
    np.testing.assert_array_equal(plain.trajectories["surviving"], near.trajectories["surviving"])
    np.testing.assert_allclose(plain.trajectories["entropy"], near.trajectories["entropy"], rtol=1e-9)


def test_tempered_one_step_law_and_untempered_truth():
    """A fitted model samples Multinomial(M, p^(1/τ)/Σ); the truth (tempered=0) is sampled as is."""
    model = Categorical(K, temperature=0.5, max_samples=40)
    q = np.asarray(P0) ** 2 / np.sum(np.asarray(P0) ** 2)
    keys = jax.random.split(jax.random.key(9), 20000)
    for flag, target, wrong in ((1.0, q, P0), (0.0, P0, q)):
        params = CategoricalParams(jnp.asarray(P0), jnp.asarray(flag))
        counts = np.asarray(jax.jit(jax.vmap(model.sample_stats, in_axes=(0, None, None)))(keys, params, 40).counts)
        mean, se = chain_mean_se(counts[:, -1])
        assert_close_to_theory(mean, se, 40 * target[-1], label=f"tempered={flag}")
        assert_rejects(mean, se, 40 * wrong[-1], label=f"tempered={flag} wrong law")
        idx = np.asarray(jax.jit(jax.vmap(model.sample, in_axes=(0, None, None), out_axes=0),
                                 static_argnums=2)(keys[:2000], params, 40))
        mean, se = chain_mean_se((idx == K - 1).sum(axis=1))
        assert_close_to_theory(mean, se, 40 * target[-1], label=f"sample path tempered={flag}")


def test_lower_temperature_loses_the_tail_faster():
    """Zipf(1.2), K = 40, M = 40: survivors and tail mass after 6 fits are lower at τ = 0.6 than at τ = 1 (|z| > 4),
    and the first fit (on real, untempered data) is identical for both."""
    truth_p = th.zipf_probs(40, 1.2)
    out = {}
    for tau in (0.6, 1.0):
        model = Categorical(40, temperature=tau, max_samples=40)
        out[tau] = simulate(21, model, Replace(), num_chains=2048, num_generations=6, num_samples=40,
                            truth=model.params(truth_p), path="exact", metrics=["surviving", "tail_mass"],
                            quantiles=NO_Q, trajectories=True)
    for metric in ("surviving", "tail_mass"):
        np.testing.assert_array_equal(out[0.6].trajectories[metric][0], out[1.0].trajectories[metric][0])
        for lo, hi in ((0.6, 1.0),):
            a, b = out[lo].trajectories[metric][-1], out[hi].trajectories[metric][-1]
            diff = b.mean() - a.mean()
            se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
            print(f"Z [{metric} tau {hi} - tau {lo}]: {diff / se:+.1f}")
            assert diff / se > 4


# ----------------------------------------------------------------------------------------------------------------
# scale, precision, validation
# ----------------------------------------------------------------------------------------------------------------
def test_large_k_and_m_run_on_the_sample_path():
    """K = M = 10^5 (the largest Kazdan cell): a few generations on the sample path, exact count bookkeeping."""
    model = Categorical(100_000)
    res = simulate(0, model, Replace(), num_chains=2, num_generations=3, num_samples=100_000, path="sample",
                   metrics=["surviving", "zero_count", "entropy", "lost_mass"], quantiles=NO_Q, trajectories=True)
    surv = res.trajectories["surviving"]
    assert np.all(surv + res.trajectories["zero_count"] == 100_000)
    # first fit of M = K uniform draws: about K(1 - (1 - 1/K)^M) = 63 212 categories survive
    assert abs(surv[0].mean() - th.expected_surviving(1, 100, np.full(100, 0.01)) * 1000) < 1000
    assert np.all(np.diff(surv, axis=0) <= 0) and np.all(np.isfinite(res.trajectories["entropy"]))
    probs = np.asarray(res.final_params.probs)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probs * 100_000, np.round(probs * 100_000), atol=1e-6)


@pytest.mark.slow
def test_large_k_exact_path_binomial_tree():
    model = Categorical(100_000)
    res = simulate(0, model, Replace(), num_chains=2, num_generations=2, num_samples=100_000, path="exact",
                   metrics=["surviving", "zero_count"], quantiles=NO_Q)
    assert 60_000 < res.mean("surviving")[0] < 66_000


def test_float32_smoke():
    with jax.enable_x64(False):
        model = Categorical(50, temperature=0.8)
        res = simulate(0, model, Replace(), num_chains=64, num_generations=30, num_samples=20,
                       truth=model.zipf(1.1), path="sample", metrics=["entropy", "heterozygosity"], quantiles=NO_Q)
    assert res.final_params.probs.dtype == np.float32
    assert np.all(np.isfinite(res.mean("entropy"))) and res.mean("heterozygosity")[-1] < res.mean("heterozygosity")[0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Categorical(1), "num_categories=1"),
        (lambda: Categorical(10, temperature=0.0), "temperature=0.0"),
        (lambda: Categorical(10, temperature=-1.0), "temperature=-1.0"),
        (lambda: Categorical(10, temperature=float("nan")), "temperature=nan"),
        (lambda: Categorical(10, smoothing=-0.1), "smoothing=-0.1"),
        (lambda: Categorical(10, head_size=10), "head_size=10"),
        (lambda: Categorical(10, max_samples=0), "max_samples=0"),
        (lambda: Categorical(3).params([0.5, 0.3, 0.1]), "sums to 0.9"),
        (lambda: Categorical(3).params([0.5, 0.6, -0.1]), "negative"),
        (lambda: Categorical(3).params([0.5, 0.5]), "shape"),
        (lambda: Categorical(3).zipf(-1.0), "beta=-1.0"),
        (lambda: Categorical(3).dirichlet(0, 0.0), "concentration=0.0"),
    ],
)
def test_bad_inputs_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_zero_samples_is_rejected_by_the_engine():
    with pytest.raises(ValueError, match="num_samples=0"):
        simulate(0, Categorical(5), num_chains=2, num_generations=2, num_samples=0, path="exact")


def test_a_training_set_of_total_weight_zero_keeps_the_previous_model():
    """A gate that rejects every row leaves total weight 0: without smoothing the fit was 0/0 (NaN probabilities for
    good). The previous model is kept, as the other families keep theirs; with smoothing the fit is the uniform law."""
    model = Categorical(4)
    previous = model.fit(None, jnp.array([0, 1, 1, 3]), jnp.ones(4), None)
    kept = model.fit(None, jnp.array([0, 1, 1, 3]), jnp.zeros(4), previous)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(previous), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    smoothed = Categorical(4, smoothing=1.0)
    uniform = smoothed.fit(None, jnp.array([0, 1, 1, 3]), jnp.zeros(4), previous)
    np.testing.assert_allclose(np.asarray(uniform.probs), 0.25)


def test_real_data_outside_the_categories_is_a_clear_error():
    """``real_data`` category indices must lie in [0, K): an index of K or more, a negative one or a fraction used
    to reach the fit, where JAX indexing drops or clips it silently. Valid indices in another integer dtype run."""
    model = Categorical(5)
    rows = np.arange(40) % 5
    ref = model.params(np.full(5, 0.2))
    simulate(0, model, Replace(), num_chains=2, num_generations=2, num_samples=10, path="sample",
             real_data=rows.astype(np.uint8), reference=ref, quantiles=())
    for bad, shown in ((5, "5"), (-1, "-1"), (2.5, "2.5")):
        data = rows.astype(np.float64 if bad == 2.5 else np.int64)
        data[7] = bad
        with pytest.raises(ValueError, match=rf"real_data holds category index {shown} at \(7,\): need whole "
                                             rf"numbers in \[0, 5\) \(num_categories=5\)"):
            simulate(0, model, Replace(), num_chains=2, num_generations=2, num_samples=10, path="sample",
                     real_data=data, reference=ref, quantiles=())
