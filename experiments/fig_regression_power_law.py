r"""Model Collapse Demystified §5: with a power-law spectrum, synthetic generations change the scaling law.

Dohmatob, Feng & Kempe (NeurIPS 2024), the right panel of their Fig. 1b (THEORY.md §4.2–4.3; d = 300, T0 = 600
there; their left panel, error vs λ at T = 10⁴, is not drawn), at a smaller size: Σ with eigenvalues
λ_k = k^{−β}, β = 2; true weights with source exponent r = 0.375 (coefficients c_k² ∝ k^{−δ}, δ = 1 + β(2r − 1));
a generator chain of OLS fits on T0 fresh rows (noise σ0 = 1) and a downstream ridge fit on T fresh rows (σ = 1)
with the clean-data-optimal adaptive penalty λ = T^{−ℓ_crit}, ℓ_crit = β/(2βr + 1). Test error = excess risk
||ŵ_pred − w0||²_Σ (no σ²).

Theorem 5.1 (a rate, ≍, without constants): E_test ≍ max(σ², T^{1−2rℓ−ℓ/β}) T^{−(1−ℓ/β)} + n σ0²/(1−φ0)
· max(T/T0, φ0) T^{−(1−ℓ/β)}. With these exponents the clean error falls like T^{−0.6}, while n ≥ 1 generations
add a term that *grows* like T^{0.4} once T > T0: the error diverges with more data. Dashed lines show the
theorem's rate expression scaled to pass through the simulated value at the smallest T (slopes only); the
simulation is finite-d (d = 200), so the clean curve bends towards the variance rate d/T at large T.

Full: 40 chains per T (a few minutes on 2 cores); ``--quick``: 6 chains and 4 values of T.

Run: ``python experiments/fig_regression_power_law.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "regression_power_law"
DESCRIPTION = "Demystified §5: power-law spectrum, adaptive ridge; synthetic generations make the error diverge in T"

DIM, BETA, R, T0 = 200, 2.0, 0.375, 400
GENERATIONS = (1, 3)
TS = (100, 200, 400, 800, 1600, 3200, 6400)
TS_QUICK = (100, 400, 1600, 6400)


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "6 chains, 4 values of T (seconds)")
    return parser.parse_args(argv)


def true_weights() -> np.ndarray:
    delta = 1 + BETA * (2 * R - 1)
    k = np.arange(1, DIM + 1, dtype=float)
    c = k ** (-delta / 2)  # coefficients in the eigenbasis; ||w0||_Σ² = Σ λ_k c_k² (finite)
    w = c / np.sqrt(np.sum(k**-BETA * c**2))
    return w


def run(seed: int, quick: bool) -> dict:
    import jax

    from collapse_theory.models import Downstream, LinearRegression, power_law_spectrum
    from collapse_theory.simulate import FAST_COMPILE, simulate
    from collapse_theory.theory import regression as th

    ell = th.optimal_ridge_exponent(BETA, R)
    ts = TS_QUICK if quick else TS
    chains = 6 if quick else 40
    spectrum = power_law_spectrum(DIM, BETA)
    out = {"clean": [], **{n: [] for n in GENERATIONS}}
    with jax.enable_x64(True):
        for t in ts:
            model = LinearRegression(dim=DIM, spectrum=spectrum,
                                     downstream=Downstream(rows=t, noise_sd=1.0, ridge=float(t) ** -ell))
            for label, sigma0 in (("clean", 0.0), ("chain", 1.0)):
                res = simulate(seed, model, num_chains=chains, num_generations=max(GENERATIONS), num_samples=T0,
                               truth=model.params(weights=true_weights(), noise_sd=sigma0), path="exact",
                               metrics=["downstream_excess_risk"], quantiles=(), compiler_options=FAST_COMPILE)
                mean, se = res.mean("downstream_excess_risk"), res.se("downstream_excess_risk")
                if label == "clean":
                    out["clean"].append((mean[0], se[0]))
                else:
                    for n in GENERATIONS:
                        out[n].append((mean[n - 1], se[n - 1]))
    rates = {"clean": th.power_law_rate(np.asarray(ts), BETA, R, ell)}
    for n in GENERATIONS:
        rates[n] = th.power_law_rate(np.asarray(ts), BETA, R, ell, num_fits=n, generator_rows=T0, dim=DIM)
    return {"ts": np.asarray(ts), "sim": {k: np.asarray(v) for k, v in out.items()}, "rates": rates,
            "ell": ell, "chains": chains}


def plot(d: dict, *, seed: int):
    from collapse_theory import plotting

    fig, ax = plotting.new_figure(figsize=(4.6, 3.2))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ts = d["ts"]
    colors = {"clean": "0.15", 1: "#3f90da", 3: "#bd1f01"}
    handles, labels = [], []
    for key in ("clean",) + GENERATIONS:
        sim = d["sim"][key]
        rate = d["rates"][key]
        anchored = rate * sim[0, 0] / rate[0]
        art = plotting.theory_vs_simulation(ax, ts, sim[:, 0], sim[:, 1], anchored, color=colors[key],
                                            theory_style="--", num_markers=None)
        handles.append(art["handle"])
        labels.append("clean data (n = 0)" if key == "clean"
                      else f"n = {key} synthetic generation{'s' if key != 1 else ''}")
    ax.axvline(T0, color="0.6", linestyle=":", linewidth=0.8)
    ax.legend(handles, labels, fontsize=6.5, loc="lower left")
    ax.set_xlabel("downstream sample size T")
    ax.set_ylabel(r"test error $\mathbb{E}\,\|\hat w_{\rm pred} - w_0\|_\Sigma^2$")
    ax.set_title(rf"$\lambda_k = k^{{-{BETA:g}}}$, r = {R}, ridge $\lambda = T^{{-{d['ell']:.2f}}}$, "
                 f"T0 = {T0} (dotted)", fontsize=7)
    plotting.suptitle(fig, "Synthetic generations break the scaling law")
    plotting.caption(
        fig,
        f"d = {DIM}; generator: OLS chain on T0 = {T0} fresh rows, σ0 = 1; downstream ridge on T rows, σ = 1. "
        f"{d['chains']} chains per point, exact path, float64, seed {seed}. Dashed: Thm 5.1 rate (≍, no constants) "
        f"scaled to the first point; markers and bands: simulation ± 2 SE.",
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
