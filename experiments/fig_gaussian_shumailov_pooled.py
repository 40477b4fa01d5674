r"""Shumailov et al. (Nature 2024) SI Figs. 4–5: the 1-D Gaussian chain on pooled data.

Setup (THEORY.md §1.5, §13): truth N(0, 1); every generation fits the mean and the MLE variance (``np.std``,
ddof = 0) and draws M new samples from the fit. Three ways to form the next training set:

* **replace** (the reference, SI Fig. 3): the M new samples only;
* **accumulate** (SI Fig. 5, "alldat"): every sample so far, real ones included: t·M rows at fit t;
* **accumulate-subsample** (SI Fig. 4): M rows drawn without replacement from that pool.

Panels (log–log), M ∈ {100, 1000}:

* left: E(μ̂_t − μ)². Exact theory (solid): replace 1 − ((M−1)/M)^t
  (:func:`collapse_theory.theory.gaussian.expected_mean_sq_error`); accumulate (1/M) Σ_{k≤t} P_{k−1}/k²
  (:func:`~collapse_theory.theory.gaussian.expected_accumulate_mean_sq_error`), below the (π²/6)/M bound (dotted).
* right: σ̂_t². Accumulate: its mean against the exact E σ̂_t² = Π_{k≤t}(1 − 1/(Mk²)) (solid; → sin x/x at
  x = π/√M). Subsample: its mean (no closed form). Replace: its **median** over chains (dashed), because its mean
  E σ̂_t² = ((M−1)/M)^t is carried by rare chains that a thousand chains do not resolve at late t (the classroom
  figure shows this); the replace variance collapses, the pooled ones do not.

Accumulate-subsample has no closed form here (simulation only, sample-level path): the parameters "jump around"
(Shumailov et al.) more than under accumulate, but the variance stays far from collapse. Its pool holds t·M rows, so
it runs fewer generations (and chains) than the exact-path regimes.

Full: 1000 chains × 1000 generations (replace, accumulate; exact path) and 200 chains × 300 generations
(subsample; sample path); ``--quick``: 200 chains × 200 generations and 50 chains × 100 generations.

Run: ``python experiments/fig_gaussian_shumailov_pooled.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "gaussian_shumailov_pooled"
DESCRIPTION = "Shumailov SI Figs. 4-5: 1-D Gaussian on pooled data (accumulate, accumulate-subsample) vs replace"

SAMPLE_SIZES = (100, 1000)
COLORS = {"replace": "#bd1f01", "accumulate": "#3f90da", "accumulate-subsample": "#ffa90e"}


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains and generations (seconds)")
    return parser.parse_args(argv)


def sizes(quick: bool) -> dict:
    """(chains, generations) per regime."""
    exact = (200, 200) if quick else (1000, 1000)
    pooled = (50, 100) if quick else (200, 300)
    return {"replace": exact, "accumulate": exact, "accumulate-subsample": pooled}


def run(seed: int, quick: bool) -> dict:
    import jax

    from collapse_theory import Accumulate, AccumulateSubsample, Gaussian, Replace, simulate, theory

    gt = theory.gaussian
    model = Gaussian(dim=1, ddof=0)
    table = {"replace": (Replace(), "exact"), "accumulate": (Accumulate(), "exact"),
             "accumulate-subsample": (AccumulateSubsample(), "sample")}
    out = {}
    with jax.enable_x64(True):
        for m in SAMPLE_SIZES:
            for name, (regime, path) in table.items():
                chains, gens = sizes(quick)[name]
                res = simulate(seed, model, regime, num_chains=chains, num_generations=gens, num_samples=m,
                               path=path, metrics=["sq_mean_error", "variance"], quantiles=(0.5,))
                t = res.generations
                cell = {"t": t, "chains": chains,
                        "mse": res.mean("sq_mean_error"), "mse_se": res.se("sq_mean_error"),
                        "var": res.mean("variance"), "var_se": res.se("variance"),
                        "var_median": res.quantile("variance", 0.5)}
                if name == "replace":
                    cell["mse_theory"] = gt.expected_mean_sq_error(t, m, ddof=0)
                elif name == "accumulate":
                    cell["mse_theory"] = gt.expected_accumulate_mean_sq_error(t, m, ddof=0)
                    cell["var_theory"] = gt.expected_accumulate_variance_ratio(t, m, ddof=0)
                    cell["mse_bound"] = gt.accumulate_mean_sq_error_bound(m)
                out[(m, name)] = cell
    return out


def plot(data: dict, *, quick: bool, seed: int):
    from matplotlib.lines import Line2D

    from collapse_theory import plotting

    fig, (ax_mu, ax_var) = plotting.new_figure(1, 2, figsize=(7.0, 3.6))
    plotting.log_log_axes(ax_mu, ax_var)
    markers = {100: "o", 1000: "s"}
    for m in SAMPLE_SIZES:
        for name, color in COLORS.items():
            d = data[(m, name)]
            shade = color if m == SAMPLE_SIZES[0] else _lighter(color)
            plotting.theory_vs_simulation(ax_mu, d["t"], d["mse"], d["mse_se"], d.get("mse_theory"),
                                          color=shade, marker=markers[m], num_markers=12)
            if name == "replace":
                ax_var.plot(d["t"], d["var_median"], "--", color=shade, lw=1.1)
            else:
                plotting.theory_vs_simulation(ax_var, d["t"], d["var"], d["var_se"], d.get("var_theory"),
                                              color=shade, marker=markers[m], num_markers=12)
            if name == "accumulate":
                ax_mu.axhline(d["mse_bound"], color=shade, ls=":", lw=0.9)
    ax_mu.set_ylabel(r"$\mathbb{E}\,(\hat\mu_t-\mu)^2$")
    ax_mu.set_title(r"mean drift (dotted: accumulate bound $\frac{\pi^2}{6}\frac{\sigma^2}{M}$)")
    ax_var.set_ylabel(r"$\hat\sigma_t^2$ (mean; replace: median)")
    ax_var.set_title("spread: pooled data does not collapse")
    regime_key = [Line2D([], [], color=c, lw=1.6) for c in COLORS.values()]
    size_key = [Line2D([], [], color="0.3", marker=markers[m], ls="none") for m in SAMPLE_SIZES]
    ax_mu.legend(regime_key + size_key, list(COLORS) + [f"M = {m:,}" for m in SAMPLE_SIZES], fontsize=6.5,
                 loc="upper left")
    plotting.suptitle(fig, "1-D Gaussian refitted on pooled data (Shumailov et al. SI Figs. 4–5), MLE fit")
    sz = sizes(quick)
    plotting.caption(
        fig,
        r"Truth $N(0,1)$; t = 1 fits the real data. Replace and accumulate: exact sufficient-statistic path, "
        f"{sz['replace'][0]:,} chains; accumulate-subsample: sample-level path, {sz['accumulate-subsample'][0]:,} "
        f"chains, {sz['accumulate-subsample'][1]} generations (its pool holds t·M rows). Darker: M = "
        f"{SAMPLE_SIZES[0]}, lighter: M = {SAMPLE_SIZES[1]:,}. Markers and bands: mean ± 2 SE; solid: exact theory "
        "(THEORY.md §2.1, §2.3); none exists for subsample. Dashed (right): the replace chains' median σ̂², whose "
        f"mean is carried by rare chains. float64, seed {seed}.",
    )
    return fig


def _lighter(color: str, amount: float = 0.45) -> tuple:
    """``color`` mixed with white (the second sample size's shade)."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


def main(argv: list[str] | None = None) -> int:
    import functools

    from collapse_theory import plotting

    args = parse_args(argv)
    simulate = functools.partial(run, args.seed, args.quick)
    return plotting.run_figure(NAME, args.out, simulate, functools.partial(plot, quick=args.quick, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
