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
