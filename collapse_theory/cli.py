"""Command-line interface: ``collapse-theory run | check | figures | list``.

Arguments are parsed before JAX does any work, so ``--x64`` takes effect; JAX and SciPy are imported lazily.
``main(argv)`` returns an exit code and is testable in-process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

MODELS = ("gaussian",)
REGIME_NAMES = ("replace", "accumulate", "accumulate-subsample", "replace-grown", "fresh-fraction")
SCHEDULES = ("constant", "linear", "power")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="collapse-theory",
        description="Simulators of model collapse, checked against exact theory.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate chains and save .npz + .json results")
    run.add_argument("--model", choices=MODELS, default="gaussian")
    run.add_argument("--regime", choices=REGIME_NAMES, default="replace")
    run.add_argument("--path", choices=("sample", "exact"), default="exact",
                     help="exact: sufficient statistics (O(1) per generation); sample: draw and fit M samples")
    run.add_argument("--num-chains", type=int, default=1000)
    run.add_argument("--num-generations", type=int, default=100)
    run.add_argument("--num-samples", type=int, default=100, help="M (the first size for growing schedules)")
    run.add_argument("--schedule", choices=SCHEDULES, default="constant",
                     help="constant M; linear M + slope (t-1); power round(M t^exponent)")
    run.add_argument("--slope", type=int, default=1, help="linear schedule: increment per generation")
    run.add_argument("--exponent", type=float, default=1.5, help="power schedule: exponent")
    run.add_argument("--dim", type=int, default=1, help="Gaussian dimension d")
    run.add_argument("--ddof", type=int, choices=(0, 1), default=None,
                     help="0 = maximum likelihood (np.std), 1 = unbiased; required for the Gaussian")
    run.add_argument("--gamma", type=float, default=None, help="fresh-fraction regime: fraction of real data")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("results/run.npz"))
    run.add_argument("--x64", action="store_true", help="float64 (default float32)")
    run.add_argument("--trajectories", action="store_true", help="also save every chain's metrics (G x C)")
    run.add_argument("--chunk-size", type=int, default=None, help="generations per compiled chunk")
    run.add_argument("--no-progress", action="store_true")

    check = sub.add_parser("check", help="run the theorem checks and print theory vs simulation")
    check.add_argument("--quick", action="store_true", help="fewer chains: under a minute on 2 cores")
    check.add_argument("--json", type=Path, default=None, help="write the table as a list of records")
    check.add_argument("--family", action="append", default=None, help="only this family (repeatable)")
    check.add_argument("--name", action="append", default=None, help="only this check (repeatable)")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--z", type=float, default=4.0, help="a row passes when |z| <= this (default 4)")
    check.add_argument("--float32", action="store_true", help="run in float32 (default float64)")

    fig = sub.add_parser("figures", help="regenerate the figures from experiments/ into figures/")
    fig.add_argument("--quick", action="store_true")
    fig.add_argument("--out", type=Path, default=Path("figures"))
    fig.add_argument("--only", action="append", default=None, help="figure name (repeatable)")
    fig.add_argument("--experiments-dir", type=Path, default=None)

    sub.add_parser("list", help="list models, regimes, checks and figures")
    return p


def _configure_jax(x64: bool) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import jax

    jax.config.update("jax_enable_x64", bool(x64))
    cache = os.environ.get("COLLAPSE_THEORY_CACHE", str(Path.home() / ".cache" / "collapse_theory" / "jax"))
    if cache and cache != "0":
        try:
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        except Exception:  # noqa: BLE001 - a cache is an optimisation, never a requirement
            pass


def _cmd_run(args) -> int:
    _configure_jax(args.x64)
    from . import regimes, schedules
    from .models.gaussian import Gaussian
    from .simulate import simulate

    if args.ddof is None:
        raise SystemExit("collapse-theory run: --ddof is required for the Gaussian (0 = MLE, 1 = unbiased)")
    model = Gaussian(dim=args.dim, ddof=args.ddof)
    if args.regime == "fresh-fraction":
        if args.gamma is None:
            raise SystemExit("collapse-theory run: --regime fresh-fraction needs --gamma in (0, 1]")
        regime = regimes.FreshFraction(args.gamma)
    else:
        if args.gamma is not None:
            raise SystemExit(f"collapse-theory run: --gamma applies to --regime fresh-fraction, not {args.regime}")
        regime = regimes.REGIMES[args.regime]()
    if args.schedule == "constant":
        schedule = schedules.Constant(args.num_samples)
    elif args.schedule == "linear":
        schedule = schedules.Linear(args.num_samples, args.slope)
    else:
        schedule = schedules.PowerLaw(args.num_samples, args.exponent)
    res = simulate(
        args.seed, model, regime, num_chains=args.num_chains, num_generations=args.num_generations,
        num_samples=schedule, path=args.path, trajectories=args.trajectories, chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    res.metadata["command"] = "run"
    res.save(args.out)
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    g = res.generations[-1]
    print(f"wrote {out} and {out.with_suffix('.json')}  ({res.num_chains} chains x {g} generations, "
          f"x64={res.metadata['x64']}, {res.metadata['wall_time_s']:.1f} s)")
    names = [n for n in ("log_variance", "log_trace_ratio", "sq_mean_error", "w2_squared") if n in res.summary]
    for n in names:
        print(f"  final E {n} = {res.mean(n)[-1]:.6g} ± {res.se(n)[-1]:.2g} (SE)")
    return 0


def _cmd_check(args) -> int:
    _configure_jax(not args.float32)
    from . import checks
    from .io import atomic_write_text, collect_metadata, to_jsonable

    chosen = checks.select(args.name, args.family)
    rows = []
    for check in chosen:
        print(f"running {check.name} ...", file=sys.stderr, flush=True)
        rows += checks.run_check(check, quick=args.quick, seed=args.seed, z_max=args.z)
    print(checks.format_table(rows))
    failed = [r for r in rows if not r["passed"]]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed  (|z| <= {args.z}; "
          f"{len(chosen)} checks, quick={args.quick}, seed={args.seed})")
    if args.json is not None:
        meta = collect_metadata(seed=args.seed, quick=args.quick, z_max=args.z)
        for r in rows:
            r["metadata"] = meta
        atomic_write_text(args.json, json.dumps(to_jsonable(rows), indent=2, allow_nan=True) + "\n")
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
    _configure_jax(True)
    folder = _experiments_dir(args.experiments_dir)
    if not folder.is_dir():
        raise SystemExit(f"collapse-theory figures: no experiments folder at {folder} (use --experiments-dir)")
    experiments = _load_experiments(folder)
    names = args.only or sorted(experiments)
    unknown = sorted(set(names) - set(experiments))
    if unknown:
        raise SystemExit(f"collapse-theory figures: unknown figure(s) {unknown}; known: {sorted(experiments)}")
    status = 0
    for name in names:
        argv = ["--out", str(args.out)] + (["--quick"] if args.quick else [])
        print(f"== {name}", flush=True)
        status |= int(experiments[name].main(argv) or 0)
    return status


def _cmd_list(args) -> int:
    from . import checks

    print("models:   " + ", ".join(MODELS))
    print("regimes:  " + ", ".join(REGIME_NAMES))
    print("checks:")
    for c in checks.CHECKS.values():
        print(f"  {c.name:<44} [{c.family}] {c.reference}")
    folder = _experiments_dir(None)
    if folder.is_dir():
        print("figures:")
        for name, module in _load_experiments(folder).items():
            print(f"  {name:<44} {getattr(module, 'DESCRIPTION', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"run": _cmd_run, "check": _cmd_check, "figures": _cmd_figures, "list": _cmd_list}[args.command]
    try:
        return handler(args)
    except (ValueError, TypeError) as err:
        print(f"collapse-theory {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

