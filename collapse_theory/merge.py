r"""Combine results of disjoint chain ranges into the result of one run over all of them.

Independent jobs ``simulate(seed, ..., num_chains=C_i, chain_offset=o_i)`` over contiguous, non-overlapping
ranges :math:`[o_i, o_i + C_i)` simulate exactly the chains of one run over :math:`[\min o_i, \max(o_i + C_i))`
(keys depend on the global chain id only). :func:`merge_results` checks that the inputs are such a partition
(same model, regime, sizes, seed, x64, metrics and quantile levels; ranges that tile an interval) and rebuilds the
summaries:

* **with trajectories** in every input (``trajectories=True``): the per-chain values are concatenated and every
  summary (mean, sd, quantiles) is recomputed by the engine's own reduction
  (:func:`collapse_theory.observables.pairwise_sum`): the merged result equals the single run **bit for bit** in
  float64 (in float32 the sd recomputed here can differ from the engine's in the last bits: the compiled
  program may contract ``(x - mean)²`` into fused multiply-adds);
* **without trajectories**: mean and sd are recombined from each input's sufficient moments — count
  :math:`n_i`, mean :math:`\bar x_i`, centred sum of squares :math:`M_i = (n_i-1)s_i^2` — by Chan et al.'s
  pairwise update

  .. math:: n = n_a + n_b,\quad \delta = \bar x_b - \bar x_a,\quad \bar x = \bar x_a + \delta\,n_b/n,\quad
            M = M_a + M_b + \delta^2 n_a n_b / n,\quad s^2 = M/(n-1),

  in float64: exact up to rounding (not an average of averages). Quantiles over chains cannot be recovered from
  per-range quantiles, so they are **dropped** (``quantile_levels`` is empty, and ``config["merge"]`` says why);
  rerun with ``trajectories=True`` when merged quantiles are needed.

References:
  T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise algorithm for computing sample
  variances", Stanford CS report STAN-CS-79-773 (1979).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

_FREE_CONFIG = ("num_chains", "chain_offset", "compiler_options", "devices", "pad_chains", "merge")


def _as_result(item):
    from .simulate import SimulationResult

    if isinstance(item, SimulationResult):
        return item, None
    path = Path(item)
    if not path.exists():
        raise ValueError(f"inputs: result file {str(path)!r} does not exist")
    return SimulationResult.load(path), str(path)


def _params_dict(params):
    return params._asdict() if hasattr(params, "_asdict") else params


def _check_compatible(results, names) -> None:
    first, first_name = results[0], names[0]
    base = {k: v for k, v in first.config.items() if k not in _FREE_CONFIG}
    for res, name in zip(results[1:], names[1:], strict=True):
        cfg = {k: v for k, v in res.config.items() if k not in _FREE_CONFIG}
        diffs = [k for k in sorted(set(base) | set(cfg)) if base.get(k) != cfg.get(k)]
        if diffs:
            detail = "; ".join(f"{k}: {base.get(k)!r} vs {cfg.get(k)!r}" for k in diffs)
            raise ValueError(f"inputs {first_name} and {name} are different runs (config differs: {detail})")
        for key in ("seed", "x64"):
            if first.metadata.get(key) != res.metadata.get(key):
                raise ValueError(f"inputs {first_name} and {name} differ in {key}: "
                                 f"{first.metadata.get(key)!r} vs {res.metadata.get(key)!r}")
        if set(first.summary) != set(res.summary):
            raise ValueError(f"inputs {first_name} and {name} record different metrics: "
                             f"{sorted(first.summary)} vs {sorted(res.summary)}")
        if not np.array_equal(first.quantile_levels, res.quantile_levels):
            raise ValueError(f"inputs {first_name} and {name} record different quantile levels: "
                             f"{np.asarray(first.quantile_levels).tolist()} vs "
                             f"{np.asarray(res.quantile_levels).tolist()}")
    if first.metadata.get("seed") is None:
        raise ValueError(f"inputs: {first_name} has no integer seed recorded; only runs from an int seed can be merged")


def _check_ranges(results, names):
    order = sorted(range(len(results)), key=lambda i: int(results[i].config.get("chain_offset", 0)))
    expected = int(results[order[0]].config.get("chain_offset", 0))
    for i in order:
        offset = int(results[i].config.get("chain_offset", 0))
        count = int(results[i].config["num_chains"])
        if offset != expected:
            kind = "overlap" if offset < expected else "gap"
            raise ValueError(
                f"inputs: chain ranges must tile one interval; {names[i]} covers chains [{offset}, {offset + count}) "
                f"but the previous ranges end at {expected} ({kind}); pass chain_offset={expected}"
            )
        expected = offset + count
    return order


@functools.lru_cache(maxsize=None)
def _summariser(quantiles: tuple[float, ...]):
    import jax

    from .observables import summarise_metrics

    @jax.jit
    def run(trajectories, zero):
        def body(carry, row):
            return carry, summarise_metrics(row, quantiles, zero)

        return jax.lax.scan(body, 0, trajectories)[1]

    return run


def summaries_from_trajectories(trajectories: dict, quantiles) -> dict:
    """Per-generation summaries over chains of ``{metric: (G, C)}``, bit-identical to those of the engine in float64."""
    import jax

    dtypes = {np.asarray(v).dtype for v in trajectories.values()}
    if np.dtype(np.float64) in dtypes and not jax.config.jax_enable_x64:
        raise ValueError("trajectories are float64 but jax_enable_x64 is off: enable x64 to merge these results")
    import jax.numpy as jnp

    trajectories = {k: jnp.asarray(np.asarray(v)) for k, v in trajectories.items()}
    out = _summariser(tuple(float(q) for q in quantiles))(trajectories, jnp.zeros(()))
    return jax.device_get(out)


def combine_moments(counts, means, sds):
    r"""Chan's pairwise combination of (count, mean, sd with ddof=1) per part into the whole's (mean, sd).

    Args:
      counts: ``(P,)`` chain counts; means, sds: ``(P, G)`` per part and generation.

    Returns:
      ``(mean, sd)`` arrays ``(G,)`` in float64.
    """
    n = float(counts[0])
    mean = np.asarray(means[0], np.float64)
    m2 = np.square(np.asarray(sds[0], np.float64)) * (n - 1)
    for nb, mb, sb in zip(counts[1:], means[1:], sds[1:], strict=True):
        nb = float(nb)
        mb = np.asarray(mb, np.float64)
        m2b = np.square(np.asarray(sb, np.float64)) * (nb - 1)
        total = n + nb
        with np.errstate(invalid="ignore"):  # equal means (+inf and +inf included) differ by 0, not inf − inf
            delta = np.where(mb == mean, 0.0, mb - mean)
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + np.square(delta) * (n * nb / total)
        n = total
    sd = np.sqrt(m2 / (n - 1)) if n > 1 else np.zeros_like(mean)
    return mean, sd


def merge_results(inputs):
    """Merge results (objects or ``.npz`` paths) over disjoint, contiguous chain ranges into one result.

    Raises:
      ValueError: fewer than two inputs, inputs from different runs (config, seed, x64, metrics, quantile
        levels), or chain ranges with a gap or an overlap.
    """
    import jax

    from . import io as _io
    from .simulate import SimulationResult

    inputs = list(inputs)
    if len(inputs) < 2:
        raise ValueError(f"inputs: got {len(inputs)} result(s); merge needs at least 2")
    loaded = [_as_result(item) for item in inputs]
    results = [r for r, _ in loaded]
    names = [name or f"input #{i}" for i, (_, name) in enumerate(loaded)]
    _check_compatible(results, names)
    order = _check_ranges(results, names)
    results = [results[i] for i in order]
    names = [names[i] for i in order]
    counts = [int(r.config["num_chains"]) for r in results]
    total = sum(counts)
    have_traj = all(r.trajectories is not None for r in results)
    if have_traj:
        trajectories = {m: np.concatenate([np.asarray(r.trajectories[m]) for r in results], axis=1)
                        for m in results[0].trajectories}
        summary = summaries_from_trajectories(trajectories, tuple(np.asarray(results[0].quantile_levels)))
        summary = {m: {k: np.asarray(v) for k, v in stats.items()} for m, stats in summary.items()}
        levels = np.asarray(results[0].quantile_levels)
        how = {"summaries": "recomputed from concatenated trajectories (bit-identical to one run in float64)"}
    else:
        trajectories = None
        summary = {}
        for m in results[0].summary:
            dtype = np.asarray(results[0].summary[m]["mean"]).dtype
            mean, sd = combine_moments(counts, [r.summary[m]["mean"] for r in results],
                                       [r.summary[m]["sd"] for r in results])
            summary[m] = {"mean": mean.astype(dtype), "sd": sd.astype(dtype)}
        levels = np.asarray([], np.float64)
        how = {"summaries": "mean and sd from counts, means and centred sums of squares (Chan et al. 1979)",
               "quantiles": "dropped: quantiles over chains are not mergeable from per-range summaries; "
                            "rerun with trajectories=True to merge them exactly"}
    params = [_params_dict(r.final_params) for r in results]
    final_params = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=0), *params)
    config = dict(results[0].config)
    config["num_chains"] = total
    config["chain_offset"] = int(results[0].config.get("chain_offset", 0))
    options = [r.config.get("compiler_options", {}) for r in results]
    if any(o != options[0] for o in options):  # the same law; float bits can differ from one run's
        how["compiler_options"] = ("the parts were compiled with different compiler_options (listed per part): "
                                   "the same law, but the last bits can differ from a single run's")
    config["merge"] = how | {"parts": [{"source": n, "chain_offset": int(r.config.get("chain_offset", 0)),
                                        "num_chains": c, "compiler_options": o}
                                       for n, r, c, o in zip(names, results, counts, options, strict=True)]}
    metadata = _io.collect_metadata(seed=results[0].metadata.get("seed"),
                                    wall_time_s=float(sum(r.metadata.get("wall_time_s", 0.0) for r in results)))
    metadata["x64"] = results[0].metadata.get("x64", metadata["x64"])
    metadata["merged"] = [r.metadata for r in results]
    return SimulationResult(generations=np.asarray(results[0].generations), summary=summary,
                            quantile_levels=levels, trajectories=trajectories, final_params=final_params,
                            config=config, metadata=metadata)
