"""The README's Python examples match the current API.

Default suite: every name a ```python block imports exists, and every call of an imported function or class binds
to its signature (positional count, keyword names), without running anything. Bugs caught: a renamed function,
class, module or keyword the README still shows.

``slow``: every block is executed in order in one namespace (later blocks use earlier names), with ``simulate``
shrunk to a few chains and generations and the VAE to a few training steps (about a minute, mostly compiling):
also catches a metric or accessor the README uses that no longer exists, and an example that raises.
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import collapse_theory

README = Path(__file__).resolve().parents[1] / "README.md"
_SHRINK = {"num_chains": 4, "num_generations": 6}  # 6: the VAE example reads its snapshot of generation 6


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_examples():
    assert len(_blocks()) >= 5


def _imported(tree: ast.AST, bound: dict) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"README imports {alias.name} from {node.module}: not there"
                bound[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b as c` binds c to a.b; `import a.b` binds a
                if alias.asname:
                    bound[alias.asname] = importlib.import_module(alias.name)
                else:
                    bound[alias.name.split(".")[0]] = importlib.import_module(alias.name.split(".")[0])


def _callee(func: ast.AST, bound: dict):
    """The object a call's function expression names, when it is an imported name or an attribute chain on one."""
    if isinstance(func, ast.Name):
        return bound.get(func.id)
    if isinstance(func, ast.Attribute):
        owner = _callee(func.value, bound)
        if owner is not None and (inspect.ismodule(owner) or inspect.isclass(owner)):
            assert hasattr(owner, func.attr), f"README uses {ast.unparse(func)}: not there"
            return getattr(owner, func.attr)
    return None


def test_readme_names_and_call_signatures_exist():
    bound: dict = {}
    checked = 0
    for block in _blocks():
        tree = ast.parse(block)
        _imported(tree, bound)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            target = _callee(node.func, bound)
            if target is None or not callable(target) or inspect.ismodule(target):
                continue
            try:
                signature = inspect.signature(target)
            except (TypeError, ValueError):  # builtins and C functions without a signature
                continue
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                continue
            try:
                signature.bind(*node.args, **{k.arg: k.value for k in node.keywords})
            except TypeError as err:
                raise AssertionError(f"README call {ast.unparse(node)[:120]} does not bind: {err}") from err
            checked += 1
    assert checked >= 15, checked


@pytest.fixture
def small_simulate(monkeypatch):
    real = collapse_theory.simulate
    calls = []

    def simulate(*args, **kwargs):
        for name, cap in _SHRINK.items():
            if name in kwargs:
                kwargs[name] = min(kwargs[name], cap)
        if "snapshots" in kwargs:  # drop generations beyond the shrunk run
            kwargs["snapshots"] = tuple(t for t in kwargs["snapshots"] if t <= _SHRINK["num_generations"])
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(collapse_theory, "simulate", simulate)
    return calls


@pytest.mark.slow
def test_readme_python_examples_run(small_simulate, monkeypatch):
    from collapse_theory.models import vae

    # the VAE example trains for 1000 steps a generation; a few steps exercise the same code
    real_vae = vae.VAE
    monkeypatch.setattr(vae, "VAE", lambda *a, **k: real_vae(*a, **{**k, "steps": min(k.get("steps", 5), 5)}))
    import collapse_theory.models as models

    monkeypatch.setattr(models, "VAE", vae.VAE)
    namespace: dict = {}
    for i, block in enumerate(_blocks()):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
        except Exception as err:  # noqa: BLE001 - report which block broke
            raise AssertionError(f"README python block {i} raised {type(err).__name__}: {err}\n{block}") from err
    assert len(small_simulate) >= 8
