r"""Kazdan et al. ("Collapse or Thrive?", arXiv 2410.16713) KDE grid: test NLL vs iteration, three regimes.

Setup (THEORY.md §6.2, the authors' ``src/fit_kdes``): a Gaussian KDE with bandwidth h (scikit-learn's
``KernelDensity(kernel="gaussian")``; sampling = resample a training row + N(0, h²I)); iteration t = 1 fits n real
rows; each later iteration draws n rows from the current KDE and refits on

* **replace**: those n rows only;
* **accumulate**: the real rows and every synthetic batch so far (the pooled KDE);
* **accumulate-subsample**: n rows drawn without replacement from that pool.

Metric: mean negative log-likelihood of a fixed test set of 500 rows per chain, drawn from the *same* distribution
as the chain's real training rows (its own blob centres for blobs). Rows = datasets (blobs: scikit-learn's
``make_blobs`` defaults, 3 centres per chain uniform in (−10, 10)², std 1; circles and moons with noise 0.05;
3-D swiss roll with noise 0.5), columns = bandwidth h ∈ {0.1, 0.5, 1}; n = 100 rows per iteration (one point of
Kazdan et al.'s n sweep), 100 iterations, 20 chains (seeds); mean ± 2 SE over chains. Kazdan et al. sweep five n
with 100 seeds each; this figure keeps one n and 20 chains so that the full grid costs minutes, not hours.

Theory (THEORY.md §2.5): for replace, the rows' spread tends to (n−1)h² per coordinate and their mean
random-walks ≈ h² per iteration, so the replace NLL diverges; the exact spread and drift are checked in
``collapse-theory check --family kde``. No closed form is drawn for the NLL curves themselves (empirical).

Cost on 2 shared CPU cores (measured): full grid 350 s of simulation (36 compiled configurations);
``--quick`` (blobs and moons, h = 0.5, 20 iterations, 4 chains) about 30 s.

Run: ``python experiments/fig_kde_kazdan_grid.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

NAME = "kde_kazdan_grid"
DESCRIPTION = "Kazdan et al. KDE grid: test NLL vs iteration per dataset x bandwidth, replace / accumulate / subsample"

NUM_SAMPLES = 100
NUM_TEST = 500
BANDWIDTHS = (0.1, 0.5, 1.0)
REGIMES = ("replace", "accumulate", "accumulate-subsample")


def _datasets():
    from collapse_theory import datasets

    return {
        "blobs": datasets.Blobs(),
        "circles": datasets.Circles(noise=0.05),
        "moons": datasets.Moons(noise=0.05),
        "swiss roll": datasets.SwissRoll(noise=0.5),
    }


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "2 datasets, one bandwidth, 20 iterations (seconds)")
    parser.add_argument("--num-chains", type=int, default=None, help="chains (default 20; quick 4)")
    parser.add_argument("--num-generations", type=int, default=None, help="iterations (default 100; quick 20)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int, names, bandwidths) -> dict:
    from collapse_theory import KernelDensity, simulate
    from collapse_theory.models.kde import capacity_for
    from collapse_theory.regimes import REGIMES as FACTORIES

    sets = _datasets()
    out = {}
    for name in names:
        for h in bandwidths:
            for regime_name in REGIMES:
                regime = FACTORIES[regime_name]()
                model = KernelDensity(bandwidth=h, dataset=sets[name], num_test=NUM_TEST,
                                      capacity=capacity_for(regime, NUM_SAMPLES, num_generations))
                res = simulate(seed, model, regime, num_chains=num_chains, num_generations=num_generations,
                               num_samples=NUM_SAMPLES, metrics=["test_nll"], quantiles=())
                out[name, h, regime_name] = (res.generations, res.mean("test_nll"), res.se("test_nll"))
    return out


def plot(data: dict, names, bandwidths, *, num_chains: int, num_generations: int, seed: int):
    from collapse_theory import plotting

    fig, axes = plotting.new_figure(len(names), len(bandwidths), figsize=(3.0 * len(bandwidths) + 0.8,
                                                                        2.3 * len(names) + 0.9), squeeze=False)
    for i, name in enumerate(names):
        for j, h in enumerate(bandwidths):
            ax = axes[i, j]
            for k, regime_name in enumerate(REGIMES):
                t, mean, se = data[name, h, regime_name]
                ax.plot(t, mean, color=f"C{k}", lw=1.4, label=regime_name)
                ax.fill_between(t, mean - 2 * se, mean + 2 * se, color=f"C{k}", alpha=0.25, lw=0)
            ax.set_xscale("log")
            ax.set_title(f"{name}, h = {h}")
            if i == len(names) - 1:
                ax.set_xlabel("model-fitting iteration t")
            if j == 0:
                ax.set_ylabel("test NLL (nats)")
    axes[0, 0].legend(loc="upper left", fontsize=7)
    plotting.suptitle(fig, f"Gaussian KDE refitted on its own samples: n = {NUM_SAMPLES} per iteration, "
                           f"{num_generations} iterations, {num_chains} chains")
    plotting.caption(
        fig,
        f"Test NLL on {NUM_TEST} held-out rows per chain from the same distribution as its real data; mean ± 2 SE "
        f"over chains; float32, seed {seed}. Empirical curves (the replace chain's exact spread/drift theory, "
        "THEORY.md §2.5, is checked by collapse-theory check --family kde).",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ("blobs", "moons") if args.quick else tuple(_datasets())
    bandwidths = (0.5,) if args.quick else BANDWIDTHS
    num_chains = args.num_chains or (4 if args.quick else 20)
    num_generations = args.num_generations or (20 if args.quick else 100)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, num_generations, names, bandwidths),
        lambda data: plot(data, names, bandwidths, num_chains=num_chains, num_generations=num_generations,
                          seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
