"""Explicit per-generation sample sizes: ``simulate(..., num_samples=[M_1, M_2, ...])``
(:class:`collapse_theory.schedules.Explicit`).

The engine evaluates every schedule on the host into one integer table, so a sequence equal to a Linear schedule's
sizes must give the same run bit for bit, on both paths; bad sequences are refused by name before anything is
traced.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from collapse_theory import Accumulate, AccumulateSubsample, Explicit, Gaussian, Linear, Replace, simulate
from collapse_theory.schedules import as_schedule

KW = dict(num_chains=8, num_generations=4, trajectories=True)


def _same(a, b):
    assert sorted(a.trajectories) == sorted(b.trajectories)
    for name in a.trajectories:
        np.testing.assert_array_equal(np.asarray(a.trajectories[name]), np.asarray(b.trajectories[name]),
                                      err_msg=name)


@pytest.mark.parametrize("path, regime", [("exact", Replace()), ("exact", Accumulate()), ("sample", Replace()),
                                          ("sample", Accumulate())])
def test_sequence_equals_linear_schedule_bit_for_bit(path, regime):
    model = Gaussian(dim=1, ddof=1)
    linear = simulate(3, model, regime, num_samples=Linear(first=10, slope=1), path=path, **KW)
    for given in ([10, 11, 12, 13], np.array([10, 11, 12, 13]), (10, 11, 12, 13, 99)):  # extra sizes are unused
        _same(simulate(3, model, regime, num_samples=given, path=path, **KW), linear)
    for given in ([10, 11, 12, 13], [10, 11, 12, 13, 99]):  # the sizes used are recorded, not the unused ones
        res = simulate(3, model, regime, num_samples=given, path=path, **KW)
        assert res.config["num_samples"] == {"values": [10, 11, 12, 13], "schedule": "Explicit"}


def test_explicit_is_hashable_and_serialisable():
    a, b = Explicit([10, 20, 30]), as_schedule(np.array([10, 20, 30], dtype=np.int32))
    assert isinstance(b, Explicit) and a == b and hash(a) == hash(b)
    assert a.values == (10, 20, 30) and all(type(v) is int for v in b.values)
    assert json.loads(json.dumps(b.values)) == [10, 20, 30]
    assert Explicit([10.0, 20.0]).values == (10, 20)  # whole floats are ints, as in the theory functions
    np.testing.assert_array_equal(a.sizes(2), [10, 20])
    assert a.sizes(3).dtype == np.int64
    assert as_schedule(Linear(2, 1)) == Linear(2, 1) and as_schedule(7) == as_schedule(7)


def test_decreasing_sizes_run_on_the_sample_path():
    """The engine needs no order: buffers are sized by max_t M_t and rows past M_t carry weight 0."""
    res = simulate(1, Gaussian(dim=1, ddof=1), AccumulateSubsample(), num_samples=[20, 5, 12, 3], path="sample",
                   **KW)
    assert np.all(np.isfinite(np.asarray(res.trajectories["log_variance"])))


def test_resume_with_the_same_sizes_and_not_others(tmp_path):
    ckpt = tmp_path / "run.ckpt.npz"
    kw = dict(KW, path="exact")
    full = simulate(2, Gaussian(dim=1, ddof=1), num_samples=[4, 6, 9, 13], checkpoint=ckpt, **kw)
    again = simulate(2, Gaussian(dim=1, ddof=1), num_samples=np.array([4, 6, 9, 13]), checkpoint=ckpt, resume=True,
                     **kw)
    assert again.metadata["resumed_from_generation"] == 4
    _same(again, full)
    longer = simulate(2, Gaussian(dim=1, ddof=1), num_samples=[4, 6, 9, 13, 20], checkpoint=ckpt, resume=True,
                      **kw)  # a size past num_generations is unused: the same run
    _same(longer, full)
    with pytest.raises(ValueError, match=r"config.num_samples"):
        simulate(2, Gaussian(dim=1, ddof=1), num_samples=[4, 6, 9, 14], checkpoint=ckpt, resume=True, **kw)


@pytest.mark.parametrize("given, message", [
    ([10, True, 12], r"num_samples\[1\]=True \(M_2, generation t=2\) is a bool"),
    ([10, 2.5, 12], r"num_samples\[1\]=2.5 .* is not an integer"),
    ([10, 0, 12], r"num_samples\[1\]=0 .* is out of range: need .*1 <= M_t"),
    ([10, 11, -3], r"num_samples\[2\]=-3 .* is out of range"),
    ([10, float("nan"), 12], r"num_samples\[1\]=nan .* is not finite"),
    ([10, 11, 2**31], r"num_samples\[2\]=2147483648 .* is out of range"),
    ([10, "11", 12], r"num_samples\[1\]='11' .* is not an integer"),
    ([], r"num_samples is empty"),
    (np.zeros(0, dtype=np.int64), r"num_samples is empty"),
    ([[10, 11], [12, 13]], r"num_samples has shape \(2, 2\)"),
    (np.full((3, 1), 10), r"num_samples has shape \(3, 1\)"),
    ([10, 11], r"num_samples has 2 sizes but num_generations=3"),
])
def test_bad_sequences_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=message):
        simulate(0, Gaussian(dim=1, ddof=1), num_chains=2, num_generations=3, num_samples=given, path="exact")


def test_model_min_samples_still_applies():
    with pytest.raises(ValueError, match=r"num_samples=1 at generation t=2 .* needs num_samples >= 2"):
        simulate(0, Gaussian(dim=1, ddof=1), num_chains=2, num_generations=3, num_samples=[3, 1, 3], path="exact")
