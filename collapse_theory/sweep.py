r"""Parameter sweeps: a grid of :func:`~collapse_theory.simulate.simulate` runs from a small TOML or JSON spec.

Spec (every value may be a list; lists are grid axes and the grid is their Cartesian product)::

    model = "gaussian"                 # gaussian | regression | categorical | gmm | kde | ngram | vae
    regime = ["replace", "accumulate"] # names of collapse_theory.regimes.REGIMES
    path = "exact"
    num_chains = 4096
    num_generations = 100
    num_samples = [10, 100]
    seeds = [0, 1]                     # or seed = 0
    quantiles = [0.05, 0.5, 0.95]      # optional; also metrics, trajectories, chunk_size,
                                       # stop_when_absorbed, compact (categorical runs until collapse),
                                       # fast_compile (simulate.FAST_COMPILE: for grids of short runs)
    [model_options]                    # keyword arguments of the model class
    dim = [1, 4]
    ddof = 1
    [regime_options]                   # keyword arguments of the regime class (e.g. gamma for fresh-fraction)

``ngram`` and ``vae`` cells are built by :mod:`collapse_theory.setups` (``setups.ngram(seed, **model_options)``,
``setups.vae(seed, **model_options)``: the same simulation as ``collapse-theory run`` with the same options), so
their ``model_options`` also take the set-up's own keys (``grammar`` as a table, ``num_reference``; ``images``,
``num_real``, ``classifier_steps``, ``gate_threshold``), and they accept ``gate`` (``"none"`` or a gate name of
the set-up, e.g. ``gate = ["none", "grammar", "facts"]``) and ``gate_retries``: the regime is wrapped in
:class:`~collapse_theory.regimes.Gate`.

Each other cell's truth is the model's ``params()``: for ``gmm`` equal weights, means 0 and identity covariances
(Shumailov et al.'s setting), for ``kde`` its default dataset (``Blobs()``; set ``capacity`` to the rows the regime
hands a fit, ``models.kde.capacity_for``).

``path`` defaults to ``"sample"``, as in :func:`~collapse_theory.simulate.simulate`: give ``path = "exact"`` for
the Gaussian, categorical and regression families, or their cells run the slower sample-level path, or
``path = "auto"``, which picks for each cell what ``collapse-theory run`` picks: the exact path where the model and
the regime have one, else the sample path (a grid over ``regime = ["replace", "accumulate-subsample"]`` then runs
each regime on its fastest path). The index records the path each cell ran.

``quantiles``, ``metrics`` and the ``*_options`` tables are taken as given (a list there is a value, not an
axis), except that list values *inside* ``model_options`` / ``regime_options`` are axes. A cell of explicit
per-generation sizes (:class:`~collapse_theory.schedules.Explicit`) is a list inside the ``num_samples`` axis:
``num_samples = [[10, 20, 30], 5]`` is one cell with M_t = 10, 20, 30 and one with M = 5.

Output: one result file per cell (``cell_0000.npz`` + ``.json``) and ``index.json`` listing every cell's parameters,
file and status (rewritten atomically after each cell). Cells that share a compiled program — same model, regime,
path, chain count, generations and, on the sample path, sample sizes; seeds and (exact path) sample sizes are
run-time arguments — are run back to back in one *group*, so each group compiles once; the index records each
group's number of compilations. ``run_sweep(..., workers=N)`` (``--workers N``) runs the groups in N processes side
by side (this one and N - 1 spawned workers, each on its own share of the CPUs), the largest first; a script that
calls it needs the usual ``if __name__ == "__main__":`` guard (workers are started with ``spawn``). With ``resume``
a cell whose result file exists is skipped, provided the ``.npz`` itself records the same cell parameters and x64
setting (otherwise ``ValueError``: a changed spec never keeps stale cells); cell files beyond this spec's cells (an
earlier, larger grid in the same folder) are named in a warning and in the index's ``unlisted_files``.
``trajectories``, ``stop_when_absorbed``, ``compact`` and ``x64`` must be booleans (the string ``"false"`` would
count as true); a grid that repeats a cell is refused (pooled cells would count that run twice); a spec's ``x64``
must match JAX's setting when :func:`run_sweep` is called from Python (the CLI sets it). Every cell's seed, model,
regime and sample sizes are checked before the first cell runs (the n-gram and VAE set-ups, which train a
classifier or draw a corpus, when their cell runs); errors name the cell. """

from __future__ import annotations

import contextlib
import itertools
import json
import warnings
import zipfile
from pathlib import Path

from .theory._validate import is_integer

_KEYS = ("model", "model_options", "regime", "regime_options", "path", "num_chains", "num_generations",
         "num_samples", "seed", "seeds", "metrics", "quantiles", "trajectories", "chunk_size", "x64",
         "stop_when_absorbed", "compact", "gate", "gate_retries", "fast_compile")
_AS_VALUE = ("metrics", "quantiles", "x64")
_FLAGS = ("trajectories", "stop_when_absorbed", "compact", "x64", "fast_compile")  # true or false, nothing else


def _model_classes():
    from . import setups
    from .models import Categorical, Gaussian, GaussianMixture, KernelDensity, LinearRegression

    return {"gaussian": Gaussian, "regression": LinearRegression, "categorical": Categorical,
            "gmm": GaussianMixture, "kde": KernelDensity, "ngram": setups.ngram, "vae": setups.vae}


_SETUPS = ("ngram", "vae")
"""Models built with their data by :mod:`collapse_theory.setups` (a function of the seed, not a class)."""


def load_spec(path) -> dict:
    """Read a ``.toml`` or ``.json`` sweep spec."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"spec={str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
            import tomli as tomllib

        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"spec={str(path)!r} is not valid TOML: {err}") from None
    elif path.suffix == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"spec={str(path)!r} is not valid JSON: {err}") from None
    else:
        raise ValueError(f"spec={str(path)!r} has suffix {path.suffix!r}: need .toml or .json")
    return spec


def _axes(spec: dict):
    """Grid axes ``[(location, values)]`` where location is ``(key,)`` or ``(table, key)``."""
    axes = []
    for key, value in spec.items():
        if key in ("model_options", "regime_options"):
            if not isinstance(value, dict):
                raise ValueError(f"{key}={value!r} must be a table of keyword arguments")
            axes += [((key, k), v) for k, v in value.items() if isinstance(v, list)]
        elif key in _AS_VALUE:
            continue
        elif isinstance(value, list):
            axes.append(((key,), value))
    for location, values in axes:
        if not values:
            raise ValueError(f"{'.'.join(location)}=[] is out of range: a grid axis needs at least one value")
    return axes


def expand(spec: dict) -> list[dict]:
    """The cells of the grid: one flat dict of settings per cell (``seeds`` becomes ``seed``)."""
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ValueError(f"spec keys {unknown} are not allowed; allowed: {list(_KEYS)}")
    for required in ("model", "num_chains", "num_generations", "num_samples"):
        if required not in spec:
            raise ValueError(f"spec needs {required!r}")
    if "seed" in spec and "seeds" in spec:
        raise ValueError("spec: give seed or seeds, not both")
    if "x64" in spec and not isinstance(spec["x64"], bool):
        raise ValueError(f"x64={spec['x64']!r} is not a boolean: write true or false (a string such as \"false\" "
                         f"would count as true)")
    base = {k: v for k, v in spec.items() if k != "seeds"}
    base.setdefault("seed", spec.get("seeds", 0))
    axes = _axes(base)
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        cell = json.loads(json.dumps(base))
        for (location, _), value in zip(axes, combo, strict=True):
            if len(location) == 1:
                cell[location[0]] = value
            else:
                cell[location[0]][location[1]] = value
        cells.append(cell)
    return cells


def _build(cell: dict):
    """``(model, regime, simulate keyword arguments, data description or None)`` of one cell."""
    from . import regimes

    models = _model_classes()
    if cell["model"] not in models:
        raise ValueError(f"model={cell['model']!r} is not one of {sorted(models)}")
    if cell.get("regime", "replace") not in regimes.REGIMES:
        raise ValueError(f"regime={cell.get('regime')!r} is not one of {sorted(regimes.REGIMES)}")
    regime = regimes.REGIMES[cell.get("regime", "replace")](**cell.get("regime_options", {}))
    gate = cell.get("gate", "none")
    if cell["model"] not in _SETUPS:
        if gate != "none" or "gate_retries" in cell:
            raise ValueError(f"gate={gate!r}: gates apply to the models {list(_SETUPS)}, not {cell['model']!r}")
        return models[cell["model"]](**cell.get("model_options", {})), regime, {}, None
    setup = models[cell["model"]](int(cell["seed"]), gate=None if gate == "none" else gate,
                                  **cell.get("model_options", {}))
    if setup.gate is not None:
        regime = regimes.Gate(regime, setup.gate, retries=int(cell.get("gate_retries", 0)))
    elif "gate_retries" in cell:
        raise ValueError("gate_retries needs a gate")
    return setup.model, regime, setup.simulate_kwargs(), setup.note


def _group_key(cell: dict) -> str:
    shape = {k: cell.get(k) for k in ("model", "model_options", "regime", "regime_options", "path", "num_chains",
                                      "num_generations", "metrics", "quantiles", "trajectories", "chunk_size",
                                      "stop_when_absorbed", "compact", "gate", "gate_retries", "fast_compile")}
    if cell.get("path", "sample") == "sample":
        shape["num_samples"] = cell["num_samples"]
    return json.dumps(shape, sort_keys=True)


@contextlib.contextmanager
def _cell_context(index: int, cell: dict):
    """Re-raise a cell's ValueError or TypeError with the cell's index and parameters in front."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise ValueError(f"cell {index} {json.dumps(cell, sort_keys=True, default=str)}: {err}") from err


def _prepare_cells(cells: list[dict]) -> None:
    """The checks that cost nothing, for every cell up front: seeds, model and regime construction, schedule sizes
    against the model's minimum (models of the language-model and VAE set-ups are built when their cell runs).
    Also replaces ``path = "auto"`` by the path the cell runs: ``exact`` where the model and the regime have one, as
    ``collapse-theory run`` picks it, else ``sample`` (the n-gram and VAE set-ups have no exact path)."""
    from .models.base import has_exact_path
    from .schedules import as_schedule

    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        with _cell_context(i, cell):
            seed = cell.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed={seed!r} is out of range: need an int seed")
            for flag in _FLAGS:
                if flag in cell and not isinstance(cell[flag], bool):
                    raise ValueError(f"{flag}={cell[flag]!r} is not a boolean: write true or false (a string such "
                                     f"as \"false\" would count as true)")
            same = seen.setdefault(json.dumps(cell, sort_keys=True), i)
            if same != i:
                raise ValueError(f"the grid repeats cell {same}: the same run twice would be counted twice when "
                                 f"the cells are pooled; remove the repeated axis value")
            if cell["model"] in _SETUPS:
                if cell.get("path") == "auto":
                    cell["path"] = "sample"
                continue
            model, regime, _, _ = _build(cell)
            sizes = as_schedule(cell["num_samples"]).sizes(int(cell["num_generations"]))
            if sizes.min() < getattr(model, "min_samples", 1):
                raise ValueError(f"num_samples={int(sizes.min())} is out of range: this model needs num_samples >= "
                                 f"{model.min_samples}")
            if hasattr(regime, "check_sizes"):
                regime.check_sizes(sizes)
            if cell.get("path") == "auto":
                cell["path"] = "exact" if has_exact_path(model) and regime.exact else "sample"


def _cell_fingerprint(cell: dict) -> str:
    """What a kept cell file must match on ``resume``: the cell's parameters and the x64 setting."""
    import jax

    from . import io as _io

    return json.dumps({"params": _io.to_jsonable(cell), "x64": bool(jax.config.jax_enable_x64)}, sort_keys=True)


def _check_kept(path: Path, cell: dict, index: int) -> list[str]:
    """Refuse to keep a cell file that another spec (or x64 setting) wrote: resuming must not mix runs. The record
    read is the one inside the ``.npz`` (the data's own): the ``.json`` sidecar is written after it, so an
    interruption between the two writes can leave a sidecar of the previous run beside new data. Returns the
    warnings the kept run recorded."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            metadata = json.loads(str(f["meta"]))["metadata"]
        saved = metadata.get("sweep_params")
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        metadata, saved = {}, None
    want = _cell_fingerprint(cell)
    if saved != want:
        raise ValueError(
            f"resume: {path.name} (cell {index}) was written for other parameters than this spec's cell {index} "
            f"({'no record in ' + path.name if saved is None else 'recorded ' + saved}; this spec: {want}); "
            f"use another --out folder, or delete the stale cell files to recompute them")
    return list(metadata.get("warnings", []))


def _group_cost(cells: list[dict], members: list[int]) -> float:
    """A rough estimate of a group's work, used only to start the largest groups first when ``workers > 1``:
    chains × generations × (the largest sample size × d² on the sample path, d³ on the exact path) per cell."""
    from .schedules import as_schedule

    cell = cells[members[0]]
    dim = cell.get("model_options", {}).get("dim", 1)
    dim = int(dim) if is_integer(dim) else 1
    gens = int(cell["num_generations"])
    if cell.get("path", "sample") == "sample":
        per = float(as_schedule(cell["num_samples"]).sizes(gens).max()) * dim**2
    else:
        per = float(dim) ** 3
    return len(members) * float(cell["num_chains"]) * gens * per


def _cell_warnings(i: int, caught) -> list[str]:
    """The warnings a cell raised, as ``"Category: message"`` for its index entry and result file. Each is raised
    again here, prefixed with the cell, except :class:`~collapse_theory.models.gaussian.SingularFitWarning`, which
    a grid across M = d raises in many cells by design: :func:`run_sweep` counts those in one line instead."""
    from .models.gaussian import SingularFitWarning

    out = []
    for w in caught:
        out.append(f"{w.category.__name__}: {w.message}")
        if not issubclass(w.category, SingularFitWarning):
            warnings.warn(f"cell {i}: {w.message}", w.category, stacklevel=3)
    return out


def _run_cell(i: int, cell: dict, out_dir: Path, *, resume: bool, progress: bool, devices,
              compiler_options: dict | None = None) -> dict:
    """Run cell ``i`` (or keep its file on ``resume``) and return its index entry (without the group);
    ``compiler_options`` are added to the cell's own (``fast_compile``)."""
    from .simulate import FAST_COMPILE, simulate

    options = {**(FAST_COMPILE if cell.get("fast_compile", False) else {}), **(compiler_options or {})}

    path = out_dir / f"cell_{i:04d}.npz"
    entry = {"index": i, "file": path.name, "params": cell}
    if resume and path.exists():
        kept = _check_kept(path, cell, i)
        if kept:
            entry["warnings"] = kept
        entry["status"] = "done (kept)"
        return entry
    with _cell_context(i, cell), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, regime, data, note = _build(cell)
        res = simulate(
            int(cell["seed"]), model, regime, num_chains=cell["num_chains"],
            num_generations=cell["num_generations"], num_samples=cell["num_samples"],
            path=cell.get("path", "sample"), metrics=cell.get("metrics"),
            quantiles=tuple(cell.get("quantiles", (0.05, 0.25, 0.5, 0.75, 0.95))),
            trajectories=bool(cell.get("trajectories", False)), chunk_size=cell.get("chunk_size"),
            progress=progress, devices=devices,
            stop_when_absorbed=bool(cell.get("stop_when_absorbed", False)),
            compact=bool(cell.get("compact", False)),
            compiler_options=options or None, **data,
        )
    raised = _cell_warnings(i, caught)
    if raised:
        res.metadata["warnings"] = raised
        entry["warnings"] = raised
    if note is not None:
        res.metadata["truth"] = note
    res.metadata["command"] = "sweep"
    res.metadata["sweep_cell"] = i
    res.metadata["sweep_params"] = _cell_fingerprint(cell)
    res.save(path)
    entry["status"] = "done"
    entry["wall_time_s"] = res.metadata.get("wall_time_s")
    return entry


def _compiled_programs() -> int:
    """Programs compiled so far in this process: jit's cache of the scan, and those compiled ahead of time with
    ``compiler_options`` (``fast_compile``)."""
    from .simulate import _COMPILED, _run_chunk

    return _run_chunk._cache_size() + len(_COMPILED)


_WORKER_CONFIG = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
                  "jax_default_matmul_precision", "jax_enable_compilation_cache", "jax_compilation_cache_dir",
                  "jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")
"""JAX settings a worker process takes from the parent (a spawned process starts from JAX's defaults): those that
change results (x64, the PRNG implementation and its Threefry mode, matmul precision), so that a cell gives the
same result with workers as without, and the persistent compilation cache that ``collapse-theory`` configures,
so that a second sweep of the same grid loads its programs instead of compiling them again."""


def _jax_settings() -> dict:
    import jax

    return {name: getattr(jax.config, name) for name in _WORKER_CONFIG}


_WORKER_COMPILE = {"xla_cpu_parallel_codegen_split_count": 1}
"""Compiler options of every program a sweep with ``workers > 1`` compiles: XLA:CPU code generation on one
thread. By default XLA:CPU splits a program's code into 32 parts that it compiles on a thread pool, which shortens
one process's compile on idle cores but costs CPU time in all; with ``workers > 1`` the processes already keep
every core busy, so that CPU time is taken from the others (measured on 2 cores, the Kazdan Gaussian grid swept with
``workers=2`` from an empty compilation cache: 71.1 and 71.7 s against 75.2 and 78.4 s, the cells' wall times
summing to 137 s against 144–150 s, the results the same bit for bit)."""


def _worker_group(members: list[int], cells: list[dict], out_dir: Path, resume: bool, settings: dict):
    """One group's cells, back to back (they share one compiled program), under the
    parent's JAX ``settings`` (:func:`_jax_settings`) and :data:`_WORKER_COMPILE`; returns ``(entries, compiled
    programs, the CPUs this process ran on)``."""
    import os

    import jax

    for name, value in settings.items():
        if getattr(jax.config, name) != value:
            jax.config.update(name, value)
    before = _compiled_programs()
    entries = [_run_cell(i, cells[i], out_dir, resume=resume, progress=False, devices=None,
                         compiler_options=_WORKER_COMPILE) for i in members]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return entries, _compiled_programs() - before, cpus


def _cpu_shares(processes: int) -> list[set[int]] | None:
    """The CPUs this process may run on, dealt round-robin into ``processes`` disjoint shares, one per sweep
    process; ``None`` (no pinning) for one process, for fewer CPUs than processes, and off Linux, where a thread's
    CPUs cannot be set."""
    import os
    import sys

    if processes < 2 or not sys.platform.startswith("linux"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < processes:
        return None
    return [set(cpus[i::processes]) for i in range(processes)]


def _pin_threads(cpus: set[int], masks: dict[int, set[int]] | None = None) -> None:
    """Put every thread of this process on ``cpus``, or each on its own CPUs in ``masks`` (threads it does not
    name: on ``cpus``). A thread that ends meanwhile is skipped."""
    import os

    for tid in _thread_ids():
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            os.sched_setaffinity(tid, (masks or {}).get(tid, cpus))


def _thread_ids() -> list[int]:
    """The ids of this process's threads (Linux)."""
    import os

    return [int(name) for name in os.listdir("/proc/self/task")]


@contextlib.contextmanager
def _threads_pinned(cpus: set[int] | None):
    """Every thread of this process, XLA's thread pool included, on ``cpus`` until the block ends; then each back
    on the CPUs it had (threads started meanwhile: those of the process). ``None``: nothing is pinned."""
    if cpus is None:
        yield
        return
    import os

    _start_backend()
    before = os.sched_getaffinity(0)
    masks = {}
    for tid in _thread_ids():
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            masks[tid] = os.sched_getaffinity(tid)
    _pin_threads(cpus)
    try:
        yield
    finally:
        _pin_threads(before, masks)


def _start_backend() -> None:
    """Start JAX's backends with this process's CPUs unpinned. XLA:CPU sizes its thread pool by the CPUs the process
    may use when the backend starts, and a large matrix product rounds differently with another pool size (the
    Kazdan grid's d = 100, M = 1000 Gram matrix, measured): started first, every sweep process has the pool an
    unpinned run has, and the results of one."""
    import jax

    jax.devices()


def _pin_worker(shares: list[set[int]], taken) -> None:
    """A spawned worker's initializer: start its JAX backend (:func:`_start_backend`), then run on the next CPU
    share not ``taken`` yet (``taken``: a shared counter)."""
    _start_backend()
    with taken.get_lock():
        i = taken.value
        taken.value += 1
    if i < len(shares):
        _pin_threads(shares[i])


def _check_workers(workers, devices) -> int:
    if not is_integer(workers) or workers < 1:  # NumPy integers too (a grid built with NumPy), not bools
        raise ValueError(f"workers={workers!r} is out of range: need an int >= 1")
    workers = int(workers)
    if workers > 1 and devices is not None:
        raise ValueError(f"workers={workers} with devices={devices!r}: each worker process would shard its cells over "
                         f"the same devices; use workers=1 to shard, or devices=None to run groups side by side")
    return workers


def _run_groups_side_by_side(workers: int, members_of: list[list[int]], cells: list[dict], out_dir: Path,
                             resume: bool, record_cell, record_group, pin_cpus: bool = True) -> None:
    """Run the compile groups in ``min(workers, groups)`` processes: this one, on the calling thread, and the others
    spawned. Each takes the next group, largest estimated work first (:func:`_group_cost`), when it is free. This
    process already has JAX imported and starts at once, where a spawned worker spends a few seconds starting
    Python and importing JAX first. The calling thread runs its groups under its own JAX settings (a
    ``with jax.enable_x64(True):`` block included) and records every result; a helper thread only keeps the pool
    fed. An interrupt stops the group running here at once and cancels the groups not yet started; an error in a
    worker is raised when this process's current group ends. With ``pin_cpus`` each process runs on its own share
    of the CPUs (:func:`_cpu_shares`): the workers from their initializer (:func:`_pin_worker`), this one until its
    groups end (:func:`_threads_pinned`)."""
    import concurrent.futures
    import multiprocessing
    import os
    import queue
    import threading

    order = sorted(range(len(members_of)), key=lambda g: -_group_cost(cells, members_of[g]))
    settings = _jax_settings()
    lock = threading.Lock()

    def take():
        with lock:
            return order.pop(0) if order else None

    def record(g, result):
        group_entries, compiled, cpus = result
        record_group(g, compiled, cpus)
        for entry in group_entries:
            record_cell(g, entry)

    done: queue.Queue = queue.Queue()  # (group, result, exception) of the workers' groups; None when all are in
    spawned = min(workers, len(members_of)) - 1
    context = multiprocessing.get_context("spawn")
    shares = _cpu_shares(spawned + 1) if pin_cpus else None
    everywhere = os.sched_getaffinity(0) if shares is not None else None
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
            max_workers=spawned, mp_context=context, initializer=None if shares is None else _pin_worker,
            initargs=() if shares is None else (shares[1:], context.Value("i", 0))))
        stack.enter_context(_threads_pinned(None if shares is None else shares[0]))

        def feed():  # the helper thread: keep each worker busy, hand results to the calling thread
            pending: dict = {}
            try:
                if shares is not None:  # the workers it starts begin with every CPU (_start_backend), not this
                    os.sched_setaffinity(0, everywhere)  # process's share; this thread only
                while True:
                    while len(pending) < spawned and (g := take()) is not None:
                        pending[pool.submit(_worker_group, members_of[g], cells, out_dir, resume, settings)] = g
                    if not pending:
                        return
                    finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in finished:
                        g = pending.pop(future)
                        try:
                            done.put((g, future.result(), None))
                        except BaseException as err:  # noqa: BLE001 -- raised on the calling thread
                            done.put((g, None, err))
            except BaseException as err:  # noqa: BLE001 -- e.g. a broken pool refusing a group: raised there too
                done.put((None, None, err))
            finally:
                done.put(None)

        def record_done(block: bool) -> bool:
            """Record the workers' finished groups; False once the helper thread has handed over its last."""
            while True:
                try:
                    item = done.get(block=block)
                except queue.Empty:
                    return True
                if item is None:
                    return False
                g, result, err = item
                if err is not None:
                    raise err
                record(g, result)

        helper = threading.Thread(target=feed, name="sweep-pool-feeder", daemon=True)
        helper.start()
        try:
            feeding = True  # until the helper thread's final None is read (here or below)
            while (g := take()) is not None:
                record(g, _worker_group(members_of[g], cells, out_dir, resume, settings))
                feeding = feeding and record_done(block=False)
            if feeding:
                record_done(block=True)
        except BaseException:
            with lock:
                order.clear()  # no further group starts, here or in the pool
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        helper.join()


def run_sweep(spec, out_dir, *, devices=None, resume: bool = False, progress: bool = False, log=None,
              workers: int = 1, pin_cpus: bool = True) -> dict:
    """Run every cell of ``spec`` (a dict or a spec path); write ``out_dir/cell_XXXX.npz`` and ``index.json``.

    ``workers > 1`` runs the compile groups in that many processes side by side: this one and ``workers - 1``
    worker processes (started with ``spawn``: JAX does not survive ``fork``), each taking the next group, the
    groups with the most estimated work first; each cell's result is the same as with ``workers=1`` (a cell
    depends only on its own parameters and seed). On a CPU this helps grids of many compile-dominated cells: XLA
    compiles a program on one thread, so one process leaves the other cores idle while it compiles. Each worker
    process holds its own compiled programs and imports JAX once (a few seconds); it runs with the caller's JAX
    settings that change results (x64, PRNG implementation, matmul precision) and its persistent compilation cache
    (``collapse-theory`` keeps one, so a repeated sweep loads its programs in the workers too):
    :data:`_WORKER_CONFIG`. Every program compiles with :data:`_WORKER_COMPILE`. With ``pin_cpus`` (the default) and
    at least as many CPUs as processes (Linux), each process runs on its own share of this process's CPUs, dealt
    round-robin, and this process gets its CPUs back when the sweep ends; each group's CPUs are recorded in the
    index. Every process starts its JAX backend before it is pinned (:func:`_start_backend`), so results do not
    depend on the pinning. XLA:CPU runs a program's large operations on a thread per CPU it may use, and two
    processes whose threads share every CPU wait on each other (the Kazdan Gaussian grid with ``workers=2`` on 2
    cores, run alternately from empty caches: 54.9 and 57.6 s pinned against 57.9 and 62.1 s). Progress bars are
    shown only with ``workers=1``; ``log`` then reports each group's cells when the group finishes.

    Returns the index (also written to ``out_dir/index.json``).
    """
    import jax

    from . import io as _io

    workers = _check_workers(workers, devices)
    if not isinstance(spec, dict):
        spec = load_spec(spec)
    cells = expand(spec)
    if "x64" in spec:
        if spec["x64"] != bool(jax.config.jax_enable_x64):
            raise ValueError(f"the spec asks for x64={spec['x64']} but JAX runs with jax_enable_x64="
                             f"{bool(jax.config.jax_enable_x64)}: set it first (jax.config.update('jax_enable_x64', "
                             f"{spec['x64']})), or run the spec with `collapse-theory sweep`, which sets it")
    _prepare_cells(cells)  # every cell's cheap checks before the first one runs, and each cell's path
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        groups.setdefault(_group_key(cell), []).append(i)
    members_of = list(groups.values())
    index = {"spec": spec, "cells": [], "groups": []}
    # cell files of an earlier, larger spec in the same folder: not this sweep's (named so a glob does not mix them)
    unlisted = sorted(p.name for p in out_dir.glob("cell_*.npz")
                      if not (p.stem[5:].isdigit() and int(p.stem[5:]) < len(cells)))
    if unlisted:
        index["unlisted_files"] = unlisted
        warnings.warn(f"out_dir={str(out_dir)!r} holds {len(unlisted)} cell file(s) this spec does not list "
                      f"({', '.join(unlisted[:3])}{', ...' if len(unlisted) > 3 else ''}): they are from another "
                      f"spec; index.json lists them under 'unlisted_files'", stacklevel=2)
    entries: list = [None] * len(cells)

    def write_index() -> None:
        index["cells"] = [e for e in entries if e is not None]
        _io.atomic_write_text(out_dir / "index.json", json.dumps(_io.to_jsonable(index), indent=2) + "\n")

    def record_cell(g: int, entry: dict) -> None:
        entries[entry["index"]] = {**entry, "group": g}
        write_index()
        if log is not None:
            log(f"cell {entry['index']}: {entry['status']} -> {entry['file']}")

    def record_group(g: int, compiled: int, cpus: list[int] | None = None) -> None:
        group = {"group": g, "cells": members_of[g], "compiled_programs": compiled}
        if cpus is not None:
            group["cpus"] = cpus
        index["groups"].append(group)
        index["groups"].sort(key=lambda item: item["group"])

    if workers == 1 or len(members_of) == 1:
        for g, members in enumerate(members_of):
            before = _compiled_programs()
            for i in members:  # the index is rewritten after each cell: an interrupted sweep lists what it wrote
                record_cell(g, _run_cell(i, cells[i], out_dir, resume=resume, progress=progress, devices=devices))
            record_group(g, _compiled_programs() - before)
    else:
        _run_groups_side_by_side(workers, members_of, cells, out_dir, resume, record_cell, record_group,
                                 pin_cpus=pin_cpus)
    from .models.gaussian import SingularFitWarning

    singular = [e["index"] for e in entries if e is not None
                and any(w.startswith(SingularFitWarning.__name__) for w in e.get("warnings", ()))]
    if singular:
        message = (f"{len(singular)} of {len(cells)} cells fit a Gaussian to M_t <= d points (cells "
                   f"{_ranges(singular)}): singular covariances by construction (det_ratio 0, log_det_ratio -inf, "
                   f"kl_truth_model +inf there); index.json lists each cell's 'warnings'")
        if log is not None:
            log(message)
        index["notes"] = [message]
    write_index()
    return index


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``"0-2, 5, 7-8"``."""
    parts, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            parts.append(f"{start}" if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)
