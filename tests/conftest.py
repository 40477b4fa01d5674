"""Test configuration: float64 for theory checks, strict rank promotion (catches (n,) vs (n, 1) bugs).

Compiled programs are cached on disk (``COLLAPSE_THEORY_TEST_CACHE``, default ``~/.cache/collapse_theory/jax-tests``;
``0`` disables it): a repeated run of the suite then skips most XLA compiles. The cache changes no result.

The suite compiles several hundred small programs whose run time is a fraction of their compile time, so it compiles
them with XLA's fast-compile options (the package's ``simulate.FAST_COMPILE``: CPU optimisation level 1 and the loop
emitters), set through ``XLA_FLAGS`` before JAX starts so that worker subprocesses inherit them: with an empty cache
the default suite measured 570 s instead of 756 s on 2 cores, serially. They change how XLA optimises, not what a
program computes (``tests/test_compile_options.py`` runs the engine's main paths both ways).
``COLLAPSE_THEORY_TEST_FAST_COMPILE=0`` runs the suite with XLA's default options.

Test modules run in parallel worker processes (pytest-xdist, ``-n auto --dist loadfile`` in ``pyproject.toml``: one
module's tests stay in one worker, so its module-scoped fixtures and compiled programs are built once). XLA compiles
a program on one thread and runs these small programs on little more, so two workers on 2 cores took the suite from
570 s to 393 s with an empty cache. ``-n auto`` means one worker per available core, at most four (each worker holds
its own compiled programs); ``-n 0`` runs serially.
"""

import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=1", "--xla_cpu_use_fusion_emitters=false")
"""``simulate.FAST_COMPILE`` as XLA command-line flags (a test keeps the two equal)."""

if os.environ.get("COLLAPSE_THEORY_TEST_FAST_COMPILE", "1") != "0":
    _given = os.environ.get("XLA_FLAGS", "")
    _missing = [f for f in FAST_COMPILE_FLAGS if f.split("=")[0] not in _given]  # a flag the caller set wins
    os.environ["XLA_FLAGS"] = " ".join([_given, *_missing]).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

_cache = os.environ.get("COLLAPSE_THEORY_TEST_CACHE", str(Path.home() / ".cache" / "collapse_theory" / "jax-tests"))
if _cache != "0":
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


MAX_WORKERS = 4
"""Most pytest-xdist workers that ``-n auto`` starts."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core this process may use, at most :data:`MAX_WORKERS`."""
    from collapse_theory.distributed import cpu_threads

    return max(1, min(MAX_WORKERS, cpu_threads()))


@pytest.fixture(autouse=True)
def _restore_jax_config():
    """CLI tests run ``collapse_theory.cli.main`` in this process, and the CLI sets ``jax_enable_x64`` from its
    ``--x64`` flag; restore the suite's float64 and strict rank promotion after every test."""
    yield
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Drop JAX's in-memory caches of compiled programs after every test module.

    The suite compiles several hundred XLA:CPU executables in one process; kept alive, their code and memory
    mappings accumulate, and late in a full run compiling one more program aborted inside XLA (twice at the same
    test of ``test_vae.py``, which passes when its module runs alone). Programs are not shared across modules, so
    this costs nothing; the persistent compilation cache still serves repeated compiles.
    """
    yield
    import gc

    jax.clear_caches()
    gc.collect()
