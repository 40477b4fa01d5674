"""Test configuration: float64 for theory checks, strict rank promotion (catches (n,) vs (n, 1) bugs)."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
