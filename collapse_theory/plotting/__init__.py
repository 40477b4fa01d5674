r"""Plotting helpers for collapse_theory figures (matplotlib, imported lazily).

``import collapse_theory`` never imports matplotlib, and neither does ``import collapse_theory.plotting``: the
helpers below load :mod:`collapse_theory.plotting.figures` (and matplotlib) on first use.

Conventions (STYLE.md §3d): theory is a solid line, simulation is markers with a ±2 SE band; the number of
chains, M, ddof, regime and path go in the caption; files are written byte-reproducibly (PNG at 200 dpi and PDF
with TrueType fonts), each atomically.

Styles ship as package data: ``paper.mplstyle`` (8–9 pt, constrained layout) and ``classroom.mplstyle`` (big
fonts). Use them through :func:`style_context`, which restores the caller's rcParams on exit.

Examples:
  >>> from collapse_theory import plotting
  >>> with plotting.style_context("paper"):  # doctest: +SKIP
  ...     fig, ax = plotting.new_figure()
  ...     plotting.theory_vs_simulation(ax, t, mean, se, theory, "M = 10")
  ...     plotting.save_figure(fig, "figures", "example")
"""

from __future__ import annotations

import importlib

__all__ = [
    "STYLES",
    "style_path",
    "style_context",
    "new_figure",
    "save_figure",
    "theory_vs_simulation",
    "marker_indices",
    "caption",
    "suptitle",
    "wrap_text",
    "plain_log_ticks",
    "log_log_axes",
    "report_saved",
    "run_figure",
]


def experiment_parser(name: str, description: str, quick_help: str):
    """The command line every ``experiments/fig_*.py`` script shares: ``--quick``, ``--out`` (default
    ``figures``) and ``--seed`` (default 0); scripts add their own options. Imports no matplotlib."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"fig_{name}", description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default="figures", help="output directory (default: figures/)")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    return parser


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".figures", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
