"""XLA compile options change how a program is optimised, not what it computes.

The suite compiles with ``simulate.FAST_COMPILE`` through ``XLA_FLAGS`` (``conftest.py``), while users' runs compile
with XLA's defaults (optimisation level 3, fusion emitters). These tests run the same chains both ways — XLA's
defaults stated per program override the suite's flags — for the engine's main code paths, so a program that
computes something else when optimised (a miscompiled fusion, an FMA that changes a comparison) cannot hide from
a suite that never optimises.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_theory import (
    Accumulate,
    AccumulateSubsample,
    Categorical,
    FreshFraction,
    Gaussian,
    Replace,
    simulate,
)
from collapse_theory.models import LinearRegression
from collapse_theory.simulate import FAST_COMPILE

OPTIMISED_COMPILE = {"xla_backend_optimization_level": "3", "xla_cpu_use_fusion_emitters": True}
"""XLA:CPU's default options, stated explicitly: per-program options override the suite's ``XLA_FLAGS``."""


def test_the_suite_compiles_with_the_package_fast_compile_options():
    """``conftest.FAST_COMPILE_FLAGS`` (the suite's ``XLA_FLAGS``) are ``simulate.FAST_COMPILE`` written as flags,
    so the suite tests the options the package offers for compile-bound grids."""
    from conftest import FAST_COMPILE_FLAGS

    as_flags = {f"--{name}={str(value).lower()}" for name, value in FAST_COMPILE.items()}
    assert as_flags == set(FAST_COMPILE_FLAGS)


def test_fast_compile_options_are_recorded_and_give_the_same_chains():
    """simulate(compiler_options=FAST_COMPILE) compiles with less LLVM optimisation: same keys, same chains up to
    floating-point reassociation as XLA's default options, and the options are recorded in the result's config."""
    model = LinearRegression(dim=3, design="fixed", design_rows=6)
    runs = [simulate(5, model, Accumulate(), num_chains=8, num_generations=4, num_samples=6, path="exact",
                     metrics=["excess_risk"], trajectories=True, quantiles=(), compiler_options=opts)
            for opts in (OPTIMISED_COMPILE, FAST_COMPILE, None)]
    np.testing.assert_allclose(runs[0].trajectories["excess_risk"], runs[1].trajectories["excess_risk"], rtol=1e-10)
    np.testing.assert_allclose(runs[2].trajectories["excess_risk"], runs[1].trajectories["excess_risk"], rtol=1e-10)
    assert runs[1].config["compiler_options"] == FAST_COMPILE and runs[2].config["compiler_options"] == {}
    assert runs[0].config["compiler_options"] == OPTIMISED_COMPILE


_CAT = Categorical(12, max_samples=16)
CASES = {
    # the 1-D exact step with its noise blocks (skipped when FAST_COMPILE is passed, used under the suite's flags)
    "gaussian-1d-exact-replace": (Gaussian(dim=1, ddof=1), Replace(), "exact", 9, {}),
    "gaussian-3d-exact-fresh": (Gaussian(dim=3, ddof=0), FreshFraction(0.5), "exact", 8, {}),
    "gaussian-2d-sample-subsample": (Gaussian(dim=2, ddof=0), AccumulateSubsample(), "sample", 7, {}),
    "categorical-exact-replace": (_CAT, Replace(), "exact", 16, {"truth": _CAT.zipf(1.1)}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_default_and_suite_options_give_the_same_chains(case):
    """Every metric of every chain agrees between XLA's default options and the suite's fast-compile flags (float64,
    to 1e-9 relative: only the rounding of fused operations may differ)."""
    model, regime, path, m, extra = CASES[case]
    runs = [simulate(3, model, regime, num_chains=16, num_generations=6, num_samples=m, path=path, quantiles=(),
                     trajectories=True, compiler_options=opts, **extra)
            for opts in (OPTIMISED_COMPILE, None)]
    assert set(runs[0].trajectories) == set(runs[1].trajectories)
    for name, values in runs[0].trajectories.items():
        np.testing.assert_allclose(runs[1].trajectories[name], values, rtol=1e-9, atol=1e-12, err_msg=name)
