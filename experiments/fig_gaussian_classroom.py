r"""Classroom demo: the average fitted variance stays 1 while the typical one collapses.

A Gaussian is refitted, generation after generation, to M = 10 samples drawn from the previous fit (replace
regime), with the **unbiased** variance (ddof = 1). Then (THEORY.md §2.1):

* E σ̂_t² = 1 exactly for every t (σ̂_t² is a martingale);
* log σ̂_t² is a random walk with drift ψ((M−1)/2) + log(2/(M−1)) ≈ −1/(M−1) per generation, so the typical
  value exp(E log σ̂_t²) (:func:`collapse_theory.theory.gaussian.expected_log_variance`) collapses like
  exp(−t/(M−1)), and σ̂_t² → 0 almost surely (Shumailov et al., Nature 2024, Thm 3.1).

Both hold at once because the distribution of σ̂_t² becomes extremely skewed: its relative variance is
((M+1)/(M−1))^t − 1. Once that exceeds the number of chains C (t ≳ log C / log((M+1)/(M−1)), about 46 for
C = 10⁴), the chains that carry the average are too rare to be drawn, and the simulated average falls below 1 —
itself a lesson about averages of heavy-tailed quantities.

Plotted on a log axis: the simulated average of σ̂_t² over chains and the exact line at 1; the simulated median
with the 5–95 % band over chains and the exact typical value exp(E log σ̂_t²).

Run: ``python experiments/fig_gaussian_classroom.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import math

NAME = "gaussian_classroom"
DESCRIPTION = "Classroom demo: the average variance stays 1, the typical variance collapses (unbiased, M = 10)"

NUM_SAMPLES = 10


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains (seconds)")
    parser.add_argument("--num-chains", type=int, default=None, help="chains (default 10000; quick 2000)")
    parser.add_argument("--num-generations", type=int, default=200, help="generations (default 200)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int) -> dict:
    import jax

    from collapse_theory import Gaussian, Replace, simulate, theory

    gt = theory.gaussian
    with jax.enable_x64(True):
        res = simulate(seed, Gaussian(dim=1, ddof=1), Replace(), num_chains=num_chains,
                       num_generations=num_generations, num_samples=NUM_SAMPLES, path="exact",
                       metrics=["variance"], quantiles=(0.05, 0.5, 0.95))
    t = res.generations
    return {
        "t": t,
        "mean": res.mean("variance"),
        "median": res.quantile("variance", 0.5),
        "q05": res.quantile("variance", 0.05),
        "q95": res.quantile("variance", 0.95),
        "mean_theory": gt.expected_variance(t, NUM_SAMPLES, ddof=1),
        "typical_theory": [math.exp(v) for v in gt.expected_log_variance(t, NUM_SAMPLES, ddof=1)],
    }


def plot(d: dict, *, num_chains: int, num_generations: int, seed: int):
    from collapse_theory import plotting

    m = NUM_SAMPLES
    fig, ax = plotting.new_figure(figsize=(11, 7.5))
    ax.set_yscale("log")
    t = d["t"]
    blue, orange = "#3f90da", "#e76300"
    ax.plot(t, d["mean_theory"], "-", color=blue, linewidth=4, label=r"average: theory, exactly 1")
    ax.plot(t, d["mean"], "s-", color=blue, linewidth=1.2, markersize=6, markevery=5, markeredgecolor="white",
            markeredgewidth=0.6, label="average of the chains")
    ax.plot(t, d["typical_theory"], "-", color=orange, linewidth=4,
            label=r"typical: theory $e^{\,\mathbb{E}\log\hat\sigma_t^2}$")
    ax.plot(t, d["median"], "o", color=orange, markersize=5, markevery=5, markeredgecolor="white",
            markeredgewidth=0.6, label="median of the chains")
    ax.fill_between(t, d["q05"], d["q95"], color=orange, alpha=0.2, linewidth=0, label="middle 90% of the chains")
    # Where the chains that carry the average become too rare for this many chains to contain them:
    # the relative variance of sigma_t^2, ((M+1)/(M-1))^t - 1, reaches the number of chains.
    t_star = math.log(num_chains) / math.log((m + 1) / (m - 1))
    if t_star < t[-1]:
        ax.axvline(t_star, color="0.4", linestyle=":", linewidth=2)
        ax.text(t_star + 2, 60, f"← after t ≈ {t_star:.0f}, {num_chains:,} chains are too few\n"
                "    to contain the rare chains that carry the average",
                fontsize=15, color="0.25", va="center")
    ax.set_xlim(0, t[-1] + 1)
    lo = min(min(d["q05"]), min(d["typical_theory"]))
    ax.set_ylim(max(lo / 5, 1e-300), 3e3)
    ax.set_xlabel("generation t (number of refits)")
    ax.set_ylabel(r"fitted variance $\hat\sigma_t^2$")
    ax.legend(loc="lower left", fontsize=14)
    plotting.suptitle(fig, "The average variance stays 1;\nthe typical variance collapses")
    ax.set_title(f"A Gaussian refitted to M = {m} of its own samples, again and again: {num_chains:,} chains",
                 fontsize=16, color="0.25")
    plotting.caption(
        fig,
        f"1-D Gaussian, truth N(0, 1) (true variance 1); replace regime: each generation fits mean and unbiased "
        f"variance (ddof = 1) to M = {m} samples of the previous fit; t = 1 is the fit on the real data. "
        f"{num_chains:,} chains, {num_generations} generations, exact sufficient-statistic path, float64, "
        f"seed {seed}. Lines: exact theory; markers and band: simulation. The typical value falls like "
        f"$e^{{-t/(M-1)}}$.",
        fontsize=12,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = args.num_chains or (2000 if args.quick else 10000)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, args.num_generations),
        lambda data: plot(data, num_chains=num_chains, num_generations=args.num_generations, seed=args.seed),
        style="classroom")


if __name__ == "__main__":
    raise SystemExit(main())
