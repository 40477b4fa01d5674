r"""Checkpoints of long runs: resume a killed :func:`~collapse_theory.simulate.simulate` bit for bit.

A checkpoint is one ``.npz`` file (written atomically: temporary file + rename, :mod:`collapse_theory.io`) that
holds everything the host loop needs to continue after generation :math:`t`:

* ``state/<i>``: the leaves of every chain's carry (parameters and the regime's buffer or pooled statistics), in
  ``jax.tree`` order, axis 0 = chain;
* ``out/...``: the per-generation outputs of generations ``1..t`` (summaries and, if requested, trajectories);
* ``meta``: JSON with ``t_done``, a *fingerprint* of the run (model, regime, sizes, chains, offset, seed, x64,
  metrics, quantiles, trajectories, truth, real data and reference), the *origin* of the file (package version,
  git description, JAX/NumPy/SciPy versions) and the *run record* so far (wall time over every segment, the
  generation at which every chain was absorbed, the XLA ``compiler_options``).

Since every key is a function of (seed, chain, generation, purpose) and nothing else is carried, the state after
generation :math:`t` is all a resumed run needs: resumed and uninterrupted runs agree bit for bit, whatever the
chunk size of either (and, in float64, their device counts: float32 runs on other device counts can differ by a
few ulps, see ``simulate``). A resumed run refuses a checkpoint whose fingerprint differs, or whose outputs do not
match its ``t_done``; one written by other code, library versions or XLA ``compiler_options`` (which can change
the last bits of float results, not their law) is resumed with a warning, and the result's
``metadata["resumed_from"]`` records that origin and those options. ``simulate`` refuses ``snapshots`` with a
checkpoint (earlier generations' parameters are not kept).

Because each write replaces the file in one rename, a kill (or Ctrl-C) at any moment leaves either the previous
checkpoint or the new one, never a truncated file.
"""

from __future__ import annotations

import functools
import io as _pyio
import json
import zipfile
from pathlib import Path

import numpy as np

from . import io as _io

FORMAT = "collapse_theory.checkpoint/1"


def checkpoint_path(path) -> Path:
    """The checkpoint file: ``path`` itself when it ends in ``.npz``, else ``path`` with ``.npz`` appended
    (``run.ckpt`` -> ``run.ckpt.npz``; replacing the suffix made ``run.ckpt`` the result file ``run.npz``)."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def fingerprint(config: dict, *, seed: int, x64: bool, metrics, quantiles, trajectories: bool) -> dict:
    """What must match for a checkpoint to be resumed (JSON-ready)."""
    keep = {k: v for k, v in config.items() if k not in ("compiler_options", "devices", "pad_chains")}
    return _io.to_jsonable({"config": keep, "seed": seed, "x64": bool(x64),
                            "metrics": None if metrics is None else list(metrics),
                            "quantiles": list(quantiles), "trajectories": bool(trajectories)})


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for name, value in flat.items():
        node = out
        parts = name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


ORIGIN_KEYS = ("collapse_theory", "git", "jax", "jaxlib", "numpy", "scipy")


def origin() -> dict:
    """The code that wrote a checkpoint: package version, git description and library versions."""
    return dict(_origin())


@functools.lru_cache(maxsize=1)
def _origin() -> tuple:
    meta = _io.collect_metadata()
    return tuple((k, meta[k]) for k in ORIGIN_KEYS)


def save_checkpoint(path, *, fingerprint: dict, t_done: int, state_leaves, outputs, run: dict | None = None) -> Path:
    """Write a checkpoint after generation ``t_done`` (``outputs``: nested dict of arrays, axis 0 = generation).

    ``run`` is the run's record so far, carried into the resumed result's metadata: ``wall_time_s`` (seconds
    spent up to this checkpoint, over every earlier segment), ``absorbed_at_generation`` and the
    ``compiler_options`` the generations so far were compiled with (they can change the last bits, not the law,
    so a resumed run with other options warns instead of refusing)."""
    path = checkpoint_path(path)
    arrays: dict[str, np.ndarray] = {}
    for i, leaf in enumerate(state_leaves):
        arrays[f"state/{i}"] = np.asarray(leaf)
    if outputs is not None:
        _io._flatten("out", outputs, arrays)
    meta = {"format": FORMAT, "t_done": int(t_done), "num_state_leaves": len(state_leaves),
            "fingerprint": fingerprint, "origin": origin(), "run": _io.to_jsonable(run or {})}
    buf = _pyio.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    _io.atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(path) -> dict:
    """Inverse of :func:`save_checkpoint`: ``{"t_done", "fingerprint", "state_leaves", "outputs", "origin",
    "run"}`` (``run`` is ``{}`` for a checkpoint written without one)."""
    path = checkpoint_path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            fmt = meta.get("format")
            if fmt == FORMAT:
                leaves = [f[f"state/{i}"] for i in range(meta["num_state_leaves"])]
                flat = {name[len("out/"):]: f[name] for name in f.files if name.startswith("out/")}
    except (OSError, KeyError, EOFError, ValueError, TypeError, zipfile.BadZipFile) as err:
        raise ValueError(f"checkpoint={str(path)!r} is not a readable checkpoint: {err}") from err
    if fmt != FORMAT:
        raise ValueError(f"checkpoint={str(path)!r} has format={fmt!r}: expected {FORMAT!r}")
    outputs = _unflatten(flat) if flat else None
    _check_outputs(outputs, int(meta["t_done"]), bool(meta["fingerprint"].get("trajectories")), path)
    return {"t_done": int(meta["t_done"]), "fingerprint": meta["fingerprint"], "state_leaves": leaves,
            "outputs": outputs, "origin": meta.get("origin"), "run": meta.get("run") or {}}


def _check_outputs(outputs, t_done: int, trajectories: bool, path) -> None:
    """The outputs of a checkpoint hold ``t_done`` rows, the summaries and, when the run keeps them, the
    trajectories of the same metrics (a file missing some would silently drop them from the result)."""
    import jax

    rows = {int(np.shape(leaf)[0]) for leaf in jax.tree.leaves(outputs)}
    if rows - {t_done} or (outputs is None) != (t_done == 0):
        raise ValueError(f"checkpoint={str(path)!r} is inconsistent: t_done={t_done} but its outputs have "
                         f"{sorted(rows) or 'no'} rows")
    if outputs is None:
        return
    summary = set(outputs.get("summary", {}))
    kept = set(outputs.get("trajectories", {}))
    if not summary or (trajectories and kept != summary) or (not trajectories and kept):
        raise ValueError(f"checkpoint={str(path)!r} is inconsistent: summaries of {sorted(summary)} and "
                         f"trajectories of {sorted(kept)} for a run with trajectories={trajectories}")


def check_fingerprint(saved: dict, current: dict, path) -> None:
    """Raise ``ValueError`` naming every field where a checkpoint and the requested run differ."""
    if saved == current:
        return
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"config.{k}: checkpoint {a.get(k)!r} vs run {b.get(k)!r}"
                      for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs run {b!r}")
    raise ValueError(f"checkpoint={str(path)!r} belongs to a different run; resume needs the same settings: "
                     + "; ".join(diffs))
