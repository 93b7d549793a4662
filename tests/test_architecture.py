"""The floors of the code (README, "Architecture"): every import points down, no cycle, and only
the command line and the package face import lazily."""
import ast
import pathlib
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"
LAZY_ALLOWED = {"bench/cli.py", "bench/__init__.py"}  # start-up time: torch and friends load on demand


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for package in ("bench", "methods"):
        for path in sorted((ROOT / package).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def test_imports_point_down_the_floors():
    lint = pytest.importorskip("importlinter.cli")
    assert lint.lint_imports(config_filename=str(CONFIG)) == 0, "an import points up a floor: run lint-imports"


def test_every_module_has_a_floor():
    """A new module must be placed on a floor, or the contract would not see it."""
    contracts = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
    floors = contracts[0]["layers"]
    placed = {name.strip() for floor in floors for name in floor.split("|")}
    inner = {f"methods.{name.strip()}" for floor in contracts[1]["layers"] for name in floor.split("|")}
    missing = sorted(m for m in modules() if m not in ("bench",) and m not in placed
                     and not (m.startswith("methods.") and m in inner))
    assert not missing, f"modules on no floor in pyproject.toml [tool.importlinter]: {missing}"


def local_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """Imports of bench or methods inside a function of ``path``: (line, module)."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.split(".")[0] in ("bench", "methods"))
            elif in_function and isinstance(child, ast.ImportFrom) and (child.level or (child.module or "").split(".")[0]
                                                                       in ("bench", "methods")):
                found.append((child.lineno, child.module or "."))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return found


def test_only_the_command_line_imports_bench_lazily():
    offenders = {str(p.relative_to(ROOT)): local_imports(p) for p in modules().values()}
    offenders = {k: v for k, v in offenders.items() if v and k not in LAZY_ALLOWED}
    assert not offenders, f"function-local imports of bench/methods (move them to the top): {offenders}"


def test_the_local_import_finder_finds_one(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from bench import store\n    import methods.gan\n    import json\n")
    assert local_imports(source) == [(4, "bench"), (5, "methods.gan")]
