r"""The theorem checker: a registry of checks, each comparing a simulation with a closed-form formula.

A :class:`Check` names the paper and theorem, states the formula, and runs the simulator; it returns one
:class:`Measurement` per quantity (theory, simulation mean, Monte-Carlo standard error). The runner computes
:math:`z = (\text{simulation} - \text{theory})/\mathrm{SE}` and passes a row when :math:`|z| \le z_{\max}`
(default 4: a two-sided false alarm of 6e-5 per row).

**Power.** Every measurement also carries the value of a *planted* wrong formula (an off-by-one ddof, π²/5 for
π²/6, a generation index shifted by one, a missing factor). ``tests/test_checks.py`` asserts the same check
rejects it (:math:`|z_{\rm planted}| > z_{\max}`), so no row passes because its tolerance is vacuous.

Standard errors use the analytic standard deviation where the theory module provides it (log-variance,
log-determinant); otherwise the sample standard deviation over chains, and then only for light-tailed statistics
(the parameters of each check keep the relevant moments finite and modest).

Other families register their checks with :func:`register` in their own ``checks/<family>.py`` module, imported
at the bottom of this file.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

DEFAULT_Z = 4.0


@dataclasses.dataclass(frozen=True)
class Measurement:
    r"""One row: a quantity at given parameters, its theory value, the simulation mean and its SE.

    ``approx_rel`` is the budget, relative to the theory value, for the finite-size error of an *approximate*
    formula (0 for an exact one): z then divides by :math:`\sqrt{SE^2 + (\text{approx\_rel}\cdot\text{theory})^2}`,
    for the theory and for the planted formula alike, and the row records the budget."""

    quantity: str
    theory: float
    simulation: float
    se: float
    planted: float
    params: dict
    approx_rel: float = 0.0


class QuickFull(NamedTuple):
    """A setting that differs between quick mode and the full run (a number of chains, a network's size); the
    check's run function reads it with :meth:`pick`, so the declared value is the one that runs."""

    quick: Any
    full: Any

    def pick(self, quick: bool):
        return self.quick if quick else self.full

    def __str__(self) -> str:
        return f"{self.quick}/{self.full}"


def scaled(quick: int, factor: int = 8) -> QuickFull:
    """A quick-mode count and the full run's ``factor`` times as many (the checks' usual chain counts)."""
    return QuickFull(quick, factor * quick)


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check.

    Attributes:
      name: unique, kebab-case.
      family: model family (``gaussian``, ...).
      reference: paper and theorem (and THEORY.md section).
      formula: the formula checked, in plain text.
      planted: the wrong formula its power check must reject.
      run: ``run(quick: bool, seed: int) -> list[Measurement]``.
      empirical: no formula is claimed: the rows report a simulated curve (mean, standard error, number of
        chains) for the record, their ``theory`` and ``planted`` are NaN and the table labels them ``EMPIRICAL``
        instead of PASS/FAIL.
      params: the fixed parameters the check is evaluated at, declared at registration from the same constants its
        ``run`` reads, under the key names of its rows' ``params``. A :class:`QuickFull` value differs between
        quick mode and the full run; a plain tuple lists the values the rows take (fit indices, or one value per
        sub-run); anything else is the one value every row that names the key has. ``collapse-theory list`` prints
        them (:func:`format_params`).
      task: the worker task of ``check --jobs N`` that runs it (default: its family). Checks that share cached
        simulations must share a task; a family's checks that share none may be split, so that no one task
        holds up the others (the strong-collapse checks, the VAE image check).
    """

    name: str
    family: str
    reference: str
    formula: str
    planted: str
    run: Callable[[bool, int], list[Measurement]]
    empirical: bool = False
    params: dict = dataclasses.field(default_factory=dict, hash=False)
    task: str | None = None


CHECKS: dict[str, Check] = {}


def _format_value(value) -> str:
    if isinstance(value, QuickFull):
        return str(value)
    if isinstance(value, tuple):
        inner = ", ".join(_format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, str) and (" " in value or "," in value):
        return repr(value)  # quoted, so that the text cannot read as the next key
    return str(value)


def format_params(params: dict) -> str:
    """A check's declared parameters on one line, e.g. ``M=10, n=(5, 20, 50), num_chains=20000/160000`` (a
    :class:`QuickFull` value prints as quick/full, a string with a space or comma in quotes)."""
    return ", ".join(f"{key}={_format_value(value)}" for key, value in params.items())


def params_json(params: dict) -> dict:
    """A check's declared parameters as JSON-ready values: tuples become lists, a :class:`QuickFull` value
    ``{"quick": ..., "full": ...}``."""

    def convert(value):
        if isinstance(value, QuickFull):
            return {"quick": convert(value.quick), "full": convert(value.full)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return {key: convert(value) for key, value in params.items()}


def compile_options(quick: bool):
    """``simulate``'s ``compiler_options`` for a check: :data:`~collapse_theory.simulate.FAST_COMPILE` in quick
    mode, where compiling the small programs costs more than running them (``check --quick`` cold: the Gaussian
    family 19 → 17 s, the VAE family 26 → 19 s on 2 cores), XLA's defaults otherwise."""
    from ..simulate import FAST_COMPILE

    return FAST_COMPILE if quick else None


def register(check: Check) -> Check:
    if check.name in CHECKS:
        raise ValueError(f"a check named {check.name!r} is already registered")
    CHECKS[check.name] = check
    return check


def select(names=None, families=None) -> list[Check]:
    """Checks filtered by name and family; unknown names raise with the list of known ones."""
    chosen = list(CHECKS.values())
    if families:
        known = {c.family for c in chosen}
        bad = set(families) - known
        if bad:
            raise ValueError(f"family={sorted(bad)} unknown; known families: {sorted(known)}")
        chosen = [c for c in chosen if c.family in families]
    if names:
        bad = set(names) - set(CHECKS)
        if bad:
            raise ValueError(f"name={sorted(bad)} unknown; known checks: {sorted(CHECKS)}")
        chosen = [c for c in chosen if c.name in names]
    if not chosen:  # an empty table would read as a pass
        raise ValueError(f"name={sorted(names)} and family={sorted(families)} select no check together: "
                         f"the named checks belong to {sorted({CHECKS[n].family for n in names})}")
    return chosen


def _z(simulation: float, theory: float, se: float) -> float:
    if not (math.isfinite(simulation) and math.isfinite(theory)):
        return math.inf
    if se <= 0 or not math.isfinite(se):
        return 0.0 if simulation == theory else math.inf
    return (simulation - theory) / se


def run_check(check: Check, *, quick: bool = False, seed: int = 0, z_max: float = DEFAULT_Z) -> list[dict]:
    """Run one check and return its table rows (JSON-ready dicts)."""
    rows = []
    for m in check.run(quick, seed):
        if check.empirical:
            z = z_planted = math.nan
        else:
            scale = math.hypot(m.se, m.approx_rel * abs(m.theory))
            z = _z(m.simulation, m.theory, scale)
            z_planted = _z(m.simulation, m.planted, scale)
        rows.append(
            {
                "name": check.name,
                "family": check.family,
                "reference": check.reference,
                "formula": check.formula,
                "quantity": m.quantity,
                "params": m.params,
                "kind": "empirical" if check.empirical else "theorem",
                "theory": float(m.theory),
                "simulation": float(m.simulation),
                "se": float(m.se),
                "approx_rel": float(m.approx_rel),
                "z": float(z),
                "passed": None if check.empirical else bool(abs(z) <= z_max),  # an empirical row claims nothing
                "planted_formula": check.planted,
                "planted_theory": float(m.planted),
                "planted_z": float(z_planted),
                "planted_rejected": None if check.empirical else bool(abs(z_planted) > z_max),
            }
        )
    return rows


def run_checks(names: list[str], *, quick: bool = False, seed: int = 0, z_max: float = DEFAULT_Z,
               progress=None) -> list[dict]:
    """Rows of the named checks, in the given order; ``progress(name)`` is called before each."""
    rows = []
    for name in names:
        if progress is not None:
            progress(name)
        rows += run_check(CHECKS[name], quick=quick, seed=seed, z_max=z_max)
    return rows


_SLOWEST_TASKS_FIRST = ("gaussian", "regression", "vae-images", "categorical", "regression-mixing", "gmm", "kde",
                        "vae", "ngram")
"""Worker tasks by their quick-mode time, cold, on 2 cores (15, 14, 13, 12, 10, 5, 4, 4, 3 s): each free worker
takes the next, so the last ones to start are short."""


def run_checks_parallel(checks: list[Check], jobs: int, *, quick: bool = False, seed: int = 0,
                        z_max: float = DEFAULT_Z, worker_init=None, worker_args=(), progress=None) -> list[dict]:
    """:func:`run_checks` with the checks of each task (:attr:`Check.task`, default the family) in one job,
    ``jobs`` worker processes (spawned, so each has its own JAX runtime; ``worker_init(*worker_args)`` configures
    it). Checks of one task share cached simulations, so a task is never split. Rows come back in the order of
    ``checks``; every row is the same as a serial run's (each check derives its keys from ``seed`` alone)."""
    import concurrent.futures
    import multiprocessing

    tasks: dict[str, list[str]] = {}
    for c in checks:
        tasks.setdefault(c.task or c.family, []).append(c.name)
    # the longest tasks first, so that the pool's last tasks are short ones (measured on 2 cores, quick mode)
    order = {task: i for i, task in enumerate(_SLOWEST_TASKS_FIRST)}
    tasks = dict(sorted(tasks.items(), key=lambda item: order.get(item[0], len(order))))
    if jobs <= 1 or len(tasks) <= 1:
        return run_checks([c.name for c in checks], quick=quick, seed=seed, z_max=z_max, progress=progress)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context,
                                                initializer=worker_init, initargs=worker_args) as pool:
        futures = {task: pool.submit(run_checks, names, quick=quick, seed=seed, z_max=z_max, progress=progress)
                   for task, names in tasks.items()}
        by_name: dict[str, list[dict]] = {}
        for future in futures.values():
            for row in future.result():
                by_name.setdefault(row["name"], []).append(row)
    return [row for c in checks for row in by_name.get(c.name, [])]


def _number_cells(r: dict, dash: str, fail: str) -> tuple[str, ...]:
    """Theory, simulation, SE, z, verdict and planted z of one row as text (an empirical row has no theory, z or
    planted z: ``dash``; its verdict is EMPIRICAL); shared by the plain-text and Markdown tables."""
    empirical = r.get("kind") == "empirical"

    def number(key: str, spec: str) -> str:  # rows read back from --json have null for a NaN or an infinity
        value = r.get(key)
        return dash if value is None else format(value, spec)

    return (
        dash if empirical else number("theory", ".6g"),
        number("simulation", ".6g"),
        number("se", ".2g"),
        dash if empirical else number("z", "+.2f"),
        "EMPIRICAL" if empirical else ("PASS" if r["passed"] else fail),
        dash if empirical else number("planted_z", "+.1f"),
    )


def format_table(rows: list[dict]) -> str:
    """Plain-text table: check, quantity, theory, simulation, SE, z, pass, planted z (empirical rows: theory and
    z are "-", the pass column says EMPIRICAL). Each check's rows follow a line with its formula and reference
    (rows without them, e.g. from an older JSON file, get none)."""
    header = ("check", "quantity", "theory", "simulation", "se", "z", "pass", "planted z")
    lines = [(r["name"], r["quantity"], *_number_cells(r, "-", "FAIL")) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    seen = set()
    for r, line in zip(rows, lines, strict=True):
        if r["name"] not in seen and r.get("formula"):
            out.append(f"{r['name']}:  {r['formula']}  [{r.get('reference', '')}]")
        seen.add(r["name"])
        out.append(fmt.format(*line))
    return "\n".join(out)


def format_markdown(rows: list[dict], metadata: dict | None = None) -> str:
    """The table as GitHub-flavoured Markdown, one row per measurement with its check's reference and formula
    stated once per check, and a line of run metadata (seed, quick, x64, versions) above it when given."""

    def cell(text) -> str:
        return str(text).replace("|", "∣").replace("\n", " ")

    out = []
    if metadata:
        keys = ("seed", "quick", "z_max", "x64", "collapse_theory", "jax", "numpy", "scipy", "backend", "git")
        out.append("; ".join(f"{k} = {metadata[k]}" for k in keys if k in metadata) + "\n")
    out.append("| check | reference | formula | quantity | theory | simulation | SE | z | result | planted z |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    seen = set()
    for r in rows:
        first = r["name"] not in seen
        seen.add(r["name"])
        out.append("| " + " | ".join(cell(v) for v in (
            f"`{r['name']}`" if first else "",
            r.get("reference", "") if first else "",
            r.get("formula", "") if first else "",
            r["quantity"],
            *_number_cells(r, "–", "**FAIL**"),
        )) + " |")
    failed = sum(r["passed"] is False for r in rows)
    empirical = sum(r.get("kind") == "empirical" for r in rows)
    z = f" (|z| ≤ {metadata['z_max']})" if metadata and "z_max" in metadata else ""
    out.append(f"\n{len(rows) - failed - empirical} passed, {failed} failed, {empirical} empirical{z}; "
               f"{len(seen)} checks")
    return "\n".join(out) + "\n"


# Registration order is the order of the check table: the foundation family first.
# isort: off
from . import gaussian as gaussian  # noqa: E402  (registers the Gaussian checks)
from . import regression as regression  # noqa: E402,F401  (registers the regression checks)
from . import categorical as categorical  # noqa: E402,F401  (registers the categorical checks)
from . import gmm_kde as gmm_kde  # noqa: E402  (registers the GMM and KDE checks)
from . import vae as vae  # noqa: E402  (registers the VAE checks)
from . import ngram as ngram  # noqa: E402,F401  (registers the tiny language model's checks)
# isort: on
