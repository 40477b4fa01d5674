"""Command-line interface: ``collapse-theory run | sweep | merge | check | figures | demo | list``.

Arguments are parsed before JAX does any work, so ``--x64`` takes effect; JAX and SciPy are imported lazily.
``main(argv)`` returns an exit code and is testable in-process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path

MODELS = ("gaussian", "categorical", "regression", "gmm", "kde", "ngram", "vae")  # `run --model` families
DATASETS = ("normal", "blobs", "moons", "circles", "swiss-roll")  # `run --model kde` real data
REGIME_NAMES = ("replace", "accumulate", "accumulate-subsample", "replace-grown", "fresh-fraction")
SCHEDULES = ("constant", "linear", "power")
GATES = {"grammar": "ngram", "facts": "ngram", "confident": "vae"}  # `run --gate`: predicate -> its model
RUN_SIZES = {"ngram": (32, 30, 2000), "vae": (8, 10, 1000)}
"""``run``'s (chains, generations, M) where ``--num-chains``, ``--num-generations``, ``--num-samples`` are not
given: (1000, 100, 100), except for the models whose generation costs much more (the sizes of their figures)."""


class UsageError(ValueError):
    """A command line that cannot run as given: ``main`` prints ``collapse-theory CMD: error: ...`` and returns 2,
    as for every other bad input."""


def _versions() -> str:
    """This package's version and those of the libraries its results depend on (read without importing them)."""
    from importlib import metadata

    from . import __version__

    parts = [f"collapse-theory {__version__}"]
    for dist in ("jax", "jaxlib", "numpy", "scipy"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="collapse-theory",
        description="Simulators of model collapse, checked against exact theory.",
    )
    p.add_argument("--version", action="version", version=_versions(),
                   help="print the versions of collapse-theory, jax, jaxlib, numpy and scipy, and exit")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate chains and save .npz + .json results")
    run.add_argument("--model", choices=MODELS, default="gaussian")
    run.add_argument("--regime", choices=REGIME_NAMES, default="replace")
    run.add_argument("--path", choices=("sample", "exact"), default=None,
                     help="exact: sufficient statistics (O(1) per generation); sample: draw and fit M samples "
                          "(default: exact where the model and the regime have it, else sample)")
    run.add_argument("--num-chains", type=int, default=None, help="C (default 1000; ngram 32, vae 8)")
    run.add_argument("--num-generations", type=int, default=None,
                     help="G fits per chain (default 100; ngram 30, vae 10)")
    run.add_argument("--num-samples", type=int, default=None,
                     help="M (the first size for growing schedules; default 100; ngram 2000, vae 1000)")
    run.add_argument("--schedule", choices=SCHEDULES, default="constant",
                     help="constant M; linear M + slope (t-1); power round(M t^exponent)")
    run.add_argument("--slope", type=int, default=None,
                     help="--schedule linear: increment of M per generation (default 1)")
    run.add_argument("--exponent", type=float, default=None, help="--schedule power: exponent (default 1.5)")
    run.add_argument("--dim", type=int, default=None,
                     help="dimension d (default 1; kde: the dataset's own, 1 for normal, 2 for blobs)")
    run.add_argument("--ddof", type=int, choices=(0, 1), default=None,
                     help="0 = maximum likelihood (np.std), 1 = unbiased; required for the Gaussian")
    run.add_argument("--gamma", type=float, default=None, help="fresh-fraction regime: fraction of real data")
    run.add_argument("--gate", choices=tuple(GATES), default=None,
                     help="verification gate on synthetic rows (regimes.Gate around --regime): ngram: grammar "
                          "(a complete sentence of the grammar) or facts (grammatical and every fact true); vae: "
                          "confident (the classifier's top class probability >= --gate-threshold)")
    run.add_argument("--gate-retries", type=int, default=0,
                     help="--gate: further draws per rejected row (0: a rejected row gets weight 0)")
    run.add_argument("--metrics", default=None, metavar="NAME[,NAME...]",
                     help="only these metrics (default: every metric the model reports; an unknown name is an "
                          "error that lists the known ones)")
    run.add_argument("--quantiles", default=None, metavar="Q[,Q...]",
                     help="quantile levels in [0, 1] summarised over chains each generation (default "
                          "0.05,0.25,0.5,0.75,0.95; 'none' for none)")
    gauss = run.add_argument_group("--model gaussian", "truth N(--mean, --variance I_d), refitted by sample mean "
                                   "and covariance")
    gauss.add_argument("--mean", type=float, default=None, help="μ0, every coordinate (default 0)")
    gauss.add_argument("--variance", type=float, default=None, help="σ0² > 0, every coordinate (default 1)")
    gauss.add_argument("--tail-k", type=float, default=None,
                       help="tail_mass = P_model(|X_1 - μ0| > k σ0) on the first coordinate (default k = 3)")
    gauss.add_argument("--collapse-threshold", type=float, default=None,
                       help="collapsed = sqrt(tr Σ / tr Σ0) below this, in (0, 1) (default 1e-3)")
    cat = run.add_argument_group("--model categorical (--temperature and --smoothing also --model ngram)")
    cat.add_argument("--categories", type=int, default=100, help="number of outcomes K")
    cat.add_argument("--zipf", type=float, default=None, metavar="BETA",
                     help="Zipf(BETA) truth p_i ~ i^-BETA (default uniform)")
    cat.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of fitted models")
    cat.add_argument("--smoothing", type=float, default=None,
                     help="add-alpha smoothing of the refit (default 0; ngram 0.01)")
    reg = run.add_argument_group("--model regression")
    reg.add_argument("--noise-sd", type=float, default=1.0, help="label noise σ")
    reg.add_argument("--ridge", type=float, default=0.0, help="ridge λ >= 0 (0 = OLS / minimum norm)")
    reg.add_argument("--design", choices=("fresh", "fixed"), default="fresh",
                     help="a new design X every generation, or one fixed X per chain (relabelled)")
    reg.add_argument("--design-rows", type=int, default=None, help="--design fixed: rows T of the fixed design")
    reg.add_argument("--model-size", type=int, default=None,
                     help="m random projections (v^T S x; default: the plain linear model)")
    reg.add_argument("--test-labels", choices=("clean", "noisy"), default="clean",
                     help="test_error without σ² (excess risk) or with it")
    gmm = run.add_argument_group(
        "--model gmm", "EM refits of a K-component mixture; truth: K components N(m_k, I), equal weights, means "
        "--separation apart along the first axis and centred at 0")
    gmm.add_argument("--components", type=int, default=2, help="K")
    gmm.add_argument("--separation", type=float, default=4.0, help="distance between neighbouring true means")
    gmm.add_argument("--covariance-type", choices=("full", "diag"), default="full")
    gmm.add_argument("--reg-covar", type=float, default=1e-6, help="λ added to each covariance diagonal")
    gmm.add_argument("--max-iter", type=int, default=100, help="EM iterations per fit at most")
    gmm.add_argument("--tol", type=float, default=1e-3, help="EM stops when the mean log-likelihood moves less")
    gmm.add_argument("--init", choices=("kmeans", "k-means++", "warm"), default="kmeans", help="EM start")
    gmm.add_argument("--warm-start", action="store_true", help="each fit after the first starts from the last")
    kde = run.add_argument_group("--model kde", "Gaussian KDE refitted on its own samples")
    kde.add_argument("--bandwidth", type=float, default=None, help="kernel bandwidth h > 0 (required)")
    kde.add_argument("--dataset", choices=DATASETS, default="normal",
                     help="real data: normal N(0, I_d); blobs (3 random centres per chain, make_blobs); moons, "
                          "circles (2-D); swiss-roll (3-D, or its plane with --dim 2)")
    kde.add_argument("--data-noise", type=float, default=0.0, help="moons, circles, swiss-roll: noise sd")
    kde.add_argument("--num-test", type=int, default=500, help="rows of each chain's test set (test_nll)")
    ngram = run.add_argument_group(
        "--model ngram", "n-gram language model refitted on its own sentences; real data: the synthetic grammar of "
        "collapse_theory.corpus (fluent template sentences and Zipfian ENTITY ATTR facts)")
    ngram.add_argument("--order", type=int, choices=(2, 3), default=2, help="2 = bigram, 3 = trigram")
    ngram.add_argument("--entities", type=int, default=60, help="facts E (3..200), Zipfian frequencies")
    ngram.add_argument("--attributes", type=int, default=12, help="attribute values (2..100)")
    ngram.add_argument("--fact-fraction", type=float, default=0.4, help="probability of a fact sentence, in (0, 1)")
    ngram.add_argument("--entity-zipf", type=float, default=1.0, help="exponent s of the fact frequencies")
    ngram.add_argument("--num-reference", type=int, default=2000,
                       help="held-out real sentences (perplexity; shared by every chain)")
    vae = run.add_argument_group(
        "--model vae", "MLP/conv VAE retrained (Adam) on its own decoded images; a classifier trained once on "
        "the real images measures rare-class share, confidence and Fréchet distance")
    vae.add_argument("--images", default="shapes",
                     help="shapes (procedural 8x8, rare classes built in), digits (needs scikit-learn) or mnist:DIR")
    vae.add_argument("--num-real", type=int, default=5000, help="real training images (1000 more are held out)")
    vae.add_argument("--latent-dim", type=int, default=8, help="latent dimension L")
    vae.add_argument("--hidden", type=int, default=256, help="hidden layer width")
    vae.add_argument("--architecture", choices=("mlp", "conv"), default="mlp")
    vae.add_argument("--steps", type=int, default=1000, help="Adam steps per fit")
    vae.add_argument("--batch-size", type=int, default=64)
    vae.add_argument("--learning-rate", type=float, default=2e-3)
    vae.add_argument("--classifier-steps", type=int, default=1500, help="training steps of the metric classifier")
    vae.add_argument("--gate-threshold", type=float, default=0.9, help="--gate confident: probability threshold")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("results/run.npz"),
                     help="result file, .npz (or no suffix); a .json sidecar is written beside it")
    run.add_argument("--x64", action="store_true", help="float64 (default float32)")
    run.add_argument("--trajectories", action="store_true", help="also save every chain's metrics (G x C)")
    run.add_argument("--chunk-size", type=int, default=None, help="generations per compiled chunk")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--stop-when-absorbed", action="store_true",
                     help="stop once every chain is absorbed (categorical: fixed on one outcome); same results")
    run.add_argument("--compact", action="store_true",
                     help="categorical, exact path: run on the live outcomes only (O(live) per generation)")
    scale = run.add_argument_group("scale-out (chains over devices and hosts, long runs)")
    scale.add_argument("--devices", type=int, default=None, metavar="N",
                       help="shard the chains over N devices (on CPU: N forced host devices); bit-identical in float64")
    scale.add_argument("--pad-chains", action="store_true",
                       help="with --devices: allow --num-chains not divisible by N (extra chains are dropped)")
    scale.add_argument("--chain-offset", type=int, default=0,
                       help="global id of the first chain: disjoint ranges per job, combined by 'merge'")
    scale.add_argument("--checkpoint", type=Path, default=None,
                       help="checkpoint file, written atomically every --checkpoint-every seconds and on Ctrl-C")
    scale.add_argument("--checkpoint-every", type=float, default=None, metavar="SECONDS",
                       help="seconds between checkpoints (default 60; needs --checkpoint or --resume)")
    scale.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint (default path OUT.ckpt.npz) if it exists")
    scale.add_argument("--distributed", action="store_true",
                       help="multi-host: call jax.distributed.initialize() first (auto-detects Slurm/MPI/TPU)")
    scale.add_argument("--coordinator", default=None, help="--distributed: coordinator host:port")
    scale.add_argument("--num-processes", type=int, default=None, help="--distributed: number of processes")
    scale.add_argument("--process-id", type=int, default=None, help="--distributed: this process's id")

    sweep = sub.add_parser("sweep", help="run a grid of simulations from a TOML/JSON spec: one result per cell")
    sweep.add_argument("spec", type=Path, help="grid spec (.toml or .json); see collapse_theory.sweep")
    sweep.add_argument("--out", type=Path, required=True, help="folder for cell_XXXX.npz files and index.json")
    sweep.add_argument("--devices", type=int, default=None, metavar="N", help="shard each cell's chains over N")
    sweep.add_argument("--resume", action="store_true", help="skip cells whose result file already exists")
    sweep.add_argument("--workers", type=int, default=1, metavar="N",
                       help="run the compile groups in N processes side by side (this one and N-1 workers), "
                            "largest first (default 1: this process only); helps grids of many compile-dominated "
                            "cells on a multi-core CPU")
    sweep.add_argument("--no-pin-cpus", action="store_true",
                       help="with --workers N: let every process use every CPU (default: each process runs on its "
                            "own share of the CPUs, so that XLA's threads of one do not wait on the other's)")
    sweep.add_argument("--x64", action="store_true", help="float64 (default: the spec's x64, else float32)")
    sweep.add_argument("--no-progress", action="store_true")

    merge = sub.add_parser("merge", help="combine results over disjoint chain ranges into one result file")
    merge.add_argument("inputs", nargs="+", type=Path, help="result files (.npz) from --chain-offset jobs")
    merge.add_argument("--out", type=Path, required=True, help="merged result (.npz + .json)")

    check = sub.add_parser("check", help="run the theorem checks and print theory vs simulation")
    check.add_argument("--quick", action="store_true",
                       help="fewer chains (on 2 cores about 40 s once the compile cache is warm, a minute cold)")
    check.add_argument("--json", type=Path, default=None, help="write the table as a list of records")
    check.add_argument("--markdown", type=Path, default=None,
                       help="write the table as Markdown (with references, formulas and run metadata)")
    check.add_argument("--family", action="append", default=None,
                       help="only this family (repeatable; `collapse-theory list` shows each check's family)")
    check.add_argument("--name", action="append", default=None,
                       help="only this check (repeatable; `collapse-theory list` names them)")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--z", type=float, default=4.0, help="a row passes when |z| <= this, >= 0 (default 4)")
    check.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    check.add_argument("--jobs", type=int, default=None,
                       help="worker processes, one family of checks per task (default: min(2, CPUs)); "
                            "the rows do not depend on it")

    fig = sub.add_parser("figures", help="regenerate the figures from experiments/ into figures/")
    fig.add_argument("--quick", action="store_true",
                     help="reduced sizes (fewer chains, generations or cells; minutes for all figures)")
    fig.add_argument("--out", type=Path, default=None,
                     help="output folder (default figures/; with --quick figures/quick/, git-ignored, so a quick "
                          "pass never overwrites the full-size figures)")
    fig.add_argument("--only", action="append", default=None,
                     help="figure name (repeatable; `collapse-theory list` names them)")
    fig.add_argument("--experiments-dir", type=Path, default=None,
                     help="folder of fig_*.py scripts (default: the checkout's experiments/, which a non-editable "
                          "install does not contain)")

    demo = sub.add_parser("demo", help="classroom demos: 'tails' writes an animated GIF of a Zipf losing its tail")
    demo.add_argument("name", choices=("tails",), help="tails: Zipf histogram, replace vs accumulate")
    demo.add_argument("--out", type=Path, default=Path("figures/tails_demo.gif"), help="GIF to write")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--categories", type=int, default=30, help="K outcomes (<= 200)")
    demo.add_argument("--beta", type=float, default=1.1, help="Zipf exponent of the truth")
    demo.add_argument("--samples", type=int, default=50, help="M samples per generation")
    demo.add_argument("--generations", type=int, default=40)
    demo.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the fitted models")
    demo.add_argument("--fps", type=int, default=6)
    demo.add_argument("--interactive", action="store_true", help="also open a matplotlib window (needs a display)")

    listing = sub.add_parser("list", help="list models, regimes, checks (reference, formula, parameters) and figures")
    listing.add_argument("--json", action="store_true", help="print the listing as one JSON object")
    return p


CACHE_MIN_COMPILE_S = 0.2
"""Programs that take at least this long to compile go into the persistent compilation cache (JAX's default is
1 s, which leaves out most programs compiled with ``simulate.FAST_COMPILE``, 0.3–1.2 s each)."""


def _configure_jax(x64: bool) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import jax

    jax.config.update("jax_enable_x64", bool(x64))
    cache = os.environ.get("COLLAPSE_THEORY_CACHE", str(Path.home() / ".cache" / "collapse_theory" / "jax"))
    if cache and cache != "0":
        try:
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_S)
        except Exception:  # noqa: BLE001 - a cache is an optimisation, never a requirement
            pass


def _configure_scale(args) -> None:
    """Forced CPU device count and multi-host initialisation: both must happen before JAX does any work.

    With ``--distributed``, ``--devices`` counts devices over all processes (the mesh spans hosts); on CPU each
    process then gets ``devices / num_processes`` devices, and cross-process collectives use Gloo.
    """
    import jax

    if args.devices is not None:
        if args.devices < 1:
            raise ValueError(f"--devices={args.devices} is out of range: need --devices >= 1")
        local = args.devices
        if args.distributed and args.num_processes:
            if args.devices % args.num_processes:
                raise ValueError(f"--devices={args.devices} is out of range: with --distributed it counts devices "
                                 f"over all processes and must be a multiple of --num-processes={args.num_processes}")
            local = args.devices // args.num_processes
        try:  # only the CPU backend reads this; accelerators keep their own devices
            if local > 1:
                jax.config.update("jax_num_cpu_devices", local)
        except RuntimeError:  # backends already up (in-process use): keep the devices there are
            pass
    if args.distributed:
        from .distributed import initialize

        try:  # CPU processes need a collectives implementation to reduce across hosts; accelerators ignore it
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except (RuntimeError, ValueError, AttributeError):
            pass
        initialize(args.coordinator, args.num_processes, args.process_id)


def _explain_nonfinite_mean(res, name: str, path: str) -> None:
    """A mean over chains is ±inf or NaN when one chain's value is: say so (the line above gives the median)."""
    mean = float(res.mean(name)[-1])
    if math.isfinite(mean):
        return
    why = ""
    if path == "sample" and name.startswith("log_"):
        why = (" (the sample path refits raw samples, which keep about 7 digits in float32: once a chain's "
               "fitted spread falls below |mean| x 1e-7, in d dims along its smallest direction first, its fit is "
               "exactly singular; --path exact carries the spread in log scale, --x64 delays it)")
    what = "NaN, or +inf and -inf" if math.isnan(mean) else f"{mean:g}"
    print(f"    {name}: some chain's final value is {what}, so the mean and SE are not finite{why}")


def _check_writable(option: str, path: Path | None) -> None:
    """An output file path that can be written: not a folder, in a folder that exists or can be made (the atomic
    writers make missing folders, as for ``--out``)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r} is a folder: give a file name")
    _check_out_folder(option, path.parent, path)


def _check_out_folder(option: str, folder: Path, given: Path | None = None) -> None:
    """``folder`` (the one ``given`` is written in, if that is a file name) exists or can be made: its nearest
    existing ancestor is a folder we may write in. Checked before the work, which may take minutes."""
    shown = f"{option} {str(given or folder)!r}" + ("" if given is None else f": its folder {str(folder)!r}")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == folder else f"lies under {str(probe)!r}, which is a file"
        raise UsageError(f"{shown} {where}, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{shown}: no permission to write in {str(probe)!r}")


def _check_out(path: Path) -> None:
    """A result path: an .npz name whose file and .json sidecar can be written (checked before the work)."""
    if path.suffix not in ("", ".npz"):
        raise UsageError(f"--out {str(path)!r}: a result is an .npz file (and its .json sidecar); give a name "
                         f"ending in .npz, e.g. {str(path.with_suffix('.npz'))!r}")
    npz = path.with_suffix(".npz")
    _check_out_folder("--out", npz.parent, path)
    for written in (npz, npz.with_suffix(".json")):
        if written.is_dir():
            raise UsageError(f"--out {str(path)!r}: {str(written)!r} is a folder, and the result writes that file")


def _cmd_run(args) -> int:
    _check_out(args.out)
    if args.checkpoint_every is not None and args.checkpoint is None and not args.resume:
        raise UsageError(f"--checkpoint-every {args.checkpoint_every:g} writes nothing without --checkpoint FILE (or "
                         f"--resume, whose checkpoint defaults to OUT.ckpt.npz)")
    if args.checkpoint is not None:
        _check_writable("--checkpoint", args.checkpoint)
        from .checkpoint import checkpoint_path

        npz, ckpt = args.out.with_suffix(".npz"), checkpoint_path(args.checkpoint)
        if ckpt.exists() and not args.resume:
            raise UsageError(f"--checkpoint {str(args.checkpoint)!r}: {str(ckpt)!r} exists and would be overwritten: "
                             f"add --resume to continue it, or delete it to start afresh")
        if ckpt.resolve() in (npz.resolve(), npz.with_suffix(".json").resolve()):
            raise UsageError(f"--checkpoint {str(args.checkpoint)!r} is the file {str(ckpt)!r}, which the result "
                             f"--out {str(args.out)!r} writes: give the checkpoint another name, e.g. "
                             f"{str(npz.with_suffix('.ckpt.npz'))!r}")
    _configure_jax(args.x64)
    _configure_scale(args)
    from . import regimes
    from .simulate import simulate

    _check_model_options(args)
    _apply_run_sizes(args)
    if args.regime == "fresh-fraction":
        if args.gamma is None:
            raise UsageError("--regime fresh-fraction needs --gamma in (0, 1]")
        regime = regimes.FreshFraction(args.gamma)
    else:
        if args.gamma is not None:
            raise UsageError(f"--gamma applies to --regime fresh-fraction, not {args.regime}")
        regime = regimes.REGIMES[args.regime]()
    schedule = _schedule(args)
    sizes = schedule.sizes(max(args.num_generations, 1))
    if args.model == "vae" and args.num_real < int(sizes.max()):  # before the classifier is trained
        raise ValueError(f"--num-real={args.num_real} is out of range: a generation fits up to max_t M_t = "
                         f"{int(sizes.max())} real images drawn without replacement, so need --num-real >= "
                         f"{int(sizes.max())}")
    if args.dim is not None and args.model in ("categorical", "ngram", "vae"):
        why = "its outcomes are --categories" if args.model == "categorical" else "its data fix it"
        raise UsageError(f"--dim does not apply to --model {args.model} ({why})")
    dim = 1 if args.dim is None else args.dim
    truth, truth_note, real_data, reference, predicate = None, None, None, None, None
    if args.model == "categorical":
        model, truth = _categorical_model(args, regime.max_exact_draw(sizes))
    elif args.model == "regression":
        from .models.regression import LinearRegression

        model = LinearRegression(dim=dim, noise_sd=args.noise_sd, ridge=args.ridge, design=args.design,
                                 design_rows=args.design_rows, model_size=args.model_size,
                                 test_labels=args.test_labels)
    elif args.model == "gmm":
        model, truth, truth_note = _gmm_model(args, dim)
    elif args.model == "kde":
        model = _kde_model(args, regime, sizes)
    elif args.model in ("ngram", "vae"):
        setup = _ngram_setup(args) if args.model == "ngram" else _vae_setup(args)
        model, truth, real_data, reference, predicate, truth_note = setup
    else:
        if args.ddof is None:
            raise UsageError("--ddof is required for the Gaussian (0 = MLE, 1 = unbiased)")
        model, truth = _gaussian_model(args, dim)
    if predicate is not None:
        regime = regimes.Gate(regime, predicate, retries=args.gate_retries)
    path = args.path
    if path is None:
        from .models.base import has_exact_path

        path = "exact" if has_exact_path(model) and regime.exact else "sample"
    checkpoint = args.checkpoint
    if args.resume and checkpoint is None:
        checkpoint = (args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")).with_suffix(".ckpt.npz")
    if checkpoint is not None:
        from .checkpoint import checkpoint_path

        args.checkpoint_path = checkpoint_path(checkpoint)  # for the Ctrl-C message
    res = simulate(
        args.seed, model, regime, num_chains=args.num_chains, num_generations=args.num_generations,
        num_samples=schedule, path=path, trajectories=args.trajectories, chunk_size=args.chunk_size,
        progress=not args.no_progress, truth=truth, chain_offset=args.chain_offset, devices=args.devices,
        pad_chains=args.pad_chains, checkpoint=checkpoint,
        checkpoint_every=60.0 if args.checkpoint_every is None else args.checkpoint_every,
        resume=args.resume, stop_when_absorbed=args.stop_when_absorbed, compact=args.compact,
        real_data=real_data, reference=reference, **_summary_options(args),
    )
    res.metadata["command"] = "run"
    if truth_note is not None:
        res.metadata["truth"] = truth_note
    if args.distributed:
        import jax

        if jax.process_index() != 0:  # one result file per run: process 0 writes it
            return 0
    res.save(args.out)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    g = res.generations[-1]
    print(f"wrote {out} and {out.with_suffix('.json')}  ({res.num_chains} chains x {g} generations, "
          f"{path} path, x64={res.metadata['x64']}, {res.metadata['wall_time_s']:.1f} s)")
    if res.metadata.get("absorbed_at_generation") is not None:
        print(f"  every chain absorbed by generation {res.metadata['absorbed_at_generation']} (later rows filled)")
    names = [n for n in ("log_variance", "log_trace_ratio", "sq_mean_error", "w2_squared", "heterozygosity", "entropy",
                         "surviving", "lost_mass", "tail_mass", "test_error", "weight_norm_sq", "l2_to_truth",
                         "component_w2", "heldout_loglik", "weight_entropy", "spread", "test_nll", "perplexity",
                         "grammaticality", "fact_accuracy", "fact_accuracy_tail", "rare_share", "confident",
                         "neg_elbo", "frechet")
             if n in res.summary]
    # the median beside the mean: a mean far above it (sq_mean_error of a long ddof=1 chain: E = n σ²/M, carried by
    # rare chains) is heavy-tailed, and its SE understates the error; the theorem checks use log-scale statistics
    has_median = any(math.isclose(float(q), 0.5) for q in res.quantile_levels)
    for n in names:
        median = f"; median {res.quantile(n, 0.5)[-1]:.4g}" if has_median else ""
        print(f"  final E {n} = {res.mean(n)[-1]:.6g} ± {res.se(n)[-1]:.2g} (SE){median}")
        _explain_nonfinite_mean(res, n, path)
    if args.model == "regression" and not args.ridge:
        rows = args.design_rows if args.design == "fixed" else int(sizes.min())
        features = args.model_size or dim
        if abs(rows - features) <= 1:
            print(f"  note: a ridgeless fit on {rows} rows with {features} features (|rows - d| <= 1) has an infinite "
                  f"expected test error (E tr of the inverse or pseudo-inverse Gram matrix is infinite there), so the "
                  f"mean over chains above estimates nothing; read the median, or use |rows - d| >= 2 or --ridge > 0")
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import expand, load_spec

    _check_out_folder("--out", args.out)
    spec = load_spec(args.spec)
    if args.x64:  # --x64 overrides the spec
        spec = {**spec, "x64": True}
    cells = expand(spec)  # validate before starting JAX
    _configure_jax(bool(spec.get("x64", False)))
    args.distributed = False
    _configure_scale(args)
    from .sweep import run_sweep

    index = run_sweep(spec, args.out, devices=args.devices, resume=args.resume, progress=not args.no_progress,
                      log=lambda line: print(line, flush=True), workers=args.workers,
                      pin_cpus=not args.no_pin_cpus)
    print(f"wrote {len(cells)} cells and {args.out / 'index.json'} ({len(index['groups'])} compile groups)")
    return 0


def _cmd_merge(args) -> int:
    import json as _json

    _check_out(args.out)
    import numpy as np

    for path in args.inputs:
        if not path.exists():
            raise ValueError(f"inputs: result file {str(path)!r} does not exist")
    with np.load(args.inputs[0], allow_pickle=False) as f:
        if "meta" not in f.files:
            raise ValueError(f"inputs: {str(args.inputs[0])!r} is not a collapse_theory result file (no 'meta' record)")
        x64 = bool(_json.loads(str(f["meta"]))["metadata"].get("x64", True))
    _configure_jax(x64)
    from .merge import merge_results

    res = merge_results(args.inputs)
    res.metadata["command"] = "merge"
    res.save(args.out)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    offset = res.config["chain_offset"]
    print(f"wrote {out} and {out.with_suffix('.json')}  ({len(args.inputs)} inputs -> chains "
          f"[{offset}, {offset + res.num_chains}); {res.config['merge']['summaries']})")
    if "quantiles" in res.config["merge"]:
        print(f"  note: quantiles {res.config['merge']['quantiles']}")
    return 0


_MODEL_OPTIONS = {
    "gaussian": ("ddof", "mean", "variance", "tail_k", "collapse_threshold"),
    "categorical": ("categories", "zipf", "temperature", "smoothing"),
    "regression": ("noise_sd", "ridge", "design", "design_rows", "model_size", "test_labels"),
    "gmm": ("components", "separation", "covariance_type", "reg_covar", "max_iter", "tol", "init", "warm_start"),
    "kde": ("bandwidth", "dataset", "data_noise", "num_test"),
    "ngram": ("order", "entities", "attributes", "fact_fraction", "entity_zipf", "num_reference", "temperature",
              "smoothing", "gate", "gate_retries"),
    "vae": ("images", "num_real", "latent_dim", "hidden", "architecture", "steps", "batch_size", "learning_rate",
            "classifier_steps", "gate", "gate_retries", "gate_threshold"),
}
"""``run``'s options that belong to some models: given to another model, they are an error, not silently ignored."""


def _check_model_options(args) -> None:
    defaults = _parser().parse_args(["run"])
    mine = set(_MODEL_OPTIONS.get(args.model, ()))
    for name in dict.fromkeys(n for names in _MODEL_OPTIONS.values() for n in names):
        if name in mine or getattr(args, name) == getattr(defaults, name):
            continue
        owners = [o for o, names in _MODEL_OPTIONS.items() if name in names]
        what = " or ".join("the Gaussian" if o == "gaussian" else f"--model {o}" for o in owners)
        raise UsageError(f"--{name.replace('_', '-')} applies to {what}, not --model {args.model}")
    if args.gate is not None and GATES[args.gate] != args.model:
        raise UsageError(f"--gate {args.gate} applies to --model {GATES[args.gate]}, not "
                         f"--model {args.model}")
    if args.gate is None and (args.gate_retries != defaults.gate_retries
                              or args.gate_threshold != defaults.gate_threshold):
        raise UsageError("--gate-retries and --gate-threshold need --gate")


def _gaussian_model(args, dim: int):
    """The Gaussian and its truth N(--mean · 1, --variance · I) for ``run`` (the model's own range checks name
    ``tail_k`` and ``collapse_threshold``; the truth's are here)."""
    from .models.gaussian import Gaussian

    if args.ddof is None:
        raise UsageError("--ddof is required for the Gaussian (0 = MLE, 1 = unbiased)")
    options = {name: getattr(args, name) for name in ("tail_k", "collapse_threshold")
               if getattr(args, name) is not None}
    model = Gaussian(dim=dim, ddof=args.ddof, **options)
    mean = 0.0 if args.mean is None else args.mean
    variance = 1.0 if args.variance is None else args.variance
    if not math.isfinite(mean):
        raise ValueError(f"--mean={mean} is out of range: need a finite value")
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"--variance={variance} is out of range: need a finite value > 0")
    return model, model.params(mean, variance)


def _summary_options(args) -> dict:
    """``simulate``'s ``metrics=`` and ``quantiles=`` from ``--metrics`` and ``--quantiles`` (only those given)."""
    out = {}
    if args.metrics is not None:
        names = [n.strip() for n in args.metrics.split(",") if n.strip()]
        if not names:
            raise UsageError(f"--metrics={args.metrics!r} names no metric: give NAME[,NAME...]")
        out["metrics"] = names
    if args.quantiles is not None:
        if args.quantiles.strip().lower() == "none":
            out["quantiles"] = ()
        else:
            try:
                levels = tuple(float(q) for q in args.quantiles.split(","))
            except ValueError:
                raise UsageError(f"--quantiles={args.quantiles!r}: need comma-separated levels in [0, 1], "
                                 f"or 'none'") from None
            bad = [q for q in levels if not (0.0 <= q <= 1.0)]  # NaN fails too
            if bad:
                raise ValueError(f"--quantiles={args.quantiles!r} is out of range: levels {bad} are outside [0, 1]")
            out["quantiles"] = levels
    return out


def _apply_run_sizes(args) -> None:
    """Fill in the chains, generations and M not given on the command line (:data:`RUN_SIZES`)."""
    chains, generations, m = RUN_SIZES.get(args.model, (1000, 100, 100))
    args.num_chains = chains if args.num_chains is None else args.num_chains
    args.num_generations = generations if args.num_generations is None else args.num_generations
    args.num_samples = m if args.num_samples is None else args.num_samples


def _schedule(args):
    from . import schedules

    for name, schedule in (("slope", "linear"), ("exponent", "power")):
        if getattr(args, name) is not None and args.schedule != schedule:
            raise UsageError(f"--{name} applies to --schedule {schedule}, not --schedule {args.schedule}")
    if args.schedule == "constant":
        return schedules.Constant(args.num_samples)
    if args.schedule == "linear":
        return schedules.Linear(args.num_samples, 1 if args.slope is None else args.slope)
    return schedules.PowerLaw(args.num_samples, 1.5 if args.exponent is None else args.exponent)


def _gmm_model(args, dim: int):
    """Mixture model, truth and the truth's description (for the JSON sidecar) for ``run --model gmm``: K
    unit-covariance components with equal weights, means ``--separation`` apart on the first axis, centred at 0."""
    import numpy as np

    from .models.gmm import GaussianMixture

    if not (math.isfinite(args.separation) and args.separation >= 0):
        raise ValueError(f"separation={args.separation!r} is out of range: need a finite separation >= 0")
    model = GaussianMixture(num_components=args.components, dim=dim, covariance_type=args.covariance_type,
                            reg_covar=args.reg_covar, max_iter=args.max_iter, tol=args.tol, init_params=args.init,
                            warm_start=args.warm_start)
    means = np.zeros((args.components, dim))
    means[:, 0] = (np.arange(args.components) - (args.components - 1) / 2) * args.separation
    note = {"weights": "equal", "means": means.tolist(), "covariances": "identity"}
    return model, model.params(means=means, covs=1.0), note


def _kde_model(args, regime, sizes):
    """KDE for ``run --model kde``, holding as many rows as ``regime`` hands its fits (``capacity_for``)."""
    from . import datasets
    from .models.kde import KernelDensity, capacity_for

    if args.bandwidth is None:
        raise UsageError("--model kde needs --bandwidth h > 0")
    name, d = args.dataset, args.dim
    if name in ("moons", "circles") and d not in (None, 2):
        raise ValueError(f"dim={d} is out of range: --dataset {name} is 2-D (leave --dim out or give 2)")
    if name in ("normal", "blobs") and args.data_noise != 0.0:
        raise UsageError(f"--data-noise applies to moons, circles and swiss-roll, not {name}")
    if name == "normal":
        d = 1 if d is None else d
        if d < 1:
            raise ValueError(f"dim={d} is out of range: need dim >= 1")
        data = datasets.Blobs(centers=((0.0,) * d,), cluster_std=1.0)
    elif name == "blobs":
        data = datasets.Blobs(dim=2 if d is None else d)
    elif name == "moons":
        data = datasets.Moons(noise=args.data_noise)
    elif name == "circles":
        data = datasets.Circles(noise=args.data_noise)
    else:
        data = datasets.SwissRoll(noise=args.data_noise, dim=3 if d is None else d)
    capacity = capacity_for(regime, sizes, args.num_generations)
    return KernelDensity(bandwidth=args.bandwidth, dataset=data, capacity=max(capacity, 1), num_test=args.num_test)


def _given(**options) -> dict:
    """The options given on the command line (not None): the rest keep the model's own defaults."""
    return {name: value for name, value in options.items() if value is not None}


def _categorical_model(args, cap: int):
    """Categorical model and truth for ``run --model categorical`` (exact path: a sampler capped at ``cap``, the
    regime's largest draw, ``regime.max_exact_draw``)."""
    from .models.categorical import Categorical

    model = Categorical(args.categories, temperature=args.temperature, max_samples=max(cap, 1),
                        **_given(smoothing=args.smoothing))
    truth = model.params() if args.zipf is None else model.zipf(args.zipf)
    return model, truth


def _ngram_setup(args):
    """``setups.ngram`` from ``run``'s options (the grammar's, the model's and the gate)."""
    from . import setups

    grammar = {"num_entities": args.entities, "num_attributes": args.attributes,
               "fact_fraction": args.fact_fraction, "entity_zipf": args.entity_zipf}
    return setups.ngram(args.seed, grammar=grammar, num_reference=args.num_reference, gate=args.gate,
                        order=args.order, temperature=args.temperature, **_given(smoothing=args.smoothing))


def _vae_setup(args):
    """``setups.vae`` from ``run``'s options; prints the classifier's held-out accuracy and the rare classes."""
    from . import setups

    setup = setups.vae(args.seed, images=args.images, num_real=args.num_real, classifier_steps=args.classifier_steps,
                       gate=args.gate, gate_threshold=args.gate_threshold, latent_dim=args.latent_dim,
                       hidden=args.hidden, architecture=args.architecture, steps=args.steps,
                       batch_size=args.batch_size, learning_rate=args.learning_rate)
    note = setup.note
    print(f"  classifier: held-out accuracy {note['classifier_accuracy']:.3f}; rare classes: "
          f"{', '.join(note['rare_classes']) or 'none'}")
    return setup


def _report_running(name: str) -> None:
    print(f"running {name} ...", file=sys.stderr, flush=True)


def _cmd_check(args) -> int:
    _configure_jax(not args.float32)
    from . import checks
    from .io import atomic_write_text, collect_metadata, finite_jsonable

    if not (math.isfinite(args.z) and args.z >= 0):
        raise ValueError(f"--z={args.z} is out of range: need a finite threshold >= 0 on |z|")
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        _check_writable(option, path)  # before the checks run, not after
    chosen = checks.select(args.name, args.family)
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1)
    if jobs < 1:
        raise ValueError(f"--jobs={jobs} is out of range: need --jobs >= 1")
    rows = checks.run_checks_parallel(chosen, jobs, quick=args.quick, seed=args.seed, z_max=args.z,
                                      worker_init=_configure_jax, worker_args=(not args.float32,),
                                      progress=_report_running)
    print(checks.format_table(rows))
    failed = [r for r in rows if r["passed"] is False]  # None: an empirical row, which claims nothing
    empirical = sum(r.get("kind") == "empirical" for r in rows)
    print(f"\n{len(rows) - len(failed) - empirical} passed, {len(failed)} failed, {empirical} empirical  "
          f"(|z| <= {args.z}; "
          f"{len(chosen)} checks, quick={args.quick}, seed={args.seed})")
    meta = collect_metadata(seed=args.seed, quick=args.quick, z_max=args.z)
    if args.markdown is not None:
        atomic_write_text(args.markdown, checks.format_markdown(rows, meta))
        print(f"wrote {args.markdown}")
    if args.json is not None:
        for r in rows:
            r["metadata"] = meta
        # strict JSON: an empirical row's theory and z, and a non-finite simulation's z, are null
        atomic_write_text(args.json, json.dumps(finite_jsonable(rows), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


def _experiments_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    here = Path(__file__).resolve().parent.parent / "experiments"
    return here if here.is_dir() else Path.cwd() / "experiments"


def _load_experiments(folder: Path) -> dict:
    found = {}
    for path in sorted(folder.glob("fig_*.py")):
        spec = importlib.util.spec_from_file_location(f"collapse_theory_experiments.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found[getattr(module, "NAME", path.stem)] = module
    return found


def _cmd_figures(args) -> int:
    out = args.out or Path("figures/quick" if args.quick else "figures")
    _check_out_folder("--out", out)
    # JAX's default precision: an experiment that wants float64 says so itself (``jax.enable_x64``), so this
    # command and ``python experiments/fig_NAME.py`` draw the same figure, bit for bit
    _configure_jax(False)
    folder = _experiments_dir(args.experiments_dir)
    if not folder.is_dir():
        raise UsageError(f"no experiments folder at {folder} (use --experiments-dir)")
    experiments = _load_experiments(folder)
    names = args.only or sorted(experiments)
    unknown = sorted(set(names) - set(experiments))
    if unknown:
        raise UsageError(f"unknown figure(s) {unknown}; known: {sorted(experiments)}")
    status = 0
    for name in names:
        argv = ["--out", str(out)] + (["--quick"] if args.quick else [])
        print(f"== {name}", flush=True)
        status |= int(experiments[name].main(argv) or 0)
    return status


def _cmd_demo(args) -> int:
    _check_out_folder("--out", args.out.parent, args.out)
    _configure_jax(True)
    from .demo_tails import run_demo

    run_demo(args.out, seed=args.seed, num_categories=args.categories, beta=args.beta, num_samples=args.samples,
             num_generations=args.generations, temperature=args.temperature, fps=args.fps,
             interactive=args.interactive)
    return 0


def _cmd_list(args) -> int:
    """Models, regimes, gates, checks and figures; each check with its family, reference, formula and declared
    parameters (a quick/full pair prints as ``4000/32000``). ``--json``: the same as one JSON object."""
    from . import checks

    folder = _experiments_dir(None)
    figures = ({name: getattr(module, "DESCRIPTION", "") for name, module in _load_experiments(folder).items()}
               if folder.is_dir() else {})
    if getattr(args, "json", False):
        listing = {
            "models": list(MODELS), "regimes": list(REGIME_NAMES), "gates": GATES,
            "checks": [{"name": c.name, "family": c.family, "reference": c.reference, "formula": c.formula,
                        "planted": c.planted, "kind": "empirical" if c.empirical else "theorem",
                        "params": checks.params_json(c.params)} for c in checks.CHECKS.values()],
            "figures": figures,
        }
        print(json.dumps(listing, indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    print("models:   " + ", ".join(MODELS) + " (collapse-theory run --model; classes in collapse_theory.models)")
    print("regimes:  " + ", ".join(REGIME_NAMES) + "; gates (run --gate): "
          + ", ".join(f"{name} ({model})" for name, model in GATES.items()))
    print("checks:   (params: quick/full where quick mode differs)")
    for c in checks.CHECKS.values():
        print(f"  {c.name:<44} [{c.family}] {c.reference}")
        print(f"      formula: {c.formula}")
        print(f"      params:  {checks.format_params(c.params)}")
    if figures:
        print("figures:")
        for name, description in figures.items():
            print(f"  {name:<44} {description}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a batch scheduler's end of job), handled as Ctrl-C: a run with a checkpoint
    writes it before it stops."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"run": _cmd_run, "sweep": _cmd_sweep, "merge": _cmd_merge, "check": _cmd_check,
               "figures": _cmd_figures, "demo": _cmd_demo,
               "list": _cmd_list}[args.command]
    previous = None
    if args.command in ("run", "sweep") and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return handler(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:  # bad input, missing file or extra
        print(f"collapse-theory {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # results are written atomically: nothing half-written is left behind
        if args.command == "sweep":
            what = "the cells finished so far are written and listed in index.json; --resume continues"
        else:
            kept = getattr(args, "checkpoint_path", None)
            what = "no result file written" + (
                f" (the checkpoint {str(kept)!r} is kept: --resume continues)" if kept is not None and kept.exists()
                else "")
        print(f"\ncollapse-theory {args.command}: {'terminated' if isinstance(err, Terminated) else 'interrupted'}; "
              f"{what}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except BrokenPipeError:  # `collapse-theory list | head`: the reader left; end quietly, as `ls | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # a file system error after the checks (a full disk, a vanished folder)
        print(f"collapse-theory {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

