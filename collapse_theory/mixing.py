r"""Strong model collapse: one fit on a mix of real and label-shifted "synthetic" data, swept over sizes.

Dohmatob, Feng, Subramonian & Kempe, "Strong Model Collapse" (ICLR 2025); THEORY.md §5. Not a recursive chain:
each chain fits **once** on ``n1`` rows from the real distribution :math:`P_1` (weights :math:`w_1`, noise
:math:`\sigma_1`) and ``n2`` rows whose labels come from :math:`w_2 = w_1 + \delta` (noise :math:`\sigma_2`);
:math:`p_2 = n_2/n`. The test error is measured on :math:`P_1` as the excess risk :math:`\|\hat w - w_1\|_\Sigma^2`
(no σ²). The model is any :class:`~collapse_theory.models.LinearRegression` with a fresh design — including the
random-projections model (``model_size=m``, interpolation threshold at m = n).

Every cell of a sweep uses the exact sufficient-statistic sampler (O(d²) random numbers per chain whatever n is),
so a sweep over n from 10² to 10⁶ costs the same per cell; one compiled program serves every (n1, n2).
Keys: chain c draws its real rows from ``derive_key(seed, c, 1, REAL)``, its shifted rows from
``derive_key(seed, c, 1, SAMPLE)`` and its own truth (projection S, random weights) from
``derive_key(seed, c, 0, TRUTH)`` — the same keys in every cell (common random numbers across the sweep, which
smooths curves without biasing any cell), and independent of the number of chains.

Examples:
  >>> from collapse_theory.models import LinearRegression
  >>> from collapse_theory.mixing import simulate_mixture
  >>> res = simulate_mixture(0, LinearRegression(dim=20), num_real=[180, 900], num_synth=[20, 100],
  ...                        shift_norm_sq=1.0, num_chains=256)
  >>> res.mean("excess_risk").shape
  (2,)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import io as _io
from .keys import METRIC, REAL, SAMPLE, TRUTH, derive_key, root_key
from .regimes import _mask
from .simulate import compiled_call

_COMPILED: dict = {}
"""Programs compiled ahead of time with ``compiler_options``."""


@dataclasses.dataclass
class MixtureResult:
    """Per-cell summaries over chains: ``summary[metric] = {"mean": (cells,), "sd": (cells,)}``."""

    num_real: np.ndarray
    num_synth: np.ndarray
    summary: dict
    config: dict
    metadata: dict

    @property
    def num_chains(self) -> int:
        return int(self.config["num_chains"])

    @property
    def p2(self) -> np.ndarray:
        return self.num_synth / (self.num_real + self.num_synth)

    def mean(self, metric: str) -> np.ndarray:
        return self.summary[metric]["mean"]

    def se(self, metric: str) -> np.ndarray:
        return self.summary[metric]["sd"] / math.sqrt(self.num_chains)

    def save(self, path) -> None:
        """Write the result as JSON, atomically (strict JSON: a non-finite mean or SD is ``null``)."""
        payload = {
            "num_real": self.num_real, "num_synth": self.num_synth, "summary": self.summary,
            "config": self.config, "metadata": self.metadata,
        }
        _io.atomic_write_text(path, json.dumps(_io.finite_jsonable(payload), indent=2, sort_keys=True,
                                                allow_nan=False) + "\n")


@functools.partial(jax.jit, static_argnames=("model", "rows"))
def _run(model, rows, root, chains, n_real, n_synth, truth, shift, synth_noise_sd):
    def one_chain(c, n1, n2):
        own = model.chain_truth(derive_key(root, c, 0, TRUTH), truth)
        shifted = own._replace(weights=own.weights + shift, noise_sd=synth_noise_sd)
        k_real, k_synth = derive_key(root, c, 1, REAL), derive_key(root, c, 1, SAMPLE)
        if rows is None:
            stats = model.combine_stats(
                model.sample_stats(k_real, own, n1), model.sample_stats(k_synth, shifted, n2)
            )
            fitted = model.fit_from_stats(stats, own)
        else:
            real, synth = model.sample(k_real, own, rows[0]), model.sample(k_synth, shifted, rows[1])
            data = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), real, synth)
            weights = jnp.concatenate([_mask(rows[0], n1), _mask(rows[1], n2)])
            fitted = model.fit(None, data, weights, own)
        values = model.metrics(fitted, own, derive_key(root, c, 1, METRIC))
        values["mean_shift"] = jnp.dot(fitted.weights - own.weights, shift)
        return values

    def one_cell(n1, n2):
        values = jax.vmap(one_chain, in_axes=(0, None, None))(chains, n1, n2)
        return {k: {"mean": jnp.mean(v), "sd": jnp.std(v, ddof=1)} for k, v in values.items()}

    return jax.lax.map(lambda a: one_cell(*a), (n_real, n_synth))


def simulate_mixture(
    key,
    model,
    *,
    num_real,
    num_synth,
    shift=None,
    shift_norm_sq=None,
    synth_noise_sd=None,
    num_chains: int,
    truth=None,
    path: str = "exact",
    chain_offset: int = 0,
    compiler_options: dict | None = None,
) -> MixtureResult:
    r"""Fit ``model`` once on ``num_real`` real plus ``num_synth`` shifted rows, for every cell of a sweep.

    Args:
      key: int seed (recorded) or a typed JAX key.
      model: a :class:`~collapse_theory.models.LinearRegression` with ``design="fresh"``; its ridge and
        ``model_size`` define the fitted model; ``truth.noise_sd`` (default the model's ``noise_sd``) is
        :math:`\sigma_1`.
      num_real, num_synth: ints or equal-length sequences (n1, n2) of the cells.
      shift: the label shift :math:`\delta = w_2 - w_1` (d,); or ``shift_norm_sq``: δ along the first axis with
        this squared norm.
      synth_noise_sd: :math:`\sigma_2` (default :math:`\sigma_1`).
      num_chains: independent chains per cell.
      truth: real parameters (default ``model.params()``).
      path: ``"exact"`` (sufficient statistics: O(d²) random numbers per chain whatever n is; the fit costs an
        eigendecomposition of a d × d, or m × m, matrix) or ``"sample"`` (draw the rows, max n1 + max n2 per
        chain, and fit them by SVD: cheaper when d or m exceeds n).
      chain_offset: the first chain's global id (chain ranges split over processes).
      compiler_options: XLA options for compiling the sweep's program, as in
        :func:`~collapse_theory.simulate.simulate` (:data:`~collapse_theory.simulate.FAST_COMPILE` where
        compiling dominates; it gains little here: the d = 100 program compiles in 2.3 s instead of 2.5 s).

    Returns:
      A :class:`MixtureResult` with the model's metrics (``excess_risk`` = :math:`\|\hat w - w_1\|_\Sigma^2`) and
      ``mean_shift`` :math:`\langle \hat w - w_1, \delta\rangle` (exactly :math:`p_2\|\delta\|^2` in expectation
      for OLS with n ≥ d).
    """
    start = time.time()
    if getattr(model, "design", None) != "fresh":
        raise ValueError("simulate_mixture needs a LinearRegression with design='fresh' (independent rows)")
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"num_chains={num_chains!r} is out of range: need an int num_chains >= 2")
    n_real = np.atleast_1d(np.asarray(num_real))
    n_synth = np.atleast_1d(np.asarray(num_synth))
    n_real, n_synth = np.broadcast_arrays(n_real, n_synth)
    for name, arr in (("num_real", n_real), ("num_synth", n_synth)):
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 0):
            raise ValueError(f"{name}={arr.tolist()} is out of range: need integers >= 0")
    if np.any(n_real + n_synth < 1):
        raise ValueError("every cell needs num_real + num_synth >= 1")
    d = model.dim
    if (shift is None) == (shift_norm_sq is None):
        raise ValueError("give exactly one of shift= (a (d,) vector) or shift_norm_sq= (a number >= 0)")
    if shift is None:
        if not (math.isfinite(shift_norm_sq) and shift_norm_sq >= 0):
            raise ValueError(f"shift_norm_sq={shift_norm_sq!r} is out of range: need a finite value >= 0")
        shift = np.zeros(d)
        shift[0] = math.sqrt(shift_norm_sq)
    shift = np.asarray(shift, dtype=np.float64)
    if shift.shape != (d,) or not np.all(np.isfinite(shift)):
        raise ValueError(f"shift has shape {shift.shape}: need a finite ({d},) vector")
    truth = model.params() if truth is None else truth
    synth_noise_sd = float(truth.noise_sd) if synth_noise_sd is None else synth_noise_sd
    if not (isinstance(synth_noise_sd, (int, float)) and math.isfinite(synth_noise_sd) and synth_noise_sd >= 0):
        raise ValueError(f"synth_noise_sd={synth_noise_sd!r} is out of range: need a finite value >= 0")
    seed = key if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else None
    root = root_key(int(seed)) if seed is not None else key
    dtype = jnp.zeros(()).dtype
    chains = chain_offset + jnp.arange(num_chains)
    if path not in ("exact", "sample"):
        raise ValueError(f"path={path!r} is not one of ('exact', 'sample')")
    rows = None if path == "exact" else (int(n_real.max()), int(n_synth.max()))
    args = (root, chains, jnp.asarray(n_real, dtype), jnp.asarray(n_synth, dtype),
            jax.tree.map(jnp.asarray, truth), jnp.asarray(shift, dtype), jnp.asarray(synth_noise_sd, dtype))
    out = compiled_call(_run, (model, rows), args, compiler_options, _COMPILED)
    summary = jax.tree.map(np.asarray, jax.device_get(out))
    config = {
        "model": type(model).__name__,
        "model_options": _io.options_of(model),
        "real_noise_sd": float(truth.noise_sd),
        "synth_noise_sd": synth_noise_sd,
        "shift": shift.tolist(),
        "num_chains": num_chains,
        "path": path,
        "chain_offset": chain_offset,
        "compiler_options": dict(compiler_options or {}),
        "test_error": "excess risk ||w_hat - w_1||_Sigma^2 on the real distribution (noise floor not included)",
    }
    return MixtureResult(n_real, n_synth, summary, config,
                         _io.collect_metadata(seed=seed, wall_time_s=time.time() - start))
