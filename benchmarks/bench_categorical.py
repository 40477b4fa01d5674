"""Kazdan et al.'s discrete grid through collapse_theory, against a faithful NumPy loop (see benchmarks/README.md).

Grid: truth uniform over K in {10, 1e2, 1e3, 1e4, 1e5} outcomes, n in {10, 1e2, 1e3, 1e4, 1e5} samples per
iteration, replace, refit = empirical frequencies, run until the entropy falls below 1e-8, 100 seeds.

  ours   ``simulate(seed, Categorical(K, max_samples=n), Replace(), num_chains=100, path="exact",
         stop_when_absorbed=True, compact=True, metrics=["collapsed", "surviving"])`` for at most
         G = E T + 12 sd(T) generations: the chains move to ever smaller supports as outcomes die (a generation
         costs O(live outcomes), not O(K)) and the run stops once every chain has collapsed (fixation is absorbing;
         the remaining rows are filled exactly). Collapse times come from the per-generation fraction of collapsed
         chains (``collapse_time_summary``), no trajectories.
  NumPy  one seed at a time: ``counts = np.random.multinomial(n, p); p = counts / n``, entropy and number of zero
         outcomes logged, stop when entropy < 1e-8 (Kazdan et al.'s loop).

Cells run in full, shortest expected collapse time first, while the projected time fits the budget (default
600 s). NumPy runs all 100 seeds where they fit ``--numpy-cap-s``; elsewhere its time is projected from its
measured cost per generation as a function of the number of live outcomes, integrated over the survivor curve
that our run of the same cell measured (or, for cells we did not run, an upper bound from the first generations).

Usage:  cd /work/main && PYTHONPATH=. python benchmarks/bench_categorical.py [--quick] [--budget-s 600] [--json PATH]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import CompileLog, environment, print_table, write_json_atomic  # noqa: E402

GRID_K = (10, 100, 1000, 10_000, 100_000)
GRID_N = (10, 100, 1000, 10_000, 100_000)
SEEDS = 100
THRESHOLD = 1e-8
EXACT_MAX_N = 1000
SD_MARGIN = 12.0  # G = E T + SD_MARGIN sd(T): an upper bound; runs stop once every chain has collapsed


# ----------------------------------------------------------------------------------------------------------------
# expected collapse time (exact for n <= 1000, diffusion scaling above)
# ----------------------------------------------------------------------------------------------------------------
_MOMENTS: dict = {}


def collapse_time_law(k: int, n: int) -> dict:
    """Mean and sd of the collapse time T (fits) from a uniform truth over K outcomes with n samples per fit.

    Exact (``theory.categorical.fixation_time_moments``) for n <= 1000. Above, T/n is taken from the n = 1000 law
    with the same K (the Wright–Fisher diffusion limit; an approximation, flagged ``exact: False``)."""
    from collapse_theory.theory import categorical as th

    key = (k, n)
    if key not in _MOMENTS:
        if n <= EXACT_MAX_N:
            mean, var = th.fixation_time_moments(n, np.full(k, 1.0 / k))
            _MOMENTS[key] = {"mean": mean, "sd": math.sqrt(var), "exact": True}
        else:
            base = collapse_time_law(k, EXACT_MAX_N)
            scale = n / EXACT_MAX_N
            _MOMENTS[key] = {"mean": base["mean"] * scale, "sd": base["sd"] * scale, "exact": False}
    return _MOMENTS[key]


# ----------------------------------------------------------------------------------------------------------------
# the faithful NumPy loop
# ----------------------------------------------------------------------------------------------------------------
def numpy_seed(k: int, n: int, seed: int, max_generations: int | None = None, time_cap_s: float | None = None,
               times: list | None = None):
    """Kazdan et al.'s discrete loop for one seed. Returns (generations run, collapsed?, wall seconds); appends each
    generation's wall time to ``times`` when given."""
    np.random.seed(seed)
    p = np.full(k, 1.0 / k)
    start = time.perf_counter()
    t = 0
    while True:
        t0 = time.perf_counter()
        counts = np.random.multinomial(n, p)
        p = counts / n
        t += 1
        nz = p[p > 0]
        entropy = -np.sum(nz * np.log(nz))
        _zero = k - nz.size  # logged by the original loop
        if times is not None:
            times.append(time.perf_counter() - t0)
        if entropy < THRESHOLD:
            return t, True, time.perf_counter() - start
        if max_generations is not None and t >= max_generations:
            return t, False, time.perf_counter() - start
        if time_cap_s is not None and time.perf_counter() - start > time_cap_s:
            return t, False, time.perf_counter() - start


def numpy_probe(k: int, n: int, time_cap_s: float) -> dict:
    """Seconds per generation of the NumPy loop (seeds 0, 1, ... until ``time_cap_s``; the **median** over the timed
    generations, robust to a stalled generation on a shared machine), and, when every seed of the cell fits, the
    full loop's total time and collapse times. For cells that do not fit, the timed generations are the first ones
    of the chain, where most categories are alive: NumPy's multinomial gets cheaper as categories die, so the
    projected NumPy time is an upper bound."""
    gens, wall, seeds, collapse, times = 0, 0.0, 0, [], []
    while wall < time_cap_s and seeds < SEEDS:
        t, done, dt = numpy_seed(k, n, seeds, time_cap_s=time_cap_s - wall, times=times)
        gens += t
        wall += dt
        seeds += 1
        if done:
            collapse.append(t)
    out = {"s_per_generation": float(np.median(times)), "s_per_generation_mean": wall / max(gens, 1),
           "generations_timed": gens, "seeds_timed": seeds, "wall_s": wall}
    if len(collapse) == SEEDS:
        out["all_seeds_s"] = wall
        out["mean_collapse"] = float(np.mean(collapse))
    return out


def numpy_generation_cost(k: int, n: int, live: int, seed: int = 0) -> float:
    """Seconds for one generation of the NumPy loop body from a state with ``live`` outcomes alive (equal masses at
    random positions among the K, as a replace chain leaves them), the median of repeated timings (>= 20 ms)."""
    rng = np.random.default_rng(seed)
    p = np.zeros(k)
    p[rng.choice(k, size=live, replace=False)] = 1.0 / live
    np.random.seed(seed)
    times = []
    total = 0.0
    while total < 0.02 or len(times) < 5:
        t0 = time.perf_counter()
        counts = np.random.multinomial(n, p)
        q = counts / n
        nz = q[q > 0]
        _entropy = -np.sum(nz * np.log(nz))
        _zero = k - nz.size
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return float(np.median(times))


def numpy_cost_curve(k: int, n: int) -> dict:
    """NumPy's cost per generation at live-outcome counts from min(K, n) down to 1 (log-spaced), and from the
    uniform truth (all K alive: generation 1)."""
    top = min(k, n)
    lives = sorted({int(round(x)) for x in np.geomspace(1, top, num=8)})
    return {"live": lives, "s_per_generation": [numpy_generation_cost(k, n, live) for live in lives],
            "first_generation_s": numpy_generation_cost(k, n, k)}


def numpy_projection(curve: dict, collapsed, surviving) -> float:
    """Projected NumPy time for 100 seeds: SEEDS x sum_t Pr(T >= t) cost(live outcomes before generation t), with
    Pr(T >= t) = 1 - F(t-1) and the live count of an uncollapsed chain (S_t - F_t)/(1 - F_t) from our run's
    fraction collapsed F and mean survivors S (cost interpolated in log live count; an approximation: cost at the
    mean live count)."""
    f = np.asarray(collapsed, dtype=np.float64)
    s = np.asarray(surviving, dtype=np.float64)
    running = np.concatenate([[1.0], 1.0 - f[:-1]])  # Pr(T >= t), t = 1..G
    with np.errstate(invalid="ignore", divide="ignore"):
        live_after = np.where(f < 1.0, (s - f) / (1.0 - f), 1.0)
    live_before = np.maximum(live_after[:-1], 1.0)
    log_live = np.log(np.asarray(curve["live"], dtype=np.float64))
    cost = np.interp(np.log(live_before), log_live, np.asarray(curve["s_per_generation"]))
    per_seed = curve["first_generation_s"] + float(np.sum(running[1:] * cost))
    return SEEDS * per_seed


# ----------------------------------------------------------------------------------------------------------------
# ours
# ----------------------------------------------------------------------------------------------------------------
def _model(k: int, n: int):
    from collapse_theory.models.categorical import Categorical

    model = Categorical(k, max_samples=n)
    return model, model.sampler


def generations_bound(k: int, n: int) -> int:
    law = collapse_time_law(k, n)
    return max(1, math.ceil(law["mean"] + SD_MARGIN * law["sd"]))


def ours_full(k: int, n: int, log: CompileLog, seed: int = 0) -> dict:
    from collapse_theory import Replace, simulate
    from collapse_theory.models.categorical import collapse_time_summary

    model, _ = _model(k, n)
    g = generations_bound(k, n)
    log.reset()
    t0 = time.perf_counter()
    res = simulate(seed, model, Replace(), num_chains=SEEDS, num_generations=g, num_samples=n, path="exact",
                   metrics=["collapsed", "surviving"], quantiles=(), stop_when_absorbed=True, compact=True)
    wall = time.perf_counter() - t0
    compile_s = min(log.snapshot()["compile_total_s"], wall)
    summary = collapse_time_summary(res.mean("collapsed"))
    law = collapse_time_law(k, n)
    z = (summary["mean"] - law["mean"]) / (law["sd"] / math.sqrt(SEEDS)) if law["exact"] else float("nan")
    stop = res.metadata.get("absorbed_at_generation", g)
    return {"wall_s": wall, "compile_s": compile_s, "run_s": wall - compile_s, "generations_bound": g,
            "generations_run": stop,
            "support_schedule": res.metadata["support_schedule"],
            **{f"collapse_{key}": v for key, v in summary.items()}, "theory_mean": law["mean"],
            "theory_exact": law["exact"], "z": z, "collapsed": res.mean("collapsed")[:stop].tolist(),
            "surviving": res.mean("surviving")[:stop].tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="K, n in {10, 100, 1000}; 120 s budget")
    parser.add_argument("--budget-s", type=float, default=None, help="budget for our full runs (default 600)")
    parser.add_argument("--numpy-cap-s", type=float, default=None, help="NumPy seconds per cell (default 3)")
    parser.add_argument("--float32", action="store_true", help="JAX in float32 (default float64, as NumPy)")
    parser.add_argument("--json", metavar="PATH", help="write every time and ratio as JSON (atomically)")
    args = parser.parse_args(argv)
    grid_k = GRID_K[:3] if args.quick else GRID_K
    grid_n = GRID_N[:3] if args.quick else GRID_N
    budget = args.budget_s if args.budget_s is not None else (120.0 if args.quick else 600.0)
    np_cap = args.numpy_cap_s if args.numpy_cap_s is not None else (1.0 if args.quick else 3.0)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import collapse_theory  # noqa: F401

    env = environment()
    t_start = time.perf_counter()
    print(f"bench_categorical ({'quick' if args.quick else 'full'}): backend={env['backend']} "
          f"device={env['device_kind']} x64={env['x64']} cpus={env['cpu_count']} loadavg={env['loadavg_start']}")
    cells = []
    for k in grid_k:
        for n in grid_n:
            law = collapse_time_law(k, n)
            # one seed per cell: with a shared seed, cells of equal n are driven by the same uniforms and their chains
            # couple (common random numbers), so their collapse times would not be independent
            cells.append({"K": k, "n": n, "seed": len(cells), "theory_mean": law["mean"], "theory_sd": law["sd"],
                          "theory_exact": law["exact"], "generations_bound": generations_bound(k, n)})

    # ours: full runs, shortest expected collapse first, while the projection fits the budget. Projection: the
    # run time (wall minus JAX's compile events) of the same K at n/10, times 10 (collapse times and the live
    # outcomes' total both scale with n), plus the largest compile time seen; cells without that neighbour are
    # charged the slowest run rate seen (seconds per generation) for E T + 3 sd generations.
    log = CompileLog()
    spent, rate, compile_max = 0.0, 0.0, 0.0
    done: dict = {}
    for cell in sorted(cells, key=lambda c: (c["theory_mean"], c["K"])):
        k, n = cell["K"], cell["n"]
        smaller = done.get((k, n // 10))
        if smaller is not None:
            cell["ours_projected_s"] = 10 * smaller["run_s"] + compile_max
            cell["ours_projection"] = f"10 x run of n={n // 10} + compile"
        else:
            cell["ours_projected_s"] = rate * (cell["theory_mean"] + 3 * cell["theory_sd"]) + compile_max
            cell["ours_projection"] = "slowest rate seen x (E T + 3 sd) + compile"
        if spent + cell["ours_projected_s"] > budget:
            continue
        f = ours_full(k, n, log, seed=cell["seed"])
        # each cell compiles its own programs (one per support size): drop them, or a process that runs the whole
        # grid exhausts the kernel's memory-map limit (LLVM: "Unable to allocate section memory")
        jax.clear_caches()
        sys.modules["collapse_theory.simulate"]._COMPILED.clear()
        cell["ours_full"] = f
        done[(k, n)] = f
        spent += f["wall_s"]
        rate = max(rate, f["run_s"] / max(f["generations_run"], 1))
        compile_max = max(compile_max, f["compile_s"])
        print(f"   ours  K={k:<6d} n={n:<6d} {f['wall_s']:7.1f} s (compile {f['compile_s']:5.1f} s)  stopped at "
              f"{f['generations_run']:<7d} of {f['generations_bound']:<7d} mean T {f['collapse_mean']:.1f} "
              f"(theory {f['theory_mean']:.1f}{'' if f['theory_exact'] else ', approx'}) censored "
              f"{f['collapse_censored']:.2f} supports {[size for _, size in f['support_schedule']]}", flush=True)
    # a cell skipped before its n/10 neighbour ran gets the better projection now
    for cell in cells:
        smaller = done.get((cell["K"], cell["n"] // 10))
        if "ours_full" not in cell and smaller is not None:
            cell["ours_projected_s"] = 10 * smaller["run_s"] + compile_max
            cell["ours_projection"] = f"10 x run of n={cell['n'] // 10} + compile"
    ours_wall = time.perf_counter() - t_start

    # NumPy: all 100 seeds where they fit the cap; else projected
    for cell in cells:
        k, n = cell["K"], cell["n"]
        probe = numpy_probe(k, n, np_cap)
        cell["numpy_probe"] = probe
        curve = numpy_cost_curve(k, n)
        cell["numpy_cost_curve"] = curve
        f = cell.get("ours_full")
        if f is not None:
            cell["numpy_projected_s"] = numpy_projection(curve, f["collapsed"], f["surviving"])
            cell["numpy_projection"] = "survivor curve"
        else:
            cell["numpy_projected_s"] = probe["s_per_generation"] * SEEDS * cell["theory_mean"]
            cell["numpy_projection"] = "first generations (upper bound)"
        cell["numpy_cell_s"] = probe.get("all_seeds_s", cell["numpy_projected_s"])
        ours_cell = f["wall_s"] if f else cell["ours_projected_s"]
        cell["ratio_per_cell"] = cell["numpy_cell_s"] / ours_cell if ours_cell > 0 else float("nan")
        print(f"   NumPy K={k:<6d} n={n:<6d} {cell['numpy_cell_s']:9.1f} s "
              f"({'run' if 'all_seeds_s' in probe else 'projected: ' + cell['numpy_projection']})"
              + (f", projection {cell['numpy_projected_s']:.1f} s" if "all_seeds_s" in probe else "")
              + f" -> x{cell['ratio_per_cell']:.1f}", flush=True)

    rows = []
    for c in cells:
        f = c.get("ours_full")
        rows.append([c["K"], c["n"], c["theory_mean"], f["generations_run"] if f else None,
                     f["collapse_mean"] if f else None, f["collapse_censored"] if f else None,
                     f["z"] if f and c["theory_exact"] else None,
                     f["wall_s"] if f else c["ours_projected_s"], "run" if f else "projected",
                     c["numpy_cell_s"], "run" if "all_seeds_s" in c["numpy_probe"] else "projected",
                     c["ratio_per_cell"]])
    print_table(
        "Kazdan et al. discrete grid (uniform K, replace, until entropy < 1e-8, 100 seeds)",
        ["K", "n", "E T", "G run", "mean T", "censored", "z", "ours cell s", "", "NumPy cell s", "", "ratio"],
        rows,
        note="E T: exact expected collapse time for n <= 1000, diffusion scaling above. ours: 100 chains, compacted "
        "supports,\nstopped once all have collapsed ('G run'); z = (mean T - E T)/(sd T/10). NumPy 'projected': cost "
        "per generation vs live outcomes,\nintegrated over our measured survivor curve. ratio: NumPy cell time / "
        "ours cell time (ours includes compiling; 'projected' ours: see the JSON's ours_projection).",
    )
    ran = [c for c in cells if "ours_full" in c]
    ours_total = sum(c["ours_full"]["wall_s"] if "ours_full" in c else c["ours_projected_s"] for c in cells)
    numpy_total = sum(c["numpy_cell_s"] for c in cells)
    np_same = sum(c["numpy_cell_s"] for c in ran)
    ours_same = sum(c["ours_full"]["wall_s"] for c in ran)
    checked = [c for c in cells if "all_seeds_s" in c["numpy_probe"] and "ours_full" in c]
    if checked:
        errors = [c["numpy_projected_s"] / c["numpy_probe"]["all_seeds_s"] for c in checked]
        print(f"\n   NumPy projection vs NumPy run on {len(checked)} cells: projected/run "
              f"{min(errors):.2f}-{max(errors):.2f}")
    print(f"   full runs: {len(ran)} of {len(cells)} cells in {ours_same:.0f} s (budget {budget:.0f} s); NumPy for "
          f"the same cells {np_same:.0f} s -> x{np_same / max(ours_same, 1e-9):.1f}")
    print(f"   projected full grid: ours {ours_total:.3g} s ({ours_total / 3600:.2f} h), NumPy {numpy_total:.3g} s "
          f"({numpy_total / 3600:.2f} h, single core) -> x{numpy_total / ours_total:.1f}")
    print(f"   ours took {ours_wall:.0f} s; total {time.perf_counter() - t_start:.0f} s; "
          f"loadavg now {list(os.getloadavg())}")
    if args.json:
        env["loadavg_end"] = list(os.getloadavg())
        write_json_atomic(args.json, {
            "benchmark": "bench_categorical", "mode": "quick" if args.quick else "full", "environment": env,
            "params": {"K": list(grid_k), "n": list(grid_n), "seeds": SEEDS, "threshold": THRESHOLD,
                       "budget_s": budget, "numpy_cap_s": np_cap, "sd_margin": SD_MARGIN},
            "cells": cells, "full_runs": len(ran), "ours_full_runs_s": ours_same, "numpy_same_cells_s": np_same,
            "ours_projected_grid_s": ours_total, "numpy_projected_grid_s": numpy_total,
            "total_wall_s": time.perf_counter() - t_start,
        })
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
