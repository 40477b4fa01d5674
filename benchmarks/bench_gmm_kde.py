"""Benchmark: the Shumailov GMM workload and the Kazdan KDE workload, ours vs the peers' loops, side by side.

Sections (``--only G,K``):

* **G** — Shumailov et al.'s GMM workload: 2-component full-covariance GMM (EM, tol 1e-5, max_iter 2000, k-means
  init) refitted on N = 1000 of its own samples per generation, real data N(0, I₂), replace. Ours: ``simulate`` with
  100 chains × G generations (full G = 2000; quick G = 100), ``chain_batch=1`` (``--chain-batch``: each chain's EM
  stops at its own convergence instead of the slowest chain's of a vmapped batch), timed once including
  compilation; in quick mode also all chains in one vmapped batch, for contrast. Peer: the notebook
  loop re-implemented in NumPy (``_peers_gmm_kde.shumailov_gmm_chain``: scikit-learn's KMeans + EM algorithm; no
  scikit-learn here) on 2 chains × 20 generations, extrapolated per chain-generation. The peers report about 131 s
  per chain of 2000 generations with scikit-learn itself on a 2-core CPU; that figure is printed as a reference
  ratio, not measured here.
* **K** — Kazdan et al.'s KDE workload: blobs, n = 1000 per iteration, accumulate, 100 iterations (quick 30), test
  NLL on 500 rows every iteration, bandwidth 0.5. Ours: ``simulate`` with 4 chains (seeds), timed once including
  compilation, per seed. Peer: the ``fit_kdes`` loop in NumPy (exact dense log-sum-exp scoring; scikit-learn uses
  a KD-tree with exact tolerances) for 1 seed. The peers report about 100 s per seed with scikit-learn.

Every ratio is measured in one run on one machine (``benchmarks/README.md``). Float32 unless ``--x64``.
"""

from __future__ import annotations

import argparse  # noqa: E402
import time  # noqa: E402

import _common  # noqa: F401  (sets OPENBLAS_NUM_THREADS before NumPy loads)
from _common import environment, print_table, write_json_atomic  # noqa: E402

SHUMAILOV_SKLEARN_S_PER_CHAIN = 131.0  # reported: 2000 generations, scikit-learn, 2-core CPU
KAZDAN_SKLEARN_S_PER_SEED = 100.0  # reported: n = 1000, accumulate, 100 iterations


def section_g(quick: bool, chain_batch: int, contrast: bool) -> dict:
    from _peers_gmm_kde import shumailov_gmm_chain

    from collapse_theory import GaussianMixture, Replace, simulate

    chains, generations = 100, (100 if quick else 2000)
    model = GaussianMixture(num_components=2, dim=2, covariance_type="full", tol=1e-5, max_iter=2000)
    truth = model.params(weights=[0.5, 0.5], means=0.0, covs=1.0)

    def ours(batch):
        t0 = time.perf_counter()
        res = simulate(0, model, Replace(), num_chains=chains, num_generations=generations, num_samples=1000,
                       truth=truth, metrics=["l2_to_anchor"], quantiles=(), chain_batch=batch)
        assert res.mean("l2_to_anchor").shape == (generations,)
        return time.perf_counter() - t0

    ours_s = ours(chain_batch or None)
    # contrast: all chains in one vmapped batch, whose EM loop runs until the slowest chain converges
    lockstep_s = ours(None) if contrast and chain_batch else None
    peer_chains, peer_generations = 2, (10 if quick else 20)
    t0 = time.perf_counter()
    for c in range(peer_chains):
        shumailov_gmm_chain(peer_generations, 1000, seed=c)
    peer_s = time.perf_counter() - t0
    ours_per = ours_s / (chains * generations)
    peer_per = peer_s / (peer_chains * peer_generations)
    out = {
        "chains": chains, "generations": generations, "chain_batch": chain_batch or None, "ours_total_s": ours_s,
        "ours_all_chains_vmapped_total_s": lockstep_s,
        "ours_all_chains_vmapped_ms_per_chain_generation": None if lockstep_s is None
        else 1e3 * lockstep_s / (chains * generations),
        "ours_ms_per_chain_generation": 1e3 * ours_per, "ours_s_per_chain_2000_generations": ours_per * 2000,
        "peer_chains": peer_chains, "peer_generations": peer_generations, "peer_total_s": peer_s,
        "peer_numpy_ms_per_chain_generation": 1e3 * peer_per,
        "ratio_vs_numpy_peer": peer_per / ours_per,
        "ratio_vs_reported_sklearn": (SHUMAILOV_SKLEARN_S_PER_CHAIN / 2000) / ours_per,
        "ours_100_chains_2000_generations_min": ours_per * 100 * 2000 / 60,
    }
    print_table(
        "G: Shumailov GMM workload (2-comp full GMM, EM tol 1e-5, N = 1000, replace)",
        ["item", "chains x generations", "ms / chain-generation", "s / chain (2000 gen.)"],
        [[f"ours (simulate, chain_batch={chain_batch or None}, incl. compile)", f"{chains} x {generations}",
          1e3 * ours_per, ours_per * 2000]]
        + ([["ours, all chains vmapped at once (lock-step EM)", f"{chains} x {generations}",
             1e3 * lockstep_s / (chains * generations), lockstep_s / chains / generations * 2000]]
           if lockstep_s is not None else [])
        + [
         ["peer loop, NumPy re-impl. of sklearn", f"{peer_chains} x {peer_generations}", 1e3 * peer_per,
          peer_per * 2000],
         ["peer loop, sklearn (reported, not run)", "-", 1e3 * SHUMAILOV_SKLEARN_S_PER_CHAIN / 2000,
          SHUMAILOV_SKLEARN_S_PER_CHAIN]],
        note=f"ratio vs NumPy peer: {out['ratio_vs_numpy_peer']:.1f}x per chain; vs reported sklearn: "
             f"{out['ratio_vs_reported_sklearn']:.1f}x; 100 chains x 2000 generations: "
             f"{out['ours_100_chains_2000_generations_min']:.1f} min",
    )
    return out


def section_k(quick: bool) -> dict:
    from _peers_gmm_kde import kazdan_kde_seed

    from collapse_theory import Accumulate, KernelDensity, datasets, simulate
    from collapse_theory.models.kde import capacity_for

    chains, iterations, n, h = 4, (30 if quick else 100), 1000, 0.5
    model = KernelDensity(bandwidth=h, dataset=datasets.Blobs(), num_test=500,
                          capacity=capacity_for(Accumulate(), n, iterations))
    t0 = time.perf_counter()
    res = simulate(0, model, Accumulate(), num_chains=chains, num_generations=iterations, num_samples=n,
                   metrics=["test_nll"], quantiles=())
    ours_s = time.perf_counter() - t0
    assert res.mean("test_nll").shape == (iterations,)
    t0 = time.perf_counter()
    kazdan_kde_seed(iterations, n, h, seed=0)
    peer_s = time.perf_counter() - t0
    ours_per = ours_s / chains
    out = {
        "chains": chains, "iterations": iterations, "n": n, "bandwidth": h, "ours_total_s": ours_s,
        "ours_s_per_seed": ours_per, "peer_numpy_s_per_seed": peer_s, "ratio_vs_numpy_peer": peer_s / ours_per,
        "ratio_vs_reported_sklearn": (KAZDAN_SKLEARN_S_PER_SEED / ours_per) if not quick else None,
    }
    print_table(
        f"K: Kazdan KDE workload (blobs, n = {n}, accumulate, {iterations} iterations, test NLL every iteration)",
        ["item", "seeds", "s / seed"],
        [["ours (simulate, incl. compile)", chains, ours_per], ["peer loop, NumPy re-impl. of sklearn", 1, peer_s]]
        + ([["peer loop, sklearn (reported, not run)", "-", KAZDAN_SKLEARN_S_PER_SEED]] if not quick else []),
        note=f"ratio vs NumPy peer: {out['ratio_vs_numpy_peer']:.1f}x per seed"
             + ("" if quick else f"; vs reported sklearn: {out['ratio_vs_reported_sklearn']:.1f}x"),
    )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (about a minute on 2 CPU cores)")
    parser.add_argument("--json", metavar="PATH", help="write every time and ratio as JSON (atomically)")
    parser.add_argument("--only", default="G,K", help="comma-separated sections (default G,K)")
    parser.add_argument("--x64", action="store_true", help="enable jax_enable_x64 (default: JAX's float32)")
    parser.add_argument("--chain-batch", type=int, default=1,
                        help="G: simulate(chain_batch=...) (default 1: each chain's EM stops at its own "
                             "convergence; 0: all chains in one vmapped batch)")
    parser.add_argument("--no-contrast", action="store_true",
                        help="G: skip the all-chains-vmapped contrast run (default: run it in --quick mode only)")
    args = parser.parse_args(argv)
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    report = {"environment": environment(), "quick": args.quick, "sections": {}}
    for name in [s.strip().upper() for s in args.only.split(",") if s.strip()]:
        if name not in ("G", "K"):
            raise SystemExit(f"--only: unknown section {name!r}; known: G, K")
        if name == "G":
            report["sections"][name] = section_g(args.quick, args.chain_batch,
                                                 contrast=args.quick and not args.no_contrast)
        else:
            report["sections"][name] = section_k(args.quick)
        if args.json:
            write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
