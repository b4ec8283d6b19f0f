"""The house rules that no linter checks: small package folders, documented packages and classes, one error
tree, and a test tree that mirrors the package. (The import layers are `.importlinter`, run by `make test`.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "btcpipe"
MAX_MODULES = 15


def _packages() -> list[Path]:
    return sorted(p.parent for p in PACKAGE.rglob("__init__.py"))


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_package_folder_holds_more_than_fifteen_modules() -> None:
    crowded = {str(d.relative_to(ROOT)): n for d in _packages()
               if (n := sum(1 for p in d.glob("*.py") if p.name != "__init__.py")) > MAX_MODULES}
    assert crowded == {}


def test_every_package_says_what_it_is() -> None:
    undocumented = [str(d.relative_to(ROOT)) for d in _packages()
                    if not ast.get_docstring(ast.parse((d / "__init__.py").read_text()))]
    assert undocumented == []


def test_every_public_class_has_a_docstring() -> None:
    missing = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name}" for p in _modules()
               for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and ast.get_docstring(node) is None]
    assert missing == []


def test_bad_data_and_config_raise_the_projects_own_errors() -> None:
    bare = re.compile(r"\braise (ValueError|TypeError|KeyError|IndexError|OverflowError)\(")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _modules()
             for n, line in enumerate(p.read_text().splitlines(), 1) if bare.search(line)]
    assert found == []


def test_unit_tests_mirror_the_package() -> None:
    """Every folder under tests/unit is a package of btcpipe, so a module's tests are found where it lives."""
    unit = ROOT / "tests" / "unit"
    strays = [str(d.relative_to(unit)) for d in sorted(unit.rglob("*")) if d.is_dir() and d.name != "__pycache__"
              and not (PACKAGE / d.relative_to(unit) / "__init__.py").exists()]
    assert strays == []


def _holds_tests(path: Path) -> bool:
    text = path.read_text()
    if "spec_from_file_location" in text:  # runs another module's suite against a real server (S3 on moto)
        return True
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
               for n in ast.walk(ast.parse(text)))


def test_modules_named_test_hold_tests_and_helpers_live_elsewhere() -> None:
    no_tests = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").rglob("test_*.py")) if not _holds_tests(p)]
    assert no_tests == []
