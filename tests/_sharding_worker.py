"""Sharding checks run in a fresh process with 4 forced CPU devices (``jax_num_cpu_devices`` must be set before
JAX initialises its backends, so this cannot share the pytest process). Prints one JSON object
``{case: "ok" | error text}``; driven by ``tests/test_distributed.py``.

At least 8 chains per device throughout: XLA:CPU may compile batches narrower than its SIMD width with a scalar
loop whose floating-point contraction differs, and then even an unsharded run with fewer chains differs in the
last bit; the chain *keys* are never the issue.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = os.environ.get("COLLAPSE_THEORY_TEST_CACHE", os.path.expanduser("~/.cache/collapse_theory/jax-tests"))
if _cache != "0":  # the same on-disk compile cache as tests/conftest.py
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import numpy as np  # noqa: E402

from collapse_theory import Accumulate, Gaussian, Replace, simulate  # noqa: E402
from collapse_theory.models.regression import LinearRegression  # noqa: E402

G, M, C = 4, 7, 32  # chunk_size=2: one compiled chunk length per run
QUANTILES = (0.1, 0.5, 0.9)
GAUSS_METRICS = ("log_variance", "sq_mean_error", "kl_truth_model", "w2_squared")


def assert_same(a, b):
    assert set(a.summary) == set(b.summary)
    for metric, stats in a.summary.items():
        for stat, value in stats.items():
            np.testing.assert_array_equal(value, b.summary[metric][stat], err_msg=f"summary {metric}/{stat}")
    assert (a.trajectories is None) == (b.trajectories is None)
    for metric, value in (a.trajectories or {}).items():
        np.testing.assert_array_equal(value, b.trajectories[metric], err_msg=f"trajectories {metric}")
    pa, pb = jax.tree.leaves(a.final_params), jax.tree.leaves(b.final_params)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y, err_msg="final_params")


def pair(model, regime, path, num_chains=C, metrics=None, **extra):
    kw = dict(num_chains=num_chains, num_generations=G, num_samples=M, path=path, quantiles=QUANTILES,
              trajectories=True, chunk_size=2, metrics=metrics)
    single = simulate(5, model, regime, **kw)
    sharded = simulate(5, model, regime, devices=4, **kw, **extra)
    return single, sharded


def case_gaussian_exact():
    assert_same(*pair(Gaussian(dim=1, ddof=1), Replace(), "exact", metrics=GAUSS_METRICS))


def case_gaussian_sample():
    assert_same(*pair(Gaussian(dim=1, ddof=1), Replace(), "sample", metrics=GAUSS_METRICS))


def case_gaussian_sample_dim2():
    """d = 2: the fit is a batched LAPACK QR and w2_squared a matrix iteration. Four CPU devices on at most four
    cores would refuse the QR as a possible hang (``case_lapack_guard``); batches this small (8 chains of 7 x 2)
    have always finished, so the waiver is set for this case."""
    from collapse_theory import distributed

    os.environ[distributed.ALLOW_CPU_LAPACK] = "1"
    try:
        assert_same(*pair(Gaussian(dim=2, ddof=1), Replace(), "sample", metrics=("w2_squared", "log_det_ratio")))
    finally:
        del os.environ[distributed.ALLOW_CPU_LAPACK]


def case_compiler_options_across_device_sets():
    """Runs compiled ahead of time with ``compiler_options`` on other device sets (one device, another device,
    two devices in either order, then none) each compile their own program: a cache keyed on shapes and dtypes
    alone handed the first run's executable to the next and failed ("compiled for input shardings that disagree").
    Every result equals the unsharded one bit for bit."""
    from collapse_theory.simulate import FAST_COMPILE

    devices = jax.devices()
    kw = dict(num_chains=C, num_generations=G, num_samples=M, path="exact", quantiles=QUANTILES, trajectories=True,
              compiler_options=FAST_COMPILE)
    model = Gaussian(dim=1, ddof=1)
    base = simulate(5, model, Replace(), **kw)
    for chosen in ([devices[1]], [devices[0], devices[1]], [devices[1], devices[0]], None):
        assert_same(base, simulate(5, model, Replace(), devices=chosen, **kw))


def case_lapack_guard():
    """Four CPU devices on at most four cores and a program with batched LAPACK calls (a 10-D Gaussian's QR):
    refused with a ValueError before it runs (without the guard it hangs on 2 cores: distributed.py); with more
    cores than devices it runs. A 1-D Gaussian (no LAPACK) runs sharded in the other cases either way."""
    from collapse_theory import distributed

    kw = dict(num_chains=C, num_generations=2, num_samples=20, path="sample", devices=4)
    if distributed.lapack_hazard(distributed.chain_mesh(4)) is None:  # more cores than devices, or a waiver
        simulate(5, Gaussian(dim=10, ddof=1), Replace(), **kw)
        return
    from collapse_theory.simulate import FAST_COMPILE

    for options in (None, FAST_COMPILE):  # jit's cache, and ahead-of-time compiled from the guard's lowering
        try:
            simulate(5, Gaussian(dim=10, ddof=1), Replace(), compiler_options=options, **kw)
        except ValueError as err:
            msg = str(err)
            assert "devices=4" in msg and "lapack_" in msg and "need devices <" in msg, msg
        else:
            raise AssertionError(f"no ValueError for a LAPACK program on 4 CPU devices with <= 4 cores ({options})")
    # a program without LAPACK passes the guard and runs, compiled from the lowering the guard read
    one = simulate(5, Gaussian(dim=1, ddof=1), Replace(), compiler_options=FAST_COMPILE, **kw)
    ref = simulate(5, Gaussian(dim=1, ddof=1), Replace(), compiler_options=FAST_COMPILE, **{**kw, "devices": None})
    assert np.isfinite(one.mean("log_variance")).all()
    np.testing.assert_allclose(one.mean("log_variance"), ref.mean("log_variance"), rtol=1e-12)


def case_gaussian_sample_accumulate():
    assert_same(*pair(Gaussian(dim=1, ddof=0), Accumulate(), "sample"))


def case_regression_sample():
    assert_same(*pair(LinearRegression(dim=3), Replace(), "sample"))


def case_regression_exact():
    assert_same(*pair(LinearRegression(dim=3), Accumulate(), "exact"))


def case_padded():
    single, sharded = pair(Gaussian(dim=1, ddof=1), Replace(), "sample", num_chains=C - 2, pad_chains=True)
    assert_same(single, sharded)
    assert sharded.config["pad_chains"] == 2 and sharded.num_chains == C - 2


def case_indivisible_error():
    try:
        simulate(5, Gaussian(dim=1, ddof=1), num_chains=30, num_generations=2, num_samples=5, devices=4)
    except ValueError as err:
        assert "num_chains=30" in str(err) and "devices=4" in str(err) and "pad_chains" in str(err), str(err)
    else:
        raise AssertionError("no ValueError for num_chains=30 over 4 devices")
    try:
        simulate(5, Gaussian(dim=1, ddof=1), num_chains=32, num_generations=2, num_samples=5, devices=5)
    except ValueError as err:
        assert "devices=5" in str(err) and "<= 4" in str(err), str(err)
    else:
        raise AssertionError("no ValueError for devices=5 with 4 devices")


def case_sharded_output():
    """The carry really is split over the 4 devices (not silently replicated)."""
    from collapse_theory import distributed

    mesh = distributed.chain_mesh(4)
    x = distributed.place(np.arange(32.0), distributed.chain_sharding(mesh))
    assert len(x.addressable_shards) == 4 and x.addressable_shards[0].data.shape == (8,)
    assert x.sharding.spec == jax.sharding.PartitionSpec("chains")


def case_resume_across_devices(tmpdir):
    """A checkpoint written by a 4-device run resumes on one device and ends equal to an uninterrupted run."""
    from collapse_theory import simulate as sim_module  # noqa: F401

    engine = sys.modules["collapse_theory.simulate"]
    kw = dict(num_chains=C, num_generations=G, num_samples=M, path="sample", quantiles=QUANTILES,
              trajectories=True, chunk_size=1, metrics=GAUSS_METRICS)
    full = simulate(5, Gaussian(dim=1, ddof=1), **kw)
    ckpt = os.path.join(tmpdir, "ckpt.npz")
    original, calls = engine._call_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    engine._call_chunk = interrupted
    try:
        simulate(5, Gaussian(dim=1, ddof=1), devices=4, checkpoint=ckpt, checkpoint_every=1e9, **kw)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the simulated Ctrl-C did not propagate")
    finally:
        engine._call_chunk = original
    resumed = simulate(5, Gaussian(dim=1, ddof=1), checkpoint=ckpt, resume=True, **kw)
    assert resumed.metadata["resumed_from_generation"] == 2
    assert_same(full, resumed)


def main() -> int:
    import tempfile

    assert jax.device_count() == 4, jax.devices()
    wanted = sys.argv[1:]
    results = {}
    for name, fn in sorted(globals().items()):
        if not name.startswith("case_") or (wanted and name[5:] not in wanted):
            continue
        start = time.perf_counter()
        try:
            if name == "case_resume_across_devices":
                with tempfile.TemporaryDirectory() as tmp:
                    fn(tmp)
            else:
                fn()
            results[name[5:]] = "ok"
            print(f"{name[5:]}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        except BaseException:  # noqa: BLE001 - report every failure to the driving test
            results[name[5:]] = traceback.format_exc()
    print("RESULTS " + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
