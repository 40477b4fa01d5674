r"""Input validation shared by the closed-form theory modules (NumPy only).

Every helper raises :class:`ValueError` whose message names the parameter, the
offending value and the allowed range, for example::

    num_samples=1 is out of range: need num_samples >= 2 for ddof=1
    (an unbiased variance needs two samples)

Conventions enforced here:

* bools are rejected wherever a number is expected (``True`` is an ``int`` in
  Python, but ``num_fits=True`` is always a bug);
* integers may be given as Python/NumPy integers or as integer-valued finite
  floats (``1e3`` is accepted as ``1000``; ``2.5``, ``nan`` and ``inf`` are
  rejected);
* per-fit sample-size sequences ``M_0, ..., M_{L-1}`` must have length
  ``L >= max(num_fits)``; only the first ``max(num_fits)`` entries are used
  (so one sequence serves a whole curve over ``num_fits``).
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

__all__ = [
    "is_real",
    "is_integer",
    "require_int",
    "require_int_array",
    "require_finite",
    "require_positive",
    "require_in_interval",
    "require_ddof",
    "min_samples_for_ddof",
    "sample_sizes",
]


def _fmt(value) -> str:
    """Short human-readable rendering of ``value`` for error messages."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=8, separator=", ")
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return _fmt(np.asarray(value, dtype=object))
    return repr(value)


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """A real number of any kind (``np.float32(0.5)`` and ``np.int64(3)`` too), not a bool."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def is_integer(value) -> bool:
    """An integer of any kind (``np.int64(3)`` too), not a bool."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


NUMBER_KINDS = "iuf"
"""``dtype.kind`` of the integer and float arrays that may hold whole numbers (not ``np.issubdtype(.., np.integer)``:
NumPy counts timedelta64 as a signed integer)."""


def first_not_whole(x: np.ndarray, lo, hi):
    """``(index, value)`` of the first entry of the integer or float array ``x`` that is not a whole number in
    ``[lo, hi]``, or ``None``."""
    bad = (x < lo) | (x > hi) | (x != np.round(x))
    if not bad.any():
        return None
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    return where, x[where].item()


def require_ids(name: str, rows, upper: int, what: str, bound: str) -> None:
    """Raise unless ``rows`` (any array-like) holds whole numbers in ``[0, upper)`` in an integer or float array:
    the ids a model indexes with (token ids, category indices), which JAX indexing would otherwise clip or drop
    silently. ``what`` names one entry ("token id"), ``bound`` the model setting that gives ``upper``."""
    x = np.asarray(rows)
    if x.dtype.kind not in NUMBER_KINDS:
        raise ValueError(f"{name} has dtype {x.dtype}: need {what}s (integers in [0, {upper}))")
    found = first_not_whole(x, 0, upper - 1)
    if found is not None:
        where, value = found
        raise ValueError(f"{name} holds {what} {value!r} at {where}: need whole numbers in [0, {upper}) ({bound})")


def require_int(name: str, value, minimum: int | None = None, *, reason: str = "") -> int:
    r"""Return ``value`` as a Python ``int``, or raise ``ValueError``.

    Args:
      name: parameter name used in the error message.
      value: an integer, or an integer-valued finite real number.
      minimum: smallest allowed value (inclusive); ``None`` for no bound.
      reason: optional text appended to the range message (e.g. ``"for ddof=1"``).

    Returns:
      The value as ``int``.

    Raises:
      ValueError: if ``value`` is a bool, not a real number, not finite, not
        integer-valued, or below ``minimum``.

    Examples:
      >>> require_int("num_fits", 3.0, 0)
      3
    """
    bound = f" >= {minimum}" if minimum is not None else ""
    suffix = f" {reason}" if reason else ""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (np.ndarray, list, tuple)):
        raise ValueError(
            f"{name}={_fmt(value)} is an array: need one integer{bound}{suffix} (a scalar; loop over values)"
        )
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name}={_fmt(value)} is not an integer: need an integer{bound}{suffix}"
        )
    if isinstance(value, numbers.Integral):
        result = operator.index(value)
    else:
        as_float = float(value)
        if not np.isfinite(as_float):
            raise ValueError(
                f"{name}={_fmt(value)} is not finite: need an integer{bound}{suffix}"
            )
        if not as_float.is_integer():
            raise ValueError(
                f"{name}={_fmt(value)} is not an integer: need an integer{bound}{suffix}"
            )
        result = int(as_float)
    if abs(result) > 2**62:  # beyond int64 arithmetic (np.asarray of it raised a bare OverflowError)
        raise ValueError(f"{name}={_fmt(value)} is out of range: need |{name}| <= 2**62")
    if minimum is not None and result < minimum:
        raise ValueError(
            f"{name}={_fmt(value)} is out of range: need {name}{bound}{suffix}"
        )
    return result


def require_int_array(name: str, value, minimum: int | None = None, *, reason: str = "") -> np.ndarray:
    r"""Return ``value`` as an ``int64`` array of any shape, or raise ``ValueError``.

    Scalars give 0-d arrays. Elements must be integers or integer-valued finite
    floats; bool arrays are rejected.

    Args:
      name: parameter name used in the error message.
      value: integer scalar or array-like of integers.
      minimum: smallest allowed element (inclusive); ``None`` for no bound.
      reason: optional text appended to the range message.

    Returns:
      ``np.ndarray`` of dtype ``int64`` with the shape of ``value``.

    Raises:
      ValueError: for bools, non-numeric, non-finite, non-integer or too small
        elements.

    Examples:
      >>> require_int_array("num_fits", [0, 1, 2], 0)
      array([0, 1, 2])
    """
    if not isinstance(value, (list, tuple)) and np.ndim(value) == 0:
        return np.asarray(require_int(name, value, minimum, reason=reason), dtype=np.int64)
    bound = f" >= {minimum}" if minimum is not None else ""
    suffix = f" {reason}" if reason else ""
    if _contains_bool(value):
        raise ValueError(
            f"{name}={_fmt(value)} is not an integer array: need integers{bound}{suffix} "
            "(bools are rejected)"
        )
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged input and the like
        raise ValueError(
            f"{name}={_fmt(value)} is not an integer array: need integers{bound}{suffix}"
        ) from exc
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name}={_fmt(value)} is not an integer array: need integers{bound}{suffix}"
            + (" (bools are rejected)" if arr.dtype.kind == "b" else "")
        )
    if arr.dtype.kind == "u" and arr.size and arr.max() > 2**62:  # would wrap to a negative int64
        raise ValueError(f"{name}={_fmt(value)} is out of range: need |{name}| <= 2**62")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}={_fmt(value)} is not finite: need integers{bound}{suffix}")
        if np.any(np.abs(arr) > 2.0**62):
            raise ValueError(f"{name}={_fmt(value)} is out of range: need |{name}| <= 2**62")
        if not np.all(arr == np.floor(arr)):
            raise ValueError(
                f"{name}={_fmt(value)} is not an integer array: need integers{bound}{suffix}"
            )
    out = arr.astype(np.int64)
    if out.size == 0:
        raise ValueError(f"{name}={_fmt(value)} is empty: need at least one integer{bound}{suffix}")
    if minimum is not None and out.min() < minimum:
        raise ValueError(
            f"{name}={_fmt(value)} is out of range: need {name}{bound}{suffix}"
        )
    return out


def _contains_bool(value) -> bool:
    """True for bool scalars/arrays and for (nested) lists or tuples holding a bool."""
    if _is_bool(value):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "b" or (
            value.dtype == object and any(_contains_bool(v) for v in value.ravel())
        )
    if isinstance(value, (list, tuple)):
        return any(_contains_bool(v) for v in value)
    return False


def require_finite(name: str, value, need: str = "a finite real number") -> float:
    r"""Return ``value`` as a finite Python ``float``, or raise ``ValueError`` ending in ``need: <need>``.

    Examples:
      >>> require_finite("s", 2)
      2.0
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={_fmt(value)} is not a real number: need {need}")
    result = float(value)
    if not np.isfinite(result):
        raise ValueError(f"{name}={_fmt(value)} is not finite: need {need}")
    return result


def require_in_interval(
    name: str,
    value,
    lo: float = -np.inf,
    hi: float = np.inf,
    lo_open: bool = False,
    hi_open: bool = False,
    *,
    reason: str = "",
) -> float:
    r"""Return ``value`` as a finite ``float`` inside an interval, or raise ``ValueError``.

    Args:
      name: parameter name used in the error message.
      value: real number.
      lo, hi: interval end points (may be infinite).
      lo_open, hi_open: whether the corresponding end point is excluded.
      reason: optional text appended to the range message.

    Returns:
      The value as ``float``.

    Raises:
      ValueError: if ``value`` is not a finite real number or lies outside the
        interval. The message shows the interval, e.g. ``need gamma in (0, 1]``.

    Examples:
      >>> require_in_interval("gamma", 0.25, 0.0, 1.0, lo_open=True)
      0.25
    """
    suffix = f" {reason}" if reason else ""
    if np.isinf(hi) and not np.isinf(lo):
        need = f"finite {name} {'>' if lo_open else '>='} {_num(lo)}"
    elif np.isinf(lo) and not np.isinf(hi):
        need = f"finite {name} {'<' if hi_open else '<='} {_num(hi)}"
    elif np.isinf(lo) and np.isinf(hi):
        need = "a finite real number"
    else:
        left = "(" if lo_open or np.isinf(lo) else "["
        right = ")" if hi_open or np.isinf(hi) else "]"
        need = f"{name} in {left}{_num(lo)}, {_num(hi)}{right}"
    result = require_finite(name, value, need + suffix)  # a NaN or a string names the range too
    too_low = result <= lo if lo_open else result < lo
    too_high = result >= hi if hi_open else result > hi
    if too_low or too_high:
        raise ValueError(f"{name}={_fmt(value)} is out of range: need {need}{suffix}")
    return result


def _num(x: float) -> str:
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def require_positive(name: str, value) -> float:
    r"""Return ``value`` as a finite ``float > 0``, or raise ``ValueError``.

    Examples:
      >>> require_positive("sigma2", 4)
      4.0
    """
    return require_in_interval(name, value, 0.0, np.inf, lo_open=True)


def require_ddof(ddof) -> int:
    r"""Return ``ddof`` (0 = MLE, divide by M; 1 = unbiased, divide by M-1), or raise.

    Examples:
      >>> require_ddof(1)
      1
    """
    if _is_bool(ddof) or not isinstance(ddof, numbers.Real) or ddof not in (0, 1):
        raise ValueError(
            f"ddof={_fmt(ddof)} is out of range: need ddof in {{0, 1}} "
            "(0 = maximum likelihood, 1 = unbiased)"
        )
    return int(ddof)


def min_samples_for_ddof(ddof: int) -> tuple[int, str]:
    r"""Smallest admissible per-fit sample size for ``ddof`` and the reason text.

    Examples:
      >>> min_samples_for_ddof(1)
      (2, 'for ddof=1 (an unbiased variance needs two samples)')
    """
    if ddof == 1:
        return 2, "for ddof=1 (an unbiased variance needs two samples)"
    return 1, "for ddof=0"


def sample_sizes(
    num_samples,
    num_fits,
    *,
    minimum: int = 1,
    reason: str = "",
    name: str = "num_samples",
) -> np.ndarray:
    r"""Validate per-fit sample sizes :math:`M_0, \dots, M_{n-1}`.

    ``num_samples`` is either a scalar :math:`M` (every fit uses :math:`M`
    samples) or a 1-D sequence of per-fit sizes. A sequence must have length
    :math:`\ge \max(\text{num\_fits})`; only its first :math:`\max(\text{num\_fits})`
    entries are used (so one sequence serves a whole curve over ``num_fits``).

    Args:
      num_samples: scalar integer or 1-D sequence of integers.
      num_fits: integer or integer array of fit counts (already validated or not).
      minimum: smallest admissible sample size (inclusive).
      reason: text appended to the range message, e.g. ``"for ddof=1 (...)"``.
      name: parameter name used in the error message.

    Returns:
      ``int64`` array: 0-d for a scalar ``num_samples``, otherwise 1-D of
      length ``max(num_fits)`` (0 when ``num_fits`` is all zeros).

    Raises:
      ValueError: bools, non-integers, non-finite values, sizes below
        ``minimum`` (the message names the offending index), a sequence that
        is not 1-D, or one that is shorter than ``max(num_fits)``.

    Examples:
      >>> sample_sizes(10, 3)
      array(10)
      >>> sample_sizes([5, 6, 7, 8], 3)
      array([5, 6, 7])
    """
    fits = require_int_array("num_fits", num_fits, 0)
    max_fits = int(fits.max()) if fits.size else 0
    try:
        ndim = np.ndim(num_samples)
    except ValueError:  # ragged nested input
        ndim = -1
    if ndim == -1:
        raise ValueError(
            f"{name}={_fmt(num_samples)} is ragged: need a scalar or a 1-D sequence of "
            "per-fit sample sizes"
        )
    if _is_bool(num_samples) or ndim == 0:
        m = require_int(name, num_samples, minimum, reason=reason)
        return np.asarray(m, dtype=np.int64)
    arr = np.asarray(num_samples)
    if arr.ndim != 1:
        raise ValueError(
            f"{name}={_fmt(num_samples)} has shape {arr.shape}: need a scalar or a 1-D "
            "sequence of per-fit sample sizes"
        )
    if len(arr) < max_fits:
        raise ValueError(
            f"{name} has length {len(arr)}, which is out of range: need "
            f"len({name}) >= max(num_fits) = {max_fits} (one size per fit)"
        )
    head = arr[:max_fits]
    if isinstance(num_samples, (list, tuple)) or arr.dtype == object:
        # Validate the original Python objects so that bools are caught by index.
        sizes = [
            require_int(f"{name}[{i}]", _scalar(num_samples[i]), minimum, reason=reason)
            for i in range(max_fits)
        ]
        return np.asarray(sizes, dtype=np.int64).reshape(max_fits)
    try:
        return require_int_array(name, head, minimum, reason=reason).reshape(max_fits)
    except ValueError:
        # Re-validate element by element so that the message names the index
        # (this also accepts object arrays of valid Python integers).
        sizes = [
            require_int(f"{name}[{i}]", _scalar(head[i]), minimum, reason=reason)
            for i in range(max_fits)
        ]
        return np.asarray(sizes, dtype=np.int64).reshape(max_fits)


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value
