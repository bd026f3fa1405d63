"""Development tooling stays outside the app, and generated code matches its sources."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "conversions"


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth of its syntax tree."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_of_the_app_imports_the_development_tooling():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "mathconv_dev"
        )
        for path in APP.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_fake_server_is_not_importable_from_the_app():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("conversions.fakeopenai")
    assert not list(APP.rglob("*fake*.py"))


def test_the_converter_tables_come_from_the_pinned_mathlive():
    """tables.py names the MathLive it was generated from (bench/gen_tables.mjs writes the
    header); it must be the one frontend/package.json and the Makefile pin."""
    header = (APP / "converters" / "tables.py").read_text().splitlines()[0]
    generated = re.search(r"from MathLive (\S+) and MathJax (\S+):", header)
    assert generated, header
    pinned = json.loads((ROOT / "frontend" / "package.json").read_text())["dependencies"]
    makefile = re.search(r"^MATHLIVE_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert generated.group(1) == pinned["mathlive"] == makefile.group(1)
