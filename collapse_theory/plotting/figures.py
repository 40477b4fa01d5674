r"""Figure helpers: styles, theory-vs-simulation panels, byte-reproducible atomic saving.

Everything here works headless: figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so
no GUI backend is touched and no figure is registered in pyplot's global state (nothing to close, nothing
leaked); :meth:`~matplotlib.figure.Figure.savefig` renders PNG with Agg and PDF with matplotlib's PDF backend.

Reproducibility: :func:`save_figure` strips the time stamps (PDF ``CreationDate``, PNG ``Software``, SVG ``Date``)
and fixes ``svg.hashsalt``, so re-running a figure script on the same data and library versions gives identical
bytes; PDF and PS fonts are embedded as TrueType (``pdf.fonttype: 42``; the default Type 3 fonts are rejected by
many venues).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.figure import Figure

_HERE = Path(__file__).resolve().parent
STYLES = {"paper": _HERE / "paper.mplstyle", "classroom": _HERE / "classroom.mplstyle"}

_SAVE_RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "collapse_theory"}
# Time stamps and tool versions are what make otherwise identical files differ from run to run.
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def style_path(name: str) -> Path:
    """Path of a shipped style, ``"paper"`` or ``"classroom"``."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"style={name!r} is not one of {sorted(STYLES)}") from None


@contextlib.contextmanager
def style_context(name: str = "paper", rc: dict | None = None) -> Iterator[None]:
    """Apply a shipped style (plus ``rc`` overrides) inside a ``with`` block; the caller's rcParams come back after.

    Build *and* save the figure inside the block: some settings are read when artists are made, others
    (``savefig.*``, ``pdf.fonttype``) when the file is written.
    """
    styles: list = [str(style_path(name))]
    if rc:
        styles.append(dict(rc))
    with matplotlib.style.context(styles):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=None, squeeze: bool = True, **subplots_kw):
    """A pyplot-free figure with a grid of axes (constrained layout from the style).

    Returns:
      ``(fig, axes)`` as :func:`matplotlib.pyplot.subplots` would (``axes`` an ndarray unless squeezed).
    """
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplots_kw)
    return fig, axes


def _tokens(text: str) -> list[str]:
    """Split at spaces, keeping each ``$...$`` mathtext span in one token."""
    tokens, current, in_math = [], "", False
    for ch in text:
        if ch == "$" and not (current.endswith("\\")):
            in_math = not in_math
        if ch == " " and not in_math:
            tokens.append(current)
            current = ""
        else:
            current += ch
    tokens.append(current)
    return [tok for tok in tokens if tok]


def wrap_text(text: str, width_pt: float, fontsize_pt: float, weight="normal") -> str:
    """Greedy word wrap of ``text`` (mathtext allowed) to lines at most ``width_pt`` wide, measured with the
    font of the current rcParams; existing newlines are kept."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(size=fontsize_pt, weight=weight)

    def width(s: str) -> float:
        return text_to_path.get_text_width_height_descent(s, prop, ismath=s.count("$") >= 2)[0]

    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for tok in _tokens(paragraph):
            trial = f"{line} {tok}" if line else tok
            if line and width(trial) > width_pt:
                lines.append(line)
                line = tok
            else:
                line = trial
        lines.append(line)
    return "\n".join(lines)


def caption(fig: Figure, text: str, *, fontsize=None, wrap: bool = True) -> None:
    """Put a caption under the figure (as the figure's ``supxlabel``, so constrained layout makes room).

    The text is word-wrapped to the figure width (mathtext spans are never split).
    """
    from matplotlib.font_manager import FontProperties

    size = FontProperties(size=fontsize if fontsize is not None else "small").get_size_in_points()
    if wrap:
        text = wrap_text(text, 0.97 * fig.get_figwidth() * 72.0, size)
    fig.supxlabel(text, ha="center", linespacing=1.35, fontsize=size)


def suptitle(fig: Figure, text: str, *, min_shrink: float = 0.8, **kwargs):
    """``fig.suptitle`` that fits the figure width: the style's ``figure.titlesize`` is reduced (down to
    ``min_shrink`` of it) to keep one line, and the text is word-wrapped if that is not enough."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    size = FontProperties(size=kwargs.pop("fontsize", matplotlib.rcParams["figure.titlesize"])).get_size_in_points()
    weight = kwargs.pop("fontweight", matplotlib.rcParams["figure.titleweight"])
    width_pt = 0.97 * fig.get_figwidth() * 72.0
    if "\n" not in text:
        prop = FontProperties(size=size, weight=weight)
        width = text_to_path.get_text_width_height_descent(text, prop, ismath=text.count("$") >= 2)[0]
        if width > width_pt and width * min_shrink <= width_pt:
            size *= width_pt / width
    text = wrap_text(text, width_pt, size, weight=weight)
    return fig.suptitle(text, fontsize=size, fontweight=weight, **kwargs)


def marker_indices(num_points: int, num_markers: int, *, log: bool = False) -> np.ndarray:
    """Indices of about ``num_markers`` points spread evenly along ``0..num_points-1`` (in log(1+i) if ``log``).

    Used to thin the markers of a long simulated curve (the band still shows every point).
    """
    if num_points <= num_markers:
        return np.arange(num_points)
    if log:
        idx = np.unique(np.round(np.geomspace(1, num_points, num_markers)).astype(int) - 1)
    else:
        idx = np.unique(np.round(np.linspace(0, num_points - 1, num_markers)).astype(int))
    return idx


_PLAIN_RANGE = (1e-3, 1e4)


def _plain_log_formatter_class():
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        """Label the ticks a log formatter would label; as plain numbers (``0.3``, ``20``) inside
        ``_PLAIN_RANGE``, as powers of ten outside it."""

        def __call__(self, x, pos=None):
            label = super().__call__(x, pos)
            if label and _PLAIN_RANGE[0] <= abs(x) < _PLAIN_RANGE[1]:
                return f"{x:g}"
            return label

    return PlainLogFormatter


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Label a log axis with plain numbers (``0.3``, ``20``) between 1e-3 and 1e4 instead of ``3×10⁻¹``, and
    with powers of ten outside; minor ticks are labelled when the axis spans about a decade or less."""
    target = getattr(ax, f"{axis}axis")
    formatter = _plain_log_formatter_class()
    target.set_major_formatter(formatter(labelOnlyBase=False))
    target.set_minor_formatter(formatter(labelOnlyBase=False))


def log_log_axes(*axes, xlabel: str = "generation t (number of fits)") -> None:
    """Log x and y scales, plain y tick labels (:func:`plain_log_ticks`) and the x label, on each of ``axes``."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax, "y")
        ax.set_xlabel(xlabel)


def theory_vs_simulation(
    ax,
    t,
    mean,
    se,
    theory,
    label: str | None = None,
    *,
    color=None,
    marker: str = "o",
    z: float = 2.0,
    band: bool = True,
    band_scale: str = "auto",
    errorbars: bool = False,
    num_markers: int | None = 25,
    log_markers: bool | None = None,
    theory_style: str = "-",
    sim_line: bool | None = None,
    markersize=None,
    zorder: float = 2.0,
):
    r"""Draw one series: theory as a line, the simulation mean as markers with a ±z·SE band (or error bars).

    Args:
      ax: the axes.
      t: ``(G,)`` x values (generations).
      mean: ``(G,)`` simulation means over chains.
      se: ``(G,)`` Monte-Carlo standard errors of ``mean`` (``None``: no band).
      theory: ``(G,)`` theory at ``t``, or ``None`` (no exact theory: the markers are then joined by a thin line).
      label: legend text for the series (the returned ``handle`` overlays line, marker and band).
      color: a colour; default the axes' next colour.
      marker: marker for the simulation.
      z: band half-width in standard errors (2 = the usual ±2 SE).
      band: shade the ±z·SE interval over every ``t``.
      band_scale: ``"linear"``: ``mean ± z·se``; ``"log"``: ``mean·exp(±z·se/mean)``, the delta-method interval
        of ``log mean``, which stays positive on a log axis where ``mean − z·se ≤ 0`` would run off the axis
        (the two agree when ``se ≪ mean``); ``"auto"`` (default): ``"log"`` on a log y axis.
      errorbars: draw ``± z·se`` error bars at the marker positions instead of (or with) the band.
      num_markers: thin the markers to about this many points (``None``: every point).
      log_markers: space the thinned markers evenly in log t (default: if the x axis is log).
      theory_style: line style of the theory (``"-"`` solid, ``"--"`` for an approximation or bound).
      sim_line: join the markers with a thin line (default: only when ``theory`` is None).
      markersize: marker size (default from the style).
      zorder: base z-order (band below, theory line, markers on top).

    Returns:
      ``dict`` with ``theory`` (Line2D or None), ``sim`` (Line2D), ``band`` (collection or None), ``errorbars``
      (container or None) and ``handle``, a tuple of artists for ``ax.legend(handles, labels)``.
    """
    t = np.asarray(t, dtype=float)
    mean = np.asarray(mean, dtype=float)
    if mean.shape != t.shape:
        raise ValueError(f"mean has shape {mean.shape}: need the shape of t, {t.shape}")
    theory_line = None
    if theory is not None:
        theory = np.broadcast_to(np.asarray(theory, dtype=float), t.shape)
        (theory_line,) = ax.plot(t, theory, theory_style, color=color, marker="", zorder=zorder + 0.5,
                                 label="_nolegend_")
        color = theory_line.get_color()
    if sim_line is None:
        sim_line = theory is None
    if log_markers is None:
        log_markers = ax.get_xscale() == "log"
    idx = np.arange(t.size) if num_markers is None else marker_indices(t.size, num_markers, log=log_markers)
    kw = {} if markersize is None else {"markersize": markersize}
    if sim_line:
        (line,) = ax.plot(t, mean, "-", color=color, linewidth=0.8, alpha=0.8, zorder=zorder + 0.4,
                          label="_nolegend_")
        color = line.get_color()
    (sim,) = ax.plot(t[idx], mean[idx], linestyle="none", marker=marker, color=color, markeredgewidth=0.5,
                     markeredgecolor="white", zorder=zorder + 1, label="_nolegend_", **kw)
    color = sim.get_color()
    band_artist = bars = None
    if se is not None:
        se = np.broadcast_to(np.asarray(se, dtype=float), t.shape)
        if band_scale == "auto":
            band_scale = "log" if ax.get_yscale() == "log" else "linear"
        if band_scale == "log":
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                factor = np.where(mean > 0, np.exp(z * se / mean), np.nan)
            lower, upper = mean / factor, mean * factor
        elif band_scale == "linear":
            lower, upper = mean - z * se, mean + z * se
        else:
            raise ValueError(f"band_scale={band_scale!r} is not one of ('auto', 'linear', 'log')")
        if band:
            band_artist = ax.fill_between(t, lower, upper, color=color, alpha=0.22, linewidth=0, zorder=zorder,
                                          label="_nolegend_")
        if errorbars:
            yerr = np.stack([mean[idx] - lower[idx], upper[idx] - mean[idx]])
            bars = ax.errorbar(t[idx], mean[idx], yerr=yerr, fmt="none", ecolor=color, elinewidth=0.8,
                               zorder=zorder + 0.9, label="_nolegend_")
    handle = tuple(a for a in (band_artist, theory_line, sim) if a is not None)
    if label is not None:
        sim.set_label(label)
    return {"theory": theory_line, "sim": sim, "band": band_artist, "errorbars": bars, "handle": handle}


def _atomic_save(fig: Figure, path: Path, fmt: str, **kwargs) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format=fmt, **kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_figure(fig: Figure, out_dir, name: str, *, formats: Sequence[str] = ("png", "pdf"), dpi: int = 200):
    """Write ``out_dir/name.<fmt>`` for each format, byte-reproducibly and atomically (temp file + os.replace).

    PNG at ``dpi`` (default 200); PDF/PS with TrueType (type 42) fonts; time stamps removed, so two runs with
    the same data and library versions give identical bytes. ``out_dir`` is created if needed.

    Returns:
      The list of written paths, in ``formats`` order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not name or Path(name).name != name:
        raise ValueError(f"name={name!r} must be a plain file name without directories")
    paths = []
    engine = fig.get_layout_engine()
    with matplotlib.rc_context(_SAVE_RC):
        # Lay the figure out once and freeze it, so that every format (and a repeated call) shares one layout:
        # constrained layout re-run at the PDF's 72 dpi would otherwise shift a later PNG by a pixel.
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        try:
            for fmt in formats:
                fmt = fmt.lower().lstrip(".")
                path = out / f"{name}.{fmt}"
                _atomic_save(fig, path, fmt, dpi=dpi, metadata=_METADATA.get(fmt))
                paths.append(path)
        finally:
            fig.set_layout_engine(engine)
    return paths


def report_saved(name: str, paths, simulation_s: float, start: float) -> None:
    """Print the written paths (stdout) and the timing line of an experiment (stderr)."""
    import sys
    import time

    for path in paths:
        print(path)
    sys.stdout.flush()
    print(f"{name}: simulation {simulation_s:.1f} s, total {time.perf_counter() - start:.1f} s", file=sys.stderr)


def run_figure(name: str, out_dir, simulate, draw, *, style: str = "paper") -> int:
    """An experiment script's work after parsing its arguments: time ``simulate()`` (the simulation), build the
    figure with ``draw(data)`` inside :func:`style_context` (``style``) — one Figure, saved as ``out_dir/name.png``
    and ``.pdf``, or a dict of file names to Figures — save it (:func:`save_figure`) and report the paths and the
    timing (:func:`report_saved`); returns the exit code 0."""
    import time

    start = time.perf_counter()
    data = simulate()
    simulation_s = time.perf_counter() - start
    with style_context(style):
        figures = draw(data)
        if not isinstance(figures, dict):
            figures = {name: figures}
        paths = [path for file_name, fig in figures.items() for path in save_figure(fig, out_dir, file_name)]
    report_saved(name, paths, simulation_s, start)
    return 0
