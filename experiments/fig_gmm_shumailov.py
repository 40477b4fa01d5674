r"""Shumailov et al. (Nature 2024) SI Figs. 6/8: a 2-component GMM refitted on its own samples (replace).

Setup (THEORY.md §1.5, the released notebook): real data N(0, I₂) (``make_blobs(centers=[[0, 0]])``; the paper
text says "two artificial Gaussians", the code fits one blob), a 2-component full-covariance mixture fitted by EM
with scikit-learn's algorithm and Shumailov et al.'s settings (``tol=1e-5``, ``max_iter=2000``, k-means
initialisation, ``reg_covar=1e-6``), N = 1000 samples per generation, replace regime, 2000 generations after the
first fit. Generation g in the paper's sense is g = t − 1 here (t counts fits; g = 0 is the fit on the real data).

Panels:

* top: samples (1000 points) and 2σ ellipses of one chain's mixture at g ∈ {0, 50, 100, 150, 200, 350, 2000}
  (that chain is re-run outside :func:`simulate` with the engine's key derivation and the regime's own
  ``assemble``; it is a chain of the same law, drawn as a thin line in the lower panel);
* bottom left: the closed-form squared L2 distance to the generation-0 fit (Shumailov's metric), median and
  5–25–75–95 % bands over the chains, log scale;
* bottom right: tr Cov(model)/tr Cov(truth), same bands (the spread collapses).

No closed form exists for these curves: they are **empirical** (the exact checks of this family are in
``collapse-theory check --family gmm``).

Cost on 2 shared CPU cores (float32, measured): full (64 chains × 2001 fits) 134–238 s of simulation; ``--quick``
(8 chains × 201 fits, snapshots up to g = 200) about 10 s. The companion figure
``fig_gmm_shumailov_accumulate.py`` runs the same with accumulate.

Run: ``python experiments/fig_gmm_shumailov.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "gmm_shumailov"
DESCRIPTION = "Shumailov SI Figs. 6/8: 2-component GMM (EM) replace chain, L2 distance to the generation-0 fit"

SNAPSHOTS = (0, 50, 100, 150, 200, 350, 2000)
NUM_SAMPLES = 1000


def parse_args(argv, *, name=NAME, description=DESCRIPTION, chains=(64, 8), generations=(2000, 200)):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(name, description, "fewer generations and chains (seconds)")
    parser.add_argument("--num-chains", type=int, default=None,
                        help=f"chains (default {chains[0]}; quick {chains[1]})")
    parser.add_argument("--num-generations", type=int, default=None,
                        help=f"generations g after the first fit (default {generations[0]}; quick {generations[1]})")
    return parser.parse_args(argv)


def make_model(warm_start: bool = False):
    """Shumailov et al.'s estimator; ``warm_start=True`` is scikit-learn's option of that name (later fits start EM
    from the previous fit)."""
    from collapse_theory import GaussianMixture

    model = GaussianMixture(num_components=2, dim=2, covariance_type="full", tol=1e-5, max_iter=2000,
                            warm_start=warm_start)
    return model, model.params(weights=[0.5, 0.5], means=0.0, covs=1.0)


def trace_chain(model, regime, truth, seed: int, chain: int, num_fits: int, num_samples: int):
    """One chain re-run with the engine's keys (seed → chain → generation → purpose) and ``regime.assemble``;
    returns the mixture after every fit (leading axis t − 1)."""
    import jax
    import jax.numpy as jnp

    from collapse_theory import keys
    from collapse_theory.regimes import Layout, Sizes

    layout = Layout(num_samples, num_fits, True)
    rows = regime.buffer_rows(layout)
    dtype = jnp.zeros(()).dtype
    buffer = (jnp.zeros((rows, model.dim), dtype), jnp.zeros((rows,), dtype)) if rows else jnp.zeros(())
    chain_key = jax.random.fold_in(keys.root_key(seed), chain)

    def step(carry, t):
        params, buffer = carry
        generation_key = jax.random.fold_in(chain_key, t)

        def key_for(purpose):
            return jax.random.fold_in(generation_key, purpose)

        def draw(key, n):
            current = jax.tree.map(lambda a, b: jnp.where(t == 1, a, b), truth, params)
            return model.sample(key, current, n)

        sizes = Sizes(jnp.asarray(num_samples, dtype), jnp.asarray(num_samples, dtype) * t)
        data, weights, buffer = regime.assemble(key_for, t, sizes, layout, draw, draw, buffer)
        params = model.fit(key_for(keys.FIT), data, weights, params)
        return (params, buffer), (params.mixture, model.metrics(params, truth, key_for(keys.METRIC))["l2_to_anchor"])

    run = jax.jit(lambda: jax.lax.scan(step, (truth, buffer), jnp.arange(1, num_fits + 1, dtype=jnp.int32))[1])
    mixtures, l2 = run()
    return jax.device_get(mixtures), np.asarray(l2)


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def run(seed: int, num_chains: int, num_fits: int, regime, snapshots, *, warm_start: bool = False,
        compare_fits: int = 0) -> dict:
    """The chains, one traced chain for the snapshots and, with ``compare_fits``, the same chains (same seed)
    refitted with k-means initialisation at every fit for their first ``compare_fits`` fits."""
    import jax

    from collapse_theory import simulate

    model, truth = make_model(warm_start)
    res = simulate(seed, model, regime, num_chains=num_chains, num_generations=num_fits, num_samples=NUM_SAMPLES,
                   truth=truth, metrics=["l2_to_anchor", "trace_ratio"], quantiles=QUANTILES)
    compare = None
    if compare_fits:
        cold, _ = make_model(False)
        compare = simulate(seed, cold, regime, num_chains=num_chains, num_generations=compare_fits,
                           num_samples=NUM_SAMPLES, truth=truth, metrics=["l2_to_anchor", "trace_ratio"],
                           quantiles=QUANTILES)
    mixtures, l2_chain = trace_chain(model, regime, truth, seed, num_chains, num_fits, NUM_SAMPLES)
    shots = {}
    for g in snapshots:
        mix = jax.tree.map(lambda a, g=g: a[g], mixtures)
        params = truth._replace(mixture=jax.tree.map(jax.numpy.asarray, mix))
        shots[g] = {"points": np.asarray(model.sample(jax.random.key(1000 + g), params, 1000)), "mixture": mix}
    return {"res": res, "snapshots": shots, "l2_chain": l2_chain, "compare": compare}


def _ellipse(ax, mean, chol, weight, color):
    theta = np.linspace(0, 2 * np.pi, 100)
    circle = np.stack([np.cos(theta), np.sin(theta)])
    pts = mean[:, None] + 2 * chol @ circle
    ax.plot(pts[0], pts[1], color=color, lw=1.0 + 1.5 * weight)


def plot(data: dict, *, regime_label: str, num_chains: int, num_fits: int, seed: int, snapshots,
         warm_start: bool = False):
    from collapse_theory import plotting

    res = data["res"]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 5.8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.25])
    top_axes = top.subplots(1, len(snapshots), squeeze=False)[0]
    bottom_axes = bottom.subplots(1, 2)
    lim = 4.0
    for i, g in enumerate(snapshots):
        ax = top_axes[i]
        shot = data["snapshots"][g]
        ax.scatter(shot["points"][:, 0], shot["points"][:, 1], s=1.0, alpha=0.35, color="C0", rasterized=True)
        mix = shot["mixture"]
        weights = np.exp(mix.log_weights)
        for k in range(len(weights)):
            _ellipse(ax, mix.means[k], mix.chol[k], weights[k], "k")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"g = {g}")
        ax.tick_params(labelsize=6)
        if i:
            ax.set_yticklabels([])
    g_axis = res.generations - 1
    for j, (metric, label) in enumerate(
        [("l2_to_anchor", r"$\|p_g - p_0\|_{L_2}^2$ (to the generation-0 fit)"),
         ("trace_ratio", r"$\mathrm{tr\,Cov}(p_g)/\mathrm{tr\,Cov}(p_{\rm real})$")]
    ):
        ax = bottom_axes[j]
        keep = g_axis >= 1 if metric == "l2_to_anchor" else g_axis >= 0
        x = g_axis[keep]
        q = {lvl: res.quantile(metric, lvl)[keep] for lvl in QUANTILES}
        ax.fill_between(x, q[0.05], q[0.95], color="C0", alpha=0.15, lw=0,
                        label=f"5–95 % of the {num_chains} chains (interpolated quantiles)")
        ax.fill_between(x, q[0.25], q[0.75], color="C0", alpha=0.3, lw=0, label="25–75 %")
        ax.plot(x, q[0.5], color="C0", lw=1.5, label=f"median of {num_chains} chains")
        compare = data.get("compare")
        if compare is not None:
            g_cmp = compare.generations - 1
            keep_cmp = g_cmp >= 1 if metric == "l2_to_anchor" else g_cmp >= 0
            xc = g_cmp[keep_cmp]
            ax.fill_between(xc, compare.quantile(metric, 0.25)[keep_cmp], compare.quantile(metric, 0.75)[keep_cmp],
                            color="C1", alpha=0.25, lw=0)
            ax.plot(xc, compare.quantile(metric, 0.5)[keep_cmp], color="C1", lw=1.2,
                    label=f"k-means start at every fit (g ≤ {int(xc[-1])}): median, 25–75 %")
        if metric == "l2_to_anchor":
            ax.plot(x, data["l2_chain"][keep], color="k", lw=0.7, label="the chain shown above")
        ax.set_yscale("log")
        plotting.plain_log_ticks(ax)
        ax.set_xlabel("generation g (= fits − 1)")
        ax.set_ylabel(label)
    # one legend under both panels (the first has every entry): inside, it covered the bands
    handles, labels = bottom_axes[0].get_legend_handles_labels()
    bottom.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=7)
    plotting.suptitle(fig, f"2-component GMM refitted by EM on its own samples, {regime_label}: N = {NUM_SAMPLES} "
                           f"per generation, {num_fits - 1} generations, {num_chains} chains")
    init = ("k-means init at the first fit, then warm_start (EM from the previous fit)" if warm_start
            else "k-means init")
    plotting.caption(
        fig,
        "Real data N(0, I₂) (Shumailov et al.'s notebook); EM as scikit-learn's GaussianMixture (full covariance, "
        f"{init}, tol 1e-5, max_iter 2000, reg_covar 1e-6), float32, seed "
        f"{seed}. Empirical curves: no closed form is claimed. Top: 1000 samples and 2σ ellipses (line width ∝ "
        "weight) of one chain's mixture.",
    )
    return fig


def main(argv: list[str] | None = None, *, regime=None, name=NAME, description=DESCRIPTION, chains=(64, 8),
         generations=(2000, 200), regime_label="replace", warm_start=False, compare_generations=(0, 0)) -> int:
    args = parse_args(argv, name=name, description=description, chains=chains, generations=generations)
    from collapse_theory import Replace

    regime = Replace() if regime is None else regime
    num_chains = args.num_chains or (chains[1] if args.quick else chains[0])
    num_generations = args.num_generations or (generations[1] if args.quick else generations[0])
    num_fits = num_generations + 1
    snapshots = tuple(g for g in SNAPSHOTS if g <= num_generations)
    if snapshots[-1] != num_generations:
        snapshots = snapshots + (num_generations,)
    compare = compare_generations[1] if args.quick else compare_generations[0]
    compare_fits = min(compare, num_generations) + 1 if compare else 0
    from collapse_theory import plotting

    return plotting.run_figure(
        name, args.out,
        lambda: run(args.seed, num_chains, num_fits, regime, snapshots, warm_start=warm_start,
                    compare_fits=compare_fits),
        lambda data: plot(data, regime_label=regime_label, num_chains=num_chains, num_fits=num_fits, seed=args.seed,
                          snapshots=snapshots, warm_start=warm_start))


if __name__ == "__main__":
    raise SystemExit(main())
