"""Benchmark: recursive VAE training, N chains × G generations vmapped (ours) vs one chain at a time (the peers).

Workload (defaults; every size is a CLI option): real data = 5000 ``Shapes`` 8×8 images (float32, pixels in
[0, 1]); MLP VAE, latent_dim 8, hidden (256,), Bernoulli likelihood; each generation trains a **fresh** network
with 1000 Adam steps (batch 64, learning rate 2e-3, minibatch rows drawn with replacement); replace regime with
M = 1000 rows per generation (generation 1: M real rows without replacement; later: M decoder means of the previous
VAE); N = 16 chains × G = 5 generations. Float32 (x64 off).

Variants, all on the same machine in one run: each is compiled first, then ``--rounds`` (default 2) timed rounds
run A, B, C once each, interleaved so that a drifting load hits all three; the best round of each is kept. Wall
time (``perf_counter``) and process CPU time (``process_time``, all threads) are both recorded: the CPU ratio is
little affected by other processes competing for the cores.

* **A, ours**: ``simulate(seed, VAE(...), Replace(), num_chains=N, num_generations=G, num_samples=M,
  real_data=..., metrics=["train_loss"], quantiles=())``: one jitted ``lax.scan`` over generations, chains
  vmapped, the Adam loop a ``lax.scan`` inside. The first call is timed alone (compile + run); every timed round
  then repeats the identical call (jit cache hit: the steady state). Reported per generation (all N chains) and
  per chain-generation.
* **B, peer loop**: the usual PyTorch-style structure re-implemented in JAX: for each chain, for each generation,
  draw the training set (NumPy ``choice`` without replacement from the real rows, or M samples of the previous VAE
  copied to the host), initialise a fresh network and Adam state, then a Python ``for`` loop over the steps, each
  drawing a minibatch on the host (NumPy indices, like a DataLoader) and calling **one** jitted
  ``train_step(params, opt_state, batch, key)`` (the same ``VAE.loss_terms``, the same ``optax.adam``); losses
  stay on the device until the end of the generation (no per-step ``.item()`` sync). ``train_step``, the init and
  the sampler are compiled, and one extra chain is run untimed, before timing. Timed on a few chains ×
  generations (default 2 × 2) and extrapolated per chain-generation.
* **C, ours per chain**: our compiled per-chain fit, ``jax.jit(model.fit)`` (the whole Adam loop in one
  ``lax.scan``), called from a Python loop over chains and generations with the engine's keys (default 2 chains ×
  G generations, extrapolated per chain-generation; compiled, and one extra chain run untimed, first). B ÷ C is
  the cost of the per-step Python loop; C ÷ A is the gain of vmapping the chains.

Ratios are per chain-generation, "× vs ours" = variant ÷ A (steady state). A sanity table puts the final
training loss per generation next to each other (A: mean ± sd over the N chains; B, C: the chains they ran); the
three are different random streams (C uses the engine's keys but, unvmapped, not bit-identical arithmetic), so
they agree statistically, not exactly.

Measured (the defaults; 2-core CPU shared with another CPU-bound job, load average 4.0 at start and 2.9 at the
end; jax 0.10.2, ``device_kind`` cpu, x64 False; compile excluded, best of 2 interleaved rounds):

    variant                                  timed CxG  s/chain-gen  CPU s/chain-gen  full 16x5 s     vs A  vs A CPU
    A ours: simulate, 16 chains vmapped      16 x 5     0.325        0.333            26.0 measured   1.00  1.00
    B peer loop: per-step jitted train_step  2 x 2      0.578        0.753            46.3 extrap.    1.78  2.26
    C ours per chain: jit(model.fit) loop    2 x 5      0.323        0.304            25.8 extrap.    0.99  0.91

A: 5.2 s per generation for all 16 chains (0.33 ms per chain-step); first call 34.3 s, so about 8 s of compile.
Across four default runs (load average between 1.6 and 7.3, other jobs starting and stopping) the wall ratios
moved a lot, B / A 1.59-2.12 and C / A 0.72-1.13, while the CPU-time ratios (three runs) held: B / A 1.98-2.26,
C / A 0.90-0.96, and A's CPU time per chain-generation 0.31-0.33 s. Reading: the speed-up over the peers' structure
(about 2x) comes entirely from compiling the whole Adam loop (B / C = 1.8-2.5x): the per-step Python dispatch and
host-side minibatching cost about as much as the step's arithmetic. Vmapping 16 chains gains nothing on this CPU
(C / A about 1): a vmapped chain-step costs the same CPU time as a separate one. No GPU was available for these
runs; on one, the script runs unchanged and records the device kind.

Run: ``PYTHONPATH=. python benchmarks/bench_vae.py [--quick] [--json PATH] [--only A,B,C]`` (``--quick``: 200
steps, N = 4, G = 2, B on 1 chain × 1 generation, C on 1 chain × 2 generations; well under a minute).
"""

from __future__ import annotations

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import _common  # noqa: F401  (sets OPENBLAS_NUM_THREADS before NumPy/JAX load)
import numpy as np  # noqa: E402
from _common import block, environment, print_table, write_json_atomic  # noqa: E402

DEFAULTS = {"chains": 16, "generations": 5, "samples": 1000, "steps": 1000, "batch_size": 64, "lr": 2e-3,
            "latent_dim": 8, "hidden": "256", "real_rows": 5000, "peer_chains": 2, "peer_generations": 2,
            "percall_chains": 2, "percall_generations": None}
QUICK = {"chains": 4, "generations": 2, "steps": 200, "peer_chains": 1, "peer_generations": 1,
         "percall_chains": 1, "percall_generations": None}


def make_model(cfg):
    from collapse_theory.models import VAE

    return VAE(image_shape=(8, 8), latent_dim=cfg["latent_dim"], hidden=cfg["hidden"], architecture="mlp",
               likelihood="bernoulli", steps=cfg["steps"], batch_size=cfg["batch_size"],
               learning_rate=cfg["lr"], schedule="constant", beta=1.0, warm_start=False, sample_mode="mean")


def real_images(rows: int, seed: int) -> np.ndarray:
    from collapse_theory.images import Shapes

    return Shapes().generate(rows, seed=seed).images.astype(np.float32)


# ------------------------------------------------------------------------------------------------- A: ours
# Each ``setup_*`` compiles (A: the first full call) and returns (setup record, timed unit); a timed unit runs the
# variant's timed chains x generations and returns its per-chain training losses.
def setup_ours(cfg, model, real):
    from collapse_theory import Replace, simulate

    def call():
        return simulate(cfg["seed"], model, Replace(), num_chains=cfg["chains"], num_generations=cfg["generations"],
                        num_samples=cfg["samples"], real_data=real, metrics=["train_loss"], quantiles=())

    t0 = time.perf_counter()
    first = call()  # returns host NumPy arrays: already synchronised
    record = {"chains": cfg["chains"], "generations": cfg["generations"], "first_call_s": time.perf_counter() - t0}

    def unit():
        res = call()
        record["repeat_identical"] = bool(np.array_equal(first.summary["train_loss"]["mean"],
                                                         res.summary["train_loss"]["mean"]))
        record["train_loss_mean"] = res.summary["train_loss"]["mean"]
        record["train_loss_sd"] = res.summary["train_loss"]["sd"]
        return np.asarray(res.final_params.train_loss)  # (N,) last generation

    return record, unit


# ------------------------------------------------------------------------------------------------- B: peer loop
def peer_functions(model):
    """The jitted pieces of a PyTorch-style loop: ``init`` (fresh net + Adam state), ONE ``train_step``, ``sample``."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(model.learning_rate)

    @jax.jit
    def init(key):
        net = model.init_net(key)
        return net, opt.init(net)

    @jax.jit
    def train_step(net, opt_state, batch, key):
        key, k_eps = jax.random.split(key)  # the next step's key comes back, like a stateful torch generator

        def loss_fn(p):
            nll, kl = model.loss_terms(p, batch, k_eps)
            return jnp.mean(nll + model.beta * kl)

        loss, grads = jax.value_and_grad(loss_fn)(net)
        updates, opt_state = opt.update(grads, opt_state, net)
        return optax.apply_updates(net, updates), opt_state, loss, key

    sample = jax.jit(model.sample_net, static_argnums=2)
    return init, train_step, sample


def peer_chain(fns, model, real, cfg, chain: int, generations: int) -> list[float]:
    """One chain of the peer loop; returns the training loss (mean of the last 10 % of steps) per generation."""
    import jax
    import jax.numpy as jnp

    from collapse_theory.keys import FIT, INIT, SAMPLE, derive_key

    init, train_step, sample = fns
    m, steps, bs = cfg["samples"], model.steps, model.batch_size
    tail = max(1, steps // 10)
    rng = np.random.default_rng([cfg["seed"], chain])
    root = jax.random.key(cfg["seed"] + 1)  # a stream of its own
    net, out = None, []
    for t in range(1, generations + 1):
        if t == 1:
            data = real[rng.choice(real.shape[0], m, replace=False)]
        else:
            data = np.asarray(sample(derive_key(root, chain, t, SAMPLE), net, m))
        net, opt_state = init(derive_key(root, chain, t, INIT))
        key = derive_key(root, chain, t, FIT)
        losses = []
        for _ in range(steps):
            batch = data[rng.integers(0, m, bs)]
            net, opt_state, loss, key = train_step(net, opt_state, batch, key)
            losses.append(loss)
        out.append(float(jnp.mean(jnp.stack(losses[-tail:]))))
    return out


def setup_peer(cfg, model, real):
    import jax

    fns = peer_functions(model)
    init, train_step, sample = fns
    t0 = time.perf_counter()  # warm-up: compile the three jitted functions, then one untimed chain
    net, opt_state = init(jax.random.key(0))
    block(train_step(net, opt_state, real[: model.batch_size], jax.random.key(1)))
    block(sample(jax.random.key(2), net, cfg["samples"]))
    chains, gens = cfg["peer_chains"], cfg["peer_generations"]
    peer_chain(fns, model, real, cfg, chains, min(2, gens))  # an untimed chain: every eager op's first use
    record = {"chains": chains, "generations": gens, "warmup_s": time.perf_counter() - t0}
    return record, lambda: [peer_chain(fns, model, real, cfg, c, gens) for c in range(chains)]


# ------------------------------------------------------------------------------------------------- C: per-chain fit
def setup_percall(cfg, model, real):
    import jax
    import jax.numpy as jnp

    from collapse_theory.keys import FIT, INIT, SAMPLE, derive_key, root_key

    m = cfg["samples"]
    real_j = jnp.asarray(real)
    fit = jax.jit(model.fit)
    sample = jax.jit(model.sample, static_argnums=2)
    init = jax.jit(model.init)
    draw_real = jax.jit(lambda key: real_j[jax.random.permutation(key, real_j.shape[0])[:m]])  # engine's _draw_rows
    weights = jnp.ones((m,), real_j.dtype)
    root = root_key(cfg["seed"])  # the engine's keys: derive_key(root, chain, t, purpose)

    t0 = time.perf_counter()  # warm-up: compile, then one untimed chain
    p0 = init(jax.random.key(0))
    block(fit(jax.random.key(1), draw_real(jax.random.key(2)), weights, p0))
    block(sample(jax.random.key(3), p0, m))
    chains, gens = cfg["percall_chains"], cfg["percall_generations"]

    def unit(chain_ids, generations):
        losses = []
        for c in chain_ids:
            params, row = init(derive_key(root, c, 0, INIT)), []
            for t in range(1, generations + 1):
                k = derive_key(root, c, t, SAMPLE)
                data = draw_real(k) if t == 1 else sample(k, params, m)
                params = fit(derive_key(root, c, t, FIT), data, weights, params)
                row.append(params.train_loss)
            losses.append([float(x) for x in block(row)])
        return losses

    unit([chains], min(2, gens))  # an untimed chain: every eager op's first use
    record = {"chains": chains, "generations": gens, "warmup_s": time.perf_counter() - t0}
    return record, lambda: unit(range(chains), gens)


def timed(unit):
    """Run ``unit()`` once; wall seconds (``perf_counter``) and this process's CPU seconds (``process_time``, all
    threads: the work done, little affected by other processes competing for the cores)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = block(unit())
    return out, time.perf_counter() - t0, time.process_time() - c0


# ------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="200 steps, N = 4, G = 2, B on 1 x 1, C on 1 x G (well under a minute on 2 cores)")
    parser.add_argument("--json", metavar="PATH", help="write every time and ratio as JSON (atomically)")
    parser.add_argument("--only", default="A,B,C", help="comma-separated variants (default A,B,C)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chains", type=int, help=f"N (default {DEFAULTS['chains']}; quick {QUICK['chains']})")
    parser.add_argument("--generations", type=int, help=f"G (default {DEFAULTS['generations']})")
    parser.add_argument("--samples", type=int, help=f"M rows per generation (default {DEFAULTS['samples']})")
    parser.add_argument("--steps", type=int, help=f"Adam steps per generation (default {DEFAULTS['steps']})")
    parser.add_argument("--batch-size", type=int, help=f"minibatch rows (default {DEFAULTS['batch_size']})")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']})")
    parser.add_argument("--latent-dim", type=int, help=f"latent dimension (default {DEFAULTS['latent_dim']})")
    parser.add_argument("--hidden", help=f"comma-separated hidden sizes (default {DEFAULTS['hidden']})")
    parser.add_argument("--real-rows", type=int, help=f"real Shapes images (default {DEFAULTS['real_rows']})")
    parser.add_argument("--peer-chains", type=int, help="B: chains timed (default 2; quick 1)")
    parser.add_argument("--peer-generations", type=int, help="B: generations timed per chain (default 2; quick 1)")
    parser.add_argument("--percall-chains", type=int, help="C: chains timed (default 2; quick 1)")
    parser.add_argument("--percall-generations", type=int, help="C: generations timed per chain (default G)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="timed rounds after compiling, each running A, B, C once (best kept; default 2)")
    args = parser.parse_args(argv)

    cfg = dict(DEFAULTS)
    if args.quick:
        cfg.update(QUICK)
    for name in list(DEFAULTS):
        value = getattr(args, name)
        if value is not None:
            cfg[name] = value
    cfg["hidden"] = tuple(int(h) for h in str(cfg["hidden"]).split(",") if h.strip())
    cfg["seed"], cfg["rounds"] = args.seed, max(1, args.rounds)
    if cfg["percall_generations"] is None:
        cfg["percall_generations"] = cfg["generations"]
    only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - {"A", "B", "C"}
    if unknown:
        raise SystemExit(f"--only: unknown variant(s) {sorted(unknown)}; known: A, B, C")
    if cfg["samples"] > cfg["real_rows"]:
        raise SystemExit(f"--samples {cfg['samples']} > --real-rows {cfg['real_rows']}: generation 1 draws "
                         "M real rows without replacement")

    import jax

    env = environment()
    mode = "quick" if args.quick else "full"
    n, g = cfg["chains"], cfg["generations"]
    print(f"bench_vae ({mode}): backend={env['backend']} device={env['device_kind']} jax={env['jax_version']} "
          f"jaxlib={env['jaxlib_version']} x64={env['x64']} cpus={env['cpu_count']} loadavg={env['loadavg_start']}")
    print(f"workload: Shapes 8x8, {cfg['real_rows']} real rows, MLP VAE latent {cfg['latent_dim']} hidden "
          f"{cfg['hidden']}, Bernoulli, {cfg['steps']} Adam steps x batch {cfg['batch_size']} (lr {cfg['lr']}), "
          f"replace, M = {cfg['samples']}, N = {n} chains x G = {g} generations")
    t_start = time.perf_counter()
    model = make_model(cfg)
    real = real_images(cfg["real_rows"], cfg["seed"])
    report: dict = {"benchmark": "bench_vae", "mode": mode, "environment": env,
                    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}, "variants": {}}

    def save():
        if args.json:
            report["environment"]["loadavg_end"] = list(os.getloadavg())
            report["total_wall_s"] = time.perf_counter() - t_start
            write_json_atomic(args.json, report)

    setups = {"A": setup_ours, "B": setup_peer, "C": setup_percall}
    v, units = report["variants"], {}
    for name in only:  # compile everything first (A: its first full call)
        v[name], units[name] = setups[name](cfg, model, real)
        v[name].update(times_s=[], cpu_times_s=[])
        print(f"  {name} set up ({time.perf_counter() - t_start:.0f} s so far)", flush=True)
    for r in range(cfg["rounds"]):  # then the timed units, interleaved round by round (load drifts cancel better)
        for name in only:
            losses, wall, cpu = timed(units[name])
            v[name]["times_s"].append(wall)
            v[name]["cpu_times_s"].append(cpu)
            v[name]["final_train_loss_per_chain" if name == "A" else "train_loss"] = losses
        print(f"  round {r + 1}/{cfg['rounds']} done ({time.perf_counter() - t_start:.0f} s so far)", flush=True)
        save()

    for r in v.values():
        cg = r["chains"] * r["generations"]
        r["best_s"], r["cpu_s"] = min(r["times_s"]), min(r["cpu_times_s"])
        r["s_per_chain_generation"], r["cpu_s_per_chain_generation"] = r["best_s"] / cg, r["cpu_s"] / cg
        r["ms_per_chain_step"] = 1e3 * r["s_per_chain_generation"] / cfg["steps"]
        r["s_per_generation_all_chains"] = r["s_per_chain_generation"] * n
    if "A" in v:
        v["A"]["compile_estimate_s"] = v["A"]["first_call_s"] - v["A"]["best_s"]
    ours = v.get("A", {}).get("s_per_chain_generation")
    ours_cpu = v.get("A", {}).get("cpu_s_per_chain_generation")
    labels = {"A": "A ours: simulate, N chains vmapped", "B": "B peer loop: per-step jitted train_step",
              "C": "C ours per chain: jit(model.fit) loop"}
    rows, ratios, cpu_ratios = [], {}, {}
    for name in ("A", "B", "C"):
        if name not in v:
            continue
        r = v[name]
        per, cpu = r["s_per_chain_generation"], r["cpu_s_per_chain_generation"]
        full_s = per * n * g
        how = "measured" if r["chains"] * r["generations"] == n * g else "extrapolated"
        ratios[name] = per / ours if ours else None
        cpu_ratios[name] = cpu / ours_cpu if ours_cpu else None
        r["full_workload_s"], r["full_workload_how"] = full_s, how
        r["ratio_vs_ours"], r["cpu_ratio_vs_ours"] = ratios[name], cpu_ratios[name]
        rows.append([labels[name], f"{r['chains']} x {r['generations']}", per, cpu, r["ms_per_chain_step"],
                     r["s_per_generation_all_chains"], full_s, how,
                     "-" if ratios[name] is None else f"{ratios[name]:.2f}x",
                     "-" if cpu_ratios[name] is None else f"{cpu_ratios[name]:.2f}x"])
    print_table(
        f"VAE recursive training: {n} chains x {g} generations, {cfg['steps']} steps, M = {cfg['samples']}",
        ["variant", "timed C x G", "s / chain-gen", "CPU s / chain-gen", "ms / chain-step", f"s / gen ({n} ch.)",
         f"full {n}x{g} s", "full is", "x vs ours", "x vs ours CPU"],
        rows,
        note=f"best of {cfg['rounds']} interleaved rounds, compile excluded; 'x vs ours' = variant / A per "
             "chain-generation (wall); CPU = process CPU seconds, all threads",
    )
    if "A" in v:
        a = v["A"]
        print(f"A: first call {a['first_call_s']:.1f} s (compile + run), steady {a['best_s']:.1f} s "
              f"-> compile ~ {a['compile_estimate_s']:.1f} s; {a['s_per_generation_all_chains']:.2f} s per "
              f"generation (all {n} chains); repeat identical: {a['repeat_identical']}")
    for name in ("B", "C"):
        if name in v:
            print(f"{name}: warm-up {v[name]['warmup_s']:.1f} s (compile + one untimed chain, excluded); timed runs "
                  + ", ".join(f"{x:.1f}" for x in v[name]["times_s"]) + " s")
    if ratios.get("B") and ratios.get("C"):
        print(f"B / C (per-step Python loop vs one compiled fit): {ratios['B'] / ratios['C']:.2f}x wall, "
              f"{cpu_ratios['B'] / cpu_ratios['C']:.2f}x CPU; C / A (vmap gain): {ratios['C']:.2f}x wall, "
              f"{cpu_ratios['C']:.2f}x CPU")
    report["ratios_vs_ours"], report["cpu_ratios_vs_ours"] = ratios, cpu_ratios

    # sanity: final training loss per generation
    srows = []
    for t in range(g):
        row = [t + 1]
        if "A" in v:
            row.append(f"{v['A']['train_loss_mean'][t]:.2f} +- {v['A']['train_loss_sd'][t]:.2f}")
        for name in ("B", "C"):
            if name in v:
                vals = [chain[t] for chain in v[name]["train_loss"] if t < len(chain)]
                row.append(", ".join(f"{x:.2f}" for x in vals) if vals else "-")
        srows.append(row)
    header = ["t"] + [{"A": "A mean +- sd over chains", "B": "B per chain", "C": "C per chain"}[k]
                      for k in ("A", "B", "C") if k in v]
    print_table("sanity: training loss (mean of the last 10 % of steps) per generation", header, srows)
    print(f"\nbench_vae ({mode}) finished in {time.perf_counter() - t_start:.0f} s; loadavg now "
          f"{list(os.getloadavg())}; device {jax.devices()[0].device_kind}")
    save()
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
