r"""The Kazdan et al. regression grid: replace, accumulate, accumulate-subsample (test error vs iteration).

"Collapse or Thrive?" (Kazdan et al., arXiv 2410.16713), linear-regression workflow as released (THEORY.md §6.2):
d = 10, per seed w* ~ N(0, I_d) and a fixed design X (n × d); ridgeless (pinv) fits; next labels X ŵ + σ N(0, 1);
test error ||ŵ − w*||² (their noiseless test targets). Columns: regime; rows: σ² ∈ {0.1, 1, 10}; hue: n.

Lines for n ≥ d + 2 are the exact theory (THEORY.md §3.1): replace t σ² d/(n − d − 1), accumulate
σ² d/(n − d − 1) Σ_{i≤t} 1/i²; accumulate-subsample has no closed form (simulation only). The n = 10 = d cell has
an **infinite** expected error (E tr (XᵀX)⁻¹ = ∞ for n ≤ d + 1): its mean over chains is not an estimate of
anything. The figure therefore shows, for every cell with n ≥ d + 2, the **mean** over chains ± 2 SE (filled
markers and bars), which the theory lines predict, and for every cell the **median** over chains (hollow markers),
which is the only summary of the n = 10 cells; the medians sit below the means because the error is right-skewed.

Full: 100 chains (= Kazdan's 100 seeds) × 100 iterations per cell, 45 cells (a few minutes on 2 cores);
``--quick``: n ∈ {32, 316} and 40 chains.

Run: ``python experiments/fig_regression_kazdan_grid.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import math

import numpy as np

NAME = "regression_kazdan_grid"
DESCRIPTION = "Kazdan et al. regression grid: test error vs iteration for 3 regimes x 3 noise levels x 5 n"

DIM = 10
NS = (10, 32, 100, 316, 1000)
NOISE_VARS = (0.1, 1.0, 10.0)
REGIMES = ("replace", "accumulate", "accumulate-subsample")
ITERS = 100


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "two n values, 40 chains (seconds)")
    return parser.parse_args(argv)


def run(seed: int, quick: bool) -> dict:
    import jax

    from collapse_theory import regimes
    from collapse_theory.models import LinearRegression
    from collapse_theory.simulate import FAST_COMPILE, simulate

    ns = (32, 316) if quick else NS
    chains = 40 if quick else 100
    table = {"replace": (regimes.Replace(), "exact"), "accumulate": (regimes.Accumulate(), "exact"),
             "accumulate-subsample": (regimes.AccumulateSubsample(), "sample")}
    out = {}
    with jax.enable_x64(True):
        for rname, (regime, path) in table.items():
            for n in ns:
                model = LinearRegression(dim=DIM, design="fixed", design_rows=n, random_weights=True)
                for noise_var in NOISE_VARS:
                    res = simulate(seed, model, regime, num_chains=chains, num_generations=ITERS, num_samples=n,
                                   truth=model.params(noise_sd=math.sqrt(noise_var)), path=path,
                                   metrics=["excess_risk"], quantiles=(0.5,), compiler_options=FAST_COMPILE)
                    out[(rname, n, noise_var)] = {"median": res.quantile("excess_risk", 0.5),
                                                  "mean": res.mean("excess_risk"), "se": res.se("excess_risk")}
    return {"ns": ns, "chains": chains, "cells": out, "t": np.arange(1, ITERS + 1)}


def plot(d: dict, *, seed: int):
    from collapse_theory import plotting
    from collapse_theory.theory import regression as th

    fig, axes = plotting.new_figure(len(NOISE_VARS), len(REGIMES), figsize=(7.0, 6.4), sharex=True, sharey="row")
    cmap = {10: "#3f90da", 32: "#ffa90e", 100: "#bd1f01", 316: "#94a4a2", 1000: "#832db6"}
    t = d["t"]
    for i, noise_var in enumerate(NOISE_VARS):
        for j, rname in enumerate(REGIMES):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            for n in d["ns"]:
                cell = d["cells"][(rname, n, noise_var)]
                idx = np.unique(np.round(np.logspace(0, 2, 12)).astype(int)) - 1
                finite = n >= DIM + 2
                ax.plot(t[idx], cell["median"][idx], "o", color=cmap[n], markersize=3.0, markerfacecolor="none",
                        markeredgewidth=0.6, label=None if finite else f"n = {n} (E = ∞; median)")
                if finite:
                    ax.errorbar(t[idx], cell["mean"][idx], yerr=2 * cell["se"][idx], fmt="o", color=cmap[n],
                                markersize=2.6, markeredgewidth=0, elinewidth=0.7, capsize=0, label=f"n = {n}")
                if finite and rname != "accumulate-subsample":
                    fn = th.replace_excess_risk if rname == "replace" else th.accumulate_excess_risk
                    ax.plot(t, fn(t, DIM, n, noise_var), "-", color=cmap[n], linewidth=0.9)
            if i == 0:
                ax.set_title(rname)
            if j == 0:
                ax.set_ylabel(f"σ² = {noise_var:g}\n" + r"$\|\hat w_t - w^*\|^2$")
            if i == len(NOISE_VARS) - 1:
                ax.set_xlabel("iteration t")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    plotting.suptitle(fig, "Kazdan et al. regression grid (d = 10): replace grows, accumulate is bounded")
    plotting.caption(
        fig,
        f"Fixed design per chain, w* ~ N(0, I), ridgeless fits; {d['chains']} chains per cell, {ITERS} iterations; "
        f"filled markers and bars: mean over chains ± 2 SE (n ≥ d + 2); hollow markers: median over chains; "
        f"sample-level path for accumulate-subsample, exact path otherwise; lines: exact theory for the mean "
        f"(n ≥ d + 2; none for accumulate-subsample). n = d = 10 has infinite expected error, so only its median "
        f"is drawn. float64, seed {seed}.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, args.quick),
        lambda data: plot(data, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
