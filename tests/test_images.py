"""Offline image datasets (collapse_theory.images): procedural shapes, scikit-learn digits, IDX/MNIST files.

Shapes: shapes, dtypes and range, determinism, class frequencies against the generating probabilities (4 binomial
standard errors, with a power check), separability by a nearest-class-mean classifier, bad inputs. IDX: round trips
for every dtype (plain and gzipped), the exact header bytes, every malformed-file error. MNIST: a tiny folder written
here read back through ``load_mnist``. Digits: skipped without scikit-learn; the missing-package message is checked
by hiding the package.
"""

from __future__ import annotations

import gzip
import math
import os
import sys

import numpy as np
import pytest

from collapse_theory import images as im
from collapse_theory.images import ImageData, Shapes, load_digits, load_mnist, read_idx, write_idx

UNIFORM8 = (0.125,) * 8


def _nearest_mean_accuracy(train: ImageData, test: ImageData) -> float:
    means = np.stack([train.images[train.labels == k].mean(axis=0) for k in range(train.num_classes)])
    dist = ((test.images[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1)
    return float(np.mean(np.argmin(dist, axis=1) == test.labels))


# ---------------------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------------------


def test_shapes_output_shapes_dtypes_range():
    """n rows of size² float64 pixels in [0, 1] and int32 labels in range; catches wrong flattening, dtypes, no clip."""
    data = Shapes().generate(500, seed=0)
    assert isinstance(data, ImageData)
    assert data.images.shape == (500, 64) and data.images.dtype == np.float64
    assert data.labels.shape == (500,) and data.labels.dtype == np.int32
    assert data.image_shape == (8, 8)
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.labels.min() >= 0 and data.labels.max() < data.num_classes
    assert data.class_probs.dtype == np.float64 and data.class_probs.shape == (6,)


def test_shapes_defaults():
    """Default classes and probabilities as documented; catches a changed default or misordered class names."""
    shapes = Shapes()
    assert shapes.class_probs == (0.35, 0.25, 0.18, 0.12, 0.07, 0.03)
    assert shapes.class_names == ("hbar", "vbar", "diag", "square", "plus", "ring")
    assert Shapes(class_probs=UNIFORM8).class_names == im.SHAPE_NAMES
    assert im.SHAPE_NAMES == ("hbar", "vbar", "diag", "square", "plus", "ring", "x", "corner")
    np.testing.assert_array_equal(shapes.generate(3, 0).class_probs, shapes.class_probs)


def test_shapes_deterministic_by_seed():
    """Same (n, seed) gives identical data, another seed different data; catches a global or unseeded RNG."""
    shapes = Shapes()
    a, b, c = shapes.generate(300, seed=7), shapes.generate(300, seed=7), shapes.generate(300, seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.allclose(a.images, c.images)


def test_class_frequencies_match_probs():
    """Label frequencies for n = 20000 lie within 4 binomial SEs of class_probs; catches wrong or reversed sampling."""
    n = 20000
    shapes = Shapes()
    counts = np.bincount(shapes.generate(n, seed=3).labels, minlength=6)
    p = np.asarray(shapes.class_probs)
    se = np.sqrt(p * (1 - p) / n)
    z = (counts / n - p) / se
    assert np.all(np.abs(z) <= 4), z
    # power: the same counts reject reversed probabilities
    wrong = p[::-1]
    assert np.any(np.abs(counts / n - wrong) / np.sqrt(wrong * (1 - wrong) / n) > 4)


@pytest.mark.parametrize("class_probs", [None, UNIFORM8], ids=["default6", "uniform8"])
def test_nearest_class_mean_separability(class_probs):
    """A nearest-class-mean classifier fitted on 2000 images gets >= 90 % on 2000 others; catches look-alike classes."""
    shapes = Shapes(class_probs=class_probs)
    acc = _nearest_mean_accuracy(shapes.generate(2000, seed=1), shapes.generate(2000, seed=2))
    assert acc >= 0.90, acc


def test_size_16():
    """size=16 gives 256-pixel images that stay separable; catches strokes or the frame not scaling with size."""
    shapes = Shapes(size=16)
    train = shapes.generate(1000, seed=1)
    assert train.images.shape == (1000, 256) and train.image_shape == (16, 16)
    assert _nearest_mean_accuracy(train, shapes.generate(1000, seed=2)) >= 0.90


def test_no_jitter_no_noise_is_one_drawing_per_class():
    """jitter=False, noise=0: all images of a class equal and classes differ; catches ignored flags or blank shapes."""
    data = Shapes(class_probs=UNIFORM8, noise=0.0, jitter=False).generate(400, seed=0)
    protos = []
    for k in range(8):
        rows = data.images[data.labels == k]
        assert len(rows) > 1
        np.testing.assert_array_equal(rows, np.broadcast_to(rows[0], rows.shape))
        assert rows[0].max() >= 0.5 and rows[0].sum() >= 6  # a stroke of several pixels (anti-aliased)
        protos.append(rows[0])
    protos = np.stack(protos)
    gaps = ((protos[:, None] - protos[None]) ** 2).sum(-1) + np.eye(8) * 1e9
    assert gaps.min() > 1.0


def test_jitter_and_noise_vary_images():
    """With jitter the images of a class differ and noise adds spread; catches jitter/noise drawn once per batch."""
    clean = Shapes(class_probs=(1.0,), noise=0.0).generate(50, seed=0)
    assert len({row.tobytes() for row in clean.images}) == 50
    peaks = clean.images.max(axis=1)
    assert peaks.min() >= 0.3 and peaks.max() <= 1.0
    noisy = Shapes(class_probs=(1.0,), noise=0.2).generate(50, seed=0)
    assert np.abs(noisy.images - clean.images).mean() > 0.05


def test_generate_20000_is_fast():
    """20000 images at size 8 take well under a second; catches a per-image Python loop."""
    import time

    start = time.perf_counter()
    Shapes().generate(20000, seed=0)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 7}, "size"),
        ({"size": 65}, "size"),
        ({"size": 8.0}, "size"),
        ({"size": True}, "size"),
        ({"class_probs": (0.5, 0.6)}, "class_probs"),
        ({"class_probs": (-0.1, 1.1)}, "class_probs"),
        ({"class_probs": (math.nan, 1.0)}, "class_probs"),
        ({"class_probs": ()}, "class_probs"),
        ({"class_probs": (1 / 9,) * 9}, "class_probs"),
        ({"class_probs": ((0.5, 0.5),)}, "class_probs"),
        ({"class_probs": ("a", "b")}, "class_probs"),
        ({"noise": -0.1}, "noise"),
        ({"noise": math.inf}, "noise"),
        ({"noise": "0.1"}, "noise"),
        ({"jitter": "yes"}, "jitter"),
    ],
)
def test_shapes_rejects_bad_fields(kwargs, match):
    """Each bad field raises ValueError naming it; catches missing validation of size, class_probs, noise, jitter."""
    with pytest.raises(ValueError, match=match):
        Shapes(**kwargs)


@pytest.mark.parametrize("n", [0, -3, 2.0, True])
def test_generate_rejects_bad_n(n):
    """generate(n) with n < 1 or a non-int raises ValueError naming n; catches empty or fractional batches."""
    with pytest.raises(ValueError, match=r"n=.*need an int n >= 1"):
        Shapes().generate(n, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_generate_rejects_bad_seed(seed):
    """A negative, fractional or None seed raises ValueError naming seed; catches silently unseeded generation."""
    with pytest.raises(ValueError, match="seed"):
        Shapes().generate(10, seed=seed)


def test_class_probs_within_1e9_are_renormalised():
    """Probabilities off by < 1e-9 are accepted and renormalised; catches a tolerance too strict or a missing sum."""
    shapes = Shapes(class_probs=(0.5, 0.5 + 5e-10))
    assert math.fsum(shapes.class_probs) == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="class_probs"):
        Shapes(class_probs=(0.5, 0.5 + 1e-8))


# ---------------------------------------------------------------------------------------------------------------
# ImageData
# ---------------------------------------------------------------------------------------------------------------


def test_rare_classes():
    """rare_classes picks classes with class_probs < threshold; catches <= vs < or the empirical frequencies used."""
    data = Shapes().generate(100, seed=0)
    assert data.rare_classes() == (5,)
    assert data.rare_classes(0.1) == (4, 5)
    assert data.rare_classes(0.07) == (5,)  # strict: 0.07 itself is not rare
    assert data.rare_classes(0.0) == ()
    with pytest.raises(ValueError, match="threshold"):
        data.rare_classes(1.5)


def test_subset_and_split():
    """split is a seeded partition into (train, test) and subset selects rows; catches overlap or lost rows."""
    data = Shapes().generate(100, seed=0)
    train, test = data.split(30, seed=4)
    assert len(test.labels) == 30 and len(train.labels) == 70
    rows = np.concatenate([train.images, test.images])
    assert sorted(map(bytes, rows)) == sorted(map(bytes, data.images))
    again, _ = data.split(30, seed=4)
    np.testing.assert_array_equal(again.images, train.images)
    np.testing.assert_array_equal(train.class_probs, data.class_probs)
    sub = data.subset(np.array([3, 1, 3]))
    np.testing.assert_array_equal(sub.images, data.images[[3, 1, 3]])
    np.testing.assert_array_equal(sub.labels, data.labels[[3, 1, 3]])
    mask = data.labels == 0
    np.testing.assert_array_equal(data.subset(mask).labels, data.labels[mask])
    for bad in ([100], [-1], [0.5], np.ones(99, bool), [[0]]):
        with pytest.raises(ValueError, match="index"):
            data.subset(bad)
    for bad in (0, 100, 2.5):
        with pytest.raises(ValueError, match="num_test"):
            data.split(bad)


# ---------------------------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------------------------

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", IDX_DTYPES, ids=[np.dtype(t).name for t in IDX_DTYPES])
def test_idx_round_trip(tmp_path, dtype, suffix):
    """write_idx then read_idx gives the same 3-D and 1-D arrays for every dtype; catches endianness or code mix-ups."""
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    for shape in [(2, 3, 4), (7,)]:
        if info is not None:
            arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        else:
            arr = rng.standard_normal(shape).astype(dtype)
        path = tmp_path / f"a{len(shape)}.idx{suffix}"
        write_idx(path, arr)
        back = read_idx(path)
        assert back.dtype == np.dtype(dtype) and back.shape == shape
        np.testing.assert_array_equal(back, arr)
        assert back.flags.writeable
    if suffix:
        with gzip.open(path, "rb") as fh:
            assert fh.read(2) == b"\x00\x00"


def test_idx_exact_bytes(tmp_path):
    """The header and data bytes match the IDX spec exactly; catches little-endian dims or data, wrong type codes."""
    path = tmp_path / "x.idx"
    write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16))
    expected = bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + b"".join(int(v).to_bytes(2, "big") for v in range(1, 7))
    assert path.read_bytes() == expected
    write_idx(path, np.array([1.5], dtype=">f8"))  # non-native byte order in, same file out
    assert path.read_bytes() == bytes([0, 0, 0x0E, 1, 0, 0, 0, 1]) + np.array([1.5], ">f8").tobytes()


def test_write_idx_atomic_and_overwrites(tmp_path):
    """write_idx leaves no temporary file and replaces an existing file; catches a leaked temp or an in-place write."""
    path = tmp_path / "a.idx"
    write_idx(path, np.zeros(5, np.uint8))
    write_idx(path, np.arange(3, dtype=np.uint8))
    assert os.listdir(tmp_path) == ["a.idx"]
    np.testing.assert_array_equal(read_idx(path), [0, 1, 2])


@pytest.mark.parametrize("dtype", [np.bool_, np.float16, np.int64, np.uint16, np.complex64])
def test_write_idx_rejects_dtype(tmp_path, dtype):
    """Dtypes the IDX format cannot hold raise ValueError naming the dtype; catches silent casting."""
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=dtype))
    assert os.listdir(tmp_path) == []


def test_read_idx_missing_file(tmp_path):
    """A missing file raises FileNotFoundError naming the path; catches a bare OSError or a confusing message."""
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(FileNotFoundError, match="nope-idx1-ubyte"):
        read_idx(path)


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x00", "truncated"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code 0x07"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "truncated: shape \\(3,\\) needs 3 data bytes, found 2"),
        (b"\x00\x00\x0c\x01\x00\x00\x00\x01\x00\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "1 bytes after"),
    ],
    ids=["short", "magic", "code", "header", "data", "int32-data", "trailing"],
)
def test_read_idx_malformed(tmp_path, raw, match):
    """Malformed files raise ValueError naming the path and the defect; catches garbage arrays from bad files."""
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert "bad.idx" in str(info.value)


def test_read_idx_truncated_gz(tmp_path):
    """A gzipped file cut short or not gzip at all raises ValueError naming the path; catches raw EOFError/OSError."""
    path = tmp_path / "a.idx.gz"
    write_idx(path, np.arange(100, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="a.idx.gz"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="a.idx.gz"):
        read_idx(path)


# ---------------------------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------------------------

PIXELS = np.arange(60, dtype=np.uint8).reshape(5, 4, 3) * 4 + 3
LABELS = np.array([3, 0, 9, 3, 1], dtype=np.uint8)


def _write_mnist(directory, split="train", sep="-", suffix="", images=PIXELS, labels=LABELS):
    write_idx(directory / f"{split}-images{sep}idx3-ubyte{suffix}", images)
    write_idx(directory / f"{split}-labels{sep}idx1-ubyte{suffix}", labels)


def test_load_mnist_tiny(tmp_path):
    """5 images of 4×3 come back /255, flattened row-major, with labels and empirical probs; catches scaling/reshape."""
    _write_mnist(tmp_path)
    data = load_mnist(tmp_path)
    assert data.image_shape == (4, 3)
    assert data.images.shape == (5, 12) and data.images.dtype == np.float64
    np.testing.assert_allclose(data.images, PIXELS.reshape(5, 12) / 255.0)
    np.testing.assert_array_equal(data.labels, LABELS)
    assert data.labels.dtype == np.int32
    assert data.class_names == tuple("0123456789")
    expected = np.zeros(10)
    expected[[0, 1, 3, 9]] = [0.2, 0.2, 0.4, 0.2]
    np.testing.assert_allclose(data.class_probs, expected)
    limited = load_mnist(str(tmp_path), limit=2)
    np.testing.assert_array_equal(limited.labels, LABELS[:2])
    np.testing.assert_allclose(limited.class_probs[[0, 3]], [0.5, 0.5])
    assert len(load_mnist(tmp_path, limit=50).labels) == 5


@pytest.mark.parametrize("sep, suffix", [(".", ""), ("-", ".gz"), (".", ".gz")])
def test_load_mnist_name_variants(tmp_path, sep, suffix):
    """The t10k split with dotted and .gz file names loads; catches only the plain names being looked for."""
    _write_mnist(tmp_path, split="t10k", sep=sep, suffix=suffix)
    data = load_mnist(tmp_path, split="t10k")
    np.testing.assert_array_equal(data.labels, LABELS)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, split="train")


def test_load_mnist_missing(tmp_path):
    """A missing folder or file raises FileNotFoundError listing the names looked for; catches a bare read error."""
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*train-labels-idx1-ubyte"):
        load_mnist(tmp_path / "absent")
    write_idx(tmp_path / "train-images-idx3-ubyte", PIXELS)
    with pytest.raises(FileNotFoundError, match=r"train-labels-idx1-ubyte, train-labels\.idx1-ubyte"):
        load_mnist(tmp_path)


def test_load_mnist_count_mismatch(tmp_path):
    """5 images with 4 labels raise ValueError naming both counts; catches silent truncation to the shorter file."""
    _write_mnist(tmp_path, labels=LABELS[:4])
    with pytest.raises(ValueError, match=r"5 images .* 4 labels"):
        load_mnist(tmp_path)


def test_load_mnist_bad_contents(tmp_path):
    """Non-uint8 or non-3-D images and labels outside 0..9 raise ValueError; catches garbage scaled as pixels."""
    _write_mnist(tmp_path, images=PIXELS.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_mnist(tmp_path)
    _write_mnist(tmp_path, labels=np.array([0, 1, 2, 3, 10], np.uint8))
    with pytest.raises(ValueError, match="0..9"):
        load_mnist(tmp_path)


def test_load_mnist_truncated_file(tmp_path):
    """A truncated images file raises ValueError naming it; catches a short read being reshaped or zero-padded."""
    _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"split": "test"}, "split"), ({"limit": 0}, "limit"), ({"limit": 2.0}, "limit"), ({"limit": True}, "limit")],
)
def test_load_mnist_bad_args(tmp_path, kwargs, match):
    """A split other than train/t10k or a limit < 1 raises ValueError naming it; catches unchecked arguments."""
    _write_mnist(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_mnist(tmp_path, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# scikit-learn digits
# ---------------------------------------------------------------------------------------------------------------


def test_load_digits():
    """scikit-learn's 1797 8×8 digits in [0, 1] with empirical probs; catches a missing /16 or wrong image shape."""
    pytest.importorskip("sklearn")
    data = load_digits()
    assert data.images.shape == (1797, 64) and data.image_shape == (8, 8)
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert data.labels.dtype == np.int32 and data.class_names == tuple("0123456789")
    np.testing.assert_allclose(data.class_probs, np.bincount(data.labels, minlength=10) / 1797)


def test_load_digits_without_sklearn(monkeypatch):
    """With scikit-learn unimportable, load_digits raises the install hint; catches an opaque ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"load_digits needs scikit-learn: pip install scikit-learn"):
        load_digits()


def test_thin_makes_classes_rare():
    """thin keeps the stated fraction of the listed classes' rows and every other row, and re-estimates
    class_probs; catches thinning the wrong classes or keeping the complement."""
    data = Shapes(class_probs=(0.25, 0.25, 0.25, 0.25)).generate(4000, seed=0)
    thin = data.thin([2, 3], keep=0.2, seed=1)
    for c in (0, 1):
        assert np.sum(thin.labels == c) == np.sum(data.labels == c)
    for c in (2, 3):
        assert np.sum(thin.labels == c) == round(0.2 * np.sum(data.labels == c))
    assert thin.class_probs.sum() == pytest.approx(1.0)
    assert thin.rare_classes(0.1) == (2, 3)
    with pytest.raises(ValueError, match="keep"):
        data.thin([0], keep=0.0)
    with pytest.raises(ValueError, match="classes"):
        data.thin([7], keep=0.5)


def test_load_images_by_name_reads_an_idx_folder(tmp_path):
    """The experiments' dataset names resolve: 'mnist:DIR' reads IDX files (rare classes thinned), 'shapes' is the
    procedural set, unknown names raise; catches a broken path from the figure script's --dataset option."""
    from collapse_theory.checks.vae import load_images

    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (50, 4, 4), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", (np.arange(50) % 10).astype(np.uint8))
    data = load_images(f"mnist:{tmp_path}", num_images=40, rare=(9,), keep=0.25)
    assert data.image_shape == (4, 4) and data.images.max() <= 1.0
    assert np.sum(data.labels == 9) == 1 and np.sum(data.labels == 0) == 4
    assert load_images("shapes", num_images=30).images.shape == (30, 64)
    with pytest.raises(ValueError, match="dataset"):
        load_images("cifar")
    with pytest.raises(FileNotFoundError):
        load_images(f"mnist:{tmp_path / 'missing'}")
