r"""Closed-form theory for model-collapse chains (pure NumPy/SciPy, no JAX).

Each submodule collects the exact or asymptotic formulas that the simulators in
:mod:`collapse_theory` are tested against, with the formula, its conventions and
its reference in every docstring (see ``THEORY.md`` for the derivations).

Submodules:
  gaussian: 1-D and d-dimensional Gaussian refitting chains (replace,
    accumulate, fresh-data fraction).
  regression: linear-regression chains (replace / accumulate, fixed or fresh
    design), the downstream model of Dohmatob et al., strong model collapse.
  categorical: categorical / Zipf chains (Wright–Fisher heterozygosity,
    survival, fixation, accumulate and smoothed refits, memorizer tails).
  kde: the Gaussian-KDE replace chain (spread and drift).
"""

from . import categorical as categorical
from . import gaussian as gaussian
from . import kde as kde
from . import regression as regression
