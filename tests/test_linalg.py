"""The LAPACK-free linear algebra of ``collapse_theory._linalg`` and the models' programs that use it.

jaxlib 0.10's batched CPU LAPACK kernels wait on XLA's thread pool for pieces of their batch, so two independent
ones running at once hang a 2-core machine (``_linalg`` module docstring: seen with the d-dim Gaussian's W2 SVD
beside its KL triangular solves at 1000 chains). The models' metrics therefore use forward substitution, a
loop Cholesky and a Newton–Schulz nuclear norm in XLA operations. These tests check those against SciPy/NumPy,
and check that the compiled simulation programs keep at most the Gaussian fit's QR chain of LAPACK calls (a new
metric that brought back an independent ``trsm``/``gesdd``/``potrf`` fails here, not as a hang on a user's laptop).
"""

from __future__ import annotations

import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from collapse_theory import Accumulate, FreshFraction, Gate, Gaussian, Replace, _linalg, distributed, setups, simulate
from collapse_theory.models.categorical import Categorical
from collapse_theory.models.gmm import GaussianMixture
from collapse_theory.models.kde import KernelDensity
from collapse_theory.models.regression import LinearRegression


def _spd(rng, batch, d):
    a = rng.standard_normal(batch + (d, d + 3))
    return a @ np.swapaxes(a, -1, -2) / (d + 3)


@pytest.mark.parametrize("d", [2, 5, 12])
def test_solve_lower_matches_scipy(d):
    """Forward substitution (unrolled for d <= 8, a loop above) equals scipy's triangular solve, for a matrix and
    a vector right-hand side and with leading batch axes (catches an off-by-one row or a transposed factor)."""
    rng = np.random.default_rng(d)
    low = np.linalg.cholesky(_spd(rng, (3,), d))
    b = rng.standard_normal((3, d, 4))
    v = rng.standard_normal((3, d))
    got_b = np.asarray(_linalg.solve_lower(jnp.asarray(low), jnp.asarray(b)))
    got_v = np.asarray(jax.vmap(_linalg.solve_lower)(jnp.asarray(low), jnp.asarray(v)))
    for i in range(3):
        np.testing.assert_allclose(got_b[i], scipy.linalg.solve_triangular(low[i], b[i], lower=True), rtol=1e-10)
        np.testing.assert_allclose(got_v[i], scipy.linalg.solve_triangular(low[i], v[i], lower=True), rtol=1e-10)


@pytest.mark.parametrize("d", [2, 7, 16])
def test_cholesky_matches_numpy_and_zeroes_a_singular_column(d):
    """The loop Cholesky equals NumPy's on SPD matrices (batched); a PSD matrix of rank d-1 gives a factor whose
    product is the matrix, finite, with a zero pivot (where LAPACK's ``potrf`` would fail or return NaN)."""
    rng = np.random.default_rng(d)
    a = _spd(rng, (2, 3), d)
    np.testing.assert_allclose(np.asarray(_linalg.cholesky(jnp.asarray(a))), np.linalg.cholesky(a), rtol=1e-9,
                               atol=1e-12)
    u = rng.standard_normal((d, d - 1))
    singular = u @ u.T
    low = np.asarray(_linalg.cholesky(jnp.asarray(singular)))
    assert np.all(np.isfinite(low)) and np.min(np.abs(np.diag(low))) < 1e-6 * np.max(np.abs(np.diag(low)))
    np.testing.assert_allclose(low @ low.T, singular, atol=1e-9 * np.max(np.abs(singular)))


@pytest.mark.parametrize("shape", [(4, 4), (3, 6, 6), (7, 3)])
def test_nuclear_norm_matches_svd(shape):
    """Newton–Schulz nuclear norm equals the sum of NumPy's singular values (batched and rectangular), and a
    rank-deficient input is handled (its zero singular value stays zero)."""
    rng = np.random.default_rng(sum(shape))
    c = rng.standard_normal(shape)
    want = np.sum(np.linalg.svd(c, compute_uv=False), axis=-1)
    np.testing.assert_allclose(np.asarray(_linalg.nuclear_norm(jnp.asarray(c))), want, rtol=1e-9)
    low_rank = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 5))
    np.testing.assert_allclose(float(_linalg.nuclear_norm(jnp.asarray(low_rank))),
                               np.sum(np.linalg.svd(low_rank, compute_uv=False)), rtol=1e-9)


_X64_BLOCK_SCRIPT = """
import jax, numpy as np
from collapse_theory import Replace, _linalg, simulate
from collapse_theory.models import LinearRegression
rng = np.random.default_rng(7)
a = rng.standard_normal((3, 5, 5)); a = a + np.swapaxes(a, -1, -2)
with jax.enable_x64(True):
    w = jax.jit(jax.vmap(_linalg.eigh))(jax.numpy.asarray(a))[0]
    sv = jax.jit(_linalg.singular_values)(jax.numpy.asarray(a))
    assert w.dtype == sv.dtype == np.float64, (w.dtype, sv.dtype)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigh(a)[0], rtol=1e-13)
    np.testing.assert_allclose(np.asarray(sv), np.linalg.svd(a, compute_uv=False), rtol=1e-13)
    for d, rows in ((4, 8), (10, 40)):
        model = LinearRegression(dim=d, design="fixed", design_rows=rows)
        res = simulate(0, model, Replace(), num_chains=8, num_generations=2, num_samples=rows, path="exact",
                       metrics=["excess_risk"], quantiles=())
        assert res.mean("excess_risk").dtype == np.float64
print("ok")
"""


def test_host_decompositions_keep_float64_inside_an_enable_x64_block():
    """With x64 off globally and on in a ``with jax.enable_x64(True):`` block, XLA ran the callback on a pool
    thread that saw x64 off: the float64 input arrived rounded to float32 and the results were refused ("Incorrect
    output dtype"), so every regression figure script crashed when run alone. The decompositions now carry float64
    as raw bits. A fresh process with JAX's default flags: whether the callback runs on another thread depends on
    them (this suite's fast-compile flags hid the failure in one of the two sizes)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    out = subprocess.run([sys.executable, "-c", _X64_BLOCK_SCRIPT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# ----------------------------------------------------------------------------- LAPACK calls left in the programs
class _Lowered(Exception):
    pass


def _lapack_calls(run) -> list[str]:
    """The LAPACK kernels (``distributed.lapack_targets``) of the first chunk program that ``run()`` would execute
    (lowered, not run)."""
    engine = sys.modules["collapse_theory.simulate"]
    original = engine._call_chunk

    def lower_only(plan, length, args, compiler_options, dynamic_length=None, lapack_guard=None):
        raise _Lowered(engine._run_chunk.lower(plan, length, *args).as_text())

    engine._call_chunk = lower_only
    try:
        run()
    except _Lowered as lowered:
        return distributed.lapack_targets(lowered.args[0])
    finally:
        engine._call_chunk = original
    raise AssertionError("simulate ran no chunk")


QR_CHAIN = {"geqrf", "orgqr"}  # the fit's QR: orgqr consumes geqrf's output, so the two never overlap
FIT_CALLS = (QR_CHAIN, {"potrf"})  # the QR, or the Cholesky factor of Accumulate's exact step: never both
# the sample-path fit of a large sample: the Gram matrix's Cholesky factor (potrf), its condition estimate
# (triangular solves of potrf's output) and, in a conditional on that estimate, the QR: each waits for the last
GRAM_CHAIN = {"potrf", "trsm"} | QR_CHAIN


@pytest.mark.parametrize("regime, path", [(Replace(), "sample"), (Replace(), "exact"), (Accumulate(), "exact"),
                                          (FreshFraction(0.5), "exact")])
def test_gaussian_programs_call_lapack_only_for_the_fit(regime, path):
    """A 5-D Gaussian with every metric: the only LAPACK calls are the fit's QR, or on the exact accumulate path
    the Cholesky factor of ``Gaussian.grow_pool``, one of them per program (the metrics used four ``trsm`` and a
    ``gesdd``, which hung 1000 chains at d = 31 on 2 cores)."""
    calls = _lapack_calls(lambda: simulate(0, Gaussian(dim=5, ddof=1), regime, num_chains=8, num_generations=2,
                                           num_samples=12, path=path))
    kinds = {re.sub(r"^lapack_[sdcz]|_ffi$", "", c) for c in calls}
    assert any(kinds <= allowed for allowed in FIT_CALLS), calls
    if isinstance(regime, Accumulate) and path == "exact":
        assert kinds == {"potrf"}, calls  # the QR of the stacked factors is gone from the exact accumulate step


def test_gaussian_gram_fit_calls_lapack_in_one_chain():
    """A sample-path fit large enough for the Gram path (M d² ≥ ``_GRAM_MIN_WORK``): its LAPACK calls are the
    Cholesky factor, the triangular solves of its condition estimate and the conditional QR, nothing else."""
    calls = _lapack_calls(lambda: simulate(0, Gaussian(dim=5, ddof=1), Replace(), num_chains=8, num_generations=2,
                                           num_samples=20_000, path="sample"))
    kinds = {re.sub(r"^lapack_[sdcz]|_ffi$", "", c) for c in calls}
    assert {"potrf", "trsm", "geqrf"} <= kinds <= GRAM_CHAIN, calls


_NO_LAPACK = {
    "gmm-6d": lambda: (GaussianMixture(num_components=2, dim=6), Replace(), "sample", 30),
    "regression": lambda: (LinearRegression(dim=6), Replace(), "sample", 20),
    "regression-exact": lambda: (LinearRegression(dim=6), Accumulate(), "exact", 20),
    "kde": lambda: (KernelDensity(bandwidth=0.3, capacity=50), Replace(), "sample", 50),
    "categorical": lambda: (Categorical(num_categories=10), Replace(), "exact", 50),
}


@pytest.mark.parametrize("name", sorted(_NO_LAPACK))
def test_other_model_programs_call_no_lapack(name):
    """Every metric, no LAPACK call at all: the 6-D mixture (above the unrolled d <= 4; it had 11: Cholesky,
    triangular solves and an SVD in independent metric terms), regression (its eigh/SVD are host callbacks), the
    KDE and the categorical model."""
    model, regime, path, n = _NO_LAPACK[name]()
    calls = _lapack_calls(lambda: simulate(0, model, regime, num_chains=8, num_generations=2, num_samples=n,
                                           path=path))
    assert calls == [], calls


def _vae_case(architecture):
    """The VAE set-up (procedural shapes, the classifier's confidence gate) with a tiny network of ``architecture``:
    training by optax, sampling, the classifier's metrics and the Fréchet distance all lowered."""
    if architecture == "linear":
        setup = setups.vae(0, num_real=100, classifier_steps=2, gate="confident", architecture="linear",
                           likelihood="gaussian", latent_dim=2, steps=2, batch_size=None)
    else:
        setup = setups.vae(0, num_real=100, classifier_steps=2, gate="confident", architecture=architecture,
                           latent_dim=2, hidden=4, steps=2, batch_size=16, num_eval_samples=16)
    return setup, 32


_NO_LAPACK_SETUPS = {
    "vae-mlp": lambda: _vae_case("mlp"),
    "vae-conv": lambda: _vae_case("conv"),
    "vae-linear": lambda: _vae_case("linear"),
    "ngram": lambda: (setups.ngram(0, num_reference=20, gate="facts"), 40),
}


@pytest.mark.parametrize("name", sorted(_NO_LAPACK_SETUPS))
def test_setup_programs_call_no_lapack(name):
    """The set-ups of the command line (``collapse-theory run --model vae|ngram``), gated, with every metric: no
    LAPACK call (the linear VAE's Gaussian metrics and the Fréchet distance use ``_linalg``)."""
    setup, n = _NO_LAPACK_SETUPS[name]()
    regime = Gate(Replace(), setup.gate, retries=1)
    calls = _lapack_calls(lambda: simulate(0, setup.model, regime, num_chains=4, num_generations=2, num_samples=n,
                                           **setup.simulate_kwargs()))
    assert calls == [], calls
