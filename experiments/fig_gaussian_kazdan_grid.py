r"""Kazdan et al. ("Collapse or Thrive?", arXiv 2410.16713) Gaussian grid: replace vs accumulate vs subsample.

Setup (THEORY.md §6.2, the authors' code): truth N(0, I_d), d = 10; iteration t = 1..100 fits the mean and the
MLE covariance (``np.cov(bias=True)``, ddof = 0) to

* **replace**: the n samples of the previous fit;
* **accumulate**: all t·n points so far (the n real points plus every synthetic batch);
* **accumulate-subsample**: n points drawn without replacement from that pool;

then draws n new points from the fit. Rows: ‖μ̂_t − μ‖², tr Σ̂_t / tr Σ, det Σ̂_t / det Σ (log y); hue = n ∈
{10, 32, 100, 316, 1000}; 100 chains (the paper's 100 seeds). Replace and accumulate run on the exact
sufficient-statistic path (Bartlett–Wishart draws, Chan pooling); subsample runs on the sample path (its subsets
reuse pool points, so there are no sufficient statistics).

Theory lines (solid, exact; THEORY.md §2.2–2.3), with ``collapse_theory.theory.gaussian``:

* replace: ``expected_mean_sq_norm`` = d(1 − r^t), ``expected_trace_ratio`` = r^t, r = (n−1)/n, and
  ``expected_det_ratio`` = (Π_{i≤d}(n−i)/n)^t;
* accumulate: ``expected_accumulate_mean_sq_error`` ≤ (π²/6)·d/n and ``expected_accumulate_variance_ratio`` =
  Π_{k≤t}(1 − 1/(n k²)) → sin(π/√n)/(π/√n) for the trace ratio; no closed form is drawn for its det ratio;
* subsample: no closed form (markers joined by a thin line).

det Σ̂ = 0 whenever a fit uses n ≤ d points (replace and subsample at n = 10 = d; accumulate only at t = 1),
so those series are left out of the (log) det row. The arithmetic mean of the det ratio over chains is heavy
tailed (its relative variance grows like Π_i(1 + 2/(n−i))^t), so with 100 chains it falls far below its
expectation for small n, exactly as in the paper's own seed-averaged curves.

Run: ``python experiments/fig_gaussian_kazdan_grid.py [--quick] [--out figures] [--seed 0] [--dim 10]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

NAME = "gaussian_kazdan_grid"
DESCRIPTION = "Kazdan et al. Gaussian grid: replace / accumulate / accumulate-subsample, mean error, tr and det ratios"

FULL_SIZES = (10, 32, 100, 316, 1000)
QUICK_SIZES = (10, 32, 100)
REGIMES = ("replace", "accumulate", "subsample")
ROWS = (
    ("sq_mean_error", r"$\|\hat\mu_t-\mu\|^2$"),
    ("trace_ratio", r"$\mathrm{tr}\,\hat\Sigma_t\,/\,\mathrm{tr}\,\Sigma$"),
    ("det_ratio", r"$\det\hat\Sigma_t\,/\,\det\Sigma$"),
)
MARKERS = ("o", "s", "^", "D", "v")


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "n in {10, 32, 100} and 50 iterations")
    parser.add_argument("--dim", type=int, default=10, help="dimension d (default 10)")
    parser.add_argument("--num-chains", type=int, default=100, help="chains (default 100, the paper's seeds)")
    parser.add_argument("--num-generations", type=int, default=None, help="iterations (default 100; quick 50)")
    return parser.parse_args(argv)


def _theory(regime: str, metric: str, t, n: int, dim: int):
    from collapse_theory import theory

    gt = theory.gaussian
    if regime == "replace":
        if metric == "sq_mean_error":
            return gt.expected_mean_sq_norm(t, n, ddof=0, trace=float(dim))
        if metric == "trace_ratio":
            return gt.expected_trace_ratio(t, n, ddof=0)
        return gt.expected_det_ratio(t, n, dim, ddof=0, singular="zero")  # 0 where n <= d, by construction
    if regime == "accumulate":
        if metric == "sq_mean_error":
            return gt.expected_accumulate_mean_sq_error(t, n, trace=float(dim), ddof=0)
        if metric == "trace_ratio":
            return gt.expected_accumulate_variance_ratio(t, n, ddof=0)
    return None


def run(seed: int, sizes, dim: int, num_chains: int, num_generations: int, log=print) -> dict:
    import jax

    from collapse_theory import Accumulate, AccumulateSubsample, Gaussian, Replace, simulate

    model = Gaussian(dim=dim, ddof=0)
    regimes = {
        "replace": (Replace(), "exact"),
        "accumulate": (Accumulate(), "exact"),
        "subsample": (AccumulateSubsample(), "sample"),
    }
    metrics = [name for name, _ in ROWS]
    out = {}
    with jax.enable_x64(True):
        for regime, (obj, path) in regimes.items():
            for n in sizes:
                start = time.perf_counter()
                res = simulate(seed, model, obj, num_chains=num_chains, num_generations=num_generations,
                               num_samples=n, path=path, metrics=metrics, quantiles=())
                t = res.generations
                out[regime, n] = {
                    "t": t,
                    "path": path,
                    **{f"{m}_mean": res.mean(m) for m in metrics},
                    **{f"{m}_se": res.se(m) for m in metrics},
                    **{f"{m}_theory": _theory(regime, m, t, n, dim) for m in metrics},
                }
                log(f"  {regime:10s} n = {n:5d} ({path}): {time.perf_counter() - start:.1f} s")
    return out


def plot(data: dict, *, sizes, dim: int, num_chains: int, num_generations: int, seed: int):
    import matplotlib

    from collapse_theory import plotting

    fig, axes = plotting.new_figure(len(ROWS), len(REGIMES), figsize=(7.0, 7.6), sharex=True)
    for row in range(len(ROWS) - 1):  # mean error and trace ratio share y across regimes; det spans 80 decades
        for col in range(1, len(REGIMES)):
            axes[row, col].sharey(axes[row, 0])
            axes[row, col].tick_params(labelleft=False)
    cmap = matplotlib.colormaps["viridis"]
    colors = {n: cmap(v) for n, v in zip(sizes, np.linspace(0.0, 0.85, len(sizes)), strict=True)}
    singular = [n for n in sizes if n <= dim]
    handles, labels = [], []
    titles = {
        "replace": "replace\n(exact path)",
        "accumulate": "accumulate\n(exact path)",
        "subsample": "accumulate-subsample\n(sample path)",
    }
    for col, regime in enumerate(REGIMES):
        for row, (metric, ylabel) in enumerate(ROWS):
            ax = axes[row, col]
            ax.set_yscale("log")
            for n, marker in zip(sizes, MARKERS[: len(sizes)], strict=True):
                if metric == "det_ratio" and n <= dim:
                    continue  # det = 0 exactly: the first fit on n <= d real points is singular (see caption)
                d = data[regime, n]
                t, mean, se, theory = d["t"], d[f"{metric}_mean"], d[f"{metric}_se"], d[f"{metric}_theory"]
                art = plotting.theory_vs_simulation(
                    ax, t, mean, se, theory, f"n = {n:,}", color=colors[n], marker=marker, num_markers=11,
                    log_markers=False, markersize=3.0,
                )
                if row == 0 and col == 0:
                    handles.append(art["handle"])
                    labels.append(f"n = {n:,}")
            plotting.plain_log_ticks(ax, "y")
            if row == 0:
                ax.set_title(titles[regime])
            if col == 0:
                ax.set_ylabel(ylabel)
            if row == len(ROWS) - 1:
                ax.set_xlabel("iteration t")
    fig.legend(handles, labels, loc="outside right upper", title="samples per\niteration n")
    plotting.suptitle(fig, f"Kazdan et al. Gaussian workflows: d = {dim}, MLE fit (ddof = 0), {num_chains} chains")
    skip = ""
    if singular:
        skip = (f"Det row: n = {', '.join(map(str, singular))} $\\leq$ d is left out: the first fit on n $\\leq$ d "
                "real points is singular and every later point (synthetic or pooled) stays in its affine hull, so "
                "det = 0 in all three workflows (the engine reports round-off, ~1e-37, on paths that use QR). ")
    plotting.caption(
        fig,
        rf"Truth $N(0, I_{{{dim}}})$; iteration t fits mean and MLE covariance to n points (replace: the previous "
        "fit's samples; accumulate: all t·n points so far; subsample: n of them without replacement), then "
        f"draws n new points; t = 1 is the fit on the real data. {num_generations} iterations, seed {seed}, "
        "float64. Markers and bands: mean over chains $\\pm$ 2 SE (on these log axes the band is "
        "mean$\\cdot\\exp(\\pm 2\\,$SE/mean)). Solid: exact theory (THEORY.md §2.2–2.3): replace $d(1-r^t)$, "
        "$r^t$, $(\\Pi_{i\\leq d}(n-i)/n)^t$ with $r = (n-1)/n$; accumulate "
        "$\\frac{d}{n}\\Sigma_{k\\leq t}P_{k-1}/k^2$ and $P_t = \\Pi_{k\\leq t}(1-1/(nk^2))$; no closed form for "
        "subsample or the accumulate det (markers joined by thin lines). " + skip +
        "In replace at small n all three quantities are heavy-tailed over chains (relative variance of the det "
        f"ratio $\\Pi_i(1+2/(n-i))^t$), so a mean over {num_chains} chains can sit far from its expectation: mostly "
        "below it (the typical chain collapses), but far above it when one chain's covariance has grown, as "
        "$\\|\\hat\\mu\\|^2$ can.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    num_generations = args.num_generations or (50 if args.quick else 100)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, sizes, args.dim, args.num_chains, num_generations,
                    log=lambda msg: print(msg, file=sys.stderr)),
        lambda data: plot(data, sizes=sizes, dim=args.dim, num_chains=args.num_chains,
                          num_generations=num_generations, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
