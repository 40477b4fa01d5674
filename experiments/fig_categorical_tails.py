r"""Tail loss of a Zipf distribution under recursive refitting, at several sampling temperatures.

Setup: truth Zipf(β = 1.1) over K = 200 outcomes (:math:`p_i \propto i^{-\beta}`); replace regime: each generation
refits the empirical frequencies (maximum likelihood, no smoothing) of M = 200 samples drawn from the previous fit,
the fitted model generating at temperature τ (:math:`q \propto p^{1/\tau}`; the real data of generation 1 are never
tempered); τ ∈ {0.9, 1, 1.1}. Exact multinomial-count path, float64.

Panels:

* surviving categories :math:`\#\{i: p_{t,i} > 0\}` — theory at τ = 1: the exact Wright–Fisher survival
  :math:`\sum_i (1 - [b_i P^{t-1}]_0)` through the (M+1)×(M+1) binomial matrix
  (:func:`collapse_theory.theory.categorical.expected_surviving`, THEORY.md §7.1);
* lost mass :math:`\sum_i p_{0,i}1[p_{t,i} = 0]` (the truth's mass on the categories the model no longer produces;
  at t = 1 the memorizer error :math:`\sum_i p_{0,i}(1-p_{0,i})^M` of THEORY.md §8) — theory at τ = 1:
  :func:`~collapse_theory.theory.categorical.expected_lost_mass`;
* model tail mass :math:`\sum_{i > h} p_{t,i}` beyond the head h = 20 ranks: its *mean* is conserved at τ = 1
  (the frequencies are martingales; dashed line), its *median* falls — tails are lost in typical chains.

No closed form exists for τ ≠ 1 (markers joined by thin lines): τ < 1 loses the tail faster, τ > 1 slower.

Run: ``python experiments/fig_categorical_tails.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "categorical_tails"
DESCRIPTION = "Zipf tail loss vs generation at temperatures 0.9 / 1 / 1.1: survivors, lost mass, tail mass (theory)"

K, BETA, M, HEAD = 200, 1.1, 200, 20
TEMPERATURES = (0.9, 1.0, 1.1)
MARKERS = ("v", "o", "^")
COLORS = ("#e76300", "#3f90da", "#832db6")


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains and generations (seconds)")
    parser.add_argument("--num-chains", type=int, default=None, help="chains (default 2000; quick 300)")
    parser.add_argument("--num-generations", type=int, default=None, help="generations (default 150; quick 60)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int) -> dict:
    import jax

    from collapse_theory import Replace, simulate
    from collapse_theory.models.categorical import Categorical
    from collapse_theory.theory import categorical as th

    p0 = th.zipf_probs(K, BETA)
    out = {}
    with jax.enable_x64(True):
        for tau in TEMPERATURES:
            model = Categorical(K, temperature=tau, head_size=HEAD, max_samples=M)
            res = simulate(seed, model, Replace(), num_chains=num_chains, num_generations=num_generations,
                           num_samples=M, truth=model.params(p0), path="exact",
                           metrics=["surviving", "lost_mass", "tail_mass"], quantiles=(0.5,))
            out[tau] = {m: (res.mean(m), res.se(m)) for m in ("surviving", "lost_mass", "tail_mass")}
            out[tau]["tail_median"] = res.quantile("tail_mass", 0.5)
    t = np.arange(1, num_generations + 1)
    out["t"] = t
    out["surviving_theory"] = th.expected_surviving(t, M, p0)
    out["lost_theory"] = th.expected_lost_mass(t, M, p0)
    out["tail_mean_theory"] = th.expected_tail_mass(p0, HEAD)
    return out


def plot(d: dict, *, num_chains: int, num_generations: int, seed: int):
    from collapse_theory import plotting

    fig, axes = plotting.new_figure(1, 3, figsize=(7.0, 2.9))
    t = d["t"]
    handles, labels = [], []
    for tau, marker, color in zip(TEMPERATURES, MARKERS, COLORS, strict=True):
        exact = tau == 1.0
        art = plotting.theory_vs_simulation(axes[0], t, *d[tau]["surviving"], d["surviving_theory"] if exact else None,
                                            color=color, marker=marker, num_markers=12, markersize=3)
        plotting.theory_vs_simulation(axes[1], t, *d[tau]["lost_mass"], d["lost_theory"] if exact else None,
                                      color=color, marker=marker, num_markers=12, markersize=3)
        axes[2].plot(t, d[tau]["tail_median"], marker=marker, color=color, markevery=max(1, len(t) // 12),
                     markersize=3, linewidth=0.9)
        handles.append(art["handle"])
        labels.append(f"τ = {tau:g}" + (" (theory: line)" if exact else ""))
    axes[2].axhline(d["tail_mean_theory"], color=COLORS[1], linestyle="--", linewidth=1.0)
    axes[2].plot(t, d[1.0]["tail_mass"][0], color=COLORS[1], linewidth=0.8, alpha=0.6)
    axes[2].text(t[-1], d["tail_mean_theory"] * 1.03, "mean at τ = 1\n(martingale)", ha="right", va="bottom",
                 fontsize="x-small", color=COLORS[1])
    axes[0].set_yscale("log")
    plotting.plain_log_ticks(axes[0], "y")
    axes[0].set_ylabel("surviving categories")
    axes[1].set_ylabel("lost truth mass")
    axes[2].set_ylabel(f"tail mass beyond rank {HEAD}")
    for ax in axes:
        ax.set_xlabel("generation t")
    axes[0].legend(handles, labels, loc="upper right", fontsize="x-small")
    plotting.suptitle(fig, f"Zipf tail loss: K = {K}, β = {BETA}, M = {M}, replace")
    plotting.caption(
        fig,
        f"Truth Zipf($\\beta$ = {BETA}) over K = {K} outcomes; each generation refits the empirical frequencies of "
        f"M = {M} samples from the previous fit generated at temperature τ ($q \\propto p^{{1/τ}}$; the real data "
        f"of t = 1 are untempered). {num_chains} chains, {num_generations} generations, exact multinomial path, "
        f"float64, seed {seed}. Markers and bands: mean ± 2 SE; solid lines: exact Wright–Fisher theory at τ = 1 "
        "(binomial transition matrix, THEORY.md §7.1); no closed form for τ ≠ 1. Lost truth mass: "
        "$\\Sigma_i\\, p_{0,i}\\,1[p_{t,i}=0]$. Right: medians over chains; the dashed line is the conserved mean "
        "tail mass at τ = 1 (thin line: its simulated mean).",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = args.num_chains or (300 if args.quick else 2000)
    num_generations = args.num_generations or (60 if args.quick else 150)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, num_generations),
        lambda data: plot(data, num_chains=num_chains, num_generations=num_generations, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
