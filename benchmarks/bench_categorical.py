"""Kazdan et al.'s discrete grid through collapse_theory, against a faithful NumPy loop (see benchmarks/README.md).

Grid: truth uniform over K in {10, 1e2, 1e3, 1e4, 1e5} outcomes, n in {10, 1e2, 1e3, 1e4, 1e5} samples per
iteration, replace, refit = empirical frequencies, run until the entropy falls below 1e-8, 100 seeds.

  ours   ``simulate(seed, Categorical(K, ...), Replace(), num_chains=100, path="exact", metrics=["collapsed"])``
         for a fixed number of generations G (fixed shapes: all chains run in lockstep), chosen from the exact
         collapse-time law so that few chains are still uncollapsed at G; the collapse time of every chain is read off
         the per-generation fraction of collapsed chains (``collapse_time_summary``), no trajectories.
         Sampler per cell: ``Categorical(K, max_samples=n)`` with ``exact_sampler="auto"`` (binomial tree for
         n > 50 K, sorted-uniform spacings for 4 K <= n, inverse CDF otherwise).
  NumPy  one seed at a time: ``counts = np.random.multinomial(n, p); p = counts / n``, entropy and number of zero
         outcomes logged, stop when entropy < 1e-8 (Kazdan et al.'s loop).

Every cell is first probed (a short timed run of ours and of NumPy) to measure the cost per chain-generation; cells are
then run in full, cheapest first, as long as their projected time fits the budget (default 600 s). The full-grid time
is projected for both from the probes and the expected collapse time E T(K, n) (exact through the Wright–Fisher
transition matrix for n <= 1000; for larger n the diffusion scaling T/n of the n = 1000 law, an approximation).

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
from _common import environment, print_table, write_json_atomic  # noqa: E402

GRID_K = (10, 100, 1000, 10_000, 100_000)
GRID_N = (10, 100, 1000, 10_000, 100_000)
SEEDS = 100
THRESHOLD = 1e-8
EXACT_MAX_N = 1000
SD_MARGIN = 7.0  # G = E T + SD_MARGIN sd(T): about 1e-4 of the chains still uncollapsed at G, per chain


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


# ----------------------------------------------------------------------------------------------------------------
# ours
# ----------------------------------------------------------------------------------------------------------------
def _model(k: int, n: int):
    from collapse_theory.models.categorical import Categorical

    model = Categorical(k, max_samples=n)
    return model, model.sampler


def _simulate(k: int, n: int, generations: int, chunk: int):
    from collapse_theory import Replace, simulate

    model, _ = _model(k, n)
    return simulate(0, model, Replace(), num_chains=SEEDS, num_generations=generations, num_samples=n,
                    path="exact", metrics=["collapsed"], quantiles=(), chunk_size=chunk)


def ours_probe(k: int, n: int, target_s: float, guess_ns: float) -> dict:
    """Compile + one chunk, then the same chunk again (cached program): seconds per chain-generation."""
    law = collapse_time_law(k, n)
    g_full = max(1, math.ceil(law["mean"] + SD_MARGIN * law["sd"]))
    chunk = int(min(g_full, max(1, round(target_s * 1e9 / (SEEDS * guess_ns)))))
    t0 = time.perf_counter()
    _simulate(k, n, chunk, chunk)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _simulate(k, n, chunk, chunk)
    run = time.perf_counter() - t0
    g_full = chunk * math.ceil(g_full / chunk)
    per = run / (SEEDS * chunk)
    return {"chunk": chunk, "generations_full": g_full, "probe_first_s": first, "probe_run_s": run,
            "compile_s_est": max(first - run, 0.0), "s_per_chain_generation": per,
            "projected_full_s": per * SEEDS * g_full + max(first - run, 0.0)}


def ours_full(k: int, n: int, probe: dict) -> dict:
    from collapse_theory.models.categorical import collapse_time_summary

    t0 = time.perf_counter()
    res = _simulate(k, n, probe["generations_full"], probe["chunk"])
    wall = time.perf_counter() - t0
    summary = collapse_time_summary(res.mean("collapsed"))
    law = collapse_time_law(k, n)
    z = (summary["mean"] - law["mean"]) / (law["sd"] / math.sqrt(SEEDS)) if law["exact"] else float("nan")
    return {"wall_s": wall, **{f"collapse_{key}": v for key, v in summary.items()}, "theory_mean": law["mean"],
            "theory_exact": law["exact"], "z": z}


def _guess_ns(k: int, n: int) -> float:
    """A rough prior cost per chain-generation (ns), only to size the probe chunk; the probe measures."""
    sampler = _model(k, n)[1]
    if sampler == "tree":
        return 300.0 + 1500.0 * k
    return 300.0 + 30.0 * k + 60.0 * n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="K, n in {10, 100, 1000}; 60 s budget")
    parser.add_argument("--budget-s", type=float, default=None, help="budget for our full runs (default 600)")
    parser.add_argument("--probe-s", type=float, default=None, help="target seconds of one probe chunk (default 1)")
    parser.add_argument("--numpy-cap-s", type=float, default=None, help="NumPy seconds per cell (default 3)")
    parser.add_argument("--float32", action="store_true", help="JAX in float32 (default float64, as NumPy)")
    parser.add_argument("--json", metavar="PATH", help="write every time and ratio as JSON (atomically)")
    args = parser.parse_args(argv)
    grid_k = GRID_K[:3] if args.quick else GRID_K
    grid_n = GRID_N[:3] if args.quick else GRID_N
    budget = args.budget_s if args.budget_s is not None else (60.0 if args.quick else 600.0)
    probe_s = args.probe_s if args.probe_s is not None else (0.3 if args.quick else 1.0)
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
            cell = {"K": k, "n": n, "sampler": _model(k, n)[1], "theory_mean": law["mean"], "theory_sd": law["sd"],
                    "theory_exact": law["exact"]}
            cell["ours_probe"] = ours_probe(k, n, probe_s, _guess_ns(k, n))
            cell["numpy_probe"] = numpy_probe(k, n, np_cap)
            per_np = cell["numpy_probe"]["s_per_generation"]
            cell["numpy_projected_s"] = per_np * SEEDS * law["mean"]
            cell["ratio_per_chain_generation"] = per_np / cell["ours_probe"]["s_per_chain_generation"]
            print(f"   probe K={k:<6d} n={n:<6d} {cell['sampler']:>13s}: ours "
                  f"{cell['ours_probe']['s_per_chain_generation'] * 1e6:9.2f} us/chain-gen, NumPy "
                  f"{per_np * 1e6:9.2f} us/gen, ratio x{cell['ratio_per_chain_generation']:.1f}", flush=True)
            cells.append(cell)
    probe_wall = time.perf_counter() - t_start

    # full runs, cheapest projected first, while they fit the budget
    spent = 0.0
    for cell in sorted(cells, key=lambda c: c["ours_probe"]["projected_full_s"]):
        projected = cell["ours_probe"]["projected_full_s"]
        if spent + projected > budget:
            continue
        cell["ours_full"] = ours_full(cell["K"], cell["n"], cell["ours_probe"])
        spent += cell["ours_full"]["wall_s"]
        f = cell["ours_full"]
        print(f"   full  K={cell['K']:<6d} n={cell['n']:<6d} G={cell['ours_probe']['generations_full']:<7d} "
              f"{f['wall_s']:7.1f} s  mean collapse {f['collapse_mean']:.1f} (theory {f['theory_mean']:.1f}"
              f"{'' if f['theory_exact'] else ', approx'}) censored {f['collapse_censored']:.2f}", flush=True)

    rows = []
    for c in cells:
        f = c.get("ours_full")
        np_cell = c["numpy_probe"].get("all_seeds_s", c["numpy_projected_s"])
        ours_cell = f["wall_s"] if f else c["ours_probe"]["projected_full_s"]
        c["ratio_per_cell"] = np_cell / ours_cell
        rows.append([c["K"], c["n"], c["sampler"], c["theory_mean"], c["ours_probe"]["generations_full"],
                     f["collapse_mean"] if f else None, f["collapse_censored"] if f else None,
                     f["z"] if f and c["theory_exact"] else None, ours_cell, "run" if f else "projected",
                     c["ours_probe"]["s_per_chain_generation"] * 1e6, c["numpy_probe"]["s_per_generation"] * 1e6,
                     np_cell, "run" if "all_seeds_s" in c["numpy_probe"] else "projected",
                     c["ratio_per_chain_generation"], c["ratio_per_cell"]])
    print_table(
        "Kazdan et al. discrete grid (uniform K, replace, until entropy < 1e-8, 100 seeds)",
        ["K", "n", "sampler", "E T", "G ours", "mean T", "censored", "z", "ours cell s", "", "ours us/ch-gen",
         "NumPy us/gen", "NumPy cell s", "", "ratio/gen", "ratio/cell"],
        rows,
        note="E T: exact expected collapse time for n <= 1000, diffusion scaling above. ours: 100 chains in lockstep "
        "for G generations\n(G = E T + 7 sd, so ours runs ~3-5x the mean number of generations the per-seed NumPy loop "
        "needs); mean T from the\nfraction of collapsed chains; z = (mean T - E T)/(sd T/10). 'projected' cells: probe "
        "cost x generations (+ compile).\nratio/gen: NumPy s per generation / ours s per chain-generation; ratio/cell: "
        "NumPy cell time / ours cell time.",
    )
    ran = [c for c in cells if "ours_full" in c]
    ours_total = sum(c["ours_full"]["wall_s"] if "ours_full" in c else c["ours_probe"]["projected_full_s"]
                     for c in cells)
    numpy_total = sum(c["numpy_probe"].get("all_seeds_s", c["numpy_projected_s"]) for c in cells)
    np_same = sum(c["numpy_probe"].get("all_seeds_s", c["numpy_projected_s"]) for c in ran)
    ours_same = sum(c["ours_full"]["wall_s"] for c in ran)
    print(f"\n   full runs: {len(ran)} of {len(cells)} cells in {ours_same:.0f} s (budget {budget:.0f} s); NumPy for "
          f"the same cells {np_same:.0f} s -> x{np_same / max(ours_same, 1e-9):.1f}")
    print(f"   projected full grid: ours {ours_total:.3g} s ({ours_total / 86400:.2f} days), NumPy {numpy_total:.3g} s "
          f"({numpy_total / 86400:.2f} days, single core) -> x{numpy_total / ours_total:.1f}")
    print(f"   probes took {probe_wall:.0f} s; total {time.perf_counter() - t_start:.0f} s; "
          f"loadavg now {list(os.getloadavg())}")
    if args.json:
        env["loadavg_end"] = list(os.getloadavg())
        write_json_atomic(args.json, {
            "benchmark": "bench_categorical", "mode": "quick" if args.quick else "full", "environment": env,
            "params": {"K": list(grid_k), "n": list(grid_n), "seeds": SEEDS, "threshold": THRESHOLD,
                       "budget_s": budget, "probe_s": probe_s, "numpy_cap_s": np_cap, "sd_margin": SD_MARGIN},
            "cells": cells, "full_runs": len(ran), "ours_full_runs_s": ours_same, "numpy_same_cells_s": np_same,
            "ours_projected_grid_s": ours_total, "numpy_projected_grid_s": numpy_total,
            "total_wall_s": time.perf_counter() - t_start,
        })
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
