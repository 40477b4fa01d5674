"""Float32 long chains (THEORY.md §14.6): the exact path carries log σ² and stays on the exact law for 10⁴
generations in float32; the sample path in float32 gets stuck far above it (the documented pitfall).

conftest.py switches x64 on for the whole test process, so the float32 runs happen in a subprocess started with
``JAX_ENABLE_X64=0``; it prints its results as JSON and the assertions (with the theory, which is NumPy float64)
happen here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import assert_close_to_theory, z_score

from collapse_theory.theory import gaussian as g

M, G, C, SEED = 10, 10_000, 512, 2024

SCRIPT = textwrap.dedent(
    f"""
    import json, math
    import jax
    import numpy as np
    assert not jax.config.jax_enable_x64, "x64 must be off in this subprocess"
    from collapse_theory import Gaussian, Replace, simulate

    model = Gaussian(dim=1, ddof=1)
    out = {{}}
    for path in ("exact", "sample"):
        res = simulate({SEED}, model, Replace(), num_chains={C}, num_generations={G}, num_samples={M}, path=path,
                       metrics=["log_variance"], quantiles=())
        log_scale = np.asarray(res.final_params.log_scale)
        factor = np.asarray(res.final_params.factor)[:, 0, 0]
        final = 2 * log_scale + 2 * np.log(np.abs(factor))  # per-chain log sigma^2 after G fits
        finite = final[np.isfinite(final)]
        mean = res.mean("log_variance")
        out[path] = {{
            "dtype": str(log_scale.dtype),
            "final_mean": float(mean[-1]),
            "final_sd": float(res.summary["log_variance"]["sd"][-1]),
            "all_means_finite": bool(np.all(np.isfinite(mean))),
            "final_values_finite": bool(np.all(np.isfinite(log_scale))),
            "final_agrees_with_summary": bool(np.isclose(np.mean(final), mean[-1], rtol=1e-4)
                                              or np.mean(final) == mean[-1]),
            "fraction_minus_inf": float(np.mean(final == -np.inf)),
            "finite_min": float(finite.min()) if finite.size else None,
            "finite_max": float(finite.max()) if finite.size else None,
            "num_nan": int(np.sum(np.isnan(final))),
            "x64": res.metadata["x64"],
        }}
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def float32_results():
    env = dict(os.environ)
    env.update(JAX_ENABLE_X64="0", OPENBLAS_NUM_THREADS="1", JAX_PLATFORMS="cpu")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"float32 subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _theory():
    mean = g.expected_log_variance(G, M, ddof=1)
    se = math.sqrt(g.variance_of_log_variance(G, M, ddof=1) / C)
    return mean, se


def test_float32_exact_path_follows_exact_law(float32_results):
    r"""§2.1 E log σ_G² = G[ψ((M−1)/2) + log(2/(M−1))] = −1152 at M = 10, G = 10⁴ (σ_G² ≈ e^{−1152}, far below
    float32's smallest normal 1e-38), with the analytic SE √(Gψ'((M−1)/2)/C) = 2.2.

    The exact path carries log_scale, so float32 must stay on the exact law (§14.6: "stays within 5e−4 of the exact
    law in float32") with finite values in every chain. Catches a model that carries σ² (underflow to 0 → −inf) or
    exponentiates the scale inside the recursion. Power check: the ddof=0 law is 1054 (≈ 470 SE) away."""
    res = float32_results["exact"]
    assert res["dtype"] == "float32" and res["x64"] is False
    assert res["all_means_finite"] and res["final_values_finite"] and res["final_agrees_with_summary"]
    assert res["fraction_minus_inf"] == 0 and res["num_nan"] == 0
    mean, se = _theory()
    assert_close_to_theory(res["final_mean"], se, mean, label=f"float32 exact E log var t={G}")
    # the simulated spread matches the analytic sd too (relative SE of an sd ≈ 1/√(2C) = 3%)
    sd = math.sqrt(g.variance_of_log_variance(G, M, ddof=1))
    assert_close_to_theory(res["final_sd"], sd / math.sqrt(2 * C), sd, label=f"float32 exact sd log var t={G}")
    assert abs(z_score(res["final_mean"], se, g.expected_log_variance(G, M, ddof=0))) > 4


def test_float32_sample_path_departs_from_exact_law(float32_results):
    r"""The §14.6 pitfall (documented behaviour, not a bug of the exact path): drawing x = μ + σz in float32 and
    refitting loses the digits of x − x̄ once σ ≪ |μ|·eps (|μ_G| ~ √(G/M) ≈ 30 here). Under the exact law
    log σ_G² ~ N(−1152, 50²) per chain. Observed in the engine at G = 10⁴: almost every chain has collapsed to an
    exactly zero variance (log σ² = −inf, an event of probability 0 under the exact law: all M draws rounded to one
    float), and every chain still finite is stuck more than 20 sd *above* the exact mean (near −29).

    Asserted per chain, against the exact law's sd (not its SE): some chains at −inf, no NaN, and every finite chain
    above theory + 20 sd. If this starts failing, the sample path has become float32-exact (standardised
    sampling), which is an improvement: update this test and §14.6."""
    res = float32_results["sample"]
    assert res["dtype"] == "float32"
    mean, _ = _theory()
    sd = math.sqrt(g.variance_of_log_variance(G, M, ddof=1))
    print(f"float32 sample path at t={G}: fraction log var = -inf: {res['fraction_minus_inf']:.4f}; finite range "
          f"[{res['finite_min']}, {res['finite_max']}]; summary mean {res['final_mean']}; exact law {mean:.1f} "
          f"+- {sd:.1f}")
    assert res["num_nan"] == 0
    assert res["fraction_minus_inf"] > 0, "no spurious exact collapse: the pitfall has changed, see docstring"
    if res["finite_min"] is not None:
        assert (res["finite_min"] - mean) / sd > 20, res


@pytest.mark.xfail(strict=True, reason=(
    "Brief/§14.6 expectation 'the float32 sample path is stuck ABOVE the exact law, mean final log_variance > "
    "theory + 20 SE' does not hold: by t = 10^4, 99.6% of chains reach log_variance = -inf (all M = 10 float32 "
    "draws identical, scatter 0), so the chain mean is -inf. See test_float32_sample_path_departs_from_exact_law."))
def test_float32_sample_path_mean_is_stuck_above_exact_law(float32_results):
    """The brief's literal assertion on the *mean* over chains (THEORY.md §14.6 wording: "gets stuck at
    log σ² ≈ −29 in float32"). Kept as a strict xfail: it documents the discrepancy and will report XPASS if the
    sample path's float32 behaviour changes."""
    res = float32_results["sample"]
    mean, se = _theory()
    assert z_score(res["final_mean"], se, mean) > 20


@pytest.fixture(scope="module")
def float64_results():
    """The same chains in float64 (this process runs with x64 on), both paths: per-chain final log σ²."""
    import warnings

    import jax
    import numpy as np

    from collapse_theory import Gaussian, Replace, simulate

    assert jax.config.jax_enable_x64
    out = {}
    for path in ("exact", "sample"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the sample path warns once its chains' variances reach exactly 0
            res = simulate(SEED, Gaussian(dim=1, ddof=1), Replace(), num_chains=C, num_generations=G, num_samples=M,
                           path=path, metrics=["log_variance"], quantiles=())
        log_scale = np.asarray(res.final_params.log_scale)
        factor = np.asarray(res.final_params.factor)[:, 0, 0]
        out[path] = {"dtype": str(log_scale.dtype), "mean": float(res.mean("log_variance")[-1]),
                     "final": 2 * log_scale + 2 * np.log(np.abs(factor))}
    return out


def test_float64_cross_check_exact_path_on_the_law_and_the_naive_recursion_off_it(float64_results):
    r"""§14.6 "even in float64": float64 is a cross-check, not the fix. At M = 10, G = 10⁴ the exact path in
    float64 is on the exact law (E log σ_G² = −1152, SE 2.2; every chain finite although σ_G² ≈ e^{−1152} is far
    below float64's smallest normal e^{−708}: it carries log σ²), while the sample path, which draws x = μ + σz and
    refits, loses x − x̄ once σ ≪ |μ|·eps (log σ² ≈ −69 at |μ| ≈ 30) and ends with every chain at an exactly zero
    variance (log σ² = −inf, probability 0 under the exact law). Catches an exact path that exponentiates its scale
    (it would underflow to −inf near t = 6100 in float64) and a float64 run mistaken for a fix of the naive
    recursion."""
    import numpy as np

    exact, sample = float64_results["exact"], float64_results["sample"]
    assert exact["dtype"] == sample["dtype"] == "float64"
    assert np.all(np.isfinite(exact["final"]))
    mean, se = _theory()
    assert_close_to_theory(exact["mean"], se, mean, label=f"float64 exact E log var t={G}")
    assert abs(z_score(exact["mean"], se, g.expected_log_variance(G, M, ddof=0))) > 4  # power: the other ddof
    assert not np.any(np.isnan(sample["final"]))
    assert np.mean(sample["final"] == -np.inf) > 0.99
