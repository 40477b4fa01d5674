"""Scale-out on one device: merging disjoint chain ranges, checkpoint/resume, and their CLI.

* Merge: jobs over chains [0, 5) and [5, 12) with ``chain_offset`` simulate exactly the chains of one run over
  [0, 12) (keys depend on the global chain id). With trajectories the merged summaries are recomputed by the
  engine's own reduction, so merged == single run **bit for bit**; without them mean and sd come from Chan's
  combination of (count, mean, centred sum of squares), equal to float64 rounding, and quantiles are dropped.
* Resume: a run interrupted (simulated Ctrl-C inside a chunk) leaves a checkpoint; resuming it, with any chunk
  size, ends bit-identical to the uninterrupted run.
* Bad input (gaps, overlaps, different runs; a checkpoint of another run) raises ``ValueError`` naming it.

The 4-device sharding checks are in ``test_distributed.py`` (a separate process).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from collapse_theory import Gaussian, SimulationResult, simulate
from collapse_theory.checkpoint import load_checkpoint
from collapse_theory.cli import main
from collapse_theory.merge import combine_moments, merge_results

ENGINE = importlib.import_module("collapse_theory.simulate")
MODEL = Gaussian(dim=1, ddof=1)
KW = dict(num_generations=6, num_samples=6, path="exact", metrics=["log_variance", "sq_mean_error"],
          quantiles=(0.25, 0.5), chunk_size=2)


def _params(res):
    p = res.final_params
    return dict(p._asdict()) if hasattr(p, "_asdict") else dict(p)


def assert_same(a, b, summaries=("mean", "sd", "quantiles")):
    assert set(a.summary) == set(b.summary)
    for metric in a.summary:
        for stat in summaries:
            np.testing.assert_array_equal(a.summary[metric][stat], b.summary[metric][stat], err_msg=f"{metric}/{stat}")
    assert (a.trajectories is None) == (b.trajectories is None)
    if a.trajectories is not None:
        for metric in a.trajectories:
            np.testing.assert_array_equal(a.trajectories[metric], b.trajectories[metric], err_msg=metric)
    pa, pb = _params(a), _params(b)
    assert set(pa) == set(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=f"final_params/{name}")


@pytest.fixture(scope="module")
def parts():
    """One run over chains [0, 12) and the same chains as two jobs [0, 5) + [5, 12)."""
    full = simulate(3, MODEL, num_chains=12, trajectories=True, **KW)
    a = simulate(3, MODEL, num_chains=5, trajectories=True, **KW)
    b = simulate(3, MODEL, num_chains=7, chain_offset=5, trajectories=True, **KW)
    return full, a, b


def test_merge_with_trajectories_is_bit_identical(parts, tmp_path):
    full, a, b = parts
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    merged = merge_results([tmp_path / "b.npz", tmp_path / "a.npz"])  # any order
    assert merged.num_chains == 12 and merged.config["chain_offset"] == 0
    np.testing.assert_array_equal(merged.quantile_levels, full.quantile_levels)
    assert_same(merged, full)
    merged.save(tmp_path / "m.npz")
    assert_same(SimulationResult.load(tmp_path / "m.npz"), full)


def test_merge_without_trajectories_uses_exact_moments(parts):
    full, a, b = parts
    a_nt, b_nt = (SimulationResult(p.generations, p.summary, p.quantile_levels, None, p.final_params, p.config,
                                   p.metadata) for p in (a, b))
    merged = merge_results([a_nt, b_nt])
    assert merged.trajectories is None and merged.quantile_levels.size == 0
    assert "not mergeable" in merged.config["merge"]["quantiles"]
    for metric in full.summary:
        assert "quantiles" not in merged.summary[metric]
        np.testing.assert_allclose(merged.summary[metric]["mean"], full.summary[metric]["mean"], rtol=1e-13, atol=0)
        np.testing.assert_allclose(merged.summary[metric]["sd"], full.summary[metric]["sd"], rtol=1e-12, atol=0)
    assert_same(merged, SimulationResult(full.generations, full.summary, full.quantile_levels, None,
                                         full.final_params, full.config, full.metadata), summaries=())


def test_combine_moments_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(17, 4))
    cuts = [0, 3, 4, 11, 17]
    pieces = [x[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    mean, sd = combine_moments([len(p) for p in pieces], [p.mean(0) for p in pieces],
                               [p.std(0, ddof=1) if len(p) > 1 else np.zeros(4) for p in pieces])
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(sd, x.std(0, ddof=1), rtol=1e-13)


def test_merge_rejects_mismatched_inputs(parts):
    full, a, b = parts
    with pytest.raises(ValueError, match="at least 2"):
        merge_results([a])
    with pytest.raises(ValueError, match=r"overlap"):
        merge_results([a, full])
    c = simulate(3, MODEL, num_chains=7, chain_offset=6, trajectories=True, **KW)  # b's compiled program
    with pytest.raises(ValueError, match=r"gap.*chain_offset=5"):
        merge_results([a, c])

    def altered(res, config=None, metadata=None):
        return SimulationResult(res.generations, res.summary, res.quantile_levels, res.trajectories,
                                res.final_params, res.config | (config or {}), res.metadata | (metadata or {}))

    with pytest.raises(ValueError, match="differ in seed: 3 vs 4"):
        merge_results([a, altered(b, metadata={"seed": 4})])
    with pytest.raises(ValueError, match="model_options"):
        merge_results([a, altered(b, config={"model_options": {"dim": 1, "ddof": 0}})])
    with pytest.raises(ValueError, match="num_generations"):
        merge_results([a, altered(b, config={"num_generations": 7})])
    # the truth is part of the run: a Zipf(2) job and a uniform job of the same sizes are not one run
    other = simulate(3, MODEL, num_chains=7, chain_offset=5, trajectories=True,
                     truth=MODEL.params(mean=0.5, cov=2.0), **KW)
    assert a.config["truth"] != other.config["truth"]
    with pytest.raises(ValueError, match="config differs: truth"):
        merge_results([a, other])


def test_combine_moments_keeps_infinite_means():
    """Two parts whose mean is +inf (kl_truth_model of a chain that lost a category) merged into NaN: inf − inf."""
    with np.errstate(all="raise"):
        mean, _ = combine_moments([3, 4], [np.array([np.inf, 1.0]), np.array([np.inf, 2.0])],
                                  [np.array([np.nan, 1.0]), np.array([np.nan, 1.0])])
    assert mean[0] == np.inf and mean[1] == pytest.approx(11 / 7)


def _interrupt_at(monkeypatch, call, after_running=False):
    """Ctrl-C during chunk ``call``: before it starts, or once it has run (and consumed the donated state it was
    given) but before its result is committed."""
    original, calls = ENGINE._call_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if after_running:
                jax.block_until_ready(original(*args, **kwargs))
            raise KeyboardInterrupt  # as if Ctrl-C arrived while the chunk was running
        return original(*args, **kwargs)

    monkeypatch.setattr(ENGINE, "_call_chunk", interrupted)


@pytest.mark.parametrize("resume_chunk, after_running", [(2, False), (1, False), (2, True)])
def test_resume_after_interrupt_is_bit_identical(tmp_path, monkeypatch, resume_chunk, after_running):
    """``after_running``: the chunk overwrote (donated) the state it was given; the checkpoint must still hold
    the last committed state, so a checkpointed run hands the chunk a copy (without it the save reads deleted
    buffers and fails)."""
    kw = dict(KW, num_chains=8, trajectories=True)
    full = simulate(3, MODEL, **kw)
    ckpt = tmp_path / "run.ckpt.npz"
    _interrupt_at(monkeypatch, 3, after_running)
    with pytest.raises(KeyboardInterrupt):
        simulate(3, MODEL, checkpoint=ckpt, checkpoint_every=1e9, **kw)
    monkeypatch.undo()
    saved = load_checkpoint(ckpt)
    assert saved["t_done"] == 4 and saved["outputs"]["summary"]["log_variance"]["mean"].shape == (4,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt.npz"]  # no temporary files left behind
    resumed = simulate(3, MODEL, checkpoint=ckpt, resume=True, **dict(kw, chunk_size=resume_chunk))
    assert resumed.metadata["resumed_from_generation"] == 4
    assert_same(resumed, full)
    assert load_checkpoint(ckpt)["t_done"] == 6


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    ckpt = tmp_path / "c.npz"
    simulate(3, MODEL, num_chains=4, checkpoint=ckpt, **KW)
    with pytest.raises(ValueError, match=r"config.num_chains: checkpoint 4 vs run 5"):
        simulate(3, MODEL, num_chains=5, checkpoint=ckpt, resume=True, **KW)
    with pytest.raises(ValueError, match="seed"):
        simulate(4, MODEL, num_chains=4, checkpoint=ckpt, resume=True, **KW)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        simulate(3, MODEL, num_chains=4, resume=True, **KW)
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        simulate(3, MODEL, num_chains=4, checkpoint=tmp_path / "bad.npz", resume=True, **KW)


def test_resume_and_merge_refuse_another_reference_and_checkpoints_must_be_consistent(tmp_path, monkeypatch):
    """Found by review: the metrics' ``reference`` was recorded as "given" only, so a run resumed (or merged) with
    another reference spliced two different observables (sq_mean_error jumped from 0.16 to 27 at the resume point);
    snapshots taken before an interruption were silently lost on resume; a checkpoint whose outputs disagree with
    its t_done was accepted. Each is now refused; the writing code's versions travel with the checkpoint."""
    ref_a, ref_b = MODEL.params(), MODEL.params(mean=np.array([5.0]))
    ckpt = tmp_path / "c.npz"
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        simulate(3, MODEL, num_chains=4, reference=ref_a, checkpoint=ckpt, checkpoint_every=0, **KW)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="config.reference"):
        simulate(3, MODEL, num_chains=4, reference=ref_b, checkpoint=ckpt, resume=True, **KW)
    resumed = simulate(3, MODEL, num_chains=4, reference=ref_a, checkpoint=ckpt, resume=True, **KW)
    assert resumed.metadata["resumed_from"]["collapse_theory"] == resumed.metadata["collapse_theory"]
    a = simulate(3, MODEL, num_chains=4, reference=ref_a, **KW)
    b = simulate(3, MODEL, num_chains=4, chain_offset=4, reference=ref_b, **KW)
    with pytest.raises(ValueError, match="different runs"):
        merge_results([a, b])
    with pytest.raises(ValueError, match="snapshots=.* cannot be combined with checkpoint"):
        simulate(3, MODEL, num_chains=4, snapshots=(2,), checkpoint=tmp_path / "s.npz", **KW)
    # a checkpoint whose summaries have more rows than t_done
    import collapse_theory.checkpoint as ckpt_module

    saved = load_checkpoint(ckpt)
    outputs = jax.tree.map(lambda x: np.concatenate([x, x[:1]]), saved["outputs"])
    ckpt_module.save_checkpoint(tmp_path / "bad.npz", fingerprint=saved["fingerprint"], t_done=saved["t_done"],
                                state_leaves=saved["state_leaves"], outputs=outputs)
    with pytest.raises(ValueError, match="is inconsistent: t_done=6 but its outputs have \\[7\\] rows"):
        load_checkpoint(tmp_path / "bad.npz")


def test_resumed_run_keeps_the_checkpoint_record(tmp_path, monkeypatch):
    """Found by review: a resumed run's ``wall_time_s`` covered only its last segment, ``absorbed_at_generation``
    was lost when the checkpoint already held the absorbed end of the run, and a resume under other XLA
    ``compiler_options`` (which can change the last bits) went unremarked; merge recorded one part's options only.
    The checkpoint now carries the run record, and merge lists each part's options."""
    from collapse_theory.models.categorical import Categorical
    from collapse_theory.simulate import FAST_COMPILE

    ckpt = tmp_path / "c.npz"
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        simulate(3, MODEL, num_chains=4, checkpoint=ckpt, checkpoint_every=0, **KW)
    monkeypatch.undo()
    record = load_checkpoint(ckpt)["run"]
    assert record["compiler_options"] == {} and record["wall_time_s"] > 0
    # pretend the first segment took an hour: the resumed run's wall time includes it
    import collapse_theory.checkpoint as ckpt_module

    saved = load_checkpoint(ckpt)
    ckpt_module.save_checkpoint(ckpt, fingerprint=saved["fingerprint"], t_done=saved["t_done"],
                                state_leaves=saved["state_leaves"], outputs=saved["outputs"],
                                run=dict(record, wall_time_s=3600.0))
    with pytest.warns(UserWarning, match="compiled with compiler_options=\\{\\}, this run with"):
        resumed = simulate(3, MODEL, num_chains=4, checkpoint=ckpt, resume=True, compiler_options=FAST_COMPILE,
                           **KW)
    assert 3600.0 < resumed.metadata["wall_time_s"] < 3600.0 + 600
    assert resumed.metadata["wall_time_before_resume_s"] == 3600.0
    assert resumed.metadata["resumed_from"]["compiler_options"] == {}
    # every chain absorbed before the end: the finished checkpoint keeps the generation, a resume reports it
    model = Categorical(5, max_samples=4)
    common = dict(num_chains=16, num_generations=150, num_samples=4, path="exact", metrics=["fixed"],
                  quantiles=(), stop_when_absorbed=True, checkpoint=tmp_path / "a.npz")
    first = simulate(3, model, **common)
    absorbed = first.metadata["absorbed_at_generation"]
    assert absorbed is not None and absorbed < 150
    again = simulate(3, model, resume=True, **common)
    assert again.metadata["absorbed_at_generation"] == absorbed
    np.testing.assert_array_equal(again.mean("fixed"), first.mean("fixed"))
    # merge: parts compiled with other options are the same law; each part's options are listed
    a = simulate(3, MODEL, num_chains=4, **KW)
    b = simulate(3, MODEL, num_chains=4, chain_offset=4, compiler_options=FAST_COMPILE, **KW)
    parts = merge_results([a, b]).config["merge"]["parts"]
    assert [p["compiler_options"] for p in parts] == [{}, FAST_COMPILE]


def test_cli_checkpoint_names_and_sigterm(tmp_path, capsys, monkeypatch):
    """``--checkpoint run.ckpt`` became ``run.npz`` (the suffix was replaced), which the result then overwrote; an
    existing checkpoint was silently overwritten by a run without --resume; SIGTERM (timeout, kill, a scheduler)
    left no final checkpoint. Now the name gets ``.npz`` appended, a checkpoint that is the result file or that
    exists without --resume is refused, and SIGTERM is handled as Ctrl-C (exit 143)."""
    from collapse_theory.checkpoint import checkpoint_path

    assert checkpoint_path("a/run.ckpt") == Path("a/run.ckpt.npz") and checkpoint_path("r.npz") == Path("r.npz")
    common = ["run", "--ddof", "1", "--num-chains", "4", "--num-generations", "6", "--num-samples", "6",
              "--no-progress", "--chunk-size", "1", "--checkpoint-every", "0"]
    out = tmp_path / "coll.npz"
    assert main(common + ["--out", str(out), "--checkpoint", str(tmp_path / "coll")]) == 2
    assert "which the result --out" in capsys.readouterr().err
    assert main(common + ["--out", str(out), "--checkpoint", str(tmp_path / "coll.ckpt")]) == 0
    assert (tmp_path / "coll.ckpt.npz").exists() and SimulationResult.load(out).num_chains == 4
    assert main(common + ["--out", str(out), "--checkpoint", str(tmp_path / "coll.ckpt")]) == 2
    assert "exists and would be overwritten: add --resume" in capsys.readouterr().err
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    original, calls = ENGINE._call_chunk, []

    def terminated(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(ENGINE, "_call_chunk", terminated)
    before = signal.getsignal(signal.SIGTERM)
    term_ckpt = tmp_path / "t.ckpt.npz"
    assert main(common + ["--out", str(tmp_path / "t.npz"), "--checkpoint", str(term_ckpt)]) == 143
    assert "terminated; no result file written (the checkpoint" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before and not (tmp_path / "t.npz").exists()
    assert 0 < load_checkpoint(term_ckpt)["t_done"] < 6


def test_one_device_mesh_equals_unsharded(parts):
    full, _, _ = parts
    meshed = simulate(3, MODEL, num_chains=12, trajectories=True, devices=1, **KW)
    assert meshed.config["devices"] == 1
    assert_same(meshed, full)
    with pytest.raises(ValueError, match=rf"devices={jax.device_count() + 1} is out of range"):
        simulate(3, MODEL, num_chains=12, devices=jax.device_count() + 1, **KW)


def test_cli_chain_ranges_merge_and_resume(tmp_path, capsys):
    common = ["run", "--ddof", "1", "--num-generations", "4", "--num-samples", "6", "--seed", "2", "--x64",
              "--trajectories", "--no-progress", "--chunk-size", "2"]
    assert main(common + ["--num-chains", "8", "--out", str(tmp_path / "full.npz")]) == 0
    assert main(common + ["--num-chains", "4", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(common + ["--num-chains", "4", "--chain-offset", "4",
                          "--out", str(tmp_path / "b.npz"), "--checkpoint", str(tmp_path / "b.ckpt.npz")]) == 0
    assert load_checkpoint(tmp_path / "b.ckpt.npz")["t_done"] == 4
    assert main(["merge", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--out", str(tmp_path / "m.npz")]) == 0
    assert "bit-identical" in capsys.readouterr().out
    assert_same(SimulationResult.load(tmp_path / "m.npz"), SimulationResult.load(tmp_path / "full.npz"))
    # --resume from a finished checkpoint only rebuilds the result.
    assert main(common + ["--num-chains", "8", "--out", str(tmp_path / "full2.npz"), "--resume"]) == 0
    assert (tmp_path / "full2.ckpt.npz").exists()
    assert main(common + ["--num-chains", "8", "--out", str(tmp_path / "full2.npz"), "--resume"]) == 0
    meta = json.loads((tmp_path / "full2.json").read_text())
    assert meta["metadata"]["resumed_from_generation"] == 4
    assert_same(SimulationResult.load(tmp_path / "full2.npz"), SimulationResult.load(tmp_path / "full.npz"))
    # Bad input: a gap between ranges, an indivisible sharding request.
    assert main(["merge", str(tmp_path / "b.npz"), str(tmp_path / "full.npz"), "--out", str(tmp_path / "x")]) == 2
    assert "overlap" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "nope.npz"), str(tmp_path / "a.npz"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_resume_after_sigkill(tmp_path):
    """A real kill (SIGKILL, no chance to clean up) mid-run: the checkpoint on disk is valid and resuming it ends
    bit-identical to an uninterrupted run."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    args = [sys.executable, "-m", "collapse_theory", "run", "--ddof", "1", "--num-chains", "64", "--path", "sample",
            "--num-generations", "2000", "--num-samples", "20", "--seed", "1", "--x64", "--no-progress",
            "--chunk-size", "5", "--checkpoint-every", "0"]
    out, ckpt = tmp_path / "k.npz", tmp_path / "k.ckpt.npz"
    proc = subprocess.Popen(args + ["--out", str(out), "--checkpoint", str(ckpt)], env=env, cwd=root)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)["t_done"] >= 20:
            break
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["t_done"]
    assert 0 < killed_at < 2000
    assert subprocess.run(args + ["--out", str(out), "--checkpoint", str(ckpt), "--resume"], env=env,
                          cwd=root).returncode == 0
    assert subprocess.run(args + ["--out", str(tmp_path / "u.npz")], env=env, cwd=root).returncode == 0
    resumed, uninterrupted = SimulationResult.load(out), SimulationResult.load(tmp_path / "u.npz")
    assert resumed.metadata["resumed_from_generation"] == killed_at
    assert_same(resumed, uninterrupted)
