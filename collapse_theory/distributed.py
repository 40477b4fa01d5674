r"""Chains over devices and hosts: a 1-D ``"chains"`` mesh and GSPMD placement of the chain axis.

Chains are independent, so the chain axis is simply *sharded*: every per-chain array (parameters, buffers,
chain ids) is placed with ``NamedSharding(mesh, P("chains"))`` over a 1-D mesh and the jitted scan is left to
GSPMD; no sharding constraint is placed inside the program. A sharded run is **bit-identical** to the unsharded
one because (i) every key depends only on the global chain id (:mod:`collapse_theory.keys`), so each chain
draws the same numbers wherever it runs, and (ii) the per-generation means and sds over chains use a fixed-order
pairwise sum (:func:`collapse_theory.observables.pairwise_sum`): a tree of elementwise additions whose result does
not depend on how the partitioner splits it (a plain ``jnp.sum`` reduces per device and then across devices, a
different association order). Quantiles sort the gathered values, which is exact.

Caveat (XLA:CPU): per-chain arithmetic is compiled for the per-device batch. Keep at least 8 chains per device;
narrower batches may take a scalar code path whose fused multiply-adds differ in the last bit (an unsharded run
with that few chains differs the same way). The bit-identity is tested in float64; in float32 the per-device
program's fusion and contraction choices do differ (2 devices of 100 chains, 1-D Gaussian sample path: per-
generation means up to 2.4e-7 and quantiles up to 3.8e-6 apart, a few ulps), so float32 runs agree in law and to
round-off only.

Chain counts that do not divide the number of devices are refused (``ValueError``) unless ``pad_chains=True``:
then ``C' = D \lceil C/D \rceil`` chains are simulated (ids ``offset .. offset + C' - 1``) and the ``C' - C``
extra chains are dropped before any summary, so the result is still that of ``C`` chains.

CPU devices and LAPACK (jaxlib < 0.11.2): jaxlib's CPU LAPACK kernels (QR, Cholesky, SVD, eigh, LU) split a
batch over XLA:CPU's intra-op thread pool and block their thread until the pieces finish; that pool also runs
every CPU device's program. With as many CPU devices as the pool has threads (one per usable core), every thread
can sit in such a wait with no thread left to run the pieces, and the run hangs with all threads idle
(reproduced here on 2 cores: ``Gaussian(dim=10)``, ``devices=2``; ``dim=3`` happened to finish). Since the
models' metrics went LAPACK-free (:mod:`collapse_theory._linalg`) that leaves the d-dim Gaussian's fit (a QR).
:func:`lapack_hazard` names that configuration and the engine then refuses a program that contains LAPACK calls
(:func:`check_lapack`) with a ``ValueError`` instead of hanging; set ``COLLAPSE_THEORY_ALLOW_CPU_LAPACK_DEVICES=1``
to run it anyway. One CPU device already uses every core, so on a CPU ``devices`` is for testing a sharded set-up.

Multi-host: :func:`initialize` wraps ``jax.distributed.initialize`` (call it before any other JAX work); after
it ``jax.devices()`` lists every process's devices and the same mesh spans hosts. For independent chains the
simpler route is independent jobs over disjoint chain ranges (``chain_offset``) combined by
:func:`collapse_theory.merge.merge_results`.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "chains"
"""Name of the mesh axis the chains are sharded over."""

ALLOW_CPU_LAPACK = "COLLAPSE_THEORY_ALLOW_CPU_LAPACK_DEVICES"
"""Environment variable: set to 1 to run LAPACK-calling programs on as many CPU devices as cores anyway."""

_LAPACK_POOL_FIXED = (0, 11, 2)  # jaxlib release whose open-source build no longer splits LAPACK batches over the pool


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> None:
    """Start multi-host JAX (``jax.distributed.initialize``); must run before any other JAX computation.

    With no arguments JAX detects the cluster (Slurm, Open MPI, TPU pods); otherwise give the coordinator's
    ``host:port``, the number of processes and this process's id in ``[0, num_processes)``.
    """
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise ValueError(f"num_processes={num_processes!r} is out of range: need an int >= 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id!r} is out of range: need 0 <= process_id < {num_processes}")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, **kwargs)


def chain_mesh(devices: Any) -> Mesh:
    """A 1-D mesh with axis ``"chains"`` (``AxisType.Auto``: GSPMD propagates the sharding).

    Args:
      devices: an int D (the first D of ``jax.devices()``, global over hosts), a sequence of devices, or a
        :class:`jax.sharding.Mesh` (must be 1-D; its axis may have any name, it is renamed ``"chains"``).
    """
    if isinstance(devices, Mesh):
        if devices.devices.ndim != 1:
            raise ValueError(f"devices=Mesh{dict(devices.shape)} is out of range: need a 1-D mesh")
        devs = list(devices.devices)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        available = jax.device_count()
        if not 1 <= devices <= available:
            raise ValueError(f"devices={int(devices)} is out of range: need 1 <= devices <= {available} "
                             f"(jax.device_count(); on CPU raise it with jax_num_cpu_devices)")
        devs = jax.devices()[: int(devices)]
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("devices=[] is out of range: need at least one device")
    return Mesh(np.asarray(devs), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def chain_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (chain) axis split over the mesh, other axes replicated."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def padded_count(num_chains: int, num_devices: int, pad: bool) -> int:
    """Chains to simulate so that every device holds the same number: ``num_chains`` or the next multiple."""
    if num_chains % num_devices == 0:
        return num_chains
    if not pad:
        lower = num_devices * (num_chains // num_devices)
        upper = num_devices * math.ceil(num_chains / num_devices)
        raise ValueError(
            f"num_chains={num_chains} does not divide over devices={num_devices}: need a multiple of "
            f"{num_devices} (e.g. {lower or num_devices} or {upper}), or pad_chains=True (--pad-chains) to "
            f"simulate {upper} and keep the first {num_chains}"
        )
    return num_devices * math.ceil(num_chains / num_devices)


def place(tree, sharding: NamedSharding):
    """Put host values onto ``sharding``; works across hosts (every process passes the same global values)."""

    def put(leaf):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            return jax.device_put(leaf, sharding)
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def to_host(tree):
    """NumPy copy of a pytree of (possibly multi-host sharded) arrays."""

    def get(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:  # e.g. the summaries: every process already holds the whole value
                return np.asarray(leaf.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return jax.device_get(leaf)

    return jax.tree.map(get, tree)


def cpu_threads() -> int:
    """Threads of XLA:CPU's intra-op pool: the CPUs this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def lapack_hazard(mesh: Mesh) -> str | None:
    """Why LAPACK calls could hang on ``mesh`` (module docstring), or None when they cannot (or are allowed to).

    The hazard: this process holds at least :func:`cpu_threads` of the mesh's devices, they are CPU devices, and
    jaxlib is older than 0.11.2; ``COLLAPSE_THEORY_ALLOW_CPU_LAPACK_DEVICES=1`` waives it.
    """
    import jaxlib

    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    threads = cpu_threads()
    if not local or local[0].platform != "cpu" or len(local) < threads:
        return None
    if _version_tuple(jaxlib.__version__) >= _LAPACK_POOL_FIXED:
        return None
    if os.environ.get(ALLOW_CPU_LAPACK, "").strip() not in ("", "0"):
        return None
    return (f"{len(local)} CPU devices on this process's {threads} CPU threads with jaxlib {jaxlib.__version__}")


def lapack_targets(program_text: str) -> list[str]:
    """The jaxlib LAPACK kernels a lowered program calls (``custom_call`` targets ``lapack_*``), sorted."""
    return sorted(set(re.findall(r"\blapack_[a-z0-9_]+", program_text)))


def check_lapack(hazard: str | None, devices: int, program_text: str) -> None:
    """Raise ``ValueError`` when ``hazard`` (:func:`lapack_hazard`) holds and the program calls LAPACK."""
    if hazard is None:
        return
    targets = lapack_targets(program_text)
    if not targets:
        return
    threads = cpu_threads()
    raise ValueError(
        f"devices={devices} is out of range for this program on this machine: need devices < {threads} (or "
        f"devices=None: one CPU device already uses every core). It puts {hazard}, and the program calls "
        f"jaxlib's batched LAPACK kernels ({', '.join(targets)}), which wait on XLA:CPU's thread pool for pieces "
        f"of their batch while every thread of that pool runs a device: the run would hang. Independent jobs "
        f"over chain_offset ranges (collapse-theory merge) scale out safely; set {ALLOW_CPU_LAPACK}=1 to run "
        f"it anyway."
    )
