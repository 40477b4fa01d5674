"""collapse_theory: JIT-compiled, vmapped JAX simulators of model collapse, checked against exact theory.

Flat public API::

    from collapse_theory import Gaussian, Replace, Accumulate, simulate
    res = simulate(0, Gaussian(dim=1, ddof=1), Replace(), num_chains=4096, num_generations=100,
                   num_samples=10, path="exact")
    res.mean("log_variance"), res.se("log_variance")
"""

__version__ = "0.1.0"

import os as _os

# OpenBLAS (which LAPACK calls on CPU reach through SciPy) deadlocks when several XLA worker threads call it
# at once with its own thread pool on: a vmapped scan with QR, SVD and triangular solves then hangs. One
# OpenBLAS thread per call is also the fastest setting for the small matrices used here. This must be set
# before SciPy loads OpenBLAS; an explicit user setting is kept.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# XLA's multi-threaded Eigen pool on CPU can wedge while materialising the result of a large vmapped scan (observed
# here: the main thread waits in BlockUntilReady while every XLA worker sits idle, forever). Single-threaded Eigen
# avoids it at a cost of ~15-25 % on matmul-heavy CPU programs. It must be set before JAX creates its CPU client;
# set COLLAPSE_THEORY_EIGEN_THREADS=1 (or put the flag in XLA_FLAGS yourself) to keep XLA's default.
if _os.environ.get("COLLAPSE_THEORY_EIGEN_THREADS") != "1" and "xla_cpu_multi_thread_eigen" not in _os.environ.get(
    "XLA_FLAGS", ""
):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

from . import keys as keys
from . import schedules as schedules
from . import theory as theory
from .models import Gaussian as Gaussian
from .models import GaussianParams as GaussianParams
from .models import GaussianStats as GaussianStats
from .regimes import (
    Accumulate as Accumulate,
)
from .regimes import (
    AccumulateSubsample as AccumulateSubsample,
)
from .regimes import (
    FreshFraction as FreshFraction,
)
from .regimes import (
    Replace as Replace,
)
from .regimes import (
    ReplaceGrown as ReplaceGrown,
)
from .schedules import Constant as Constant
from .schedules import Linear as Linear
from .schedules import PowerLaw as PowerLaw
from .simulate import SimulationResult as SimulationResult
from .simulate import simulate as simulate
