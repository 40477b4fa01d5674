r"""Per-generation sample sizes :math:`M_t`, :math:`t = 1, 2, \dots` (``t`` counts fits; ``t = 1`` is the fit on
real data).

A schedule is a static, hashable object; the engine evaluates it once on the host into an integer array, so the
jitted loop indexes a table and never rounds floats itself. Shumailov et al. (Nature 2024, SI §3.1.1) show that
the Wasserstein distance of the 1-D Gaussian chain, :math:`\tfrac32\sigma^2\sum_i 1/M_i`, stays finite only if
:math:`M_t` grows superlinearly; :class:`PowerLaw` with ``exponent > 1`` is that case. :class:`Explicit` takes the
sizes as given, one per generation (``simulate(..., num_samples=[10, 20, 30])``: the per-fit sequences the theory
functions of :mod:`collapse_theory.theory.gaussian` take), in any order.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

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


_EXPLICIT_NEED = f"need a non-empty 1-D sequence of ints 1 <= M_t <= 2**31 - 1 = {MAX_SIZE}, one per generation"


def _explicit_values(values) -> tuple[int, ...]:
    """``values`` as a tuple of Python ints, or a ValueError naming ``num_samples``, the entry and the range."""
    if isinstance(values, (str, bytes)) or (not isinstance(values, (list, tuple, range)) and np.ndim(values) == 0):
        raise ValueError(f"num_samples={values!r} is not a sequence: {_EXPLICIT_NEED}")
    try:  # object dtype keeps each entry as given (a bool stays a bool; NumPy scalars become Python numbers)
        entries = np.asarray(values, dtype=object)
    except ValueError:  # ragged nesting NumPy cannot hold
        raise ValueError(f"num_samples is ragged: {_EXPLICIT_NEED}") from None
    if entries.ndim != 1:
        raise ValueError(f"num_samples has shape {entries.shape}, which is out of range: {_EXPLICIT_NEED}")
    if entries.size == 0:
        raise ValueError(f"num_samples is empty: {_EXPLICIT_NEED}")
    out = []
    for i, v in enumerate(entries.tolist()):
        where = f"num_samples[{i}]={v!r} (M_{i + 1}, generation t={i + 1})"
        if isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{where} is a bool, not an integer: {_EXPLICIT_NEED}")
        if not is_real(v):
            raise ValueError(f"{where} is not an integer: {_EXPLICIT_NEED}")
        if not isinstance(v, numbers.Integral):
            if not math.isfinite(v):
                raise ValueError(f"{where} is not finite: {_EXPLICIT_NEED}")
            if not float(v).is_integer():
                raise ValueError(f"{where} is not an integer: {_EXPLICIT_NEED}")
        v = int(v)
        if not 1 <= v <= MAX_SIZE:
            raise ValueError(f"{where} is out of range: {_EXPLICIT_NEED}")
        out.append(v)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Explicit:
    r""":math:`M_t` = ``values[t-1]``, as given, for :math:`t = 1, \dots,` ``len(values)`` (a run may use fewer
    generations, never more). ``values`` is any 1-D sequence of integers (a list, a tuple, a NumPy array;
    integer-valued floats such as ``10.0`` are taken as ints), stored as a tuple of ints so the schedule is hashable
    and records as a JSON list. The sizes need not grow."""

    values: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "values", _explicit_values(self.values))

    def sizes(self, num_generations: int) -> np.ndarray:
        if num_generations > len(self.values):
            raise ValueError(f"num_samples has {len(self.values)} sizes but num_generations={num_generations}: "
                             f"need num_generations <= {len(self.values)} (one size M_t per generation t), or "
                             f"give more sizes")
        return np.asarray(self.values[:num_generations], dtype=np.int64)


Schedule = Constant | Linear | PowerLaw | Explicit


def as_schedule(num_samples) -> Schedule:
    """An int becomes :class:`Constant`; a 1-D sequence of ints (list, tuple, array) :class:`Explicit`; a schedule
    passes through."""
    if isinstance(num_samples, (Constant, Linear, PowerLaw, Explicit)):
        return num_samples
    if isinstance(num_samples, (list, tuple, range)) or (hasattr(num_samples, "__array__")
                                                         and np.ndim(num_samples) > 0):
        return Explicit(num_samples)
    return Constant(num_samples)
