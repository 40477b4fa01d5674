"""Test configuration: float64 for theory checks, strict rank promotion (catches (n,) vs (n, 1) bugs).

Compiled programs are cached on disk (``COLLAPSE_THEORY_TEST_CACHE``, default ``~/.cache/collapse_theory/jax-tests``;
``0`` disables it): a repeated run of the suite then skips most XLA compiles. The cache changes no result.
"""

import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

_cache = os.environ.get("COLLAPSE_THEORY_TEST_CACHE", str(Path.home() / ".cache" / "collapse_theory" / "jax-tests"))
if _cache != "0":
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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
