"""Sharded == unsharded, bit for bit, on 4 forced CPU devices.

``jax_num_cpu_devices`` only takes effect before JAX initialises its backends, so the checks run in a fresh
process (``tests/_sharding_worker.py``) and report back one verdict per case. A failure means the chain axis
changed some chain's keys or arithmetic (e.g. a key derived from the position in the local batch instead of the
global chain id) or that the summaries over chains were reduced in a sharding-dependent order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_sharding_worker.py"
FAST = ("gaussian_exact", "gaussian_sample", "regression_sample", "indivisible_error", "sharded_output",
        "resume_across_devices", "lapack_guard", "compiler_options_across_device_sets")
SLOW = ("gaussian_sample_accumulate", "gaussian_sample_dim2", "regression_exact", "padded")


def _run_worker(cases) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, str(WORKER), *cases], capture_output=True, text=True, env=env,
                          timeout=900, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, f"worker failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.fixture(scope="module")
def fast_results():
    return _run_worker(FAST)


@pytest.mark.parametrize("case", FAST)
def test_sharded_four_devices(fast_results, case):
    assert fast_results.get(case) == "ok", fast_results.get(case, f"case {case} did not run")


@pytest.mark.slow
def test_sharded_four_devices_more_regimes():
    results = _run_worker(SLOW)
    bad = {k: v for k, v in results.items() if v != "ok"}
    assert set(results) == set(SLOW) and not bad, bad


def _cli(*args, timeout=300):
    env = dict(os.environ)
    # 2 CPU devices per process on a 2-core machine call LAPACK (the 2-D Gaussian's QR): refused by default as a
    # possible hang (test_lapack_guard_*); these batches (8 chains of 10 x 2) have always finished, so run them
    env["COLLAPSE_THEORY_ALLOW_CPU_LAPACK_DEVICES"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen([sys.executable, "-m", "collapse_theory", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def test_two_processes_equal_one_process(tmp_path):
    """Multi-host for real: two processes on localhost (``--distributed``, Gloo collectives, 2 CPU devices each)
    run one 4-device mesh, and process 0's result file equals a single process with 4 devices bit for bit
    (catches a mesh that spans only one host, process-local chain ids, or a cross-host reduction in another
    order)."""
    import socket

    import numpy as np

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    common = ["--model", "gaussian", "--dim", "2", "--ddof", "1", "--num-chains", "32", "--num-generations", "6",
              "--num-samples", "10", "--path", "sample", "--devices", "4", "--no-progress", "--seed", "5"]
    procs = [_cli(*common, "--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                  "--process-id", str(i), "--out", str(tmp_path / f"multi{i}.npz")) for i in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    single = _cli(*common, "--out", str(tmp_path / "single.npz"))
    log = single.communicate(timeout=300)[0]
    assert single.returncode == 0, log
    assert not (tmp_path / "multi1.npz").exists()  # one result file per run: process 0 writes it
    multi, one = np.load(tmp_path / "multi0.npz"), np.load(tmp_path / "single.npz")
    summary = [k for k in one.files if k.startswith("summary")]
    assert summary and set(summary) <= set(multi.files)
    for k in summary:
        np.testing.assert_array_equal(multi[k], one[k], err_msg=k)


# ------------------------------------------------------------------ CPU devices x jaxlib's batched LAPACK kernels
def _lowered_text(fn, *args):
    import jax

    return jax.jit(fn).lower(*args).as_text()


def test_lapack_targets_found_in_lowered_programs():
    """The guard reads LAPACK calls from the lowered program: a batched QR and Cholesky are found by name, an
    elementwise program has none (a parser that missed the ``@lapack_..._ffi`` form would wave every run through)."""
    import jax.numpy as jnp

    from collapse_theory import distributed

    a = jnp.ones((4, 6, 3))
    found = distributed.lapack_targets(_lowered_text(lambda x: jnp.linalg.qr(x, mode="r"), a))
    assert found and all(t.startswith("lapack_") and "geqrf" in "".join(found) for t in found), found
    spd = jnp.broadcast_to(jnp.eye(3), (4, 3, 3))
    assert any("potrf" in t for t in distributed.lapack_targets(_lowered_text(jnp.linalg.cholesky, spd)))
    assert distributed.lapack_targets(_lowered_text(lambda x: jnp.exp(x).sum(), a)) == []


def test_lapack_guard_message_and_waivers(monkeypatch):
    """With the hazard present a LAPACK-calling program is refused with the parameter, its value, the allowed
    range and the way out; without LAPACK calls, without the hazard, or with the waiver it runs."""
    import jax
    import jax.numpy as jnp

    from collapse_theory import distributed

    text = _lowered_text(lambda x: jnp.linalg.qr(x, mode="r"), jnp.ones((4, 6, 3)))
    mesh = distributed.chain_mesh(1)
    monkeypatch.setattr(distributed, "cpu_threads", lambda: 1)
    monkeypatch.delenv(distributed.ALLOW_CPU_LAPACK, raising=False)
    if jax.devices()[0].platform != "cpu" or distributed._version_tuple(
            __import__("jaxlib").__version__) >= distributed._LAPACK_POOL_FIXED:
        assert distributed.lapack_hazard(mesh) is None
        return
    hazard = distributed.lapack_hazard(mesh)
    assert hazard and "1 CPU devices" in hazard and "1 CPU threads" in hazard
    with pytest.raises(ValueError) as err:
        distributed.check_lapack(hazard, 1, text)
    msg = str(err.value)
    assert "devices=1" in msg and "need devices < 1" in msg and "geqrf" in msg and distributed.ALLOW_CPU_LAPACK in msg
    distributed.check_lapack(hazard, 1, "module { func.func @main() { return } }")  # no LAPACK: runs
    distributed.check_lapack(None, 1, text)  # no hazard: runs
    monkeypatch.setenv(distributed.ALLOW_CPU_LAPACK, "1")
    assert distributed.lapack_hazard(mesh) is None
    monkeypatch.setenv(distributed.ALLOW_CPU_LAPACK, "0")
    assert distributed.lapack_hazard(mesh) is not None
    monkeypatch.setattr(distributed, "cpu_threads", lambda: 2)  # fewer devices than threads: a thread stays free
    assert distributed.lapack_hazard(mesh) is None
    assert distributed._version_tuple("0.11.2") >= distributed._LAPACK_POOL_FIXED > distributed._version_tuple("0.10.2")

