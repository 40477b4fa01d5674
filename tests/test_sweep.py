"""Parameter sweeps: grid expansion, one result per cell equal to the direct run, one compile per shape group,
resume, and clear errors for bad specs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from collapse_theory import Accumulate, Gaussian, Replace, SimulationResult, simulate
from collapse_theory.cli import main
from collapse_theory.simulate import FAST_COMPILE
from collapse_theory.sweep import _WORKER_COMPILE, expand, run_sweep

SPEC_TOML = """
model = "gaussian"
regime = ["replace", "accumulate"]
path = "exact"
num_chains = 8
num_generations = 3
num_samples = [4, 6]
seeds = [0, 1]
quantiles = [0.5]
metrics = ["log_variance"]
[model_options]
dim = 1
ddof = 1
"""


def test_expand_grid():
    cells = expand({"model": "gaussian", "num_chains": 4, "num_generations": 2, "num_samples": [3, 5],
                    "seeds": [0, 1, 2], "model_options": {"dim": [1, 2], "ddof": 1}, "quantiles": [0.5]})
    assert len(cells) == 2 * 3 * 2
    assert {(c["num_samples"], c["seed"], c["model_options"]["dim"]) for c in cells} == {
        (m, s, d) for m in (3, 5) for s in (0, 1, 2) for d in (1, 2)}
    assert all(c["quantiles"] == [0.5] and c["model_options"]["ddof"] == 1 for c in cells)
    with pytest.raises(ValueError, match=r"\['nope'\] are not allowed"):
        expand({"model": "gaussian", "num_chains": 4, "num_generations": 2, "num_samples": 3, "nope": 1})
    with pytest.raises(ValueError, match="needs 'num_chains'"):
        expand({"model": "gaussian", "num_generations": 2, "num_samples": 3})


def test_sweep_cells_equal_direct_runs(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text(SPEC_TOML)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--x64", "--no-progress"]) == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert len(index["cells"]) == 8 and all(c["status"] == "done" for c in index["cells"])
    assert len(index["groups"]) == 2  # exact path: sizes and seeds are run-time arguments
    assert all(g["compiled_programs"] <= 1 for g in index["groups"])
    for cell in index["cells"]:
        p = cell["params"]
        regime = {"replace": Replace(), "accumulate": Accumulate()}[p["regime"]]
        direct = simulate(p["seed"], Gaussian(dim=1, ddof=1), regime, num_chains=8, num_generations=3,
                          num_samples=p["num_samples"], path="exact", quantiles=(0.5,), metrics=["log_variance"])
        got = SimulationResult.load(tmp_path / "out" / cell["file"])
        for stat in ("mean", "sd", "quantiles"):
            np.testing.assert_array_equal(got.summary["log_variance"][stat], direct.summary["log_variance"][stat])
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--x64", "--resume", "--no-progress"]) == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert all(c["status"] == "done (kept)" for c in index["cells"])
    # resuming with a changed spec must not keep the old cells under the new parameters
    spec.write_text(SPEC_TOML.replace("num_generations = 3", "num_generations = 4"))
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--x64", "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cell_0000.npz (cell 0) was written for other parameters" in err and "use another --out" in err, err


def test_sweep_gmm_and_kde_cells_equal_direct_runs(tmp_path):
    """Sample-path families in a sweep: each cell is the direct ``simulate`` call with the model built from
    ``model_options`` and the model's ``params()`` as truth, bit for bit."""
    from collapse_theory.models import GaussianMixture, KernelDensity
    from collapse_theory.sweep import run_sweep

    common = {"regime": "replace", "path": "sample", "num_chains": 4, "num_generations": 2, "num_samples": 30,
              "seed": 1, "quantiles": [0.5]}
    for name, options, cls, metric in (("gmm", {"num_components": [1, 2], "dim": 2}, GaussianMixture, "l2_to_truth"),
                                       ("kde", {"bandwidth": 0.5, "capacity": 30}, KernelDensity, "spread")):
        out = tmp_path / name
        index = run_sweep({"model": name, "model_options": options, "metrics": [metric], **common}, out)
        assert all(c["status"] == "done" for c in index["cells"])
        for cell in index["cells"]:
            model = cls(**cell["params"]["model_options"])
            direct = simulate(1, model, Replace(), num_chains=4, num_generations=2, num_samples=30, path="sample",
                              metrics=[metric], quantiles=(0.5,))
            got = SimulationResult.load(out / cell["file"])
            np.testing.assert_array_equal(got.summary[metric]["mean"], direct.summary[metric]["mean"])


def test_sweep_runs_categorical_cells_until_collapse(tmp_path):
    """A small discrete grid with ``compact`` and ``stop_when_absorbed`` in the spec: each cell equals the direct
    run with the same options."""
    from collapse_theory.models import Categorical

    spec = {"model": "categorical", "model_options": {"num_categories": 40}, "regime": "replace",
            "path": "exact", "num_chains": 16, "num_generations": 200, "num_samples": 4, "seeds": [4, 5],
            "metrics": ["collapsed"], "quantiles": [], "compact": True, "stop_when_absorbed": True}
    index = run_sweep(spec, tmp_path)
    assert [c["status"] for c in index["cells"]] == ["done", "done"]
    for cell in index["cells"]:
        got = SimulationResult.load(tmp_path / cell["file"])
        direct = simulate(cell["params"]["seed"], Categorical(40), Replace(),
                          num_chains=16, num_generations=200, num_samples=4, path="exact", metrics=["collapsed"],
                          quantiles=(), compact=True, stop_when_absorbed=True)
        np.testing.assert_array_equal(got.mean("collapsed"), direct.mean("collapsed"))
        assert got.metadata["absorbed_at_generation"] == direct.metadata["absorbed_at_generation"] < 200


def test_sweep_ngram_cells_equal_the_run_command(tmp_path, capsys):
    """``ngram`` cells with a ``gate`` axis are built by ``setups.ngram`` as ``collapse-theory run --model ngram``
    builds them: each cell's result equals the command's with the same options, bit for bit (grammar, held-out
    corpus from the seed, smoothing, the gate around the regime)."""
    spec = {"model": "ngram", "regime": "replace", "num_chains": 4, "num_generations": 2, "num_samples": 200,
            "seed": 3, "gate": ["none", "grammar"], "metrics": ["perplexity", "grammaticality", "fact_share"],
            "quantiles": [], "model_options": {"smoothing": 0.05, "num_reference": 100,
                                               "grammar": {"num_entities": 20, "fact_fraction": 0.2}}}
    index = run_sweep(spec, tmp_path / "grid")
    for cell in index["cells"]:
        got = SimulationResult.load(tmp_path / "grid" / cell["file"])
        gate = cell["params"]["gate"]
        argv = ["run", "--model", "ngram", "--num-chains", "4", "--num-generations", "2", "--num-samples", "200",
                "--seed", "3", "--smoothing", "0.05", "--num-reference", "100", "--entities", "20",
                "--fact-fraction", "0.2", "--x64", "--out", str(tmp_path / f"{gate}.npz"), "--no-progress"]
        assert main(argv + ([] if gate == "none" else ["--gate", gate])) == 0
        direct = SimulationResult.load(tmp_path / f"{gate}.npz")
        for metric in spec["metrics"]:
            np.testing.assert_array_equal(got.mean(metric), direct.mean(metric))
        assert got.config["regime"] == ("Replace" if gate == "none" else "Gate")
        assert got.metadata["truth"]["grammar"]["num_entities"] == 20


def test_sweep_rejects_bad_names(tmp_path):
    with pytest.raises(ValueError, match=r"model='nn' is not one of"):
        run_sweep({"model": "nn", "num_chains": 2, "num_generations": 1, "num_samples": 3}, tmp_path)
    with pytest.raises(ValueError, match=r"gate='grammar': gates apply to the models \['ngram', 'vae'\]"):
        run_sweep({"model": "gaussian", "gate": "grammar", "num_chains": 2, "num_generations": 1,
                   "num_samples": 3, "model_options": {"ddof": 1}}, tmp_path)
    with pytest.raises(ValueError, match=r"gate='confident' is not one of \('grammar', 'facts'\)"):
        run_sweep({"model": "ngram", "gate": "confident", "num_chains": 2, "num_generations": 1,
                   "num_samples": 3}, tmp_path)
    bad = tmp_path / "grid.yaml"
    bad.write_text("model: gaussian")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("spec, match", [
    ({"num_samples": [10, 1]}, r"cell 1 .*num_samples=1 is out of range: this model needs num_samples >= 2"),
    ({"seed": "zero"}, r"cell 0 .*seed='zero' is out of range: need an int seed"),
    ({"model_options": {"dim": [1, 0], "ddof": 1}}, r"cell 1 .*dim=0"),
    ({"trajectories": "false"}, r"cell 0 .*trajectories='false' is not a boolean"),  # bool("false") is True
    ({"seeds": [0, 0]}, r"cell 1 .*the grid repeats cell 0"),  # the same run twice, counted twice when pooled
    ({"x64": "false"}, r"x64='false' is not a boolean"),
    ({"fast_compile": 1}, r"cell 0 .*fast_compile=1 is not a boolean"),
    ({"regime": ["replace", "nope"], "path": "auto"}, r"regime='nope' is not one of"),
])
def test_sweep_checks_every_cell_before_the_first_runs(tmp_path, spec, match):
    """A bad cell anywhere in the grid stops the sweep before any cell runs, naming the cell and its parameters
    (it used to surface after the earlier cells had run, without saying which cell failed)."""
    full = {"model": "gaussian", "num_chains": 2, "num_generations": 2, "num_samples": 5,
            "model_options": {"dim": 1, "ddof": 1}, **spec}
    with pytest.raises(ValueError, match=match):
        run_sweep(full, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    broken = tmp_path / "grid.toml"
    broken.write_text('model = "gaussian\n')
    with pytest.raises(ValueError, match=r"grid.toml' is not valid TOML"):
        run_sweep(broken, tmp_path / "out")


def test_sweep_resume_reads_the_record_inside_the_data_file_and_x64_must_match(tmp_path):
    """The kept-cell check read the .json sidecar, which is written after the .npz: an interruption between the two
    writes left new data beside an old sidecar, and resume kept another spec's data as this spec's cell. A spec's
    x64 was ignored by ``run_sweep`` (the cells ran in JAX's current precision while the spec said otherwise)."""
    import shutil

    import jax

    spec_a = {"model": "gaussian", "num_chains": 2, "num_generations": 2, "num_samples": 5, "path": "exact",
              "model_options": {"dim": 1, "ddof": 1}, "quantiles": [0.5]}
    spec_b = dict(spec_a, num_samples=50)
    run_sweep(spec_a, tmp_path / "a")
    run_sweep(spec_b, tmp_path / "b")
    shutil.copy(tmp_path / "b" / "cell_0000.npz", tmp_path / "a" / "cell_0000.npz")  # A's sidecar stays
    with pytest.raises(ValueError, match="cell_0000.npz \\(cell 0\\) was written for other parameters"):
        run_sweep(spec_a, tmp_path / "a", resume=True)
    other = not jax.config.jax_enable_x64
    with pytest.raises(ValueError, match=f"the spec asks for x64={other} but JAX runs with jax_enable_x64"):
        run_sweep(dict(spec_a, x64=other), tmp_path / "c")


def test_sweep_names_cell_files_of_a_larger_earlier_grid(tmp_path):
    """Found by review: shrinking a grid and rerunning (or resuming) into the same folder left the dropped cells'
    files beside the new ones, indistinguishable to a glob over ``cell_*.npz``. They are now named in a warning and
    in the index's ``unlisted_files``."""
    spec = {"model": "gaussian", "num_chains": 2, "num_generations": 2, "num_samples": [5, 6, 7], "path": "exact",
            "model_options": {"dim": 1, "ddof": 1}, "quantiles": [0.5]}
    first = run_sweep(spec, tmp_path)
    assert "unlisted_files" not in first and len(first["cells"]) == 3
    with pytest.warns(UserWarning, match="holds 1 cell file\\(s\\) this spec does not list \\(cell_0002.npz\\)"):
        index = run_sweep(dict(spec, num_samples=[5, 6]), tmp_path, resume=True)
    assert index["unlisted_files"] == ["cell_0002.npz"]
    assert [c["status"] for c in index["cells"]] == ["done (kept)", "done (kept)"]


def test_sweep_records_singular_fits_per_cell_and_counts_them_once(tmp_path):
    """A grid across M = d (Kazdan et al.'s) warns of singular fits in many cells by design: each such cell's index
    entry and result file record the SingularFitWarning, the sweep logs one line naming the cells (and keeps it in
    the index's notes), and no warning reaches the caller per cell. Other cell warnings are raised, prefixed with
    the cell. Catches per-cell warning floods and warnings dropped without a record."""
    import warnings

    spec = {"model": "gaussian", "num_chains": 2, "num_generations": 2, "num_samples": [2, 3, 5, 6],
            "path": "exact", "model_options": {"dim": 3, "ddof": 0}, "quantiles": [0.5]}
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning raised to the caller fails the test
        index = run_sweep(spec, tmp_path, log=lines.append)
    flagged = [c["index"] for c in index["cells"] if c.get("warnings")]
    assert flagged == [0, 1] and index["cells"][0]["warnings"][0].startswith("SingularFitWarning: num_samples=2")
    assert SimulationResult.load(tmp_path / "cell_0001.npz").metadata["warnings"] == index["cells"][1]["warnings"]
    assert "warnings" not in SimulationResult.load(tmp_path / "cell_0002.npz").metadata
    assert index["notes"] == [lines[-1]] and lines[-1].startswith("2 of 4 cells fit a Gaussian to M_t <= d points "
                                                                   "(cells 0-1)")
    resumed = run_sweep(spec, tmp_path, resume=True)  # kept cells bring their recorded warnings along
    assert [c.get("warnings") for c in resumed["cells"]] == [c.get("warnings") for c in index["cells"]]
    assert resumed["notes"] == index["notes"]


def test_sweep_workers_give_the_one_process_results(tmp_path):
    """``workers=2`` runs the compile groups in two processes (this one and a spawned one), largest first: every
    cell's result file holds the same summaries as the one-process sweep's, bit for bit, and the index the same
    cells, groups and compile counts. ``path = "auto"`` gives each cell the path ``collapse-theory run`` would
    (exact for replace, sample for accumulate-subsample, which has no exact path) and the index records it;
    ``fast_compile`` compiles each group once, with ``simulate.FAST_COMPILE``. Catches a worker that loses x64
    (float32 summaries), a result written under another cell's name, or groups recorded out of order."""
    spec = {"model": "gaussian", "regime": ["replace", "accumulate-subsample"], "path": "auto", "num_chains": 8,
            "num_generations": 3, "num_samples": [5, 8], "seeds": [0, 1], "quantiles": [0.5],
            "metrics": ["log_variance"], "fast_compile": True, "model_options": {"dim": 1, "ddof": 1}}
    one = run_sweep(spec, tmp_path / "one")
    two = run_sweep(spec, tmp_path / "two", workers=2)
    assert [c["params"]["path"] for c in one["cells"]] == ["exact"] * 4 + ["sample"] * 4
    strip = [{k: v for k, v in c.items() if k != "wall_time_s"} for c in one["cells"]]
    assert strip == [{k: v for k, v in c.items() if k != "wall_time_s"} for c in two["cells"]]
    assert one["groups"] == [{k: v for k, v in g.items() if k != "cpus"} for g in two["groups"]]
    assert len(one["groups"]) == 3
    assert [g["compiled_programs"] for g in two["groups"]] == [1, 1, 1]
    assert json.loads((tmp_path / "two" / "index.json").read_text())["cells"][5]["file"] == "cell_0005.npz"
    for cell in one["cells"]:
        a = SimulationResult.load(tmp_path / "one" / cell["file"])
        b = SimulationResult.load(tmp_path / "two" / cell["file"])
        assert a.summary["log_variance"]["mean"].dtype == np.float64 == b.summary["log_variance"]["mean"].dtype
        for stat in ("mean", "sd", "quantiles"):
            np.testing.assert_array_equal(a.summary["log_variance"][stat], b.summary["log_variance"][stat])


PINNABLE = hasattr(os, "sched_getaffinity") and sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) >= 2


def _thread_cpus() -> dict[int, set[int]]:
    out = {}
    for name in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            out[int(name)] = os.sched_getaffinity(int(name))
    return out


@pytest.mark.skipif(not PINNABLE, reason="pins threads to CPUs: Linux with at least 2 CPUs")
def test_sweep_workers_run_on_their_own_cpus_and_give_this_process_its_cpus_back(tmp_path):
    """``workers=2`` (``pin_cpus`` by default): every group runs on one of two disjoint halves of this process's
    CPUs (recorded in the index), and afterwards each thread of this process has the CPUs it had before;
    ``--no-pin-cpus`` (``pin_cpus=False``) leaves the groups on all of them. Catches processes left to share every
    CPU (XLA's threads of one then wait on the other's: 10 % slower on the Kazdan grid) and a sweep that leaves its
    caller pinned."""
    allowed = sorted(os.sched_getaffinity(0))
    halves = [allowed[0::2], allowed[1::2]]
    before = _thread_cpus()
    spec = {"model": "gaussian", "num_chains": 2, "num_generations": 2, "num_samples": [5, 6, 7, 8],
            "path": "sample", "quantiles": [], "model_options": {"dim": 1, "ddof": 1}}
    pinned = run_sweep(spec, tmp_path / "pinned", workers=2)
    assert all(g["cpus"] in halves for g in pinned["groups"]), pinned["groups"]
    after = _thread_cpus()
    assert {tid: cpus for tid, cpus in after.items() if tid in before} == {tid: before[tid] for tid in after
                                                                          if tid in before}
    assert all(cpus == set(allowed) for tid, cpus in after.items() if tid not in before)
    (tmp_path / "grid.json").write_text(json.dumps(spec))  # the CLI's switch: --no-pin-cpus
    assert main(["sweep", str(tmp_path / "grid.json"), "--out", str(tmp_path / "free"), "--workers", "2",
                 "--no-pin-cpus", "--no-progress"]) == 0
    free = json.loads((tmp_path / "free" / "index.json").read_text())
    assert all(g["cpus"] == allowed for g in free["groups"])


@pytest.mark.skipif(not PINNABLE, reason="pins threads to CPUs: Linux with at least 2 CPUs")
def test_a_pinned_worker_gives_the_one_process_result_of_a_large_matrix_product(tmp_path):
    """A d = 100, M = 1000 subsample cell (its fit's Gram matrix is a product large enough that XLA:CPU's rounding
    depends on its thread pool's size) run by ``_worker_group`` in a spawned worker pinned to one CPU by the
    sweep's initializer gives the bits of the same cell in this process. Catches a worker whose JAX backend starts
    after the pinning, with a one-thread pool (another rounding: results would depend on the process a group ran
    in)."""
    import concurrent.futures
    import multiprocessing

    from collapse_theory import sweep

    spec = {"model": "gaussian", "regime": "accumulate-subsample", "num_chains": 2, "num_generations": 2,
            "num_samples": 1000, "path": "sample", "quantiles": [], "metrics": ["trace_ratio", "det_ratio"],
            "trajectories": True, "fast_compile": True, "model_options": {"dim": 100, "ddof": 0}}
    run_sweep(spec, tmp_path / "here")
    cells = sweep.expand(spec)
    sweep._prepare_cells(cells)
    (tmp_path / "worker").mkdir()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=sweep._pin_worker,
                                                initargs=([{sorted(os.sched_getaffinity(0))[-1]}],
                                                          context.Value("i", 0))) as pool:
        _, _, cpus = pool.submit(sweep._worker_group, [0], cells, tmp_path / "worker", False,
                                 sweep._jax_settings()).result()
    assert len(cpus) == 1
    here = SimulationResult.load(tmp_path / "here" / "cell_0000.npz")
    there = SimulationResult.load(tmp_path / "worker" / "cell_0000.npz")
    for name in ("trace_ratio", "det_ratio"):
        np.testing.assert_array_equal(there.trajectories[name], here.trajectories[name], err_msg=name)


@pytest.mark.skipif(not PINNABLE, reason="pins threads to CPUs: Linux with at least 2 CPUs")
def test_side_by_side_sweep_keeps_the_first_share_and_hands_the_others_to_the_workers(monkeypatch):
    """This process runs its groups on the first share of the CPUs and gives the pool's initializer the others
    (threads stand in for the worker). Catches the workers offered this process's share too."""
    import concurrent.futures
    import threading

    from collapse_theory import sweep

    allowed = sorted(os.sched_getaffinity(0))
    offered, here = [], []

    class ThreadPool(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context=None, initializer=None, initargs=()):
            offered.append((initializer, initargs[0]))
            super().__init__(max_workers=max_workers)

    took_one = threading.Event()

    def fake_group(members, *args):
        here.append(sorted(os.sched_getaffinity(0)))
        if threading.current_thread() is threading.main_thread():
            took_one.set()
        else:  # a pool group ends only once this process has taken one, or its thread could take them all first
            took_one.wait(timeout=30)
        return [{"index": i} for i in members], 1, None

    monkeypatch.setattr(sweep, "_worker_group", fake_group)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", ThreadPool)
    cells = [{"num_chains": 1, "num_generations": 1, "num_samples": 2} for _ in range(3)]
    sweep._run_groups_side_by_side(2, [[0], [1], [2]], cells, None, False, lambda g, e: None, lambda g, n, c: None)
    assert offered == [(sweep._pin_worker, [set(allowed[1::2])])]
    assert allowed[0::2] in here  # a group run here, on the first share (the pool's threads are unpinned)


@pytest.mark.skipif(not PINNABLE, reason="pins threads to CPUs: Linux with at least 2 CPUs")
def test_sweep_worker_initializer_pins_each_worker_to_the_next_share():
    """The spawned workers' initializer (``sweep._pin_worker``) puts each worker on the next unclaimed share: two
    workers busy at once run on the two shares. Catches an initializer that always takes the first share."""
    import concurrent.futures
    import multiprocessing

    from helpers import pid_and_cpus_after

    from collapse_theory import sweep

    allowed = sorted(os.sched_getaffinity(0))
    shares = [{allowed[-1]}, {allowed[0]}]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context, initializer=sweep._pin_worker,
                                                initargs=(shares, context.Value("i", 0))) as pool:
        seen = [future.result() for future in [pool.submit(pid_and_cpus_after, 1.0) for _ in range(2)]]
    assert len({pid for pid, _ in seen}) == 2
    assert sorted(cpus for _, cpus in seen) == sorted([sorted(share) for share in shares])


def test_sweep_workers_keep_the_callers_thread_local_settings(tmp_path):
    """``with jax.enable_x64(...): run_sweep(..., workers=2)``: the groups run here run under the block's setting,
    and the global setting is the same afterwards. Catches this process's groups run on another thread, which saw
    the global setting and changed it for good with ``jax.config.update`` (x64 stayed on after the block)."""
    import jax

    before = bool(jax.config.jax_enable_x64)
    spec = {"model": "gaussian", "regime": ["replace", "accumulate"], "path": "exact", "num_chains": 4,
            "num_generations": 2, "num_samples": 5, "quantiles": [], "fast_compile": True, "x64": not before,
            "metrics": ["log_trace_ratio"], "model_options": {"dim": 2, "ddof": 1}}
    with jax.enable_x64(not before):
        index = run_sweep(spec, tmp_path, workers=2)
    assert bool(jax.config.jax_enable_x64) == before
    want = np.float64 if not before else np.float32
    for cell in index["cells"]:
        assert SimulationResult.load(tmp_path / cell["file"]).summary["log_trace_ratio"]["mean"].dtype == want


def test_side_by_side_sweep_ends_when_the_workers_finish_first(monkeypatch):
    """``workers=2`` where the worker process finishes all its groups while this process still runs its first:
    every group is recorded once and the sweep returns. Catches the hang found in a benchmark: the helper thread's
    final notice, read while this process was between groups, was waited for again at the end. Threads stand in
    for the worker process (``_worker_group`` is replaced, which a spawned process would not see)."""
    import concurrent.futures
    import threading
    import time

    from collapse_theory import sweep

    here = []  # the thread that stands for this process

    def fake_group(members, cells, out_dir, resume, settings):
        if threading.current_thread() is here[0]:
            time.sleep(0.3)  # this process's group outlasts all of the worker's
        return [{"index": i, "status": "done"} for i in members], 1, None

    class ThreadPool(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context=None, **kwargs):
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(sweep, "_worker_group", fake_group)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", ThreadPool)
    members_of = [[0, 1, 2], [3], [4], [5]]
    cells = [{"num_chains": 1, "num_generations": 1, "num_samples": 2} for _ in range(6)]
    seen_cells, seen_groups = [], []
    runner = threading.Thread(target=sweep._run_groups_side_by_side, daemon=True, args=(
        2, members_of, cells, None, False, lambda g, e: seen_cells.append(e["index"]),
        lambda g, n, cpus: seen_groups.append(g)), kwargs={"pin_cpus": False})
    here.append(runner)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the sweep did not return"
    assert sorted(seen_groups) == [0, 1, 2, 3] and sorted(seen_cells) == list(range(6))


def test_side_by_side_sweep_raises_when_the_pool_refuses_a_group(monkeypatch):
    """A pool that refuses a group (a worker process died: ``BrokenProcessPool`` on submit) stops the sweep with
    that error, instead of returning with the group's cells missing from the index."""
    import concurrent.futures
    import time

    from collapse_theory import sweep

    class Refusing(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context=None, **kwargs):
            super().__init__(max_workers=max_workers)

        def submit(self, *args, **kwargs):
            raise RuntimeError("pool refused the group")

    def slow_group(members, *args):  # this process's groups take a while, so the helper thread takes one too
        time.sleep(0.2)
        return [{"index": i} for i in members], 1, None

    monkeypatch.setattr(sweep, "_worker_group", slow_group)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Refusing)
    cells = [{"num_chains": 1, "num_generations": 1, "num_samples": 2} for _ in range(3)]
    with pytest.raises(RuntimeError, match="pool refused the group"):
        sweep._run_groups_side_by_side(2, [[0], [1], [2]], cells, None, False, lambda g, e: None,
                                       lambda g, n, cpus: None, pin_cpus=False)


_SETTINGS_SCRIPT = """
import json, os, sys
import jax
import numpy as np
from collapse_theory import SimulationResult
from collapse_theory.sweep import run_sweep
if __name__ == "__main__":  # as in the CLI: the spawned workers do not run this (they import this file)
    cache, out = sys.argv[1], sys.argv[2]
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_default_prng_impl", "rbg")
    spec = {"model": "gaussian", "regime": ["replace", "accumulate"], "path": "exact", "num_chains": 4,
            "num_generations": 2, "num_samples": 5, "quantiles": [], "fast_compile": True,
            "metrics": ["log_trace_ratio"], "model_options": {"dim": 2, "ddof": 1}}
    run_sweep(spec, out + "/two", workers=2)
    programs = sum("_run_chunk" in name for name in os.listdir(cache))  # written by the two-process sweep, so far
    run_sweep(spec, out + "/one")
    same = all(np.array_equal(SimulationResult.load(f"{out}/one/cell_{i:04d}.npz").summary["log_trace_ratio"]["mean"],
                              SimulationResult.load(f"{out}/two/cell_{i:04d}.npz").summary["log_trace_ratio"]["mean"])
               for i in range(2))
    options = [SimulationResult.load(f"{out}/{run}/cell_0000.npz").config["compiler_options"] for run in ("two", "one")]
    print(json.dumps({"programs": programs, "same": same, "options": options}))
"""


def test_sweep_workers_take_the_callers_jax_settings(tmp_path):
    """Spawned workers start from JAX's defaults; they must take the caller's settings: the persistent compilation
    cache (which ``collapse-theory`` configures), or a repeated ``--workers`` sweep compiles every program again,
    and those that change results (here the PRNG implementation), or a cell differs with and without workers. Run
    in a subprocess, so this test's own JAX settings stay untouched. Catches workers that ignore the cache (no
    ``_run_chunk`` program in the cache folder after the two-process sweep, of the two groups) or the
    PRNG implementation (other summaries than the one-process sweep's). The workers compile with
    ``sweep._WORKER_COMPILE`` (code generation on one thread), the one-process sweep with the cell's own options
    only, and the results agree bit for bit."""
    script = tmp_path / "sweep_settings.py"
    script.write_text(_SETTINGS_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path)], check=True,
                          timeout=300, capture_output=True, text=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["programs"] >= 2 and report["same"], report
    assert report["options"] == [{**FAST_COMPILE, **_WORKER_COMPILE}, FAST_COMPILE], report


@pytest.mark.parametrize("workers, match", [
    (0, r"workers=0 is out of range: need an int >= 1"),
    (True, r"workers=True is out of range"),
    (np.True_, r"workers=np.True_ is out of range"),
    (1.5, r"workers=1.5 is out of range"),
    (np.int64(0), r"workers=np.int64\(0\) is out of range"),
])
def test_sweep_workers_out_of_range(tmp_path, workers, match):
    spec = {"model": "gaussian", "num_chains": 2, "num_generations": 1, "num_samples": 3,
            "model_options": {"ddof": 1}}
    with pytest.raises(ValueError, match=match):
        run_sweep(spec, tmp_path / "out", workers=workers)
    with pytest.raises(ValueError, match=r"workers=2 with devices=1: each worker process would shard"):
        run_sweep(spec, tmp_path / "out", workers=2, devices=1)
    assert not (tmp_path / "out").exists()


def test_sweep_accepts_numpy_integer_workers(tmp_path):
    """``workers`` from a grid built with NumPy (``np.int64(1)``) is a count like ``1``; catches the check that
    took only Python ints."""
    spec = {"model": "gaussian", "num_chains": 2, "num_generations": 1, "num_samples": 3,
            "model_options": {"dim": 1, "ddof": 1}}
    index = run_sweep(spec, tmp_path / "out", workers=np.int64(1))
    assert [cell["status"] for cell in index["cells"]] == ["done"]


def test_sweep_cli_workers(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text(SPEC_TOML)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"]) == 2
    assert "workers=0 is out of range: need an int >= 1" in capsys.readouterr().err
