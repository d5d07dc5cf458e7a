"""The test suite's own layout: what tests share lives in tests/helpers, so no test module imports
another test module or conftest (a conftest imported by name is a second copy of it, beside the one
pytest loaded), and nothing loads conftest as a plugin."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _is_test_or_conftest(module: str) -> bool:
    return (
        any(part.startswith("test_") or part == "conftest" for part in module.split(".")[1:])
        if module.startswith("tests.")
        else module == "conftest" or module.startswith("test_")
    )


def test_no_test_module_imports_another_test_module_or_conftest() -> None:
    offenders = {
        f"{path.relative_to(TESTS)}: {module}"
        for path in TESTS.rglob("*.py")
        if "fixtures" not in path.parts
        for module in _imported_modules(path)
        if _is_test_or_conftest(module)
    }
    assert not offenders, sorted(offenders)


def test_nothing_loads_conftest_as_a_plugin() -> None:
    assert not [
        path
        for path in TESTS.rglob("*.py")
        if "pytest_plugins" in path.read_text(encoding="utf-8") and path != Path(__file__)
    ]


def test_the_rule_catches_both_spellings() -> None:
    assert _is_test_or_conftest("tests.conftest") and _is_test_or_conftest("tests.test_results")
    assert _is_test_or_conftest("tests.integration.test_cli") and _is_test_or_conftest("conftest")
    assert not _is_test_or_conftest("tests.helpers.studies") and not _is_test_or_conftest("core.testing")
