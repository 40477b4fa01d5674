"""The theorem checker: every registered check passes on the real formula and rejects its planted wrong one.

Checks the formulas of THEORY.md §2 through ``collapse_theory.checks``; the planted formulas are the bugs each check
must catch (ddof off by one, π²/5 for π²/6, a generation index shifted by one, a missing (2−γ) factor).
"""

import math

import pytest

from collapse_theory import checks


def _configure_worker(cache: str) -> None:
    """The suite's JAX settings (conftest.py) in a spawned worker: float64, strict rank promotion, the test cache."""
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    if cache != "0":
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="module")
def quick_rows():
    """Every check in quick mode, one family per worker process on two workers (the CLI's runner; rows do not
    depend on the worker count: tests/test_cli.py)."""
    import jax

    cache = jax.config.jax_compilation_cache_dir or "0"
    rows = {}
    for row in checks.run_checks_parallel(list(checks.CHECKS.values()), 2, quick=True, seed=0,
                                          worker_init=_configure_worker, worker_args=(cache,)):
        rows.setdefault(row["name"], []).append(row)
    return rows


def test_registry_has_the_gaussian_checks():
    names = set(checks.CHECKS)
    assert {"gaussian-replace-log-variance-unbiased", "gaussian-accumulate", "gaussian-fresh-fraction"} <= names
    for c in checks.CHECKS.values():
        assert c.reference and c.formula and c.planted and c.family


THEOREMS = sorted(name for name, c in checks.CHECKS.items() if not c.empirical)
EMPIRICAL = sorted(name for name, c in checks.CHECKS.items() if c.empirical)


@pytest.mark.parametrize("name", THEOREMS)
def test_check_passes_with_the_true_formula(quick_rows, name):
    rows = quick_rows[name]
    assert rows, f"{name} produced no rows"
    for r in rows:
        assert math.isfinite(r["simulation"]) and r["se"] > 0, r
        assert r["passed"], f"{name}: {r['quantity']} theory={r['theory']} sim={r['simulation']} z={r['z']:+.2f}"


@pytest.mark.parametrize("name", THEOREMS)
def test_check_rejects_the_planted_formula(quick_rows, name):
    """Power: the same rows, compared with the planted wrong formula, must fail (|z| > 4) in at least one row,
    and the row of largest leverage must be far outside the noise."""
    rows = quick_rows[name]
    planted = [abs(r["planted_z"]) for r in rows]
    assert max(planted) > checks.DEFAULT_Z, f"{name}: planted formula not rejected, |z| = {planted}"
    assert any(r["planted_rejected"] for r in rows)


def test_run_check_flags_a_wrong_theory():
    """A check whose theory is off must fail: the runner's z is not vacuous."""
    bad = checks.Check(
        name="planted-test",
        family="test",
        reference="-",
        formula="-",
        planted="-",
        run=lambda quick, seed: [checks.Measurement("q", theory=1.0, simulation=1.5, se=0.1, planted=1.5, params={})],
    )
    (row,) = checks.run_check(bad)
    assert not row["passed"] and row["z"] == pytest.approx(5.0)
    assert not row["planted_rejected"]


def test_an_approximation_budget_enters_z_for_theory_and_planted_alike():
    """``approx_rel`` (an approximate formula's finite-size error budget) widens z's scale to hypot(SE, rel·theory):
    a 0.3 % bias with SE 0.1 % fails without the budget and passes with 0.5 %, and the planted formula 10 % away
    is still rejected."""
    def row(approx_rel):
        check = checks.Check(
            name="approx-test", family="test", reference="-", formula="-", planted="-",
            run=lambda quick, seed: [checks.Measurement("q", theory=1.0, simulation=1.003, se=0.001, planted=0.9,
                                                        params={}, approx_rel=approx_rel)])
        return checks.run_check(check, z_max=2.0)[0]

    exact, budgeted = row(0.0), row(0.005)
    assert not exact["passed"] and exact["z"] == pytest.approx(3.0)
    assert budgeted["passed"] and budgeted["z"] == pytest.approx(0.003 / math.hypot(0.001, 0.005))
    assert budgeted["planted_rejected"] and budgeted["approx_rel"] == 0.005 and budgeted["se"] == 0.001


def test_select_rejects_unknown_names():
    with pytest.raises(ValueError, match="name="):
        checks.select(names=["no-such-check"])
    with pytest.raises(ValueError, match="family="):
        checks.select(families=["no-such-family"])


@pytest.mark.parametrize("name", EMPIRICAL)
def test_empirical_rows_are_labelled_and_carry_their_error(quick_rows, name):
    """Empirical checks claim no formula: theory and z are NaN, the row is labelled, and it still reports a finite
    simulated value, its standard error and the number of chains (a row without them would be unreadable)."""
    rows = quick_rows[name]
    assert rows
    for r in rows:
        assert r["kind"] == "empirical" and math.isnan(r["theory"]) and math.isnan(r["z"])
        assert r["passed"] is None and r["planted_rejected"] is None  # it claims nothing, so passes nothing
        assert math.isfinite(r["simulation"]) and math.isfinite(r["se"]) and r["se"] >= 0
        assert r["params"]["num_chains"] >= 2
    assert "EMPIRICAL" in checks.format_table(rows)


def test_theorem_rows_are_labelled():
    """Every row of a theorem check says so (``kind``), so JSON consumers can separate the two kinds."""
    bad = checks.Check(name="t", family="test", reference="-", formula="-", planted="-",
                       run=lambda quick, seed: [checks.Measurement("q", 1.0, 1.0, 0.1, 2.0, {})])
    (row,) = checks.run_check(bad)
    assert row["kind"] == "theorem" and row["passed"] and row["planted_rejected"]


def test_check_json_is_strict_json(tmp_path, monkeypatch):
    """``check --json`` writes strict JSON: an empirical row's theory and z (NaN) and a failed row's infinite z
    are ``null``, never the bare ``NaN``/``Infinity`` tokens that strict parsers refuse; an empirical row's
    ``passed`` is null (it claims nothing) and the exit code counts only the theorem rows. Catches
    ``json.dumps(..., allow_nan=True)`` and empirical rows written as passes."""
    import json

    from collapse_theory.cli import main

    def run(quick, seed):
        return [checks.Measurement("q", theory=1.0, simulation=math.nan, se=0.1, planted=2.0, params={})]

    def run_empirical(quick, seed):
        return [checks.Measurement("e", theory=math.nan, simulation=0.5, se=0.1, planted=math.nan, params={})]

    monkeypatch.setitem(checks.CHECKS, "json-theorem", checks.Check(
        name="json-theorem", family="test", reference="-", formula="-", planted="-", run=run))
    monkeypatch.setitem(checks.CHECKS, "json-empirical", checks.Check(
        name="json-empirical", family="test", reference="-", formula="-", planted="-", run=run_empirical,
        empirical=True))
    path = tmp_path / "table.json"

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert main(["check", "--name", "json-theorem", "--json", str(path), "--jobs", "1"]) == 1  # z = inf fails
    (theorem,) = json.loads(path.read_text(), parse_constant=refuse)
    assert theorem["z"] is None and theorem["simulation"] is None and theorem["passed"] is False
    assert main(["check", "--name", "json-empirical", "--json", str(path), "--jobs", "1"]) == 0
    (empirical,) = json.loads(path.read_text(), parse_constant=refuse)
    assert empirical["theory"] is None and empirical["z"] is None and empirical["passed"] is None
    assert empirical["simulation"] == 0.5 and empirical["kind"] == "empirical"
    # rows read back from the file format again (a null is a dash, not a TypeError)
    table = checks.format_table([theorem, empirical])
    assert "FAIL" in table and "EMPIRICAL" in table
    assert checks.format_markdown([theorem, empirical]).count("**FAIL**") == 1


def test_the_text_table_states_each_checks_formula_once():
    """The printed table gives each check's formula and reference once, above its rows (a theorist reads formula,
    simulation, SE and z together); catches a table without the formula or one that repeats it per row."""
    check = checks.Check(name="formula-test", family="test", reference="Paper, Thm 1", formula="E X = 1",
                         planted="-", run=lambda quick, seed: [checks.Measurement(f"q{i}", 1.0, 1.0, 0.1, 2.0, {})
                                                               for i in range(3)])
    table = checks.format_table(checks.run_check(check))
    assert table.count("E X = 1") == 1 and "Paper, Thm 1" in table
    lines = table.splitlines()
    formula = next(i for i, line in enumerate(lines) if "E X = 1" in line)
    assert [line.split()[1] for line in lines[formula + 1:]] == ["q0", "q1", "q2"]


def test_every_check_declares_its_parameters():
    """Every registered check declares the parameters it runs at (``Check.params``), with its chain counts among
    them, in a form ``list`` prints and ``list --json`` writes; catches a check registered without ``params=`` (its
    sizes would live only inside ``run``) and a parameter value that cannot be printed or written as JSON."""
    import json

    for c in checks.CHECKS.values():
        assert c.params, f"{c.name} declares no parameters"
        assert "num_chains" in c.params, f"{c.name}: the number of chains is not declared"
        assert all(isinstance(key, str) and key for key in c.params), c.params
        assert checks.format_params(c.params).count("=") >= len(c.params)
        json.dumps(checks.params_json(c.params), allow_nan=False)


def test_list_prints_each_checks_formula_and_parameters(capsys):
    """``collapse-theory list`` shows, for every check, its formula and its declared parameters (the line
    ``format_params`` gives, so at least one ``key=value``), and ``list --json`` the same as data; catches a listing
    that names the checks without saying what each one tests and at which sizes."""
    import json

    from collapse_theory.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for c in checks.CHECKS.values():
        assert c.formula in out, c.name
        line = checks.format_params(c.params)
        assert "=" in line and line in out, (c.name, line)
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in listing["checks"]}
    assert list(by_name) == list(checks.CHECKS)
    for name, c in checks.CHECKS.items():
        assert by_name[name]["formula"] == c.formula and by_name[name]["params"] == checks.params_json(c.params)


def _agrees(value, declared, quick: bool) -> bool:
    """Whether a row's parameter value is one the declared value allows: a :class:`~collapse_theory.checks.QuickFull`
    declaration by its quick or full value, a tuple by any of its entries, anything else by equality."""
    if isinstance(declared, checks.QuickFull):
        return _agrees(value, declared.pick(quick), quick)
    if value == declared:
        return True
    return isinstance(declared, tuple) and any(_agrees(value, d, quick) for d in declared)


def _disagreements(check, rows, quick: bool) -> list:
    return [(r["quantity"], key, r["params"][key], check.params[key]) for r in rows
            for key in r["params"].keys() & check.params.keys()
            if not _agrees(r["params"][key], check.params[key], quick)]


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_declared_parameters_agree_with_the_rows(quick_rows, name):
    """The registry's parameters are the ones that ran: every per-row ``params`` value whose key the check also
    declares (M, d, n or t, ddof, path, regime, design, num_chains, ...) is the declared value, one of a declared
    tuple's values, or a declared quick/full pair's quick value (these rows are quick mode). Catches a run function
    whose sizes changed while its ``params=`` declaration did not (or a declaration copied from another check), so
    that ``collapse-theory list`` would state sizes the check does not use. Uses the module's quick rows: nothing
    extra is simulated."""
    check = checks.CHECKS[name]
    rows = quick_rows[name]
    assert rows and all("num_chains" in r["params"] for r in rows)
    assert not _disagreements(check, rows, quick=True)


def test_the_agreement_test_sees_a_wrong_declaration():
    """The comparison behind ``test_declared_parameters_agree_with_the_rows`` is not vacuous: a declared chain
    count, a fit index or a quick/full pair that the rows do not match is reported; catches a matcher that accepts
    anything (e.g. one that treats every value as a list of alternatives)."""
    check = checks.Check(name="p", family="test", reference="-", formula="-", planted="-", run=lambda q, s: [],
                         params={"M": 10, "n": (5, 20), "num_chains": checks.QuickFull(100, 800),
                                 "hidden": checks.QuickFull((64,), (256,))})
    row = {"quantity": "q", "params": {"M": 10, "n": 5, "num_chains": 100, "hidden": (64,), "seed": 0}}
    assert not _disagreements(check, [row], quick=True)
    assert {d[1] for d in _disagreements(check, [row], quick=False)} == {"num_chains", "hidden"}
    wrong = {"quantity": "q", "params": {"M": 11, "n": 10, "num_chains": 800, "hidden": (256,)}}
    assert {d[1] for d in _disagreements(check, [wrong], quick=True)} == {"M", "n", "num_chains", "hidden"}
