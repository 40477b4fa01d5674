"""Variational autoencoders trained inside the engine (collapse_theory.models.vae) and the classifier that measures
and gates them (collapse_theory.models.classifier).

Deterministic identities (gradient steps lower the loss; the linear-Gaussian VAE's ELBO bounds its exact marginal
likelihood and its optimum is the Gaussian MLE / probabilistic PCA; frequency weights equal repeated rows; vmapped
training equals per-chain training; zero total weight, the generation-0 anchor and the warm start), every regime
through the engine with finite, mutually consistent metrics, chains independent of the chain count, the linear-VAE
chain against the Gaussian family's theory (THEORY.md §2.2) with a power check, the Fréchet distance against scipy,
the classifier's accuracy, and bad inputs.

Sizes are tiny (8×8 images, hidden (16,), 20-step generations): the file's run time is its XLA compiles, so the
compiled programs are shared through :func:`_jitted` and the module-scoped engine runs.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import assert_close_to_theory, assert_rejects

import collapse_theory as ct
from collapse_theory.images import Shapes, load_mnist
from collapse_theory.keys import FIT, INIT, SAMPLE, derive_key, root_key
from collapse_theory.models import classifier as clf_mod
from collapse_theory.models.classifier import Classifier, Confident, accuracy
from collapse_theory.models.vae import VAE, VAEReference, frechet_distance, make_reference
from collapse_theory.simulate import FAST_COMPILE
from collapse_theory.theory import gaussian as gth

# ----------------------------------------------------------------------------------------------------------------
# Shared data, models and compiled programs
# ----------------------------------------------------------------------------------------------------------------

MLP = VAE(image_shape=(8, 8), latent_dim=2, hidden=(16,), steps=20, batch_size=32, learning_rate=1e-2,
          num_eval_samples=32)
"""The engine's model (minibatch Adam, Bernoulli likelihood) and the model of the fit-level identity tests."""
LINEAR = VAE(image_shape=(3,), latent_dim=2, architecture="linear", likelihood="gaussian", steps=200,
             batch_size=None, learning_rate=0.05)
"""A deterministic full-batch linear-Gaussian VAE (the frequency-weight identities)."""
COMPILE = dict(FAST_COMPILE)
"""XLA options of every compiled program here (the package's ``FAST_COMPILE``; the programs are tiny, so slower code
costs nothing). Not for the conv VAE, whose less optimised convolutions run slowly."""
REAL_ROWS = 100
"""Real rows given to the engine: >= M = 64, but < M·G = 128, the rows ReplaceGrown draws at t = 1 (only the first
M carry weight and must be distinct)."""
REGIMES = ("replace", "accumulate", "accumulate-subsample", "replace-grown", "fresh-fraction", "gate")


@functools.lru_cache(maxsize=None)
def _shapes():
    """600 Shapes images (8×8, default class probabilities) split into 400 train and 200 test rows."""
    return Shapes(size=8).generate(600, seed=0).split(200, seed=1)


def _batch(n=64, start=0):
    return jnp.asarray(_shapes()[0].images[start:start + n])


@functools.lru_cache(maxsize=None)
def _jitted(model, method: str):
    """One jitted wrapper per (model, method), so every test with the same shapes reuses one compiled program."""
    return jax.jit(getattr(model, method), compiler_options=None if model.architecture == "conv" else COMPILE)


def _gaussian_rows(n=40, seed=0):
    """n rows of a correlated 3-d Gaussian with distinct covariance eigenvalues (about 1.74, 0.29, 0.08)."""
    a = np.array([[1.0, 0.0, 0.0], [0.5, 0.7, 0.0], [-0.3, 0.2, 0.4]])
    z = np.random.default_rng(seed).normal(size=(n, 3))
    return jnp.asarray(z @ a.T + np.array([1.0, -2.0, 0.5]))


def _max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def classifier():
    """The instrument: Classifier(hidden=16, steps=200) trained once on the 400 real train rows."""
    train, _ = _shapes()
    return Classifier(hidden=16, steps=200).train(0, train.images, train.labels, train.num_classes)


@pytest.fixture(scope="module")
def reference(classifier):
    """make_reference of the 200 real test rows with the instrument; rare classes 4 and 5 (plus, ring)."""
    _, test = _shapes()
    return make_reference(test.images, classifier, rare_classes=test.rare_classes(0.1))


@pytest.fixture(scope="module")
def engine(classifier, reference):
    """``run(regime, num_chains=2, chain_offset=0)``: the MLP VAE through the engine, 2 generations of M = 64 from
    REAL_ROWS real train rows, every metric, per-chain trajectories; cached, one compiled program per (regime, chain
    count)."""
    gate = Confident(classifier, 0.5)  # one instance: its weights are constants of the compiled program
    factories = {"replace": ct.Replace, "accumulate": ct.Accumulate, "accumulate-subsample": ct.AccumulateSubsample,
                 "replace-grown": ct.ReplaceGrown, "fresh-fraction": lambda: ct.FreshFraction(0.5),
                 "gate": lambda: ct.Gate(ct.Replace(), gate, retries=1)}
    cache = {}

    def run(name, num_chains=2, chain_offset=0):
        key = (name, num_chains, chain_offset)
        if key not in cache:
            cache[key] = ct.simulate(
                7, MLP, factories[name](), num_chains=num_chains, num_generations=2, num_samples=64,
                real_data=_shapes()[0].images[:REAL_ROWS], reference=reference, quantiles=(), trajectories=True,
                chain_offset=chain_offset, compiler_options=COMPILE)
        return cache[key]

    return run


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["mlp", "conv", "linear"])
def test_gradient_steps_reduce_the_loss_on_a_fixed_batch(architecture):
    """Adam on one fixed batch of Shapes images lowers the β-ELBO loss well below its first step (a sign error, a
    wrong loss or a gradient that misses the decoder/encoder would not)."""
    likelihood = "gaussian" if architecture == "linear" else "bernoulli"
    model = VAE(image_shape=(8, 8), latent_dim=2, hidden=(16,), architecture=architecture, likelihood=likelihood,
                steps=60, batch_size=None, learning_rate=1e-2)
    net = model.init_net(jax.random.key(0))
    _, _, losses = _jitted(model, "train")(jax.random.key(1), _batch(), jnp.ones(64), net,
                                           model._optimizer().init(net))
    losses = np.asarray(losses)
    assert losses.shape == (60,) and np.all(np.isfinite(losses))
    tail = losses[-6:].mean()
    print(f"{architecture}: first loss {losses[0]:.4g}, last 10 % {tail:.4g}")
    assert tail < 0.7 * losses[0]


def test_elbo_bounds_the_exact_log_likelihood_for_random_networks():
    """Linear-Gaussian VAE: -neg_elbo <= log p(x) row by row for random networks, with a real gap (a KL of the wrong
    sign or a missing variance term in the closed-form expectation breaks the bound); the ELBO is deterministic."""
    model = VAE(image_shape=(3,), latent_dim=3, architecture="linear", likelihood="gaussian", batch_size=None,
                schedule="cosine", sample_mode="sample")
    x = _gaussian_rows()
    neg_elbo, log_lik = _jitted(model, "neg_elbo"), _jitted(model, "marginal_log_likelihood")
    for seed in range(4):
        net = model.init_net(jax.random.key(seed))
        net["log_obs_sd"] = jnp.asarray(0.3 * seed - 0.5)
        net["enc"]["log_var"] = jax.random.normal(jax.random.key(100 + seed), (3,))
        elbo = -np.asarray(neg_elbo(net, x, jax.random.key(1)))
        np.testing.assert_array_equal(elbo, -np.asarray(neg_elbo(net, x, jax.random.key(2))))
        log_p = np.asarray(log_lik(net, x))
        assert elbo.shape == log_p.shape == (40,)
        assert np.all(elbo <= log_p + 1e-10), f"ELBO above log p(x) by {np.max(elbo - log_p):.3g}"
        assert np.mean(log_p - elbo) > 1e-3  # a random encoder is not the posterior


def test_marginal_log_likelihood_is_the_gaussian_density_of_the_moments():
    """marginal_log_likelihood equals scipy's N(b, WᵀW + σ²I) log-density (catches a transposed W or a wrong σ)."""
    from scipy.stats import multivariate_normal

    model = VAE(image_shape=(3,), latent_dim=2, architecture="linear", likelihood="gaussian")
    net = model.init_net(jax.random.key(3))
    net["dec"]["b"] = jnp.asarray([0.5, -1.0, 2.0])
    net["log_obs_sd"] = jnp.asarray(-0.4)
    w = np.asarray(net["dec"]["w"])
    cov = w.T @ w + math.exp(-0.8) * np.eye(3)
    mean, got_cov = model.gaussian_moments(net)
    np.testing.assert_allclose(got_cov, cov, rtol=1e-12)
    x = _gaussian_rows(10)
    want = multivariate_normal(np.asarray(mean), cov).logpdf(np.asarray(x))
    np.testing.assert_allclose(_jitted(model, "marginal_log_likelihood")(net, x), want, rtol=1e-10)


def test_trained_full_rank_linear_vae_is_the_gaussian_mle():
    """latent_dim = d: after training the ELBO gap is ~0 and the law N(b, WᵀW + σ²I) is the MLE N(x̄, S), S with
    ddof 0 (a ddof-1 covariance, a biased gradient or a loss that is not the ELBO would miss it).

    1500 cosine steps at 0.05 leave the fit 4e-4 from the MLE (slow flat directions of the L = d optimum);
    3000 steps reach it to ~1e-9."""
    model = VAE(image_shape=(3,), latent_dim=3, architecture="linear", likelihood="gaussian", batch_size=None,
                schedule="cosine", sample_mode="sample", steps=3000, learning_rate=0.05)
    x = _gaussian_rows()
    fit = _jitted(model, "fit")(jax.random.key(2), x, jnp.ones(40), model.init(jax.random.key(0)))
    gap = model.marginal_log_likelihood(fit.net, x) + model.neg_elbo(fit.net, x, jax.random.key(0))
    assert float(jnp.mean(gap)) < 1e-4 and float(jnp.min(gap)) > -1e-9
    mean, cov = model.gaussian_moments(fit.net)
    xs = np.asarray(x)
    np.testing.assert_allclose(mean, xs.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(cov, np.cov(xs, rowvar=False, ddof=0), atol=1e-5)
    assert np.max(np.abs(np.asarray(cov) - np.cov(xs, rowvar=False, ddof=1))) > 1e-2  # power: ddof 1 differs
    assert float(fit.train_loss) == pytest.approx(-float(jnp.mean(model.marginal_log_likelihood(fit.net, x))),
                                                  abs=1e-6)


@pytest.mark.parametrize("scale", [0.03, 3.0])
def test_linear_vae_reaches_the_mle_at_any_data_scale(scale):
    """The check's linear VAE (1000 cosine steps at 0.1 from a unit-scale init) reached the MLE only for data of
    scale ~1: at scale 0.03 its log det was 0.25 above the MLE's on average (1.3 at worst), a bias against
    collapse in the very regime a collapsing chain enters. It trains in standardised coordinates now, an exact
    reparametrisation: log det within 1e-4 of the ddof-0 MLE's on average (2e-3 at worst; measured 3e-6 and 5e-4 at
    every scale) and the mean within 1e-3·scale, at scales 0.03 and 3, 64 data sets of M = 10 rows in d = 2."""
    from collapse_theory.checks.vae import linear_vae

    model = linear_vae()
    start = model.init(jax.random.key(0))
    xs = scale * jax.random.normal(jax.random.key(3), (64, 10, 2)) + jnp.array([[[1.0, -0.5]]])

    @jax.jit
    def moments(keys, xs):
        def one(k, x):
            return model.gaussian_moments(model.fit(k, x, jnp.ones(10), start).net)
        return jax.vmap(one)(keys, xs)

    mean, cov = moments(jax.random.split(jax.random.key(1), 64), xs)
    x = np.asarray(xs, np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    mle = np.einsum("cni,cnj->cij", centred, centred) / 10
    gap = np.linalg.slogdet(np.asarray(cov, np.float64))[1] - np.linalg.slogdet(mle)[1]
    assert np.mean(np.abs(gap)) < 1e-4 and np.max(np.abs(gap)) < 2e-3, (scale, gap.mean(), np.abs(gap).max())
    np.testing.assert_allclose(np.asarray(mean), x.mean(axis=1), atol=1e-3 * scale)


def test_trained_rank_one_linear_vae_is_probabilistic_pca():
    """latent_dim 1 < d = 3: the fit is Tipping & Bishop's closed form, σ² = mean of the discarded eigenvalues of S
    and WᵀW = U_1(λ_1 − σ²)U_1ᵀ, with a zero ELBO gap (a diagonal encoder attains the bound here)."""
    model = VAE(image_shape=(3,), latent_dim=1, architecture="linear", likelihood="gaussian", batch_size=None,
                schedule="cosine", sample_mode="sample", steps=1500, learning_rate=0.05)
    x = _gaussian_rows()
    fit = _jitted(model, "fit")(jax.random.key(2), x, jnp.ones(40), model.init(jax.random.key(0)))
    s = np.cov(np.asarray(x), rowvar=False, ddof=0)
    lam, u = np.linalg.eigh(s)
    lam, u = lam[::-1], u[:, ::-1]
    sigma2 = lam[1:].mean()
    w = np.asarray(fit.net["dec"]["w"])
    assert float(jnp.exp(2 * fit.net["log_obs_sd"])) == pytest.approx(sigma2, rel=1e-4)
    np.testing.assert_allclose(w.T @ w, (lam[0] - sigma2) * np.outer(u[:, 0], u[:, 0]), atol=1e-4)
    mean, cov = model.gaussian_moments(fit.net)
    np.testing.assert_allclose(mean, np.asarray(x).mean(axis=0), atol=1e-4)
    assert np.max(np.abs(np.asarray(cov) - s)) > 1e-2  # power: rank 1 + noise is not the full MLE
    gap = model.marginal_log_likelihood(fit.net, x) + model.neg_elbo(fit.net, x, jax.random.key(0))
    assert float(jnp.max(jnp.abs(gap))) < 1e-4


def test_vmapped_fit_equals_per_chain_fits():
    """jax.vmap(fit) over 3 (key, dataset, weights) equals 3 separate fits, here for weighted minibatches (each chain
    its own inverse-CDF row sampler); a key or a batch shared across the vmapped axis, or a reduction over it, would
    not. The engine test below checks the same for the MLP inside simulate."""
    model = dataclasses.replace(LINEAR, batch_size=4)
    keys = jax.random.split(jax.random.key(5), 3)
    data = jnp.stack([_gaussian_rows(12, seed=c) for c in range(3)])
    weights = jax.random.randint(jax.random.key(6), (3, 12), 0, 3).astype(data.dtype)
    start = model.init(jax.random.key(0))
    vmapped = jax.jit(jax.vmap(model.fit, in_axes=(0, 0, 0, None)), compiler_options=COMPILE)
    batched = vmapped(keys, data, weights, start)
    for c in range(3):
        single = _jitted(model, "fit")(keys[c], data[c], weights[c], start)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(np.asarray(a)[c], np.asarray(b), rtol=1e-6, atol=1e-9)
    assert _max_abs_diff(jax.tree.map(lambda a: a[0], batched.net), jax.tree.map(lambda a: a[1], batched.net)) > 0.1


@pytest.mark.parametrize("batch_size", [None, 4])
def test_frequency_weights_equal_repeated_rows(batch_size):
    """Weights (2, 1, 0, 3, ...) equal the rows repeated; weight-0 rows (here absurd, 1e3) are absent. Full batch:
    the weighted mean loss; minibatch: rows drawn with probability w_i / Σw (a searchsorted off by one, or the
    clamp to the last positive row, would draw a 1e3 row and wreck the fit)."""
    model = dataclasses.replace(LINEAR, batch_size=batch_size)
    x = np.asarray(_gaussian_rows(12, seed=1))
    counts = np.array([0, 2, 1, 0, 3, 1, 0, 2, 1, 1, 2, 0])  # zero weight first, inside and last
    junk = np.where((counts == 0)[:, None], 1e3, x)
    start = model.init(jax.random.key(0))
    weighted = _jitted(model, "fit")(jax.random.key(1), jnp.asarray(junk), jnp.asarray(counts, jnp.float64), start)
    rows = np.repeat(x, counts, axis=0)
    repeated = _jitted(model, "fit")(jax.random.key(1), jnp.asarray(rows), jnp.ones(len(rows)), start)
    for a, b in zip(jax.tree.leaves(weighted.net), jax.tree.leaves(repeated.net), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    mean, _ = model.gaussian_moments(weighted.net)
    assert np.all(np.abs(np.asarray(mean)) < 5)  # nowhere near the 1e3 rows


@pytest.mark.parametrize("model", [MLP, LINEAR], ids=["mlp-minibatch", "linear-full-batch"])
def test_zero_total_weight_keeps_the_previous_model(model):
    """A training set of total weight 0 (a gate rejected every row) returns the previous params unchanged, before
    and after the anchor is set (the full-batch loss is 0/0 there: a NaN must not leak into the model)."""
    x = _batch() if model.dim == 64 else _gaussian_rows(64)
    fit = _jitted(model, "fit")
    start = model.init(jax.random.key(0))
    first = fit(jax.random.key(1), x, jnp.ones(64), start)
    for previous in (start, first):
        again = fit(jax.random.key(2), x, jnp.zeros(64), previous)
        _assert_trees_equal(again, previous)
    assert float(first.anchored) == 1.0 and float(start.anchored) == 0.0


def test_first_fit_sets_the_anchor_and_later_fits_keep_it():
    """After the first fit from init, anchored == 1 and anchor == net; a second fit moves net but not the anchor
    (the latent metrics encode every generation with the generation-0 encoder)."""
    fit = _jitted(MLP, "fit")
    start = MLP.init(jax.random.key(0))
    assert float(start.anchored) == 0.0
    first = fit(jax.random.key(1), _batch(), jnp.ones(64), start)
    second = fit(jax.random.key(2), _batch(64, 64), jnp.ones(64), first)
    assert float(first.anchored) == 1.0 and float(second.anchored) == 1.0
    _assert_trees_equal(first.anchor, first.net)
    _assert_trees_equal(second.anchor, first.net)
    assert _max_abs_diff(second.net, first.net) > 0.1
    assert np.isfinite(float(second.train_loss)) and float(second.train_loss) != float(first.train_loss)


def test_warm_start_continues_from_the_previous_network():
    """warm_start=True: one step at lr 1e-6 stays within 1e-5 of the previous net and continues its Adam count;
    warm_start=False ignores the previous net and optimiser state (a warm start that re-initialises, or a cold start
    that reads the previous net, would fail)."""
    previous = _jitted(MLP, "fit")(jax.random.key(1), _batch(), jnp.ones(64), MLP.init(jax.random.key(0)))
    key = jax.random.key(3)
    warm_model = dataclasses.replace(MLP, warm_start=True, steps=1, learning_rate=1e-6)
    warm = _jitted(warm_model, "fit")(key, _batch(64, 64), jnp.ones(64), previous)
    assert 0 < _max_abs_diff(warm.net, previous.net) < 1e-5
    assert int(warm.opt_state[0].count) == int(previous.opt_state[0].count) + 1 == MLP.steps + 1
    # warm_start=False: the fit does not read the previous net at all (same result from a random start)
    fit = _jitted(MLP, "fit")
    cold = fit(key, _batch(64, 64), jnp.ones(64), previous)
    _assert_trees_equal(cold.net, fit(key, _batch(64, 64), jnp.ones(64), MLP.init(jax.random.key(9))).net)
    assert int(cold.opt_state[0].count) == MLP.steps


def test_warm_start_with_a_cosine_schedule_keeps_training():
    """warm_start + schedule='cosine': the cosine step size restarts at every fit although the carried Adam count
    keeps growing, so the second generation still trains (optax's cosine schedule alone is 0 for every count >=
    steps: the chain would freeze after its first fit)."""
    model = dataclasses.replace(MLP, warm_start=True, schedule="cosine")
    fit = _jitted(model, "fit")
    first = fit(jax.random.key(1), _batch(), jnp.ones(64), model.init(jax.random.key(0)))
    second = fit(jax.random.key(2), _batch(64, 64), jnp.ones(64), first)
    assert int(second.opt_state[0].count) == 2 * MLP.steps
    assert _max_abs_diff(second.net, first.net) > 1e-2


# ----------------------------------------------------------------------------------------------------------------
# Sampling and the linear model's Gaussian law
# ----------------------------------------------------------------------------------------------------------------


def test_samples_have_the_likelihood_s_support():
    """Bernoulli VAE: sample_mode='mean' gives grey levels in (0, 1), 'sample' binary pixels; shapes (n, D)."""
    params = MLP.init(jax.random.key(0))
    grey = np.asarray(MLP.sample(jax.random.key(1), params, 50))
    assert grey.shape == (50, 64) and np.all((grey > 0) & (grey < 1))
    binary = np.asarray(dataclasses.replace(MLP, sample_mode="sample").sample(jax.random.key(1), params, 50))
    assert binary.shape == (50, 64) and set(np.unique(binary)) <= {0.0, 1.0}
    assert 0.2 < binary.mean() < 0.8


def test_gaussian_params_and_linear_samples_have_the_stated_law():
    """gaussian_params(mean, cov) has moments (mean, cov); 'sample' draws from it have that mean and variance
    (z-tests with power against the 'mean' mode's law N(b, WᵀW), which drops σ²)."""
    model = VAE(image_shape=(2,), latent_dim=2, architecture="linear", likelihood="gaussian", sample_mode="sample")
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    truth = model.gaussian_params([1.0, -1.0], cov)
    mean, got = model.gaussian_moments(truth.net)
    np.testing.assert_allclose(mean, [1.0, -1.0], rtol=1e-15)
    np.testing.assert_allclose(got, cov, rtol=1e-12)
    values = _jitted(model, "metrics")(truth, None, jax.random.key(0))
    assert float(values["log_det_cov"]) == pytest.approx(math.log(np.linalg.det(cov)), rel=1e-10)
    assert float(values["trace_cov"]) == pytest.approx(3.0, rel=1e-12)
    assert float(values["mean_sq_norm"]) == pytest.approx(2.0, rel=1e-12)
    # a fitted-looking net with real noise: σ = 0.8 on top of WᵀW
    net = dict(truth.net, log_obs_sd=jnp.asarray(math.log(0.8)))
    x = np.asarray(jax.jit(model.sample_net, static_argnums=2, compiler_options=COMPILE)(jax.random.key(1), net, 40000))
    n = x.shape[0]
    m0, se0 = x[:, 0].mean(), math.sqrt((2.0 + 0.64) / n)
    assert_close_to_theory(m0, se0, 1.0, label="mean of coordinate 0")
    v1 = x[:, 1].var()
    se_v = (1.0 + 0.64) * math.sqrt(2 / n)
    assert_close_to_theory(v1, se_v, 1.64, label="variance of coordinate 1 (WᵀW + σ²)")
    assert_rejects(v1, se_v, 1.0, label="variance without σ²")


# ----------------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_runs_the_vae_with_consistent_metrics(engine, reference, regime):
    """Every regime through the engine: metrics finite, class shares in [0, 1] summing to `confident`, rare_share
    their rare-class total, latent histogram summing to 1, Fréchet >= 0, neg_elbo > 0, summaries = trajectories
    (ReplaceGrown also draws more rows at t = 1 than the dataset holds: it must still run)."""
    res = engine(regime)
    traj = res.trajectories
    num_classes, bins = 6, reference.hist_edges.shape[0] - 1
    expected = ({"train_loss", "diversity", "latent_sd", "neg_elbo", "rare_share", "confident", "frechet"}
                | {f"share_{c}" for c in range(num_classes)} | {f"latent_hist_{b:02d}" for b in range(bins)})
    assert set(traj) == expected
    for name, v in traj.items():
        assert v.shape == (2, 2) and np.all(np.isfinite(v)), name
        np.testing.assert_allclose(res.mean(name), v.mean(axis=1), rtol=1e-12, atol=1e-15)
    shares = np.stack([traj[f"share_{c}"] for c in range(num_classes)])
    assert np.all((shares >= 0) & (shares <= 1))
    np.testing.assert_allclose(shares.sum(axis=0), traj["confident"], atol=1e-12)
    np.testing.assert_allclose(traj["rare_share"], shares[4] + shares[5], atol=1e-12)
    hist = np.stack([traj[f"latent_hist_{b:02d}"] for b in range(bins)])
    assert np.all(hist >= 0)
    np.testing.assert_allclose(hist.sum(axis=0), 1.0, atol=1e-12)
    assert np.all(traj["frechet"] >= -1e-6)
    assert np.all(traj["neg_elbo"] > 0) and np.all(traj["diversity"] > 0) and np.all(traj["latent_sd"] >= 0)
    assert np.all(res.final_params.anchored == 1.0)
    assert res.final_params.net["log_obs_sd"].shape == (2,)


def test_chains_do_not_depend_on_the_chain_count_or_offset(engine):
    """Keys come from (seed, chain, generation, purpose): chains 0-1 of a 2-chain run equal chains 0-1 of a 3-chain
    run, and chain_offset=1 reproduces chain 1 (a key split by chain count or a cross-chain reduction would not)."""
    two, three, shifted = engine("replace"), engine("replace", num_chains=3), engine("replace", chain_offset=1)
    for name, v in two.trajectories.items():  # bit for bit, as collapse_theory.keys promises
        np.testing.assert_array_equal(three.trajectories[name][:, :2], v, err_msg=name)
        np.testing.assert_array_equal(shifted.trajectories[name][:, 0], v[:, 1], err_msg=name)
    for a, b in zip(jax.tree.leaves(two.final_params), jax.tree.leaves(three.final_params), strict=True):
        np.testing.assert_array_equal(np.asarray(b)[:2], a)
    assert not np.allclose(two.trajectories["frechet"][:, 0], two.trajectories["frechet"][:, 1])


def test_engine_chain_equals_the_model_s_own_fits(engine):
    """Chain c of the engine's Replace run is model.fit / model.sample called one chain at a time with the keys
    derive_key(seed, c, t, purpose): generation 1 fits M real rows drawn without replacement, generation 2 fits M
    draws from the first fit (vmapped training equals per-chain training; a shifted generation index, a reused key
    or a cross-chain mix-up would not)."""
    res = engine("replace")
    root = root_key(7)
    real = jnp.asarray(_shapes()[0].images[:REAL_ROWS])
    fit, sample = _jitted(MLP, "fit"), jax.jit(MLP.sample, static_argnums=2, compiler_options=COMPILE)
    for c in range(2):
        params = MLP.init(derive_key(root, c, 0, INIT))
        rows = real[jax.random.permutation(derive_key(root, c, 1, SAMPLE), real.shape[0])[:64]]
        params = fit(derive_key(root, c, 1, FIT), rows, jnp.ones(64), params)
        rows = sample(derive_key(root, c, 2, SAMPLE), params, 64)
        params = fit(derive_key(root, c, 2, FIT), rows, jnp.ones(64), params)
        for a, b in zip(jax.tree.leaves(res.final_params), jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(np.asarray(a)[c], np.asarray(b), rtol=1e-9, atol=1e-12)


def test_linear_vae_chain_matches_the_gaussian_family_theory():
    """Replace chain of linear VAEs (d = 1, M = 10, 512 chains): E log det Σ_n matches THEORY.md §2.2 with ddof 0
    (z-tests with the analytic SE) and rejects the planted ddof-1 formula at n = 3; generation 1 is each chain's
    own MLE log S of its real rows (a fit that is not the ML fit, or sampling from the 'mean' law, fails).

    Full-batch Adam from a fresh random network is not always converged after 600 cosine steps: at lr 0.1 about 1
    chain in 500 (large initial encoder and decoder weights of opposite signs) stays up to 0.05 from log S, at
    lr 0.05 more; too few to bias the mean, so the per-chain check allows 1 % of such chains."""
    model = VAE(image_shape=(1,), latent_dim=1, architecture="linear", likelihood="gaussian", batch_size=None,
                steps=600, learning_rate=0.1, schedule="cosine", sample_mode="sample", num_eval_samples=2)
    truth = model.gaussian_params(0.0, 1.0)
    chains, m, seed = 512, 10, 11
    res = ct.simulate(seed, model, ct.Replace(), num_chains=chains, num_generations=3, num_samples=m, truth=truth,
                      metrics=["log_det_cov"], quantiles=(), trajectories=True, compiler_options=COMPILE)
    log_det = res.trajectories["log_det_cov"]
    root = root_key(seed)
    real = jax.vmap(lambda c: model.sample(derive_key(root, c, 1, SAMPLE), truth, m))(jnp.arange(chains))
    mle = np.log(np.var(np.asarray(real)[:, :, 0], axis=1))
    err = np.abs(log_det[0] - mle)
    print(f"generation 1: |log det - log S| median {np.median(err):.2g}, max {err.max():.2g}")
    assert np.median(err) < 1e-8 and np.mean(err < 1e-4) >= 0.99 and err.max() < 0.1
    for n in (1, 2, 3):
        se = math.sqrt(gth.variance_of_log_det_ratio(n, m, 1, 0) / chains)
        mean = log_det[n - 1].mean()
        assert_close_to_theory(mean, se, gth.expected_log_det_ratio(n, m, 1, ddof=0), label=f"E log det, n={n}")
        if n == 3:
            assert_rejects(mean, se, gth.expected_log_det_ratio(n, m, 1, ddof=1), label="ddof=1 formula, n=3")


# ----------------------------------------------------------------------------------------------------------------
# Fréchet distance, reference, classifier
# ----------------------------------------------------------------------------------------------------------------


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_matches_scipy_sqrtm():
    """frechet_distance (sample features F, Σa = FᵀF/(n−1) centred) equals ‖μa−μb‖² + tr Σa + tr Σb − 2 tr (Σa Σb)^{1/2}
    with scipy's sqrtm, including a rank-deficient Σa, and is ~0 for identical Gaussians (a missing factor 2, a
    wrong n−1, a non-symmetric square root or the wrong argument order would fail)."""
    rng = np.random.default_rng(0)
    for d, rank in ((1, 1), (3, 3), (6, 6), (6, 2)):
        feats = rng.normal(size=(40, rank)) @ rng.normal(size=(rank, d)) + rng.normal(size=d)
        ma, ca = feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))
        cb, mb = _spd(rng, d), rng.normal(size=d)
        want = (np.sum((ma - mb) ** 2) + np.trace(ca) + np.trace(cb)
                - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb)).real)
        sqrt_b = scipy.linalg.sqrtm(cb).real
        got = float(frechet_distance(jnp.asarray(ma), jnp.asarray(feats), jnp.asarray(mb), jnp.asarray(sqrt_b),
                                     jnp.asarray(cb)))
        assert got == pytest.approx(want, rel=1e-7)
        same = float(frechet_distance(jnp.asarray(ma), jnp.asarray(feats), jnp.asarray(ma),
                                      jnp.asarray(scipy.linalg.sqrtm(ca).real), jnp.asarray(ca)))
        assert abs(same) < 1e-7 * np.trace(ca)
    # d = 1 closed form: (μa − μb)² + (σa − σb)², σa = 2 from features with sample sd 2
    z = rng.normal(size=50)
    feats = (1.0 + 2.0 * (z - z.mean()) / z.std(ddof=1))[:, None]
    got = float(frechet_distance(jnp.asarray([1.0]), jnp.asarray(feats), jnp.asarray([0.0]), jnp.asarray([[3.0]]),
                                 jnp.asarray([[9.0]])))
    assert got == pytest.approx(1.0 + 1.0, rel=1e-9)


def test_reference_holds_the_real_feature_moments(classifier, reference):
    """make_reference: the real test rows' classifier-feature mean and covariance (ddof 1), a symmetric square root
    of it, the rare-class indicator and the histogram edges."""
    _, test = _shapes()
    assert isinstance(reference, VAEReference)
    feats = np.asarray(clf_mod.features(classifier, jnp.asarray(test.images)))
    np.testing.assert_allclose(reference.feature_mean, feats.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(reference.feature_cov, np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-14)
    sqrt = np.asarray(reference.feature_cov_sqrt)
    np.testing.assert_allclose(sqrt, sqrt.T, atol=1e-14)
    np.testing.assert_allclose(sqrt @ sqrt, reference.feature_cov, atol=1e-10)
    np.testing.assert_array_equal(reference.rare, [0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(reference.hist_edges, np.linspace(-4, 4, 17), atol=1e-15)
    plain = make_reference(test.images)
    assert plain.classifier is None and plain.hist_edges.shape == (17,)


def test_classifier_is_accurate_on_held_out_shapes():
    """Classifier(steps=300) trained on 2000 Shapes images classifies 1000 held-out ones with > 90 % accuracy (the
    instrument every share metric relies on)."""
    train, test = Shapes().generate(3000, seed=0).split(1000, seed=1)
    params = Classifier(steps=300).train(0, train.images, train.labels, train.num_classes)
    acc = accuracy(params, test.images, test.labels)
    print(f"held-out accuracy {acc:.3f}")
    assert acc > 0.9


# ----------------------------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_dim=0), "latent_dim=0 is out of range"),
    (dict(learning_rate=0), "learning_rate=0 is out of range"),
    (dict(learning_rate=-1), "learning_rate=-1 is out of range"),
    (dict(steps=0), "steps=0 is out of range"),
    (dict(batch_size=0), "batch_size=0 is out of range"),
    (dict(beta=-1), "beta=-1 is out of range"),
    (dict(obs_sd=0), "obs_sd=0 is out of range"),
    (dict(num_eval_samples=1), "num_eval_samples=1 is out of range"),
    (dict(architecture="rnn"), "architecture='rnn' is not one of"),
    (dict(likelihood="poisson"), "likelihood='poisson' is not one of"),
    (dict(architecture="conv", image_shape=(6, 6)), r"image_shape=\(6, 6\).*conv"),
    (dict(architecture="linear", likelihood="bernoulli"), "architecture='linear' needs likelihood='gaussian'"),
    (dict(hidden=64), r"hidden=64 is not a tuple of layer widths: write hidden=\(64,\)"),
    (dict(beta=True), "beta=True is out of range"),
])
def test_bad_model_settings_raise(kwargs, match):
    """Each out-of-range VAE setting raises a ValueError naming the parameter."""
    with pytest.raises(ValueError, match=match):
        VAE(**kwargs)


def test_bad_inputs_raise_clear_errors(tmp_path):
    """Wrong image width, gaussian_params / marginal likelihood on a non-linear model, a 1-row reference, a rare class
    out of range, bad classifier settings, a missing MNIST folder, too few real rows and the exact path each raise a
    clear error."""
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"image_shape=\(8, 8\)"):
        MLP.fit(key, jnp.zeros((5, 63)), jnp.ones(5), MLP.init(key))
    with pytest.raises(ValueError, match="gaussian_params needs architecture='linear'"):
        MLP.gaussian_params()
    with pytest.raises(ValueError, match="architecture='linear'"):
        MLP.marginal_log_likelihood(MLP.init_net(key), jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match="latent_dim == dim"):
        LINEAR.gaussian_params()
    params = Classifier(hidden=4).init(key, 64, 6)
    with pytest.raises(ValueError, match="test_images has shape"):
        make_reference(np.zeros((1, 64)), params)
    with pytest.raises(ValueError, match="rare_classes contains 6"):
        make_reference(np.zeros((3, 64)), params, rare_classes=(6,))
    with pytest.raises(ValueError, match=r"rare_classes contains 1.5: need int classes in \[0, 6\)"):
        make_reference(np.zeros((3, 64)), params, rare_classes=(1.5,))  # not class 1
    make_reference(np.zeros((3, 64)), params, rare_classes=(np.int64(1),))
    make_reference(np.zeros((3, 64)), params, rare_classes=jnp.array([1, 3]))  # 0-d integer arrays are classes
    with pytest.raises(ValueError, match="rare_classes contains True"):
        make_reference(np.zeros((3, 64)), params, rare_classes=(True,))
    with pytest.raises(ValueError, match="hidden=0 is out of range"):
        Classifier(hidden=0)
    with pytest.raises(ValueError, match="threshold=1.5 is out of range"):
        Confident(params, threshold=1.5)
    with pytest.raises(ValueError, match="hist_range=inf is out of range: need a finite hist_range > 0"):
        make_reference(np.zeros((3, 64)), hist_range=float("inf"))  # its bin edges were NaN
    with pytest.raises(ValueError, match="hist_bins=0 is out of range"):
        make_reference(np.zeros((3, 64)), hist_bins=0)
    # NumPy numbers are numbers (np.float32(0.5) was "out of range"); a list of widths is a tuple
    assert Confident(params, threshold=np.float32(0.5)).threshold == np.float32(0.5)
    assert VAE(beta=np.float32(1.0), hidden=[8]).hidden == (8,)
    assert make_reference(np.zeros((3, 64)), hist_bins=np.int64(4), hist_range=np.float32(2)).hist_edges.shape == (5,)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "no-such-folder")
    with pytest.raises(ValueError, match="real_data has 16 rows"):
        ct.simulate(0, MLP, num_chains=2, num_generations=2, num_samples=32, real_data=np.zeros((16, 64)))
    with pytest.raises(ValueError, match="path='exact'"):
        ct.simulate(0, MLP, num_chains=2, num_generations=2, num_samples=8, real_data=np.zeros((16, 64)),
                    path="exact")


def test_vae_runs_under_strict_rank_promotion():
    """The VAE (every architecture: fit, metrics, exact likelihood) and the classifier trace under
    jax_numpy_rank_promotion='raise' (eval_shape: a (k,) bias added to (n, k) activations by implicit rank
    promotion raises at trace time; nothing compiles)."""
    key = jax.random.key(0)
    x = jnp.full((4, 16), 0.5)
    params = Classifier(hidden=4).init(key, 16, 3)
    reference = make_reference(x, params, rare_classes=(2,))
    with jax.numpy_rank_promotion("raise"):
        for architecture in ("mlp", "conv", "linear"):
            model = VAE(image_shape=(4, 4), latent_dim=2, hidden=(4,), architecture=architecture,
                        likelihood="gaussian" if architecture == "linear" else "bernoulli", num_eval_samples=4)
            start = jax.eval_shape(model.init, key)
            jax.eval_shape(model.fit, key, x, jnp.ones(4), start)
            jax.eval_shape(model.metrics, start, reference, key)
            if architecture == "linear":
                jax.eval_shape(model.marginal_log_likelihood, start.net, x)
        trainer = Classifier(hidden=4, steps=2)
        labels = jnp.zeros(4, jnp.int32)
        jax.eval_shape(lambda k, images, y: trainer._train(k, k, images, y, 3), key, x, labels)
        make_reference(x, params)
