r"""Heterozygosity (Gini–Simpson index) of categorical chains: replace vs accumulate, with exact theory.

Setup: truth uniform over K = 10 outcomes (:math:`H_0 = 0.9`); each generation refits the empirical frequencies
(maximum likelihood) of M ∈ {10, 50} samples drawn from the previous fit (replace) or the pooled frequencies of every
sample so far, the M real ones included (accumulate). Exact multinomial-count path, float64, temperature 1.

Theory (solid; :func:`collapse_theory.theory.categorical.expected_heterozygosity`, THEORY.md §7.1–7.2):

* replace (Wright–Fisher): :math:`\mathbb E H_t = (1 - 1/M)^t H_0` — geometric loss of diversity;
* accumulate: :math:`\mathbb E H_t = H_0\prod_{k\le t}(1 - 1/(Mk^2))`, which stops at
  :math:`H_0\,\sin(\pi/\sqrt M)/(\pi/\sqrt M)` (dotted).

Run: ``python experiments/fig_categorical_heterozygosity.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "categorical_heterozygosity"
DESCRIPTION = "Categorical heterozygosity, replace vs accumulate (M = 10, 50), exact theory and the sinc limit"

K = 10
SIZES = (10, 50)
COLORS = {("replace", 10): "#e76300", ("replace", 50): "#f2a15f", ("accumulate", 10): "#1f5f9f",
          ("accumulate", 50): "#6fb0ea"}
MARKERS = {10: "o", 50: "s"}


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains (seconds)")
    parser.add_argument("--num-chains", type=int, default=None, help="chains (default 4000; quick 500)")
    parser.add_argument("--num-generations", type=int, default=100, help="generations (default 100)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int) -> dict:
    import jax

    from collapse_theory import Accumulate, Replace, simulate
    from collapse_theory.models.categorical import Categorical
    from collapse_theory.theory import categorical as th

    out = {"t": np.arange(1, num_generations + 1)}
    h0 = 1.0 - 1.0 / K
    with jax.enable_x64(True):
        for m in SIZES:
            model = Categorical(K, max_samples=m)
            for name, regime in (("replace", Replace()), ("accumulate", Accumulate())):
                res = simulate(seed, model, regime, num_chains=num_chains, num_generations=num_generations,
                               num_samples=m, path="exact", metrics=["heterozygosity"], quantiles=())
                out[name, m] = (res.mean("heterozygosity"), res.se("heterozygosity"),
                                th.expected_heterozygosity(out["t"], m, h0, name))
            out["limit", m] = th.accumulate_heterozygosity_limit(m, h0)
    return out


def plot(d: dict, *, num_chains: int, num_generations: int, seed: int):
    from collapse_theory import plotting

    fig, ax = plotting.new_figure(figsize=(3.4, 3.0))
    t = d["t"]
    handles, labels = [], []
    for m in SIZES:
        for name in ("replace", "accumulate"):
            mean, se, theory = d[name, m]
            art = plotting.theory_vs_simulation(ax, t, mean, se, theory, color=COLORS[name, m], marker=MARKERS[m],
                                                num_markers=14, markersize=3)
            handles.append(art["handle"])
            labels.append(f"{name}, M = {m}")
        ax.axhline(d["limit", m], color=COLORS["accumulate", m], linestyle=":", linewidth=0.9)
    ax.set_ylim(0.0, 0.95)
    ax.set_xlabel("generation t (number of fits)")
    ax.set_ylabel(r"heterozygosity $1-\Sigma_i\, p_i^2$")
    ax.legend(handles, labels, loc="center right", fontsize="x-small")
    plotting.suptitle(fig, f"Categorical diversity, K = {K} uniform")
    plotting.caption(
        fig,
        f"Mean over {num_chains} chains ± 2 SE (markers, band); solid: exact theory $(1-1/M)^t H_0$ (replace) and "
        "$H_0\\Pi_{k\\leq t}(1-1/(Mk^2))$ (accumulate), dotted: its limit "
        "$H_0\\,\\sin(\\pi/\\sqrt{M})/(\\pi/\\sqrt{M})$ "
        f"(THEORY.md §7). MLE frequencies, exact multinomial path, float64, {num_generations} generations, "
        f"seed {seed}.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = args.num_chains or (500 if args.quick else 4000)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, args.num_generations),
        lambda data: plot(data, num_chains=num_chains, num_generations=args.num_generations, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
