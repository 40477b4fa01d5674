r"""Per-generation sample sizes :math:`M_t`, :math:`t = 1, 2, \dots` (``t`` counts fits; ``t = 1`` is the fit on
real data).

A schedule is a static, hashable object; the engine evaluates it once on the host into an integer array, so the
jitted loop indexes a table and never rounds floats itself. Shumailov et al. (Nature 2024, SI §3.1.1) show that
the Wasserstein distance of the 1-D Gaussian chain, :math:`\tfrac32\sigma^2\sum_i 1/M_i`, stays finite only if
:math:`M_t` grows superlinearly; :class:`PowerLaw` with ``exponent > 1`` is that case.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .theory._validate import is_real

MAX_SIZE = 2**31 - 1
"""Largest M_t: the engine's per-generation counts and row indices are 32-bit integers."""


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} must be an int")
    if value < minimum:
        raise ValueError(f"{name}={value} is out of range: need {name} >= {minimum}")


def _checked(schedule, sizes: np.ndarray) -> np.ndarray:
    """``sizes`` (float or int) as int64, or a ValueError naming the first generation above :data:`MAX_SIZE`."""
    too_big = ~(np.asarray(sizes, np.float64) <= MAX_SIZE)
    if np.any(too_big):
        t = int(np.flatnonzero(too_big)[0]) + 1
        given = schedule.size if isinstance(schedule, Constant) else repr(schedule)
        raise ValueError(f"num_samples={given} gives M_{t} = {float(sizes[t - 1]):.4g} at generation t={t}, out of "
                         f"range: need M_t <= 2**31 - 1 = {MAX_SIZE} (32-bit counts and row indices)")
    return np.asarray(sizes).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Constant:
    """:math:`M_t = M` for every generation."""

    size: int

    def __post_init__(self):
        _check_positive_int("num_samples", self.size)

    def sizes(self, num_generations: int) -> np.ndarray:
        return _checked(self, np.full(num_generations, self.size, dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class Linear:
    r""":math:`M_t = M_1 + \mathrm{slope}\,(t-1)` (integers)."""

    first: int
    slope: int

    def __post_init__(self):
        _check_positive_int("first", self.first)
        _check_positive_int("slope", self.slope, minimum=0)

    def sizes(self, num_generations: int) -> np.ndarray:
        return _checked(self, self.first + self.slope * np.arange(num_generations, dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    r""":math:`M_t = \mathrm{round}(M_1\, t^{p})`; ``exponent`` p > 1 keeps :math:`\sum_t 1/M_t` finite."""

    first: int
    exponent: float

    def __post_init__(self):
        _check_positive_int("first", self.first)
        if not is_real(self.exponent):
            raise ValueError(f"exponent={self.exponent!r} is not a real number: need a finite exponent >= 0")
        if not np.isfinite(self.exponent) or self.exponent < 0:
            raise ValueError(f"exponent={self.exponent} is out of range: need a finite exponent >= 0")

    def sizes(self, num_generations: int) -> np.ndarray:
        t = np.arange(1, num_generations + 1, dtype=np.float64)
        with np.errstate(over="ignore"):  # inf is refused by name below
            return _checked(self, np.rint(self.first * t**self.exponent))


Schedule = Constant | Linear | PowerLaw


def as_schedule(num_samples) -> Schedule:
    """An int becomes :class:`Constant`; a schedule passes through."""
    if isinstance(num_samples, (Constant, Linear, PowerLaw)):
        return num_samples
    return Constant(num_samples)
