"""Benchmark: the Kazdan et al. linear-regression grid end to end, against a faithful NumPy loop.

Grid (Kazdan et al., "Collapse or Thrive?", released code; THEORY.md §6.2): d = 10, n ∈ {10, 32, 100, 316, 1000},
σ² ∈ {0.1, 1, 10}, regimes replace / accumulate / accumulate-subsample, 100 iterations, 100 seeds; per seed
w* ~ N(0, I_d), a fixed design X (n × d, N(0, 1)), ridgeless fits (pinv), labels of the next iteration
X ŵ + σ N(0, 1); test error = ||ŵ − w*||² (their noiseless test targets).

* **ours**: ``simulate`` with ``LinearRegression(dim=10, design="fixed", design_rows=n, random_weights=True)``,
  100 chains (= seeds) per cell; replace and accumulate on the exact path (sufficient statistics XᵀX, Xᵀy; the
  stacked data are never formed), accumulate-subsample on the sample-level path (a fixed-size pool buffer and a
  uniformly random subset of n rows without replacement). σ lives in the parameters, so the three σ² of a cell
  share one compiled program (15 programs for the grid), compiled with ``simulate.FAST_COMPILE`` (XLA's CPU
  backend optimisation level 1: 2–5× faster compiles, same run time here; ``--default-compile`` to compare).
  Wall times include compilation.
* **NumPy loop**: a faithful re-implementation of the released loop (one seed at a time; ``np.linalg.pinv`` on
  the stacked data; a 1000-point noiseless test set; ``np.random.choice(..., replace=False)`` for the subset),
  timed on one seed per cell (all 45 cells; in ``--quick`` only the first 10 iterations, extrapolated to 100 by a
  line in t because the accumulate pool grows linearly) and multiplied by 100 seeds.

Run: ``python benchmarks/bench_regression.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import _common  # noqa: F401  (sets OPENBLAS_NUM_THREADS before NumPy/JAX load)
import numpy as np  # noqa: E402
from _common import environment, extrapolate_iterations, print_table, write_json_atomic  # noqa: E402

SEED = 0
DIM = 10
NS = (10, 32, 100, 316, 1000)
NOISE_VARS = (0.1, 1.0, 10.0)
REGIMES = ("replace", "accumulate", "accumulate-subsample")
SEEDS, ITERS = 100, 100
TARGET_S = 120.0


def numpy_chain(n: int, noise_var: float, regime: str, iters: int, seed: int) -> list[float]:
    """One seed of the released regression loop; returns per-iteration wall times."""
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(noise_var)
    w_star = rng.normal(size=DIM)
    x_init = rng.normal(size=(n, DIM))
    x_test = rng.normal(size=(1000, DIM))
    y_test = x_test @ w_star
    x_pool, y_pool = x_init, x_init @ w_star + sigma * rng.normal(size=n)
    x_fit, y_fit = x_pool, y_pool
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        w_hat = np.linalg.pinv(x_fit) @ y_fit
        _ = np.mean((x_test @ w_hat - y_test) ** 2)
        y_new = x_init @ w_hat + sigma * rng.normal(size=n)
        if regime == "replace":
            x_fit, y_fit = x_init, y_new
        else:
            x_pool = np.concatenate([x_pool, x_init])
            y_pool = np.concatenate([y_pool, y_new])
            if regime == "accumulate":
                x_fit, y_fit = x_pool, y_pool
            else:
                idx = rng.choice(len(y_pool), size=n, replace=False)
                x_fit, y_fit = x_pool[idx], y_pool[idx]
        times.append(time.perf_counter() - t0)
    return times


def run_ours(quick: bool, fast_compile: bool) -> dict:
    from collapse_theory import regimes
    from collapse_theory.models import LinearRegression
    from collapse_theory.simulate import FAST_COMPILE, simulate
    from collapse_theory.theory import regression as th

    ns = (32, 316) if quick else NS
    table = {"replace": (regimes.Replace(), "exact"), "accumulate": (regimes.Accumulate(), "exact"),
             "accumulate-subsample": (regimes.AccumulateSubsample(), "sample")}
    cells, sanity = [], []
    t_grid = time.perf_counter()
    for rname, (regime, path) in table.items():
        for n in ns:
            model = LinearRegression(dim=DIM, design="fixed", design_rows=n, random_weights=True)
            for noise_var in NOISE_VARS:
                t0 = time.perf_counter()
                res = simulate(SEED, model, regime, num_chains=SEEDS, num_generations=ITERS, num_samples=n,
                               truth=model.params(noise_sd=math.sqrt(noise_var)), path=path,
                               metrics=["excess_risk"], quantiles=(0.5,),
                               compiler_options=FAST_COMPILE if fast_compile else None)
                wall = time.perf_counter() - t0
                last, se = float(res.mean("excess_risk")[-1]), float(res.se("excess_risk")[-1])
                cells.append({"regime": rname, "path": path, "n": n, "noise_var": noise_var, "wall_s": wall,
                              "excess_risk_100": last, "se": se,
                              "median_100": float(res.quantile("excess_risk", 0.5)[-1])})
                print(f"   cell {rname:>20s} n={n:<5d} σ²={noise_var:<5g} {wall:6.2f} s  "
                      f"E||ŵ−w*||² at t=100: {last:.4g} ± {se:.2g}", flush=True)
                if n >= DIM + 2 and rname in ("replace", "accumulate") and noise_var == 1.0:
                    fn = th.replace_excess_risk if rname == "replace" else th.accumulate_excess_risk
                    theory = float(fn(ITERS, DIM, n, noise_var))
                    sanity.append({"regime": rname, "n": n, "noise_var": noise_var, "ours": last, "se": se,
                                   "theory": theory, "z": (last - theory) / se})
    total = time.perf_counter() - t_grid
    return {"ns": ns, "cells": cells, "total_s": total, "sanity": sanity, "fast_compile": fast_compile}


def run_numpy(quick: bool) -> dict:
    iters = 10 if quick else ITERS
    cells = []
    t0 = time.perf_counter()
    for rname in REGIMES:
        for n in NS:
            for noise_var in NOISE_VARS:
                times = numpy_chain(n, noise_var, rname, iters, SEED)
                one_seed, _ = extrapolate_iterations(times, ITERS)
                cells.append({"regime": rname, "n": n, "noise_var": noise_var, "iterations_timed": iters,
                              "one_seed_s": one_seed, "cell_s": one_seed * SEEDS})
    return {"iterations_timed": iters, "wall_s": time.perf_counter() - t0, "cells": cells,
            "full_grid_s": sum(c["cell_s"] for c in cells)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two n values for ours, 10 NumPy iterations per cell")
    parser.add_argument("--json", metavar="PATH", help="write every time and ratio as JSON (atomically)")
    parser.add_argument("--x32", action="store_true", help="run ours in float32 (default float64, as NumPy)")
    parser.add_argument("--default-compile", action="store_true",
                        help="compile with XLA's default optimisation instead of simulate.FAST_COMPILE")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.x32)
    env = environment()
    mode = "quick" if args.quick else "full"
    print(f"bench_regression ({mode}): backend={env['backend']} device={env['device_kind']} "
          f"jax={env['jax_version']} x64={env['x64']} cpus={env['cpu_count']} loadavg={env['loadavg_start']}")
    ours = run_ours(args.quick, fast_compile=not args.default_compile)
    peer = run_numpy(args.quick)
    same = {(c["regime"], c["n"], c["noise_var"]) for c in ours["cells"]}
    peer_same = sum(c["cell_s"] for c in peer["cells"] if (c["regime"], c["n"], c["noise_var"]) in same)
    per_regime = []
    for r in REGIMES:
        o = sum(c["wall_s"] for c in ours["cells"] if c["regime"] == r)
        p = sum(c["cell_s"] for c in peer["cells"] if c["regime"] == r and (r, c["n"], c["noise_var"]) in same)
        per_regime.append([r, o, p, p / o])
    per_regime.append(["total", ours["total_s"], peer_same, peer_same / ours["total_s"]])
    print_table(
        "Kazdan regression grid: ours vs the NumPy loop" + (" [QUICK: n in (32, 316)]" if args.quick else ""),
        ["regime", "ours wall s", "NumPy est. s", "ratio"], per_regime,
        note=f"ours: {len(ours['cells'])} cells x {SEEDS} chains x {ITERS} iterations, wall incl. compilation "
        f"({'simulate.FAST_COMPILE' if ours['fast_compile'] else 'default XLA options'}).\n"
        f"NumPy: 1 seed per cell timed ({peer['iterations_timed']} iterations"
        + (", extrapolated to 100 by a line in t" if peer["iterations_timed"] < ITERS else "")
        + f"; {peer['wall_s']:.1f} s), x{SEEDS} seeds. Full 45-cell NumPy estimate: {peer['full_grid_s']:.0f} s "
        f"({peer['full_grid_s'] / 3600:.2f} h).",
    )
    ok = ours["total_s"] < TARGET_S
    print(f"   ours total {ours['total_s']:.1f} s (target < {TARGET_S:.0f} s for the full grid: "
          f"{'PASS' if ok else 'MISS'}{', reduced grid' if args.quick else ''}); "
          f"speed-up x{peer_same / ours['total_s']:.0f}")
    print_table("sanity at t = 100 (σ² = 1, n ≥ d + 2): mean excess risk vs exact theory",
                ["regime", "n", "ours", "se", "theory", "z"],
                [[s["regime"], s["n"], s["ours"], s["se"], s["theory"], s["z"]] for s in ours["sanity"]])
    if args.json:
        env["loadavg_end"] = list(os.getloadavg())
        write_json_atomic(args.json, {"benchmark": "bench_regression", "mode": mode, "environment": env,
                                      "ours": ours, "numpy": peer, "numpy_same_cells_s": peer_same,
                                      "speedup": peer_same / ours["total_s"], "target_s": TARGET_S, "passed": ok})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
