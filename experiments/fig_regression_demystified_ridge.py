r"""Model Collapse Demystified: the downstream ridge error is U-shaped in λ, and each generation lifts it.

Dohmatob, Feng & Kempe (NeurIPS 2024), after their Fig. 1a (THEORY.md §4), scaled down: a generator chain of OLS fits on
T0 = 2d fresh rows with label noise σ0 (n generations of synthetic data), then a **downstream** ridge(λ) fit on
T fresh rows labelled by the n-th generator with noise σ; test error = excess risk ||ŵ_pred − w0||² (no σ²).
Isotropic Σ, ||w0|| = 1. Every λ of the sweep is fitted on the same downstream sample (one eigendecomposition).

* Left: test error vs λ for n ∈ {0, 1, 2, 5, 10} (n = 0: the generator is exact, σ0 = 0); dashed lines are the
  random-matrix Corollary 4.4 (asymptotic: at d = 100 expect a per-cent-level finite-size gap).
* Right: the exact finite-sample OLS law (Thm 4.1), σ² d/(T−d−1) + n σ0² d/(T0−d−1), against the simulated
  downstream OLS fit (λ = 0) — linear growth in n.

Sizes d = 100, T0 = 200, T = 300, σ = 0.5, σ0 = 0.5 (the paper's Fig. 1a: d = 300, T0 = 600, T = 1000, σ0 = 0.2,
its σ not recoverable; same ratios d/T0 = 1/2, d/T ≈ 1/3). The paper's right panel is error vs T at λ = 1e-3; this
one is error vs n at λ = 0, where the law is exact. Full: 200 chains (about a minute on 2 cores); ``--quick``: 24
chains.

Run: ``python experiments/fig_regression_demystified_ridge.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "regression_demystified_ridge"
DESCRIPTION = "Model Collapse Demystified: downstream ridge U-shape in λ per generation, exact OLS growth in n"

DIM, T0, T, SIGMA, SIGMA0 = 100, 200, 300, 0.5, 0.5
LAMBDAS = tuple(float(v) for v in np.logspace(-3, 1, 13))
GENERATIONS = (1, 2, 5, 10)


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "24 chains (seconds)")
    return parser.parse_args(argv)


def run(seed: int, chains: int) -> dict:
    import jax

    from collapse_theory.models import Downstream, LinearRegression
    from collapse_theory.simulate import simulate

    ridges = (0.0,) + LAMBDAS
    model = LinearRegression(dim=DIM, downstream=Downstream(rows=T, noise_sd=SIGMA, ridge=ridges))
    names = [f"downstream_excess_risk_{i}" for i in range(len(ridges))]
    out = {}
    with jax.enable_x64(True):
        for label, sigma0 in (("clean", 0.0), ("chain", SIGMA0)):
            res = simulate(seed, model, num_chains=chains, num_generations=max(GENERATIONS), num_samples=T0,
                           truth=model.params(noise_sd=sigma0), path="exact", metrics=names, quantiles=())
            out[label] = {"mean": np.stack([res.mean(m) for m in names]), "se": np.stack([res.se(m) for m in names])}
    return {"ridges": np.asarray(ridges), "runs": out, "chains": chains}


def plot(d: dict, *, seed: int):
    from collapse_theory import plotting
    from collapse_theory.theory import regression as th

    fig, (ax, bx) = plotting.new_figure(1, 2, figsize=(7.0, 2.9))
    lam = d["ridges"][1:]
    colors = ["0.15", "#3f90da", "#ffa90e", "#bd1f01", "#832db6"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    curves = [(0, d["runs"]["clean"], 1)] + [(n, d["runs"]["chain"], n) for n in GENERATIONS]
    handles, labels = [], []
    for color, (n, run, row) in zip(colors, curves, strict=False):
        mean, se = run["mean"][1:, row - 1], run["se"][1:, row - 1]
        theory = [th.downstream_ridge_isotropic(n, DIM, T, T0, lv, SIGMA**2, SIGMA0**2, 1.0) for lv in lam]
        art = plotting.theory_vs_simulation(ax, lam, mean, se, theory, color=color, theory_style="--",
                                            num_markers=None)
        handles.append(art["handle"])
        labels.append(f"n = {n}")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 3.0)  # headroom: the legend sits above the curves, not on them
    ax.legend(handles, labels, fontsize=6.5, loc="upper left", ncols=3)
    ax.set_xlabel("downstream ridge λ")
    ax.set_ylabel(r"test error $\mathbb{E}\,\|\hat w_{\rm pred} - w_0\|^2$")
    ax.set_title("U-shape in λ (dashed: Cor. 4.4, asymptotic)")

    n_all = np.arange(1, d["runs"]["chain"]["mean"].shape[1] + 1)
    ols = d["runs"]["chain"]
    art = plotting.theory_vs_simulation(bx, n_all, ols["mean"][0], ols["se"][0],
                                        th.downstream_ols_excess_risk(n_all, DIM, T, T0, SIGMA**2, SIGMA0**2),
                                        color="#bd1f01", num_markers=None)
    bx.set_xlabel("generations n of synthetic data")
    bx.set_ylabel(r"OLS test error $\mathbb{E}\,\|\hat w_{\rm pred} - w_0\|^2$")
    bx.set_title("OLS: exact σ²d/(T−d−1) + nσ0²d/(T0−d−1)")
    bx.legend([art["handle"]], ["theory (line), simulation ± 2 SE"], fontsize=6.5, loc="upper left")
    plotting.suptitle(fig, "Model Collapse Demystified: every generation of synthetic data adds a fixed cost")
    plotting.caption(
        fig,
        f"Generator: OLS chain on T0 = {T0} fresh rows per generation, σ0 = {SIGMA0}; downstream: ridge on T = {T} "
        f"fresh rows labelled by the n-th generator, σ = {SIGMA}; d = {DIM}, isotropic, ||w0|| = 1. "
        f"{d['chains']} chains, exact sufficient-statistic path, float64, seed {seed}. Markers and bands: "
        f"simulation ± 2 SE. After Fig. 1a of Dohmatob et al., scaled down (d = 300, T0 = 600, T = 1000 "
        f"there); right: error vs n at λ = 0, where the law is exact.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, 24 if args.quick else 200),
        lambda data: plot(data, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
