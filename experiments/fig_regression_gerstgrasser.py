r"""Linear regression: replace grows linearly, accumulate stays below the π²/6 line (Gerstgrasser et al. §3).

Fixed design X (T × d, one per chain, relabelled every generation), x ~ N(0, I_d), label noise σ²; generation 1
fits OLS on the real labels, generation n + 1 on labels from the n-th fit plus fresh noise. Test error = excess
risk E||ŵ_n − w*||² (noise floor not included). Exact theory (THEORY.md §3.1):

* replace:    n σ² d/(T − d − 1)  (a straight line through the origin);
* accumulate: σ² d/(T − d − 1) Σ_{i≤n} 1/i²  < (π²/6) σ² d/(T − d − 1).

Three (d, T, σ²) settings; exact sufficient-statistic path; theory lines over simulation means with ±2 SE bands.
Full: 4000 chains × 50 generations per curve, about 3 minutes on 2 cores (the fixed-design exact step decomposes a
d × d matrix per chain and generation, in NumPy); ``--quick``: 400 chains, about 45 s, most of it compiling (programs
with a host callback are not kept in JAX's persistent cache).

Run: ``python experiments/fig_regression_gerstgrasser.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import math

NAME = "regression_gerstgrasser"
DESCRIPTION = "Regression test error vs iteration: replace linear, accumulate bounded by π²/6 (fixed design)"

SETTINGS = ((10, 40, 1.0), (20, 60, 0.5), (50, 200, 2.0))


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains (seconds)")
    parser.add_argument("--num-generations", type=int, default=50, help="fits per chain (default 50)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int) -> list[dict]:
    import jax

    from collapse_theory import regimes
    from collapse_theory.models import LinearRegression
    from collapse_theory.simulate import simulate
    from collapse_theory.theory import regression as th

    out = []
    with jax.enable_x64(True):
        for d, t_rows, noise_var in SETTINGS:
            model = LinearRegression(dim=d, noise_sd=math.sqrt(noise_var), design="fixed", design_rows=t_rows)
            curves = {}
            for name, regime in (("replace", regimes.Replace()), ("accumulate", regimes.Accumulate())):
                res = simulate(seed, model, regime, num_chains=num_chains, num_generations=num_generations,
                               num_samples=t_rows, path="exact", metrics=["excess_risk"], quantiles=())
                curves[name] = (res.mean("excess_risk"), res.se("excess_risk"))
            n = res.generations
            out.append({
                "d": d, "T": t_rows, "noise_var": noise_var, "n": n, "curves": curves,
                "replace_theory": th.replace_excess_risk(n, d, t_rows, noise_var),
                "accumulate_theory": th.accumulate_excess_risk(n, d, t_rows, noise_var),
                "bound": th.accumulate_bound(d, t_rows, noise_var),
            })
    return out


def plot(panels: list[dict], *, num_chains: int, seed: int):
    from collapse_theory import plotting

    fig, axes = plotting.new_figure(1, len(panels), figsize=(7.0, 2.6), sharey=False)
    red, blue = "#e76300", "#3f90da"
    for ax, p in zip(axes, panels, strict=True):
        n = p["n"]
        mean, se = p["curves"]["replace"]
        rep = plotting.theory_vs_simulation(ax, n, mean, se, p["replace_theory"], color=red, marker="o",
                                            num_markers=12)
        mean, se = p["curves"]["accumulate"]
        acc = plotting.theory_vs_simulation(ax, n, mean, se, p["accumulate_theory"], color=blue, marker="s",
                                            num_markers=12)
        bound = ax.axhline(p["bound"], color=blue, linestyle="--", linewidth=1.0)
        ax.set_title(f"d = {p['d']}, T = {p['T']}, σ² = {p['noise_var']:g}")
        ax.set_xlabel("fit n (n = 1: real labels)")
        ax.set_ylim(0, None)
        if ax is axes[0]:
            ax.set_ylabel(r"test error $\mathbb{E}\,\|\hat w_n - w^*\|^2$")
            ax.legend([rep["handle"], acc["handle"], bound],
                      ["replace: n σ² d/(T−d−1)", "accumulate: σ² d/(T−d−1) Σ 1/i²", "(π²/6) σ² d/(T−d−1)"],
                      loc="upper left", fontsize=6.5)
    plotting.suptitle(fig, "Linear regression on its own labels: replace diverges, accumulate is bounded")
    plotting.caption(
        fig,
        f"Fixed design X (one per chain, x ~ N(0, I)), OLS refit each generation on labels from the previous fit "
        f"plus N(0, σ²) noise; test error = excess risk (noise floor not included). {num_chains:,} chains per "
        f"curve, exact sufficient-statistic path, float64, seed {seed}. Lines: exact theory (Gerstgrasser et al. "
        f"2024, §3); markers and bands: simulation mean ± 2 SE.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = 400 if args.quick else 4000
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, args.num_generations),
        lambda panels: plot(panels, num_chains=num_chains, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
