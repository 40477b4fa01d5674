"""Statistical assertions for Monte-Carlo tests (STYLE.md §2F).

The tests compare the mean over C independent chains of a per-chain statistic with a closed form. The Monte-Carlo
standard error is ``sd / sqrt(C)``, with the *analytic* sd where THEORY.md gives one and the sample sd only for
light-tailed statistics. An assertion passes when ``|z| <= 4`` (two-sided false alarm 6.3e-5 per assertion, so
about 1e-3 for a suite of ~15 such assertions per file at fixed seeds). Every test also runs a **power check**: the
same data must reject a deliberately wrong formula (``|z| > 4``), so that a passing test is not vacuous.

The z-scores are printed (``pytest -s`` shows them) in the form ``Z <label>: ...`` so a run can be audited.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

Z_TOL = 4.0
"""Default two-sided tolerance in standard errors."""
Z_POWER = 1.2815515655446004
"""Φ^{-1}(0.9): the minimum detectable effect at 90% power is (Z_TOL + Z_POWER)·SE."""
KS_ALPHA = 1e-3
"""Two-sample distribution tests reject below this p-value (robust to re-seeding, STYLE.md §2F item 2)."""


def z_score(sample_mean, se, theory) -> float:
    """``(sample_mean - theory) / se`` as a Python float (``se`` must be finite and > 0)."""
    sample_mean, se, theory = float(sample_mean), float(se), float(theory)
    if not (math.isfinite(se) and se > 0):
        raise ValueError(f"se={se!r} must be finite and > 0")
    return (sample_mean - theory) / se


def mde(se, z: float = Z_TOL, power_z: float = Z_POWER) -> float:
    """Minimum detectable effect ``(z + z_beta) * se`` (90% power at the default ``power_z``)."""
    return (z + power_z) * float(se)


def _message(kind, label, theory, sample_mean, se, z_value, z_tol):
    return (
        f"{kind} [{label}]: theory={float(theory):.6g} simulation={float(sample_mean):.6g} "
        f"SE={float(se):.3g} z={z_value:+.2f} (tolerance |z|<={z_tol}) MDE={mde(se, z_tol):.3g}"
    )


def assert_close_to_theory(sample_mean, se, theory, z: float = Z_TOL, label: str = "") -> float:
    """Assert ``|sample_mean - theory| <= z * se``; return the z-score.

    The failure message shows theory, simulation, SE, z and the minimum detectable effect, so a reader can tell a
    real disagreement from a test without power.
    """
    z_value = z_score(sample_mean, se, theory)
    print(_message("Z", label, theory, sample_mean, se, z_value, z))
    assert math.isfinite(float(sample_mean)), _message("non-finite simulation", label, theory, sample_mean, se,
                                                       z_value, z)
    assert abs(z_value) <= z, _message("simulation disagrees with theory", label, theory, sample_mean, se, z_value, z)
    return z_value


def assert_rejects(sample_mean, se, wrong_theory, z: float = Z_TOL, label: str = "") -> float:
    """Power check: the same data must reject a deliberately wrong formula (``|z| > z``); return that z."""
    z_value = z_score(sample_mean, se, wrong_theory)
    print(_message("POWER", label, wrong_theory, sample_mean, se, z_value, z))
    assert abs(z_value) > z, _message(
        "power check failed: the test cannot tell this wrong formula apart", label, wrong_theory, sample_mean, se,
        z_value, z)
    return z_value


def chain_mean_se(values) -> tuple[float, float]:
    """Mean and sample-sd standard error of a 1-D array of per-chain values (light-tailed statistics only)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def ks_two_sample(a, b, alpha: float = KS_ALPHA, label: str = ""):
    """Two-sample Kolmogorov–Smirnov test; assert ``p >= alpha`` and return scipy's result.

    Both samples must be finite (a NaN would silently corrupt the empirical CDFs).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), f"KS [{label}]: non-finite values"
    result = stats.ks_2samp(a, b)
    print(f"KS [{label}]: D={result.statistic:.4f} p={result.pvalue:.3g} (n={a.size}, {b.size}; alpha={alpha})")
    assert result.pvalue >= alpha, (
        f"KS [{label}]: the two samples differ in distribution: D={result.statistic:.4f}, p={result.pvalue:.3g} "
        f"< alpha={alpha} (n={a.size}, {b.size}; medians {np.median(a):.5g} vs {np.median(b):.5g})"
    )
    return result


# ----------------------------------------------------------------------------------------------------------------
# Simulations shared between test modules
# ----------------------------------------------------------------------------------------------------------------
#
# Compiling one engine configuration costs 2-5 s on a 2-core CPU and dominates the suite's run time, so the
# exact-path runs that the theory tests (test_simulate_gaussian.py) and the exact-vs-sample tests
# (test_regimes.py) both need are defined once here and cached for the pytest process. Each module still runs on
# its own (the first caller simulates). Every run keeps per-chain trajectories, no quantiles and only its metrics.

SHARED_RUNS = {
    # name: (seed, dim, ddof, regime factory, num_samples, num_generations, num_chains (exact path), metrics)
    "replace-1d-ddof0": (101, 1, 0, "Replace", 4, 8, 2**16, ("log_variance", "sq_mean_error", "w2_squared")),
    "replace-1d-ddof1": (102, 1, 1, "Replace", 4, 8, 2**16, ("log_variance", "sq_mean_error", "w2_squared")),
    "replace-3d-mle": (202, 3, 0, "Replace", 10, 10, 8192,
                       ("log_det_ratio", "trace_ratio", "log_trace_ratio", "sq_mean_error")),
    "accumulate-3d-mle": (303, 3, 0, "Accumulate", 10, 40, 8192, ("trace_ratio", "log_trace_ratio", "sq_mean_error")),
    "accumulate-1d-unbiased": (304, 1, 1, "Accumulate", 5, 40, 16384, ("trace_ratio", "log_variance", "sq_mean_error")),
    "fresh-1d-0.25": (404, 1, 1, ("FreshFraction", 0.25), 20, 30, 16384, ("variance", "log_variance", "sq_mean_error")),
    "grown-1d": (505, 1, 1, "ReplaceGrown", 3, 8, 16384, ("log_variance", "sq_mean_error")),
    "fresh-3d-mle": (406, 3, 0, ("FreshFraction", 0.25), 20, 20, 8192, ("trace_ratio", "log_trace_ratio",
                                                                        "sq_mean_error")),
    "grown-3d-mle": (508, 3, 0, "ReplaceGrown", 4, 8, 8192, ("trace_ratio", "log_trace_ratio", "sq_mean_error")),
    "replace-5d-singular": (606, 5, 0, "Replace", 4, 6, 8192, ("trace_ratio", "sq_mean_error")),
}
_SHARED_CACHE: dict = {}


def shared_config(name: str) -> dict:
    """The configuration of a shared run as a dict (seed, dim, ddof, regime, num_samples, ...)."""
    import collapse_theory as ct

    seed, dim, ddof, regime, num_samples, num_generations, num_chains, metrics = SHARED_RUNS[name]
    if isinstance(regime, tuple):
        regime = getattr(ct, regime[0])(*regime[1:])
    else:
        regime = getattr(ct, regime)()
    return dict(seed=seed, dim=dim, ddof=ddof, regime=regime, num_samples=num_samples,
                num_generations=num_generations, num_chains=num_chains, metrics=metrics)


def shared_run(name: str, path: str = "exact", num_chains: int | None = None, seed: int | None = None):
    """Run (once per process) the shared configuration ``name`` on ``path``; other chain counts / seeds allowed."""
    import collapse_theory as ct

    cfg = shared_config(name)
    num_chains = cfg["num_chains"] if num_chains is None else num_chains
    seed = cfg["seed"] if seed is None else seed
    key = (name, path, num_chains, seed)
    if key not in _SHARED_CACHE:
        _SHARED_CACHE[key] = ct.simulate(
            seed, ct.Gaussian(dim=cfg["dim"], ddof=cfg["ddof"]), cfg["regime"], num_chains=num_chains,
            num_generations=cfg["num_generations"], num_samples=cfg["num_samples"], path=path,
            metrics=list(cfg["metrics"]), quantiles=(), trajectories=True,
        )
    return _SHARED_CACHE[key]


def pid_and_cpus_after(delay: float) -> tuple[int, list[int]]:
    """A pool task (importable in a spawned worker): wait ``delay`` seconds, so that tasks submitted together run in
    distinct workers, then report the worker's pid and the CPUs it may run on."""
    import os
    import time

    time.sleep(delay)
    return os.getpid(), sorted(os.sched_getaffinity(0))
