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
# A second, separate hazard (jaxlib 0.10 on CPU): a batched LAPACK kernel (eigh, SVD, Cholesky of a vmapped batch)
# runs its batch on XLA's intra-op pool and blocks a pool thread while it waits; when as many independent batched
# LAPACK calls as the pool has threads (2 on a 2-core machine) run at once, every thread waits and the program
# hangs. Models order such calls with data dependencies (see models/regression.py metrics).

from . import keys as keys
from . import schedules as schedules
from . import theory as theory
from .merge import merge_results as merge_results  # noqa: E402
from .models import VAE as VAE  # noqa: E402
from .models import Categorical as Categorical  # noqa: E402
from .models import Gaussian as Gaussian
from .models import GaussianMixture as GaussianMixture  # noqa: E401
from .models import GaussianParams as GaussianParams
from .models import GaussianStats as GaussianStats
from .models import KernelDensity as KernelDensity
from .models import NGram as NGram  # noqa: E402
from .regimes import (
    Accumulate as Accumulate,
)
from .regimes import (
    AccumulateSubsample as AccumulateSubsample,
)
from .regimes import (
    FreshFraction as FreshFraction,
)
from .regimes import Gate as Gate  # noqa: E402
from .regimes import (
    Replace as Replace,
)
from .regimes import (
    ReplaceGrown as ReplaceGrown,
)
from .schedules import Constant as Constant
from .schedules import Explicit as Explicit
from .schedules import Linear as Linear
from .schedules import PowerLaw as PowerLaw
from .simulate import SimulationResult as SimulationResult
from .simulate import simulate as simulate
from .sweep import run_sweep as run_sweep  # noqa: E402
