"""Shared helpers for the benchmarks: timing, environment record, atomic JSON, table printing, peak RSS.

Import this module before JAX/SciPy: it sets ``OPENBLAS_NUM_THREADS=1`` (unless already set), which OpenBLAS
needs when XLA calls LAPACK from several threads (see ``collapse_theory/__init__.py``).
"""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402


class CompileLog:
    """Sums JAX's compile-event durations (seconds) since the last :meth:`reset`."""

    EVENTS = {
        "/jax/core/compile/jaxpr_trace_duration": "trace_s",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
        "/jax/core/compile/backend_compile_duration": "backend_compile_s",
    }

    def __init__(self):
        import jax

        self.reset()
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def reset(self):
        self.totals = {v: 0.0 for v in self.EVENTS.values()}
        self.backend_compiles = 0
        self.run_chunk_compiles = 0

    def _listen(self, event, duration, **kwargs):
        name = self.EVENTS.get(event)
        if name is None:
            return
        self.totals[name] += float(duration)
        if name == "backend_compile_s":
            self.backend_compiles += 1
            if "_run_chunk" in str(kwargs.get("fun_name", "")):
                self.run_chunk_compiles += 1

    def snapshot(self) -> dict:
        out = dict(self.totals)
        out["compile_total_s"] = sum(self.totals.values())
        out["backend_compiles"] = self.backend_compiles
        out["run_chunk_compiles"] = self.run_chunk_compiles
        return out


def block(x):
    """Wait for every JAX array in ``x`` (no-op for NumPy and plain Python values)."""
    import jax

    return jax.block_until_ready(x)


def measure(
    fn: Callable[[], Any],
    *,
    warmup: bool = True,
    min_repeats: int = 3,
    max_repeats: int = 5,
    budget_s: float = 20.0,
    slow_s: float = 10.0,
) -> dict:
    """Time ``fn()`` with ``time.perf_counter`` after an optional warm-up call (which compiles JIT code).

    Repeats until ``min_repeats`` timed calls are done, stopping early (but after at least one) once the timed
    calls have used ``budget_s``, or after the first timed call when it took longer than ``slow_s`` (a slow item is
    timed once). Returns ``first_s`` (the warm-up call: compile + run), ``times_s``, ``best_s``, ``median_s``, and
    ``first_minus_best_s`` (a compile estimate, noisy for slow items; callers with a compile-event log record the
    measured compile time as ``compile_s``).
    """
    out: dict = {}
    if warmup:
        t0 = time.perf_counter()
        block(fn())
        out["first_s"] = time.perf_counter() - t0
    times: list[float] = []
    while len(times) < max_repeats:
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
        if len(times) >= min_repeats or sum(times) > budget_s or times[0] > slow_s:
            break
    out["times_s"] = times
    out["best_s"] = min(times)
    out["median_s"] = statistics.median(times)
    out["repeats"] = len(times)
    if warmup:
        out["first_minus_best_s"] = out["first_s"] - out["best_s"]
    return out


def measure_interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int = 7) -> dict:
    """Time several callables in alternating rounds (after one warm-up call each), so that a change in machine load
    during the run affects every one of them alike: round r times them in order, round r + 1 in reverse order.
    Returns, per name, ``times_s``, ``best_s``, ``median_s`` and ``repeats``; the ratio of two best times is then a
    side-by-side comparison in the strict sense."""
    for fn in fns.values():
        block(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            block(fns[name]())
            times[name].append(time.perf_counter() - t0)
    return {name: {"times_s": ts, "best_s": min(ts), "median_s": statistics.median(ts), "repeats": len(ts)}
            for name, ts in times.items()}


def environment() -> dict:
    """Device kind, backend, versions, x64, CPU count, load average: what a timing depends on."""
    import jax
    import jaxlib

    devices = jax.devices()
    env = {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else None,
        "device_count": len(devices),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import scipy

        env["scipy_version"] = scipy.__version__
    except ImportError:  # pragma: no cover
        pass
    return env


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)  # JSON has no inf/nan
    return obj


def write_json_atomic(path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``collapse_theory.io.atomic_write_text``: temp file + rename)."""
    from collapse_theory.io import atomic_write_text

    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def print_table(title: str, header: list[str], rows: list[list], note: str | None = None) -> None:
    """Print a plain fixed-width table (numbers already formatted as strings or formatted here)."""

    def fmt(v):
        if isinstance(v, str):
            return v
        if v is None:
            return "-"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1e5 or a < 1e-3:
            return f"{v:.3g}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}" if a < 1 else f"{v:.2f}"

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    print(f"\n== {title}")
    if note:
        for line in note.strip().splitlines():
            print(f"   {line}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    sys.stdout.flush()


def read_proc_status(keys=("VmHWM", "VmRSS")) -> dict[str, float]:
    """``VmHWM`` (peak resident set) and ``VmRSS`` of this process in MiB, from /proc/self/status (Linux)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in keys:
                    out[name] = int(rest.split()[0]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return out


def run_python_subprocess(code: str, timeout: float = 600.0) -> dict:
    """Run ``code`` in a fresh Python (same interpreter, same environment, this repo on PYTHONPATH); the code
    must print one JSON object on its last stdout line, which is returned."""
    env = dict(os.environ)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=repo
    )
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def extrapolate_iterations(times: list[float], iters: int) -> tuple[float, dict]:
    """Total time of ``iters`` iterations from the first ``len(times)``: exact when all were run; otherwise a
    least-squares line a + b t in the iteration index t (b >= 0: the pool grows linearly), summed to ``iters``."""
    k = len(times)
    if k >= iters:
        return float(sum(times[:iters])), {"method": "measured"}
    t = np.arange(1, k + 1, dtype=float)
    y = np.asarray(times)
    b, a = np.polyfit(t, y, 1) if k >= 2 else (0.0, y[0])
    b = max(b, 0.0)
    a = float(np.mean(y - b * t))
    total = float(iters * a + b * iters * (iters + 1) / 2)
    return total, {"method": f"linear fit a + b*t on {k} iterations", "a_s": a, "b_s": float(b)}
