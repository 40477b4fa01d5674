r"""Offline image datasets for the VAE model-collapse experiment: procedural shapes, scikit-learn digits, MNIST files.

Recursive training of VAEs (each generation fitted to samples of the last) loses rare classes first. Measuring that
tail loss needs images with a known class label and, ideally, known class frequencies. Every loader here returns an
:class:`ImageData` (images flattened row-major to ``(N, H*W)`` float64 in [0, 1], int32 labels, the image shape,
the class names and the class frequencies) and needs nothing but NumPy and local files:

* **Shapes** (:class:`Shapes`): small grayscale line drawings rendered procedurally, one class per shape, classes
  drawn i.i.d. from known probabilities that deliberately include rare classes. The default is six classes —
  ``hbar`` (horizontal bar), ``vbar`` (vertical bar), ``diag`` (main-diagonal stroke, top left to bottom right),
  ``square`` (hollow square outline), ``plus`` (plus sign), ``ring`` (hollow circle) — with probabilities
  (0.35, 0.25, 0.18, 0.12, 0.07, 0.03); ``x`` (diagonal cross) and ``corner`` (an L: left side and bottom) are
  available as classes 7 and 8 by passing longer ``class_probs``. Each image gets a random sub-pixel shift, stroke
  thickness, extent and intensity (in [0.7, 1]), then Gaussian pixel noise, clipped to [0, 1]. Strokes are
  anti-aliased (a pixel's value falls linearly over one pixel at the stroke's edge), so the same drawing works at
  any size from 8 to 64 pixels; a stroke lying between two pixel rows shares its intensity between them, so an
  image's brightest pixel can be below the stroke intensity. ``class_probs`` of the result are the *generating*
  probabilities, not the empirical frequencies.
* **Digits** (:func:`load_digits`): scikit-learn's shipped 8×8 handwritten digits (1797 images, pixel values 0..16
  divided by 16); needs scikit-learn, imported only when called. ``class_probs`` are the empirical frequencies.
* **MNIST** (:func:`load_mnist`): the MNIST files (or any data in the same IDX format) from a local folder, pixel
  values divided by 255; ``class_probs`` are the empirical frequencies over the ten digits. :func:`read_idx` and
  :func:`write_idx` read and write the IDX format itself (gzipped when the name ends in ``.gz``).

Examples:
  >>> from collapse_theory.images import Shapes
  >>> data = Shapes().generate(1000, seed=0)
  >>> data.images.shape, data.image_shape, data.num_classes
  ((1000, 64), (8, 8), 6)
  >>> data.class_names
  ('hbar', 'vbar', 'diag', 'square', 'plus', 'ring')
  >>> data.rare_classes(0.1)
  (4, 5)
  >>> train, test = data.split(200, seed=1)
  >>> len(train.labels), len(test.labels)
  (800, 200)
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from typing import NamedTuple

import numpy as np

from .io import atomic_write_bytes

SHAPE_NAMES = ("hbar", "vbar", "diag", "square", "plus", "ring", "x", "corner")
"""Names of the procedural shape classes, in class-index order (:class:`Shapes` uses the first ``len(class_probs)``)."""

DEFAULT_CLASS_PROBS = (0.35, 0.25, 0.18, 0.12, 0.07, 0.03)
"""Default :class:`Shapes` class probabilities: six classes, the last two (``plus``, ``ring``) rare."""

DIGIT_NAMES = tuple(str(d) for d in range(10))

_IDX_CODES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}
_IDX_TYPES = {t: c for c, t in _IDX_CODES.items()}
_RENDER_CHUNK = 1 << 20  # pixels per rendering chunk (bounds the temporaries at size 64)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_seed(seed) -> int:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} is out of range: need an int seed >= 0")
    return int(seed)


def _empirical_probs(labels: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return counts / max(len(labels), 1)


class ImageData(NamedTuple):
    """A labelled image dataset.

    Attributes:
      images: float64 array (N, H*W) with values in [0, 1]; each row is one image flattened row-major.
      labels: int32 array (N,) of class indices in [0, num_classes).
      image_shape: (H, W) of one image.
      class_names: one name per class.
      class_probs: float64 array (K,): the generating class frequencies when known (:class:`Shapes`), else the
        empirical frequencies of the loaded data. :meth:`subset` and :meth:`split` keep the parent's values.
    """

    images: np.ndarray
    labels: np.ndarray
    image_shape: tuple
    class_names: tuple
    class_probs: np.ndarray

    @property
    def num_classes(self) -> int:
        """The number of classes K."""
        return len(self.class_names)

    def subset(self, index) -> ImageData:
        """The rows selected by ``index``.

        Args:
          index: an integer array of row indices in [0, N) (repeats allowed) or a boolean mask of length N.

        Returns:
          An :class:`ImageData` with the selected rows, in ``index`` order, and the parent's ``class_probs``.

        Raises:
          ValueError: ``index`` is not 1-D, not integer/boolean, has the wrong mask length or an index out of range.
        """
        n = len(self.labels)
        idx = np.asarray(index)
        if idx.ndim != 1:
            raise ValueError(f"index has shape {idx.shape}: need a 1-D integer array or boolean mask")
        if idx.dtype == np.bool_:
            if len(idx) != n:
                raise ValueError(f"index is a boolean mask of length {len(idx)}: need length N={n}")
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.intp)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"index has dtype {idx.dtype}: need an integer array or boolean mask")
        elif idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"index holds {int(idx.min())}..{int(idx.max())}, out of range: need 0 <= index < {n}")
        return self._replace(images=self.images[idx], labels=self.labels[idx])

    def split(self, num_test: int, seed: int = 0) -> tuple[ImageData, ImageData]:
        """A random train/test split.

        Args:
          num_test: rows in the test part, 1 <= num_test <= N - 1.
          seed: int >= 0 for ``np.random.default_rng``; the split is a function of (N, num_test, seed).

        Returns:
          ``(train, test)``: the rows of a seeded permutation, test first ``num_test``, train the rest, both in
          permuted order.

        Raises:
          ValueError: ``num_test`` or ``seed`` out of range.
        """
        n = len(self.labels)
        if not _is_int(num_test) or not 1 <= num_test <= n - 1:
            raise ValueError(f"num_test={num_test!r} is out of range: need an int num_test in [1, {n - 1}] (N={n})")
        perm = np.random.default_rng(_check_seed(seed)).permutation(n)
        return self.subset(perm[num_test:]), self.subset(perm[:num_test])

    def thin(self, classes, keep: float, seed: int = 0) -> ImageData:
        """Make ``classes`` rare: keep a random fraction ``keep`` of their rows (all rows of the other classes).

        Turns a balanced dataset (digits, MNIST) into one with deliberately rare classes. ``class_probs`` become
        the empirical frequencies of the result.

        Args:
          classes: class indices in [0, K).
          keep: fraction in (0, 1] of each listed class's rows to keep (at least one row per class is kept).
          seed: int >= 0 for ``np.random.default_rng``.

        Raises:
          ValueError: a class index or ``keep`` out of range.
        """
        classes = [int(c) for c in np.atleast_1d(classes)]
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"classes={bad} are out of range: need class indices in [0, {self.num_classes})")
        ok = isinstance(keep, (int, float, np.floating)) and not isinstance(keep, bool)
        if not ok or not math.isfinite(keep) or not 0 < keep <= 1:
            raise ValueError(f"keep={keep!r} is out of range: need a fraction 0 < keep <= 1")
        rng = np.random.default_rng(_check_seed(seed))
        mask = np.ones(len(self.labels), bool)
        for c in classes:
            rows = np.flatnonzero(self.labels == c)
            if len(rows):
                drop = rng.permutation(rows)[max(1, round(keep * len(rows))):]
                mask[drop] = False
        out = self.subset(mask)
        return out._replace(class_probs=_empirical_probs(out.labels, self.num_classes))

    def rare_classes(self, threshold: float = 0.05) -> tuple[int, ...]:
        """Indices of the classes whose ``class_probs`` are below ``threshold``.

        Args:
          threshold: a finite probability in [0, 1].

        Returns:
          A tuple of class indices, ascending.

        Raises:
          ValueError: ``threshold`` is not a finite number in [0, 1].
        """
        ok = isinstance(threshold, (int, float, np.floating, np.integer)) and not isinstance(threshold, bool)
        if not ok or not math.isfinite(threshold) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold={threshold!r} is out of range: need a finite threshold in [0, 1]")
        return tuple(int(k) for k in np.flatnonzero(np.asarray(self.class_probs) < threshold))


# ---------------------------------------------------------------------------------------------------------------
# Procedural shapes
# ---------------------------------------------------------------------------------------------------------------


def _segment_dist(u, v, x0, y0, x1, y1):
    """Euclidean distance from points (u, v) to the segment (x0, y0)–(x1, y1); all arguments broadcast."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(u - x0 - t * dx, v - y0 - t * dy)


def _shape_dist(name: str, u, v, e):
    """Distance from (u, v) to the centre line of shape ``name`` at extent factor ``e``, in 8-pixel-frame units.

    The frame spans [-4, 4] on both axes, centred on the image; ``v`` grows downwards (row index).
    """
    zero = np.zeros_like(e)
    if name == "hbar":
        a = 3.0 * e
        return _segment_dist(u, v, -a, zero, a, zero)
    if name == "vbar":
        a = 3.0 * e
        return _segment_dist(u, v, zero, -a, zero, a)
    if name == "diag":
        a = 2.8 * e
        return _segment_dist(u, v, -a, -a, a, a)
    if name == "square":
        a = 2.7 * e
        return np.abs(np.maximum(np.abs(u), np.abs(v)) - a)
    if name == "plus":
        a = 3.0 * e
        return np.minimum(_segment_dist(u, v, -a, zero, a, zero), _segment_dist(u, v, zero, -a, zero, a))
    if name == "ring":
        return np.abs(np.hypot(u, v) - 2.2 * e)
    if name == "x":
        a = 2.8 * e
        return np.minimum(_segment_dist(u, v, -a, -a, a, a), _segment_dist(u, v, -a, a, a, -a))
    if name == "corner":
        a = 2.6 * e
        return np.minimum(_segment_dist(u, v, -a, -a, -a, a), _segment_dist(u, v, -a, a, a, a))
    raise ValueError(f"name={name!r} is not a shape: need one of {SHAPE_NAMES}")  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Procedural grayscale shapes with known class labels and class frequencies (see the module docstring).

    Attributes:
      size: image side in pixels, an int in [8, 64]; images are ``size × size``.
      class_probs: class probabilities, non-negative, summing to 1 within 1e-9, 1 to 8 entries; class k is
        ``SHAPE_NAMES[k]``. ``None`` (the default) means :data:`DEFAULT_CLASS_PROBS`; the stored value is the tuple
        of floats renormalised to sum to exactly 1.
      noise: standard deviation of the additive Gaussian pixel noise (a finite float >= 0); pixels are clipped to
        [0, 1] afterwards.
      jitter: whether each image gets a random shift (up to ±0.75 pixel at size 8, scaled with size), stroke
        half-thickness (0.45..0.7), extent (×0.85..1.1) and intensity (0.7..1). Without jitter every image of a
        class is the same drawing (centred, half-thickness 0.55, extent 1, intensity 1) plus noise.
    """

    size: int = 8
    class_probs: tuple | None = None
    noise: float = 0.05
    jitter: bool = True

    def __post_init__(self):
        if not _is_int(self.size) or not 8 <= self.size <= 64:
            raise ValueError(f"size={self.size!r} is out of range: need an int size in [8, 64]")
        object.__setattr__(self, "size", int(self.size))
        probs = DEFAULT_CLASS_PROBS if self.class_probs is None else self.class_probs
        try:
            p = np.asarray(probs, dtype=np.float64)
        except (TypeError, ValueError):
            p = None
        if p is None or p.ndim != 1 or not 1 <= len(p) <= len(SHAPE_NAMES):
            raise ValueError(
                f"class_probs={self.class_probs!r} is out of range: need a sequence of 1 to {len(SHAPE_NAMES)} "
                "probabilities"
            )
        if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
            raise ValueError(
                f"class_probs={self.class_probs!r} is out of range: need finite probabilities >= 0 summing to 1 "
                f"(within 1e-9; the sum is {p.sum()!r})"
            )
        object.__setattr__(self, "class_probs", tuple(float(x) for x in p / p.sum()))
        ok = isinstance(self.noise, (int, float, np.floating, np.integer)) and not isinstance(self.noise, bool)
        if not ok or not math.isfinite(self.noise) or self.noise < 0:
            raise ValueError(f"noise={self.noise!r} is out of range: need a finite noise >= 0")
        object.__setattr__(self, "noise", float(self.noise))
        if not isinstance(self.jitter, (bool, np.bool_)):
            raise ValueError(f"jitter={self.jitter!r} is out of range: need a bool")
        object.__setattr__(self, "jitter", bool(self.jitter))

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classes in use: the first ``len(class_probs)`` of :data:`SHAPE_NAMES`."""
        return SHAPE_NAMES[: len(self.class_probs)]

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(class_probs)``."""
        return len(self.class_probs)

    def generate(self, n: int, seed: int = 0) -> ImageData:
        """Draw ``n`` labelled images.

        Labels are i.i.d. from ``class_probs``; the jitter parameters and the noise are drawn afterwards from the
        same ``np.random.default_rng(seed)``, so the result is a function of (self, n, seed) only.

        Args:
          n: number of images, an int >= 1.
          seed: an int >= 0.

        Returns:
          An :class:`ImageData` with ``images`` (n, size²), ``image_shape`` (size, size) and ``class_probs`` the
          generating probabilities.

        Raises:
          ValueError: ``n`` or ``seed`` out of range.
        """
        if not _is_int(n) or n < 1:
            raise ValueError(f"n={n!r} is out of range: need an int n >= 1")
        n = int(n)
        rng = np.random.default_rng(_check_seed(seed))
        s = self.size
        probs = np.asarray(self.class_probs)
        labels = rng.choice(len(probs), size=n, p=probs).astype(np.int32)
        if self.jitter:
            ox, oy = rng.uniform(-0.75, 0.75, size=(2, n))
            half = rng.uniform(0.45, 0.7, size=n)
            ext = rng.uniform(0.85, 1.1, size=n)
            amp = rng.uniform(0.7, 1.0, size=n)
        else:
            ox = oy = np.zeros(n)
            half, ext, amp = np.full(n, 0.55), np.ones(n), np.ones(n)
        scale = s / 8.0  # pixels per frame unit
        grid = (np.arange(s) + 0.5 - s / 2) / scale  # pixel centres in the [-4, 4] frame
        images = np.empty((n, s, s))
        chunk = max(1, _RENDER_CHUNK // (s * s))
        for k, name in enumerate(self.class_names):
            rows = np.flatnonzero(labels == k)
            for start in range(0, len(rows), chunk):
                r = rows[start : start + chunk]
                u = grid[None, None, :] - ox[r, None, None]
                v = grid[None, :, None] - oy[r, None, None]
                dist = _shape_dist(name, u, v, ext[r, None, None])
                # anti-aliased stroke: full inside the half-thickness, a one-pixel linear edge, zero beyond
                images[r] = amp[r, None, None] * np.clip((half[r, None, None] - dist) * scale + 0.5, 0.0, 1.0)
        images = images.reshape(n, s * s)
        if self.noise > 0:
            images += self.noise * rng.standard_normal(images.shape)
            np.clip(images, 0.0, 1.0, out=images)
        return ImageData(images, labels, (s, s), self.class_names, probs.copy())


# ---------------------------------------------------------------------------------------------------------------
# scikit-learn digits
# ---------------------------------------------------------------------------------------------------------------


def load_digits() -> ImageData:
    """scikit-learn's shipped 8×8 handwritten digits (``sklearn.datasets.load_digits``), pixels divided by 16.

    Returns:
      An :class:`ImageData` with 1797 images (N, 64), class names "0".."9" and the empirical class frequencies.

    Raises:
      ImportError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from err
    bunch = _sk_load_digits()
    images = np.asarray(bunch.data, dtype=np.float64) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int32)
    return ImageData(images, labels, (8, 8), DIGIT_NAMES, _empirical_probs(labels, 10))


# ---------------------------------------------------------------------------------------------------------------
# IDX files (MNIST)
# ---------------------------------------------------------------------------------------------------------------


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gunzipping it when the name ends in ``.gz``.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions (one byte), each dimension as a big-endian uint32, then the data,
    big-endian, row-major.

    Args:
      path: the file (str or path-like).

    Returns:
      A new, writable array in native byte order with the file's dtype and shape.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: not a readable gzip stream, bad magic bytes, an unknown type code, a truncated header or data,
        or bytes after the data.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file {path!r} does not exist (or is not a regular file)")
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"IDX file {path!r} is not a readable gzip file: {err}") from err
    if len(raw) < 4:
        raise ValueError(f"IDX file {path!r} is truncated: {len(raw)} bytes, need at least a 4-byte header")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"IDX file {path!r} has bad magic bytes {raw[:2].hex()}: need 0000 (is it an IDX file?)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_CODES:
        allowed = ", ".join(f"0x{c:02X}" for c in _IDX_CODES)
        raise ValueError(f"IDX file {path!r} has unknown type code 0x{code:02X}: need one of {allowed}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path!r} is truncated: {len(raw)} bytes, the header of {ndim} dims needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_CODES[code]).newbyteorder(">")
    need = math.prod(shape) * dtype.itemsize
    have = len(raw) - header
    if have < need:
        raise ValueError(f"IDX file {path!r} is truncated: shape {shape} needs {need} data bytes, found {have}")
    if have > need:
        raise ValueError(f"IDX file {path!r} has {have - need} bytes after the data of shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file, gzipped when the name ends in ``.gz``, atomically (temp file + rename).

    Args:
      path: the file (str or path-like); its folder is created if missing.
      array: a uint8, int8, int16, int32, float32 or float64 array with at most 255 dimensions, each < 2**32.

    Raises:
      ValueError: an unsupported dtype, too many dimensions or a dimension too large.
    """
    path = os.fspath(path)
    arr = np.asarray(array)
    code = _IDX_TYPES.get(arr.dtype.type)
    if code is None:
        allowed = ", ".join(np.dtype(t).name for t in _IDX_TYPES)
        raise ValueError(f"array has dtype {arr.dtype}, which IDX cannot store: need one of {allowed}")
    if arr.ndim > 255 or any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"array has shape {arr.shape}: IDX needs at most 255 dims, each < 2**32")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).tobytes()
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)


def _find(directory: str, names: list[str]) -> str | None:
    for name in names:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def load_mnist(directory, split: str = "train", limit: int | None = None) -> ImageData:
    """MNIST (or any IDX image/label pair laid out like it) from a local folder.

    Reads ``{prefix}-images-idx3-ubyte`` and ``{prefix}-labels-idx1-ubyte`` with prefix ``split``, also accepting
    the dotted names (``train-images.idx3-ubyte``) and gzipped ``.gz`` variants.

    Args:
      directory: the folder holding the files.
      split: "train" (60000 images in MNIST) or "t10k" (10000).
      limit: keep only the first ``limit`` images (an int >= 1), or None for all.

    Returns:
      An :class:`ImageData`: uint8 pixels divided by 255, flattened; ``image_shape`` (H, W) from the file;
      class names "0".."9"; ``class_probs`` the empirical frequencies of the kept labels over the ten classes.

    Raises:
      ValueError: ``split`` or ``limit`` out of range; image and label counts disagree; the images are not a
        uint8 (N, H, W) array; the labels are not a 1-D array of integers in 0..9.
      FileNotFoundError: the folder or either file is missing (the message lists the names looked for).
    """
    if split not in ("train", "t10k"):
        raise ValueError(f"split={split!r} is out of range: need 'train' or 't10k'")
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise ValueError(f"limit={limit!r} is out of range: need None or an int limit >= 1")
    directory = os.fspath(directory)
    candidates = {}
    for kind, idx in (("images", 3), ("labels", 1)):
        names = [f"{split}-{kind}-idx{idx}-ubyte", f"{split}-{kind}.idx{idx}-ubyte"]
        candidates[kind] = names + [f"{name}.gz" for name in names]
    if not os.path.isdir(directory):
        looked = ", ".join(candidates["images"] + candidates["labels"])
        raise FileNotFoundError(f"MNIST directory {directory!r} does not exist (looked for {looked})")
    found = {}
    for kind, names in candidates.items():
        found[kind] = _find(directory, names)
        if found[kind] is None:
            raise FileNotFoundError(f"no MNIST {split} {kind} in {directory!r}: looked for {', '.join(names)}")
    images = read_idx(found["images"])
    labels = read_idx(found["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{found['images']!r} holds a {images.dtype} array of shape {images.shape}: need uint8 (N, H, W)"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{found['labels']!r} holds a {labels.dtype} array of shape {labels.shape}: need 1-D ints")
    if len(images) != len(labels):
        raise ValueError(
            f"MNIST {split} files disagree: {len(images)} images in {found['images']!r} but {len(labels)} labels in "
            f"{found['labels']!r}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{found['labels']!r} holds labels {labels.min()}..{labels.max()}: need 0..9")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    n, h, w = images.shape
    labels = labels.astype(np.int32)
    return ImageData(
        images.reshape(n, h * w).astype(np.float64) / 255.0, labels, (h, w), DIGIT_NAMES, _empirical_probs(labels, 10)
    )
