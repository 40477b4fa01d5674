r"""E W2² of the unbiased 1-D Gaussian replace chain: exact theory vs Shumailov et al.'s first-order formula.

Setup (Shumailov et al., Nature 2024, Thm 3.1 and SI §3.1.1; THEORY.md §1.4, §2.1): truth N(0, 1); every
generation fits the sample mean and the **unbiased** variance (ddof = 1) to M_t samples of the previous fit
(replace regime); exact sufficient-statistic path. Schedules: constant M = 10 and M = 100 (left panel) and
growing M_t = 10 t (:class:`~collapse_theory.Linear`, Σ1/M_t diverges like log t) and M_t = round(10 t^1.5)
(:class:`~collapse_theory.PowerLaw`, Σ1/M_t converges) (right panel).

Lines:

* solid: exact E W2²(N(μ̂_t, σ̂_t²), N(0, 1)) = Σ_{i<t} 1/M_i + 2(1 − Π_{i<t} c(M_i − 1))
  (:func:`collapse_theory.theory.gaussian.expected_w2_squared`);
* dashed: Shumailov's (3/2)σ² Σ_{i<t} 1/M_i (:func:`~collapse_theory.theory.gaussian.shumailov_w2_squared_approx`),
  which overshoots once Σ1/M_i is not small, because 2(1 − Π c) saturates at 2;
* markers ± 2 SE: simulation mean over chains; dotted: simulation median (the typical chain).

**Tails.** W2² contains σ̂_t², whose relative variance is Π_{i<t}(M_i + 1)/(M_i − 1) − 1, i.e.
((M+1)/(M−1))^t − 1 at constant M: for M = 10 it is 4·10⁸ at t = 100. A Monte-Carlo mean over C chains is then
carried by chains too rare to be drawn, so markers are filled only while Π (M_i+1)/(M_i−1) ≤ 100 (the SE is
meaningful there) and hollow beyond, where the sample mean falls below the true mean as expected.

Run: ``python experiments/fig_gaussian_w2.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "gaussian_w2"
DESCRIPTION = "E W2^2 of the unbiased 1-D Gaussian replace chain: exact theory vs Shumailov's (3/2) sum 1/M_i"

TAIL_LIMIT = 100.0  # markers are trusted while prod (M_i + 1)/(M_i - 1) <= TAIL_LIMIT


def _schedules():
    from collapse_theory import Constant, Linear, PowerLaw

    return [
        ("const", "M = 10", Constant(10), "o"),
        ("const", "M = 100", Constant(100), "s"),
        ("grow", r"$M_t = 10\,t$ (Linear)", Linear(10, 10), "^"),
        ("grow", r"$M_t = 10\,t^{1.5}$ (PowerLaw)", PowerLaw(10, 1.5), "D"),
    ]


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer generations and chains (seconds)")
    parser.add_argument("--num-chains", type=int, default=None, help="chains (default 20000; quick 2000)")
    parser.add_argument("--num-generations", type=int, default=None, help="generations (default 200; quick 100)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int) -> list[dict]:
    import jax

    from collapse_theory import Gaussian, Replace, simulate, theory

    gt = theory.gaussian
    model = Gaussian(dim=1, ddof=1)
    out = []
    with jax.enable_x64(True):
        for panel, label, schedule, marker in _schedules():
            res = simulate(seed, model, Replace(), num_chains=num_chains, num_generations=num_generations,
                           num_samples=schedule, path="exact", metrics=["w2_squared"], quantiles=(0.5,))
            t = res.generations
            sizes = schedule.sizes(num_generations).astype(np.float64)
            growth = np.cumprod((sizes + 1) / (sizes - 1))  # 1 + relative variance of sigma_t^2 after t fits
            out.append({
                "panel": panel, "label": label, "marker": marker, "t": t,
                "mean": res.mean("w2_squared"), "se": res.se("w2_squared"),
                "median": res.quantile("w2_squared", 0.5),
                "exact": gt.expected_w2_squared(t, sizes.astype(np.int64), ddof=1),
                "approx": gt.shumailov_w2_squared_approx(t, sizes.astype(np.int64)),
                "trusted": growth <= TAIL_LIMIT,
            })
    return out


def plot(data: list[dict], *, num_chains: int, num_generations: int, seed: int):
    from matplotlib.lines import Line2D

    from collapse_theory import plotting

    fig, axes = plotting.new_figure(1, 3, figsize=(7.0, 3.5), gridspec_kw={"width_ratios": [1, 1, 0.36]})
    panels = {"const": axes[0], "grow": axes[1]}
    axes[2].axis("off")
    handles = {"const": ([], []), "grow": ([], [])}
    for d in data:
        ax = panels[d["panel"]]
        ok = d["trusted"]
        art = plotting.theory_vs_simulation(ax, d["t"][ok], d["mean"][ok], d["se"][ok], d["exact"][ok], d["label"],
                                            marker=d["marker"], num_markers=16, log_markers=True)
        color = art["sim"].get_color()
        if not ok.all():
            t_bad = d["t"][~ok]
            ax.plot(d["t"], d["exact"], "-", color=color, zorder=2.5)  # the exact theory continues
            idx = plotting.marker_indices(t_bad.size, 8, log=False)
            ax.plot(t_bad[idx], d["mean"][~ok][idx], linestyle="none", marker=d["marker"], markerfacecolor="white",
                    color=color, markeredgewidth=0.9, zorder=3)
        ax.plot(d["t"], d["approx"], "--", color=color, linewidth=1.0, zorder=2.4)
        ax.plot(d["t"], d["median"], ":", color=color, linewidth=1.0, zorder=2.3)
        handles[d["panel"]][0].append(art["handle"])
        handles[d["panel"]][1].append(d["label"])
    key = [
        Line2D([], [], color="k", linestyle="-"),
        Line2D([], [], color="k", linestyle="--"),
        Line2D([], [], color="k", marker="o", linestyle="none"),
        Line2D([], [], color="k", marker="o", markerfacecolor="white", linestyle="none"),
        Line2D([], [], color="k", linestyle=":"),
    ]
    key_labels = [
        r"exact $\mathbb{E}W_2^2$",
        "Shumailov\n" r"$\frac{3}{2}\Sigma_{i<t}1/M_i$",
        "sim. mean\n" r"$\pm$ 2 SE",
        "sim. mean,\nunreliable\n(heavy tail)",
        "sim. median",
    ]
    for name, ax in panels.items():
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("generation t (number of fits)")
        h, lab = handles[name]
        leg = ax.legend(h, lab, loc="upper left", title="samples/generation")
        ax.add_artist(leg)
        plotting.plain_log_ticks(ax, "y")
    axes[0].set_ylabel(r"$W_2^2\left(N(\hat\mu_t,\hat\sigma_t^2),\,N(0,1)\right)$")
    axes[0].set_title("constant M: E W2² grows without bound (Thm 3.1)")
    axes[1].set_title(r"growing $M_t$: finite iff $\Sigma_t\, 1/M_t < \infty$")
    axes[2].legend(key, key_labels, loc="center left", fontsize="x-small", handlelength=1.8, borderaxespad=0.0)
    plotting.suptitle(fig, f"Wasserstein-2 collapse of the unbiased Gaussian chain (ddof = 1, replace, exact path): "
                       f"{num_chains:,} chains")
    plotting.caption(
        fig,
        r"Truth $N(0,1)$; generation $t$ fits mean and unbiased variance to $M_t$ samples of fit $t-1$ "
        f"(t = 1 fits real data); {num_generations} generations, seed {seed}, float64. Solid: exact "
        r"$\Sigma_{i<t}1/M_i + 2(1-\Pi_{i<t} c(M_i-1))$; dashed: Shumailov et al.'s first-order "
        r"$\frac{3}{2}\Sigma_{i<t}1/M_i$, which overshoots once $\Sigma\, 1/M_i$ is not small. "
        r"$W_2^2$ contains $\hat\sigma_t^2$, whose relative variance is $\Pi_{i<t}(M_i+1)/(M_i-1)-1$: "
        "beyond 100 (M = 10, t > 22) the sample mean is carried by chains too rare to draw, so it lies below "
        "the true mean (hollow markers); the median shows the typical chain.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = args.num_chains or (2000 if args.quick else 20000)
    num_generations = args.num_generations or (100 if args.quick else 200)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, num_generations),
        lambda data: plot(data, num_chains=num_chains, num_generations=num_generations, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
