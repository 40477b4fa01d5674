"""Absorbing states and compacted supports (``simulate(stop_when_absorbed=True, compact=True)``), float64.

* ``stop_when_absorbed`` must be invisible: the run equals the full run bit for bit (summaries, trajectories,
  final parameters, snapshots) — a fill with the wrong row, an off-by-one in the stopping generation or a stop
  before every chain is absorbed would all break the equality.
* ``compact`` changes the random numbers but not the law: the Wright–Fisher heterozygosity
  E H_t = (1 − 1/M)^t H_0, the exact expected number of surviving categories and the exact expected collapse time
  (THEORY.md §7.1) are checked on compacted runs with MC standard errors and power checks (STYLE.md §2F); the
  metrics of a compacted chain equal those of its full form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close_to_theory, assert_rejects

from collapse_theory import Accumulate, FreshFraction, Gaussian, Replace, ReplaceGrown, simulate
from collapse_theory.models.categorical import Categorical, CategoricalStats, collapse_time_summary
from collapse_theory.theory import categorical as th

NO_Q = ()


def _assert_same_result(a, b):
    for metric, stats in a.summary.items():
        for name, values in stats.items():
            np.testing.assert_array_equal(values, b.summary[metric][name], err_msg=f"{metric} {name}")
    if a.trajectories is not None:
        for metric, values in a.trajectories.items():
            np.testing.assert_array_equal(values, b.trajectories[metric], err_msg=f"trajectory {metric}")
    for x, y in zip(jax.tree.leaves(a.final_params), jax.tree.leaves(b.final_params), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("regime, path", [(Replace(), "exact"), (Accumulate(), "exact"), (Replace(), "sample")])
def test_stop_when_absorbed_equals_the_full_run_bit_for_bit(regime, path):
    model = Categorical(5, max_samples=4)
    common = dict(num_chains=64, num_generations=150, num_samples=4, path=path, trajectories=True)
    full = simulate(3, model, regime, **common)
    stopped = simulate(3, model, regime, stop_when_absorbed=True, snapshots=(1, 149), **common)
    _assert_same_result(full, stopped)
    first = simulate(3, model, regime, **(common | dict(num_generations=1)))
    np.testing.assert_array_equal(stopped.snapshots[1].probs, first.final_params.probs)
    if isinstance(regime, Accumulate):  # the pool keeps every outcome of the first fit: nothing is absorbed
        assert stopped.metadata["absorbed_at_generation"] is None
        return
    np.testing.assert_array_equal(stopped.snapshots[149].probs, full.final_params.probs)  # absorbed by then
    absorbed_at = stopped.metadata["absorbed_at_generation"]
    assert absorbed_at < 150 and full.mean("fixed")[absorbed_at - 1] == 1.0
    # the first generation at which every chain is fixed lies in the last chunk before the stop
    first_all = int(np.argmax(full.mean("fixed") == 1.0)) + 1
    assert first_all <= absorbed_at <= 2 * first_all
    assert stopped.config["stop_when_absorbed"] is True


def test_stop_when_absorbed_runs_to_the_end_when_a_chain_never_fixes():
    model = Categorical(5, max_samples=50)
    common = dict(num_chains=8, num_generations=12, num_samples=50, path="exact", metrics=["fixed"], quantiles=NO_Q)
    full = simulate(1, model, Replace(), **common)
    stopped = simulate(1, model, Replace(), stop_when_absorbed=True, chunk_size=5, **common)
    assert stopped.metadata["absorbed_at_generation"] is None  # recorded: the run went to the end
    _assert_same_result(full, stopped)


# ----------------------------------------------------------------------------------------------------------------
# compaction
# ----------------------------------------------------------------------------------------------------------------
K, M = 64, 8
P0 = th.zipf_probs(K, 1.1)


@pytest.fixture(scope="module")
def compact_run():
    model = Categorical(K, max_samples=M)
    return simulate(21, model, Replace(), num_chains=8192, num_generations=12, num_samples=M,
                    truth=model.params(P0), path="exact", compact=True, quantiles=NO_Q,
                    metrics=["heterozygosity", "surviving", "lost_mass", "tv", "tail_mass", "top_prob", "entropy",
                             "kl_truth_model", "zero_count"], trajectories=True)


def test_compact_moves_to_a_smaller_support(compact_run):
    schedule = compact_run.metadata["support_schedule"]
    assert schedule[0] == [1, K] and len(schedule) >= 2
    assert all(2 * size <= previous
               for (_, previous), (_, size) in zip(schedule, schedule[1:], strict=False))
    assert compact_run.final_params.probs.shape == (8192, K) and compact_run.final_params.ids is None
    np.testing.assert_allclose(compact_run.final_params.probs.sum(axis=1), 1.0, rtol=1e-12)


def test_compact_heterozygosity_and_survival_match_wright_fisher(compact_run):
    res = compact_run
    h0 = th.heterozygosity(P0)
    for t in (4, 12):
        h, se = res.mean("heterozygosity")[t - 1], res.se("heterozygosity")[t - 1]
        assert_close_to_theory(h, se, th.expected_heterozygosity(t, M, h0), label=f"compact H_{t}")
        s, se_s = res.mean("surviving")[t - 1], res.se("surviving")[t - 1]
        assert_close_to_theory(s, se_s, th.expected_surviving(t, M, P0), label=f"compact survivors t={t}")
    assert_rejects(res.mean("heterozygosity")[11], res.se("heterozygosity")[11],
                   th.expected_heterozygosity(12, M - 1, h0), label="compact H with M-1")
    assert_rejects(res.mean("surviving")[3], res.se("surviving")[3], th.expected_surviving(3, M, P0),
                   label="compact survivors t-1")


def test_compact_metrics_equal_the_full_models(compact_run):
    """The last row of every trajectory (computed on the compacted support) equals the full model's metrics of the
    expanded final parameters, to rounding."""
    model = Categorical(K, max_samples=M)
    truth = model.params(P0)
    full = jax.vmap(lambda p: model.metrics(p, truth))(jax.tree.map(jnp.asarray, compact_run.final_params))
    for name, values in compact_run.trajectories.items():
        np.testing.assert_allclose(values[-1], np.asarray(full[name]), rtol=1e-12, atol=1e-15, err_msg=name)


def test_pack_and_expand_round_trip_and_metrics():
    model = Categorical(10, head_size=3)
    truth = model.params(th.zipf_probs(10, 1.0))
    probs = jnp.asarray([0.0, 0.25, 0.0, 0.0, 0.5, 0.0, 0.0, 0.25, 0.0, 0.0])
    params = model.fit_from_stats(CategoricalStats(probs * 4))
    small = model.compacted(4)
    packed, pool = small.pack(model, params, CategoricalStats(probs * 4))
    np.testing.assert_array_equal(packed.ids, [1, 4, 7, 10])  # live outcomes in order, then the unused mark K
    np.testing.assert_array_equal(pool.counts, [1.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(small.expand(packed).probs, params.probs)
    assert small.support_size(packed) == 3 and not bool(small.absorbed(packed))
    a, b = model.metrics(params, truth), small.metrics(packed, truth)
    for name in a:
        np.testing.assert_allclose(float(b[name]), float(a[name]), rtol=1e-12, atol=1e-15, err_msg=name)
    # re-packing a packed chain onto a smaller support keeps the outcomes
    smaller = model.compacted(3)
    again, _ = smaller.pack(small, packed, jnp.zeros(()))
    np.testing.assert_array_equal(again.ids, [1, 4, 7])
    assert bool(model.absorbed(model.fit_from_stats(CategoricalStats(jnp.eye(10)[3] * 5))))


def test_compact_and_stop_give_the_exact_collapse_time():
    """Kazdan's stopping rule on a compacted, early-stopped run: the mean collapse time equals the exact
    Wright–Fisher fixation-time mean (K = 40 uniform, M = 6), not Littler's diffusion approximation."""
    p0 = np.full(40, 1 / 40)
    model = Categorical(40, max_samples=6)
    res = simulate(22, model, Replace(), num_chains=4096, num_generations=400, num_samples=6, path="exact",
                   compact=True, stop_when_absorbed=True, metrics=["collapsed"], quantiles=NO_Q)
    assert res.metadata["absorbed_at_generation"] < 400
    summary = collapse_time_summary(res.mean("collapsed"))
    mean, var = th.fixation_time_moments(6, p0)
    se = np.sqrt(var / res.num_chains)
    assert_close_to_theory(summary["mean"], se, mean, label="compact collapse time")
    assert_rejects(summary["mean"], se, th.expected_fixation_time_diffusion(6, p0),
                   label="compact collapse time vs diffusion approximation")


def test_compact_accumulate_keeps_the_accumulate_law():
    model = Categorical(K, max_samples=M)
    truth = model.params(P0)
    res = simulate(23, model, Accumulate(), num_chains=8192, num_generations=6, num_samples=M, truth=truth,
                   path="exact", compact=True, metrics=["heterozygosity"], quantiles=NO_Q)
    assert len(res.metadata["support_schedule"]) >= 2
    h0 = th.heterozygosity(P0)
    h, se = res.mean("heterozygosity")[-1], res.se("heterozygosity")[-1]
    assert_close_to_theory(h, se, th.expected_heterozygosity(6, M, h0, "accumulate"), label="compact accumulate")
    assert_rejects(h, se, th.expected_heterozygosity(6, M, h0), label="compact accumulate vs replace law")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(regime=FreshFraction(0.5), stop_when_absorbed=True), "brings in fresh data"),
        (dict(regime=FreshFraction(0.5), compact=True), "revives"),
        (dict(compact=True, path="sample"), "exact path"),
        (dict(compact=True, model=Categorical(8, smoothing=0.5)), "smoothing=0.5"),
        (dict(compact=True, checkpoint="x.ckpt"), "checkpoint"),
        (dict(compact=True, devices=1), "one device"),
        (dict(stop_when_absorbed=True, model=Gaussian(dim=1, ddof=1)), "no absorbing states"),
        (dict(compact=True, model=Gaussian(dim=1, ddof=1)), "no compacted"),
        (dict(stop_when_absorbed=1), "stop_when_absorbed=1"),
    ],
)
def test_bad_absorbing_options_raise_clear_errors(kwargs, match):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", Categorical(8))
    regime = kwargs.pop("regime", Replace())
    path = kwargs.pop("path", "exact")
    with pytest.raises(ValueError, match=match):
        simulate(0, model, regime, num_chains=4, num_generations=3, num_samples=4, path=path, **kwargs)


def test_support_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="support=0"):
        Categorical(8, support=0)
    with pytest.raises(ValueError, match="support=9"):
        Categorical(8, support=9)
    with pytest.raises(ValueError, match="smoothing"):
        Categorical(8, smoothing=1.0, support=4)
    assert ReplaceGrown.closed and Accumulate.closed and not FreshFraction(0.5).closed
