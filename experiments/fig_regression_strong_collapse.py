r"""Strong model collapse: a fixed fraction of shifted data puts a floor under the scaling law; model size.

Dohmatob, Feng, Subramonian & Kempe (ICLR 2025); THEORY.md §5. One OLS fit on n = n1 + n2 rows: n1 real
(weights w1, noise σ²) and n2 = round(p2·n) "synthetic" rows labelled by w2 = w1 + δ, ||δ||² = 1; test error on the
real distribution = excess risk ||ŵ − w1||² (noise floor not included).

* Left: error vs n (log-log) for p2 ∈ {0, 0.001, 0.01, 0.1}, d = 20, σ² = 1; lines are the derived
  deterministic equivalent (p1σ1² + p2σ2²) d/(n−d−1) + ||δ||²(p2² + p1p2 φ/(1−φ)), dotted lines the floors
  p2²||δ||². Real data alone (p2 = 0) follows σ² d/(n−d−1) → 0; any fixed p2 > 0 stops at its floor; one
  shifted row (n2 = 1, p2 → 0) does not. Exact sufficient-statistic path: every n costs the same.
* Right: the random-projections model f(x) = vᵀSx (S: m × d, fixed per chain), d = 400, n = 200, σ² = 0.25,
  minimum-norm fits, error vs model size m for p2 ∈ {0, 0.1, 0.3}. The interpolation threshold m = n is where
  larger models amplify the damage done by the shifted data; beyond it larger models reduce the error again
  (and the gap between mixed and real-only data), but do not remove it. Sample-level path (rows drawn and fitted
  by SVD). Exact formula not available: simulation only. m = n itself (infinite expected error) is skipped.

Full: 4000 chains per n (left), 200 chains per m (right), a few minutes on 2 cores; ``--quick``: 400 and 24.

Run: ``python experiments/fig_regression_strong_collapse.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "regression_strong_collapse"
DESCRIPTION = "Strong model collapse: error floor p2²||δ||² vs n, and the random-projections model size"

P2_LEFT = (0.0, 0.001, 0.01, 0.1)
P2_RIGHT = (0.0, 0.1, 0.3)
DIM_LEFT = 20
DIM_RIGHT, N_RIGHT = 400, 200
SIZES_RIGHT = (20, 60, 100, 140, 170, 190, 210, 230, 260, 300, 400, 600)
SIZES_QUICK = (40, 120, 180, 220, 300, 600)


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains and model sizes (seconds)")
    return parser.parse_args(argv)


def run(seed: int, quick: bool) -> dict:
    import jax

    from collapse_theory.mixing import simulate_mixture
    from collapse_theory.models import LinearRegression
    from collapse_theory.theory import regression as th

    n = np.unique(np.round(np.logspace(np.log10(50), 7, 22)).astype(int))
    left = {}
    with jax.enable_x64(True):
        model = LinearRegression(dim=DIM_LEFT, noise_sd=1.0)
        for p2 in P2_LEFT + ("one",):
            n2 = np.ones_like(n) if p2 == "one" else np.round(p2 * n).astype(int)
            res = simulate_mixture(seed, model, num_real=n - n2, num_synth=n2, shift_norm_sq=1.0,
                                   num_chains=400 if quick else 4000)
            p2_eff = n2 / n
            theory = np.array([th.mixture_excess_risk(k, DIM_LEFT, q, 1.0) for k, q in zip(n, p2_eff, strict=True)])
            left[p2] = {"mean": res.mean("excess_risk"), "se": res.se("excess_risk"), "theory": theory}
        right = {p2: {"mean": [], "se": []} for p2 in P2_RIGHT}
        sizes = SIZES_QUICK if quick else SIZES_RIGHT
        n2 = np.array([round(p2 * N_RIGHT) for p2 in P2_RIGHT])
        for m in sizes:
            model = LinearRegression(dim=DIM_RIGHT, noise_sd=0.5, model_size=m)
            res = simulate_mixture(seed, model, num_real=N_RIGHT - n2, num_synth=n2, shift_norm_sq=1.0,
                                   num_chains=24 if quick else 200, path="sample")
            for i, p2 in enumerate(P2_RIGHT):
                right[p2]["mean"].append(res.mean("excess_risk")[i])
                right[p2]["se"].append(res.se("excess_risk")[i])
    return {"n": n, "left": left, "sizes": np.array(sizes), "right": right,
            "plateau": {p2: th.mixture_plateau(p2, 1.0) for p2 in P2_LEFT}}


def plot(d: dict, *, quick: bool, seed: int):
    from collapse_theory import plotting

    fig, (ax, bx) = plotting.new_figure(1, 2, figsize=(7.0, 3.0))
    colors = {0.0: "0.2", 0.001: "#3f90da", 0.01: "#e76300", 0.1: "#a96b59", "one": "#964a8b", 0.3: "#832db6"}
    ax.set_xscale("log")
    ax.set_yscale("log")
    handles, labels = [], []
    for p2, curve in d["left"].items():
        art = plotting.theory_vs_simulation(ax, d["n"], curve["mean"], curve["se"], curve["theory"],
                                            color=colors[p2], num_markers=11)
        handles.append(art["handle"])
        labels.append("one shifted row (on p2 = 0)" if p2 == "one" else f"p2 = {p2:g}")
        if p2 not in (0.0, "one"):
            ax.axhline(d["plateau"][p2], color=colors[p2], linestyle=":", linewidth=0.9)
    ax.legend(handles, labels, fontsize=6.5, loc="upper right")  # the empty corner: not on a floor line
    ax.set_xlabel("training-set size n")
    ax.set_ylabel(r"test error $\mathbb{E}\,\|\hat w - w_1\|^2$")
    ax.set_title(f"OLS, d = {DIM_LEFT}: floors p2²‖δ‖² (dotted)")

    bx.set_yscale("log")
    sizes = d["sizes"]
    for p2, curve in d["right"].items():
        mean, se = np.asarray(curve["mean"]), np.asarray(curve["se"])
        bx.errorbar(sizes, mean, yerr=2 * se, fmt="o-", color=colors[p2], markersize=3, linewidth=0.9,
                    capsize=1.5, label=f"p2 = {p2:g}")
    bx.axvline(N_RIGHT, color="0.5", linestyle="--", linewidth=0.8)
    bx.text(N_RIGHT * 1.03, 0.04, "m = n", fontsize=7, color="0.35", transform=bx.get_xaxis_transform())
    bx.set_xlabel("model size m (random projections vᵀSx)")
    bx.set_ylabel(r"test error $\mathbb{E}\,\|\hat w - w_1\|^2$")
    bx.set_title(f"d = {DIM_RIGHT}, n = {N_RIGHT}: amplification near m = n")
    bx.legend(fontsize=6.5, loc="upper right")
    plotting.suptitle(fig, "Strong model collapse: a fixed fraction of shifted data is never washed out")
    chains = "400 / 24" if quick else "4000 / 200"
    plotting.caption(
        fig,
        f"One ridgeless fit on n1 real + n2 = round(p2·n) shifted rows (labels from w1 + δ, ||δ||² = 1), isotropic "
        f"x. Left: exact sufficient-statistic path; lines: derived deterministic equivalent (THEORY.md §5.2); "
        f"markers and bands: simulation ± 2 SE. Right: random-projections model, sample-level path, minimum-norm "
        f"fits, means ± 2 SE (no closed form). Chains per point {chains}; float64; seed {seed}.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, args.quick),
        lambda data: plot(data, quick=args.quick, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
