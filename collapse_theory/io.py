"""Result files: ``.npz`` arrays plus a human-readable ``.json`` sidecar, both written atomically.

Every file records the configuration, the integer seed, the package/JAX/NumPy/SciPy versions, the backend and
device, and whether x64 was on. Arrays use the axis order ``(generation, chain, ...)``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def to_jsonable(obj):
    """Convert dataclass dicts / NumPy scalars / tuples into JSON-ready values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def finite_jsonable(obj):
    """:func:`to_jsonable` with every NaN and infinity as ``None``: strict JSON, which has no token for them
    (``json.dumps`` would write ``NaN``, which strict parsers refuse). For tables of statistics, where a missing
    number (an empirical row's theory, the z of a non-finite simulation) reads as ``null``."""
    obj = to_jsonable(obj)
    if isinstance(obj, dict):
        return {k: finite_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


INLINE_ARRAY_SIZE = 16
"""Arrays of at most this many elements are written into :func:`options_of` in full; larger ones as a summary."""


def options_of(obj) -> dict:
    """The fields of a static model or regime (a dataclass) for a result file, JSON-ready.

    A nested dataclass (a regime inside :class:`~collapse_theory.regimes.Gate`, a grammar, a dataset) becomes
    ``{"type": its class name, **its fields}`` (its class is part of the configuration, even with no fields); an
    array of more than :data:`INLINE_ARRAY_SIZE` elements (a gate classifier's weights) becomes ``{"shape",
    "dtype", "sha256"}``, which identifies it without copying it into the sidecar. Not a dataclass: ``{}``.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return {}
    return {f.name: _option_value(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def describe(value):
    """``value`` (parameters, arrays, dataclasses) for a result's ``config``, JSON-ready: small arrays in full,
    larger ones as ``{"shape", "dtype", "sha256"}`` (:func:`options_of`'s rule)."""
    return _option_value(value)


def fingerprint(tree) -> list[dict]:
    """Every array leaf of ``tree`` as ``{"shape", "dtype", "sha256"}``, whatever its size (a dataset)."""
    import jax

    out = []
    for leaf in jax.tree.leaves(tree):
        array = np.ascontiguousarray(np.asarray(leaf))
        out.append({"shape": list(array.shape), "dtype": str(array.dtype),
                    "sha256": hashlib.sha256(array.tobytes()).hexdigest()[:16]})
    return out


def _option_value(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **options_of(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple (e.g. parameters)
        return {name: _option_value(v) for name, v in zip(value._fields, value, strict=True)}
    if isinstance(value, dict):
        return {str(k): _option_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_option_value(v) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, np.generic):
        array = np.asarray(value)
        if array.size > INLINE_ARRAY_SIZE:
            digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
            return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": digest}
        return array.tolist()
    return to_jsonable(value)


@functools.lru_cache(maxsize=1)
def _git_describe() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def collect_metadata(seed=None, **extra) -> dict:
    """Versions, backend, x64 flag, seed and time of a run."""
    import jax
    import scipy

    from . import __version__

    devices = jax.devices()
    meta = {
        "collapse_theory": __version__,
        "git": _git_describe(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", None),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "x64": bool(jax.config.jax_enable_x64),
        "prng": "threefry2x32",
        "seed": None if seed is None else int(seed),
        "argv": list(sys.argv),
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(to_jsonable(extra))
    return meta


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _flatten(prefix, tree, out):
    if tree is None:  # an absent optional field (a pytree node without leaves)
        return
    if isinstance(tree, dict):
        for k, v in tree.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(tree, (tuple, list)):
        for i, v in enumerate(tree):
            _flatten(f"{prefix}/{i}", v, out)
    else:
        out[prefix] = np.asarray(tree)


def save_result(result, path) -> None:
    """Save a :class:`~collapse_theory.simulate.SimulationResult` to ``path`` (.npz) + ``path.json``.

    Each file is written atomically; the ``.json`` is a readable copy of the ``meta`` record inside the ``.npz``,
    which is authoritative (an interruption between the two writes can leave an older sidecar, never a torn
    file; :func:`load_result` reads the ``.npz`` only)."""
    import io as _pyio

    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    arrays: dict[str, np.ndarray] = {}
    _flatten("summary", result.summary, arrays)
    if result.trajectories is not None:
        _flatten("trajectories", result.trajectories, arrays)
    params = result.final_params
    if hasattr(params, "_asdict"):
        params = params._asdict()
    _flatten("final_params", params, arrays)
    arrays["generations"] = np.asarray(result.generations)
    arrays["quantile_levels"] = np.asarray(result.quantile_levels)
    meta = {
        "config": result.config,
        "metadata": result.metadata,
        "quantile_levels": np.asarray(result.quantile_levels).tolist(),  # for readers of the JSON alone
        "dims": {"summary/*/mean": ["generation"], "summary/*/quantiles": ["generation", "quantile"],
                 "trajectories/*": ["generation", "chain"], "final_params/*": ["chain", "..."]},
    }
    for written in (path, path.with_suffix(".json")):  # checked before either file is written
        if written.is_dir():
            raise ValueError(f"path={str(path)!r} is out of range: {str(written)!r} is a folder, and a result writes "
                             f"that file")
    text = json.dumps(to_jsonable(meta), indent=2, sort_keys=True)
    buf = _pyio.BytesIO()
    np.savez_compressed(buf, meta=np.array(text), **arrays)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), text + "\n")


def load_result(cls, path):
    """Inverse of :func:`save_result` (final parameters come back as a dict of arrays); ``path`` may omit the
    ``.npz`` suffix, as in :func:`save_result`."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    with np.load(path, allow_pickle=False) as f:
        if "meta" not in f.files:
            raise ValueError(f"{str(path)!r} is not a collapse_theory result file (no 'meta' record; it holds "
                             f"{sorted(f.files)[:5]})")
        meta = json.loads(str(f["meta"]))
        summary: dict = {}
        trajectories: dict | None = None
        params: dict = {}
        for name in f.files:
            parts = name.split("/")
            if parts[0] == "summary":
                summary.setdefault(parts[1], {})[parts[2]] = f[name]
            elif parts[0] == "trajectories":
                trajectories = trajectories or {}
                trajectories[parts[1]] = f[name]
            elif parts[0] == "final_params":
                params["/".join(parts[1:])] = f[name]
        return cls(
            generations=f["generations"],
            summary=summary,
            quantile_levels=f["quantile_levels"],
            trajectories=trajectories,
            final_params=params,
            config=meta["config"],
            metadata=meta["metadata"],
        )
