"""The layout rules that keep the code easy to find one's way in (issue 10).

Read from the source (AST) or checked in a fresh interpreter: no database, no Django set-up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "conversions"

# Imports inside a function, each with the reason it cannot be at the top of its module.
# Key: (path under the repository, function name).
INNER_IMPORTS_ALLOWED = {
    ("conversions/apps.py", "ready"): (
        "AppConfig.ready is where Django wants imports that need the app registry: "
        "django_q.signals imports django-q's models, conversions.tasks ours"
    ),
    ("conversions/converters/parse.py", "default_limits"): (
        "the converter also runs without Django (mathml2latex, the judge); the settings are "
        "read only when Django is there"
    ),
    ("conversions/importing/sources.py", "__enter__"): (
        "psycopg is loaded only when importing from another PostgreSQL database"
    ),
    ("conversions/importing/sources.py", "table"): (
        "psycopg is loaded only when importing from another PostgreSQL database"
    ),
}


def app_modules() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "migrations" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def inner_imports(path: Path) -> list[tuple[str, int]]:
    """(function name, line) of every import statement inside a function of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    found.append((node.name, inner.lineno))
    return found


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """The app modules this file imports when it is loaded (module level, TYPE_CHECKING too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return {t for t in targets if t in known and t != name}


def test_the_engine_imports_nothing_from_django():
    engine = sorted((APP / "engine").glob("*.py"))
    for path in engine:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for imported in names:
                assert not imported.startswith("django"), f"{path.name} imports {imported}"
                if imported.startswith("conversions"):
                    assert imported.startswith("conversions.engine"), (
                        f"{path.name} imports {imported}, outside the engine"
                    )
    # And loading every engine module in a fresh interpreter loads no Django module.
    modules = ", ".join(f"conversions.engine.{p.stem}" for p in engine if p.stem != "__init__")
    code = (
        f"import sys, {modules}\n"
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_tasks_are_entry_points_only():
    lines = (APP / "tasks.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 100


def test_no_module_of_the_app_imports_inside_a_function():
    found = {}
    for path in app_modules():
        rel = path.relative_to(ROOT).as_posix()
        for function, line in inner_imports(path):
            if (rel, function) not in INNER_IMPORTS_ALLOWED:
                found[f"{rel}:{line}"] = function
    assert found == {}


def test_the_app_modules_import_each_other_without_a_cycle():
    paths = {module_name(p): p for p in app_modules()}
    known = set(paths)
    graph = {name: top_level_imports(path, known) for name, path in paths.items()}
    cycles = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_selectors_read_and_services_write_in_that_direction():
    known = {module_name(p) for p in app_modules()}
    reads = top_level_imports(APP / "selectors.py", known)
    assert not {m for m in reads if m.startswith("conversions.services")}


def defined_in(predicate) -> list[str]:
    """The app files with a top-level or class-level definition that predicate accepts."""
    files = []
    for path in app_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if predicate(node):
                files.append(path.relative_to(ROOT).as_posix())
                break
    return files


def test_error_categories_and_the_secret_redactor_are_defined_once():
    def error_category_class(node) -> bool:
        return isinstance(node, ast.ClassDef) and node.name == "ErrorCategory"

    def redacting_function(node) -> bool:
        return isinstance(node, ast.FunctionDef) and "redact" in node.name

    def redaction_text(node) -> bool:
        return isinstance(node, ast.Constant) and "[redacted" in str(node.value)

    assert defined_in(error_category_class) == ["conversions/engine/types.py"]
    assert defined_in(redacting_function) == ["conversions/engine/redact.py"]
    assert defined_in(redaction_text) == ["conversions/engine/redact.py"]
