"""Deterministic engine invariants (STYLE.md §2F class 1): bit-for-bit reproducibility under chunking, chain subsets
and chain offsets; identities of the weighted Gaussian fit and of the pooled statistics; no recompilation across
seeds; and the save/load round trip.

Every random draw uses the key k(c, t, purpose) = fold_in(fold_in(fold_in(root, c), t), purpose) (keys.py), with
nothing threaded through the scan carry. So a run split into chunks of generations, a run with fewer chains, or a
run of chains [k, k + n) started with ``chain_offset=k`` must reproduce the corresponding bits exactly; these tests
use ``np.testing.assert_array_equal`` (no tolerance). A failure means a key that depends on the chunk, on the number
of chains, or on the position in the vmapped batch, or a carry that is not restored between chunks.
"""

from __future__ import annotations

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_theory import (
    Accumulate,
    FreshFraction,
    Gaussian,
    GaussianStats,
    Replace,
    SimulationResult,
    observables,
    simulate,
)

ENGINE = importlib.import_module("collapse_theory.simulate")  # the package re-exports the *function* ``simulate``

G_INV, C_INV, M_INV, K_SUB, OFFSET = 21, 16, 5, 5, 3
CHUNKS = (3, 7)  # 21 = 7 x 3 = 3 x 7: one compiled chunk length each
METRICS = ["log_variance", "sq_mean_error"]
CONFIGS = {
    # name: (model, regime, path, quantiles)
    "replace-exact": (Gaussian(dim=1, ddof=1), Replace(), "exact", (0.25, 0.5)),
    "replace-sample": (Gaussian(dim=1, ddof=1), Replace(), "sample", ()),
    "accumulate-sample": (Gaussian(dim=1, ddof=0), Accumulate(), "sample", ()),
}


def _simulate(name, seed=11, **overrides):
    model, regime, path, quantiles = CONFIGS[name]
    kwargs = dict(num_chains=C_INV, num_generations=G_INV, num_samples=M_INV, path=path, metrics=METRICS,
                  quantiles=quantiles, trajectories=True)
    kwargs.update(overrides)
    return simulate(seed, model, regime, **kwargs)


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name in CONFIGS:
        out[name] = {
            "full": _simulate(name),
            **{f"chunk{size}": _simulate(name, chunk_size=size) for size in CHUNKS},
            "first": _simulate(name, num_chains=K_SUB),
            "offset": _simulate(name, num_chains=K_SUB, chain_offset=OFFSET),
        }
    return out


def _leaves(tree):
    return jax.tree.leaves(jax.tree.map(np.asarray, tree))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunked_equals_single_run(runs, name, chunk):
    """A run in chunks of 3 or 7 generations equals the single 21-generation run bit for bit: summaries (mean, sd
    and, for the exact path, quantiles), per-chain trajectories and final parameters.

    Catches a key that depends on the position inside a chunk (t from 0 per chunk instead of the absolute t), an
    accumulate buffer whose write offset restarts per chunk, and a carry not handed from chunk to chunk."""
    full, chunked = runs[name]["full"], runs[name][f"chunk{chunk}"]
    np.testing.assert_array_equal(chunked.generations, full.generations)
    assert set(chunked.summary) == set(full.summary) == set(METRICS)
    for metric in METRICS:
        for stat in full.summary[metric]:
            np.testing.assert_array_equal(chunked.summary[metric][stat], full.summary[metric][stat],
                                          err_msg=f"{name} chunk={chunk} {metric}/{stat}")
        np.testing.assert_array_equal(chunked.trajectories[metric], full.trajectories[metric])
    for a, b in zip(_leaves(chunked.final_params), _leaves(full.final_params), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_first_chains_equal_smaller_run(runs, name):
    """The first k chains of a C-chain run equal a k-chain run (keys depend on the global chain id only, not on
    the batch size). Catches ``jax.random.split(root, num_chains)``-style keys, whose streams change with C."""
    full, first = runs[name]["full"], runs[name]["first"]
    for metric in METRICS:
        np.testing.assert_array_equal(first.trajectories[metric], full.trajectories[metric][:, :K_SUB])
    for a, b in zip(_leaves(first.final_params), _leaves(full.final_params), strict=True):
        np.testing.assert_array_equal(a, b[:K_SUB])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_chain_offset_equals_slice_of_bigger_run(runs, name):
    """A run with ``chain_offset=3`` and 5 chains equals chains 3..7 of the bigger run: independent jobs over
    disjoint chain ranges reassemble into one run. Catches an offset ignored in the key (chains 0..4 again) or
    applied twice."""
    full, offset = runs[name]["full"], runs[name]["offset"]
    assert offset.config["chain_offset"] == OFFSET
    for metric in METRICS:
        np.testing.assert_array_equal(offset.trajectories[metric],
                                      full.trajectories[metric][:, OFFSET:OFFSET + K_SUB])
    for a, b in zip(_leaves(offset.final_params), _leaves(full.final_params), strict=True):
        np.testing.assert_array_equal(a, b[OFFSET:OFFSET + K_SUB])
    # and the runs are not trivially equal: different chains differ
    assert not np.array_equal(offset.trajectories["log_variance"], runs[name]["first"].trajectories["log_variance"])


def test_different_seeds_differ_and_same_seed_repeats(runs):
    """Guard for the equality tests above: the same seed repeats bit for bit, another seed does not."""
    again = _simulate("replace-exact")
    other = _simulate("replace-exact", seed=12)
    full = runs["replace-exact"]["full"]
    np.testing.assert_array_equal(again.trajectories["log_variance"], full.trajectories["log_variance"])
    assert not np.any(other.trajectories["log_variance"] == full.trajectories["log_variance"])


def test_no_retrace_across_seeds(runs):
    """Seeds, typed keys and chain offsets are traced arguments: re-running a compiled configuration must not
    add an entry to the jit cache of the engine's chunk function. Catches a seed or key passed as a static argument
    (one compilation per seed, which would make seed sweeps compile-bound)."""
    _simulate("replace-sample", seed=21)
    before = ENGINE._run_chunk._cache_size()
    assert before > 0  # the counter does see compiled entries
    _simulate("replace-sample", seed=22)
    _simulate("replace-sample", seed=23, chain_offset=100)
    _simulate("replace-sample", seed=jax.random.key(24))
    assert ENGINE._run_chunk._cache_size() == before


# ----------------------------------------------------------------------------------------------------------------
# Identities of the weighted fit and of the pooled sufficient statistics
# ----------------------------------------------------------------------------------------------------------------


def _data(dim, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) @ np.tril(rng.normal(size=(dim, dim))) + rng.normal(size=dim)


def _fitted(model, x, w):
    params = model.fit(jax.random.key(0), jnp.asarray(x), jnp.asarray(w, dtype=jnp.float64))
    return np.asarray(params.mean), np.asarray(model.covariance(params))


@pytest.mark.parametrize("dim", [1, 3])
@pytest.mark.parametrize("ddof", [0, 1])
def test_fit_frequency_weights_equal_repeated_rows(dim, ddof):
    """Frequency weights (models/base.py): weight k means the row counts k times. fit(x, w) equals the fit of the
    rows repeated w_i times (to 1e-10: the summation order differs), and both equal NumPy's np.cov with ddof.

    Catches weights treated as probabilities (divisor Σw/n), a divisor Σw − ddof computed as n − ddof, and
    √w missing in the QR scatter factor."""
    model = Gaussian(dim=dim, ddof=ddof)
    x = _data(dim, 6)
    w = np.array([1, 3, 2, 1, 4, 2])
    repeated = np.repeat(x, w, axis=0)
    mean_w, cov_w = _fitted(model, x, w)
    mean_r, cov_r = _fitted(model, repeated, np.ones(len(repeated)))
    np.testing.assert_allclose(mean_w, mean_r, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov_w, cov_r, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean_w, repeated.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(cov_w, np.atleast_2d(np.cov(repeated.T, ddof=ddof)), rtol=1e-10)


@pytest.mark.parametrize("dim", [1, 3])
def test_fit_is_permutation_invariant(dim):
    """Reordering rows (with their weights) does not change the fit, to rounding."""
    model = Gaussian(dim=dim, ddof=1)
    x = _data(dim, 9, seed=1)
    w = np.arange(1, 10)
    perm = np.random.default_rng(2).permutation(9)
    for a, b in zip(_fitted(model, x, w), _fitted(model, x[perm], w[perm]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 3])
def test_zero_weight_rows_are_ignored(dim):
    """Rows with weight 0 are absent (the fixed-shape buffers rely on it), even when they hold large values.

    Catches a mean or scatter that includes masked rows, e.g. centring with an unweighted mean."""
    model = Gaussian(dim=dim, ddof=1)
    x = _data(dim, 5, seed=3)
    junk = 1e3 * np.ones((4, dim))
    padded = np.concatenate([x[:2], junk[:2], x[2:], junk[2:]])
    w_padded = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0])
    for a, b in zip(_fitted(model, x, np.ones(5)), _fitted(model, padded, w_padded), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _stats_of(dim, x) -> GaussianStats:
    """Sufficient statistics (count, mean, scatter) of a dataset, built from the MLE fit: scatter = n Σ̂_MLE."""
    params = Gaussian(dim=dim, ddof=0).fit(jax.random.key(0), jnp.asarray(x), jnp.ones(len(x)))
    n = float(len(x))
    return GaussianStats(jnp.asarray(n), params.mean, params.factor, params.log_scale + 0.5 * np.log(n))


def _scatter(stats):
    f = np.asarray(stats.factor)
    return np.exp(2 * float(stats.log_scale)) * f @ f.T


@pytest.mark.parametrize("dim", [1, 3])
def test_combine_stats_equals_stats_of_union(dim):
    r"""Chan's pooled combination (the exact path's accumulation, §2.3): combine(stats(x), stats(y)) has the
    count, mean and scatter S_x + S_y + (n_x n_y/n) δδᵀ of the union, which equals NumPy's n·np.cov(bias=True);
    combining with ``empty_stats`` is the identity; fit_from_stats(combined) equals fit(union) for both ddof.

    Catches a missing or mis-weighted between-batch term and a wrong count in the divisor."""
    model = Gaussian(dim=dim, ddof=1)
    x, y = _data(dim, 7, seed=4), _data(dim, 4, seed=5) + 2.0
    union = np.concatenate([x, y])
    combined = model.combine_stats(_stats_of(dim, x), _stats_of(dim, y))
    direct = _stats_of(dim, union)
    assert float(combined.count) == len(union)
    np.testing.assert_allclose(np.asarray(combined.mean), union.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(_scatter(combined), _scatter(direct), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_scatter(combined), len(union) * np.atleast_2d(np.cov(union.T, bias=True)),
                               rtol=1e-10)
    identity = model.combine_stats(model.empty_stats(model.params()), _stats_of(dim, x))
    np.testing.assert_allclose(_scatter(identity), _scatter(_stats_of(dim, x)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(identity.mean), x.mean(axis=0), rtol=1e-12)
    for ddof in (0, 1):
        m = Gaussian(dim=dim, ddof=ddof)
        from_stats = m.fit_from_stats(combined, None)
        np.testing.assert_allclose(np.asarray(m.covariance(from_stats)), _fitted(m, union, np.ones(len(union)))[1],
                                   rtol=1e-10)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize(("dim", "n"), [(3, 20), (12, 4)])
def test_grow_pool_equals_combine_with_the_pools_own_draw(dim, n, ddof):
    r"""Accumulate's exact step without a QR (``Gaussian.grow_pool``, d > 1): from the same Bartlett draws it gives
    the count, mean and scatter of ``combine_stats(pool, stats_from_noise(fit_from_stats(pool), noise, n))`` to
    round-off, for six generations, in the full-rank case (n > d) and the singular one (n = 4 < d = 12: the pool
    stays in a 3-dimensional affine hull and its log det stays exactly -inf).

    Catches a wrong between-batch weight (N/(N+n) vs n/(N+n)), a divisor N instead of N − ddof in the bracket, a
    mean moved by the draws' weight computed on the new count, and a factor that is not the pool's."""
    model = Gaussian(dim=dim, ddof=ddof)
    assert Gaussian(dim=1, ddof=ddof).grow_pool is None  # one dimension: the log-sum-exp combine is cheap
    truth = model.params(mean=np.arange(dim, dtype=float), cov=np.cov(_data(dim, 3 * dim, seed=6).T) + np.eye(dim))
    pool = model.sample_stats(jax.random.key(1), truth, n)
    for t in range(6):
        noise = model.stats_noise(jax.random.key(10 + t), n, jnp.float64)
        grown = model.grow_pool(pool, noise, n)
        pooled = model.combine_stats(pool, model.stats_from_noise(model.fit_from_stats(pool), noise, n))
        assert float(grown.count) == float(pooled.count) == (t + 2) * n
        np.testing.assert_allclose(np.asarray(grown.mean), np.asarray(pooled.mean), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_scatter(grown), _scatter(pooled), rtol=1e-11, atol=1e-11 * _scatter(pooled).max())
        with np.errstate(divide="ignore"):
            log_det = float(np.sum(np.log(np.abs(np.diag(np.asarray(grown.factor))))))
        if n - 1 < dim:
            assert log_det == -np.inf and np.linalg.matrix_rank(_scatter(grown), tol=1e-9) == n - 1
        else:
            assert np.isfinite(log_det)
        pool = grown


# ----------------------------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------------------------


def _tree_sum_by_levels(values: np.ndarray) -> np.ndarray:
    """The summaries' summation order, level by level in NumPy: pairs (2i, 2i + 1), an odd level's last entry
    paired with a zero."""
    while values.shape[0] > 1:
        if values.shape[0] % 2:
            values = np.concatenate([values, np.zeros((1,) + values.shape[1:], values.dtype)])
        values = values[0::2] + values[1::2]
    return values[0]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 13, 100, 129])
def test_pairwise_sum_follows_the_fixed_tree_bit_for_bit(n):
    """``pairwise_sum`` (every summary's mean and sd) adds in the fixed tree's order, bit for bit, for chain counts
    that are not powers of two; values over 16 decades make any other order round differently."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 4)) * 10.0 ** rng.integers(-8, 8, (n, 4))).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(jax.jit(observables.pairwise_sum)(jnp.asarray(x))), _tree_sum_by_levels(x))
    if n >= 13:  # power: the same comparison rejects a tree that pairs entry i with entry i + half instead
        halves = np.concatenate([x, np.zeros((128 - n if n <= 128 else 256 - n, 4), np.float32)])
        while halves.shape[0] > 1:
            halves = halves[: halves.shape[0] // 2] + halves[halves.shape[0] // 2:]
        assert not np.array_equal(_tree_sum_by_levels(x), halves[0])


def test_packed_summaries_unpack_to_the_same_arrays():
    """The scan writes each generation's summaries as one flat vector per dtype (``observables.pack_summary``);
    unpacking the stacked rows gives every statistic back with its own shape and dtype, bit for bit (an offset or a
    reshape in the wrong order would move values between metrics or statistics)."""
    rng = np.random.default_rng(0)
    gens = [{"a": {"mean": jnp.asarray(rng.normal(), jnp.float32), "quantiles": jnp.asarray(rng.normal(size=3),
                                                                                              jnp.float32)},
             "b": {"mean": jnp.asarray(rng.normal(size=(2, 4)), jnp.float32),
                   "count": jnp.asarray(rng.integers(0, 9, size=(2,)), jnp.int32)}} for _ in range(5)]
    packed = [observables.pack_summary(g) for g in gens]
    assert sorted(packed[0].vectors) == ["float32", "int32"] and packed[0].vectors["float32"].shape == (12,)
    stacked = jax.tree.map(lambda *rows: np.stack([np.asarray(r) for r in rows]), *packed)  # as the scan does
    back = observables.unpack_summary(stacked)
    for metric, stats in gens[0].items():
        for stat in stats:
            want = np.stack([np.asarray(g[metric][stat]) for g in gens])
            assert back[metric][stat].dtype == want.dtype
            np.testing.assert_array_equal(back[metric][stat], want)


def test_the_same_run_in_float32_after_an_x64_run_unpacks_its_own_summaries():
    """A plan compiled in float32, the same plan traced under x64, then the float32 program again from jit's
    cache (no new trace): its summaries come back as float32 with their values. Catches a summary layout kept per
    plan outside the program's outputs (the x64 trace replaced it, and the cached float32 run read float64 keys)."""
    args = (0, Gaussian(dim=1, ddof=1), Replace())
    kwargs = dict(num_chains=4, num_generations=3, num_samples=5, path="exact", quantiles=(0.5,))
    with jax.enable_x64(False):
        first = simulate(*args, **kwargs)
    with jax.enable_x64(True):
        wide = simulate(*args, **kwargs)
    with jax.enable_x64(False):
        again = simulate(*args, **kwargs)
    assert wide.summary["log_variance"]["mean"].dtype == np.float64
    for name, stats in first.summary.items():
        for stat, value in stats.items():
            assert again.summary[name][stat].dtype == value.dtype == np.float32
            np.testing.assert_array_equal(again.summary[name][stat], value, err_msg=f"{name} {stat}")


def test_save_load_round_trip(runs, tmp_path):
    """``save`` writes ``run.npz`` and a ``run.json`` sidecar atomically (no temporary files left); ``load`` gives
    back every array bit for bit and the configuration; the sidecar records versions, backend, x64 and the seed.

    Catches a summary or trajectory dropped or reordered on save, a non-atomic write leaving ``.tmp`` files, and
    metadata without the provenance needed to reproduce a figure."""
    res = runs["replace-exact"]["full"]
    path = tmp_path / "run.npz"
    res.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.npz"]
    loaded = SimulationResult.load(path)
    np.testing.assert_array_equal(loaded.generations, res.generations)
    np.testing.assert_array_equal(loaded.quantile_levels, res.quantile_levels)
    assert set(loaded.summary) == set(res.summary)
    for metric, stats in res.summary.items():
        assert set(loaded.summary[metric]) == set(stats)
        for stat, value in stats.items():
            np.testing.assert_array_equal(loaded.summary[metric][stat], value)
    assert set(loaded.trajectories) == set(res.trajectories)
    for metric, value in res.trajectories.items():
        np.testing.assert_array_equal(loaded.trajectories[metric], value)
    for field in res.final_params._fields:
        np.testing.assert_array_equal(loaded.final_params[field], np.asarray(getattr(res.final_params, field)))
    assert loaded.config == json.loads(json.dumps(res.config))
    np.testing.assert_array_equal(loaded.quantile("log_variance", 0.5), res.quantile("log_variance", 0.5))
    sidecar = json.loads((tmp_path / "run.json").read_text())
    meta = sidecar["metadata"]
    for key in ("x64", "jax", "numpy", "scipy", "seed", "backend"):
        assert key in meta, f"metadata lacks {key}"
    assert meta["x64"] is True and meta["seed"] == 11 and meta["jax"] == jax.__version__
    assert sidecar["config"]["num_chains"] == C_INV
    res.save(path)  # overwriting is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.npz"]


def test_snapshots_equal_shorter_runs_and_change_nothing():
    """``simulate(snapshots=...)`` keeps each chain's parameters after generation t: they equal the final
    parameters of a t-generation run, and forcing chunk ends there leaves the summaries bit-identical (catches a
    snapshot taken one generation off, or one that perturbs the run)."""
    model = Gaussian(dim=2, ddof=1)
    kw = dict(num_chains=5, num_samples=10, quantiles=(0.5,))
    snap = simulate(3, model, Replace(), num_generations=7, snapshots=(3, 7), **kw)
    plain = simulate(3, model, Replace(), num_generations=7, **kw)
    short = simulate(3, model, Replace(), num_generations=3, **kw)
    assert sorted(snap.snapshots) == [3, 7]
    for a, b in zip(jax.tree.leaves(snap.snapshots[3]), jax.tree.leaves(short.final_params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(snap.snapshots[7]), jax.tree.leaves(plain.final_params), strict=True):
        np.testing.assert_array_equal(a, b)
    for metric, stats in plain.summary.items():
        for field, value in stats.items():
            np.testing.assert_array_equal(snap.summary[metric][field], value)
    assert plain.snapshots is None
    with pytest.raises(ValueError, match="snapshots"):
        simulate(3, model, Replace(), num_generations=7, snapshots=(8,), **kw)


@pytest.mark.parametrize("path", ["sample", "exact"])
def test_chain_batch_gives_the_same_chains(path):
    """``chain_batch=k`` advances the chains k at a time (``lax.map`` over vmapped batches) with the same keys, so
    every chain's trajectory equals the all-at-once run to round-off, also when k does not divide C (catches a
    batch that reuses or shifts chain keys, or a remainder batch that is dropped)."""
    model = Gaussian(dim=2, ddof=1)
    kw = dict(num_chains=7, num_generations=6, num_samples=12, path=path, quantiles=(), trajectories=True)
    plain = simulate(5, model, Accumulate(), **kw)
    batched = simulate(5, model, Accumulate(), chain_batch=3, **kw)
    assert batched.config["chain_batch"] == 3 and plain.config["chain_batch"] is None
    for name, values in plain.trajectories.items():
        np.testing.assert_allclose(batched.trajectories[name], values, rtol=1e-9, atol=1e-12, err_msg=name)
    other_seed = simulate(6, model, Accumulate(), chain_batch=3, **kw)
    assert not np.allclose(other_seed.trajectories["trace_ratio"], plain.trajectories["trace_ratio"])


def test_chain_batch_bad_values_raise():
    model = Gaussian(dim=1, ddof=1)
    with pytest.raises(ValueError, match="chain_batch=0"):
        simulate(0, model, num_chains=4, num_generations=2, num_samples=5, chain_batch=0)
    with pytest.raises(ValueError, match="chain_batch=2 cannot be combined with devices"):
        simulate(0, model, num_chains=4, num_generations=2, num_samples=5, chain_batch=2, devices=1)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_summary_quantiles_equal_jnp_quantile(dtype):
    """The engine's quantiles sort floats as order-preserving integer keys (4× faster than XLA:CPU's float sort);
    they must equal ``jnp.quantile`` (method "linear") up to the rounding of the interpolation, for negative
    values of every magnitude, ±0, ties, ±inf and NaN (catches a key that misorders negative floats, which would
    put the 5 % quantile at the wrong end, or a NaN silently dropped)."""
    from collapse_theory.observables import quantiles_linear

    levels = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    rng = np.random.default_rng(3)
    cases = []
    for n in (1, 2, 7, 1000):
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n)
        cases.append(v)
        w = v.copy()
        w[::3], w[1::4] = 0.0, -0.0
        cases.append(w)
    ties = np.repeat(rng.standard_normal(5), 40)
    ties[:2] = (np.inf, -np.inf)
    cases += [ties, np.array([1.0, np.nan, -2.0])]
    fn = jax.jit(lambda a: quantiles_linear(a, levels))
    for v in cases:
        a = jnp.asarray(v, dtype)
        ours = np.asarray(fn(a))
        ref = np.asarray(jnp.quantile(a, jnp.asarray(levels, dtype)))
        np.testing.assert_allclose(ours, ref, rtol=4 * np.finfo(dtype).eps, atol=0, equal_nan=True)
        finite = np.isfinite(ref)
        assert np.array_equal(np.isnan(ours), np.isnan(ref)) and np.all(np.diff(ours[finite]) >= 0)


@pytest.mark.parametrize(
    "regime, x64",
    [(Replace(), True), (Replace(), False), (FreshFraction(0.4), True), (Accumulate(), False)],
    ids=["replace-float64", "replace-float32", "fresh-float64", "accumulate-float32"],
)
def test_exact_noise_blocks_change_no_bit(monkeypatch, regime, x64):
    """On the exact path the engine draws the random input (``stats_noise``) of a block of generations at once
    and then steps through it (``_run_chunk``). Blocks of 4 generations over a 21-generation run (6 blocks, the
    last 3 generations past the end masked), chunks of 7 with blocks of 4 (two blocks of 4), and no blocks at all
    must give the same chains bit for bit. Catches a noise slice taken from the wrong generation or in the
    wrong call order (FreshFraction draws real then synthetic statistics), a masked tail step that still moves
    the state, and padded outputs that are not dropped."""
    jax.config.update("jax_enable_x64", x64)  # conftest restores float64 after the test
    model = Gaussian(dim=1, ddof=1)
    assert model.blocked_noise and not Gaussian(dim=2, ddof=1).blocked_noise
    metrics = METRICS
    kwargs = dict(num_chains=C_INV, num_generations=G_INV, num_samples=M_INV, path="exact", metrics=metrics,
                  quantiles=(0.5,), trajectories=True)
    runs = {}
    for label, lanes, chunk in (("none", 1, None), ("blocks", 4 * C_INV, None), ("chunked", 4 * C_INV, 7)):
        monkeypatch.setattr(ENGINE, "_NOISE_LANES", lanes)
        assert ENGINE._noise_block(model, C_INV) == max(1, lanes // C_INV)
        runs[label] = simulate(5, model, regime, chunk_size=chunk, **kwargs)
    for label in ("blocks", "chunked"):
        for metric in metrics:
            np.testing.assert_array_equal(runs[label].trajectories[metric], runs["none"].trajectories[metric],
                                          err_msg=f"{label} {metric}")
            np.testing.assert_array_equal(runs[label].summary[metric]["quantiles"],
                                          runs["none"].summary[metric]["quantiles"])
        for a, b in zip(_leaves(runs[label].final_params), _leaves(runs["none"].final_params), strict=True):
            np.testing.assert_array_equal(a, b)


def test_donated_state_repeats_no_buffer():
    """The engine donates the chain state to each chunk; a donated buffer may appear only once among the call's
    arguments. A state that holds one array twice (the VAE's net and anchor start equal) or shares one with the
    truth gets copies for the repeats, and nothing else is copied."""
    shared, truth_leaf, own = jnp.ones(3), jnp.zeros(2), jnp.arange(4.0)
    state = {"net": shared, "anchor": shared, "truth_copy": truth_leaf, "own": own}
    given = ENGINE._donatable(state, ({"w": truth_leaf}, None))
    assert given["own"] is own and given["truth_copy"] is not truth_leaf
    assert (given["net"] is shared) != (given["anchor"] is shared)  # the first in tree order is kept
    np.testing.assert_array_equal(given["anchor"], shared)
    np.testing.assert_array_equal(given["net"], shared)
    np.testing.assert_array_equal(given["truth_copy"], truth_leaf)
