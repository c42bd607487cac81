"""The layers of README's "What is where", enforced on the code: every import (at the top of a
module or inside a function) points down. Read from the source with ast, so nothing is imported
and nothing is skipped."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("inference", "training", "stats")

# each app and what it may import (besides itself, the libraries, evalsite.env and evalsite.celery)
APPS_BELOW = {
    "core": set(),
    "catalog": {"core"},
    "generations": {"core", "catalog"},
    "annotation": {"core", "catalog"},
    "crowd": {"core", "catalog", "annotation"},
    "judging": {"core", "catalog", "annotation"},
    "finetune": {"core", "catalog", "generations", "annotation", "judging"},
    "dashboard": {"core", "catalog", "annotation", "judging"},
    "pipeline": {"core", "catalog", "generations", "annotation", "judging", "finetune"},
}
# what each library may import of ours (never Django, never evalsite)
LIBRARIES_BELOW = {"stats": set(), "inference": set(), "training": {"inference"}}
PROJECT_MODULES = {"evalsite.env", "evalsite.celery"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import statement; `from a import b` also counts a.b,
    since b may be a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def sources(*tops: str) -> list[Path]:
    paths = []
    for top in tops:
        paths += [p for p in (ROOT / top).rglob("*.py") if "migrations" not in p.parts]
    return sorted(paths)


def app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "evalsite" and len(parts) > 1 and parts[1] in APPS_BELOW else None


def project_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in PROJECT_MODULES)


def test_every_app_imports_only_the_apps_below_it():
    wrong = []
    for path in sources("evalsite"):
        me = app_of(module_name(path))
        if me is None:
            continue
        for imported, line in imports_of(path):
            other = app_of(imported)
            top = imported.split(".")[0]
            if other is not None and other != me and other not in APPS_BELOW[me]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {me} imports evalsite.{other}")
            elif top == "evalsite" and other is None and imported != "evalsite" and not project_module(imported):
                # evalsite.settings, evalsite.urls: the project's top, which imports the apps
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {me} imports the project module {imported}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_core_imports_no_other_app():
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {imported}"
        for path in sources("evalsite/core")
        for imported, line in imports_of(path)
        if app_of(imported) not in (None, "core")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_libraries_import_no_django_and_no_app():
    wrong = []
    for library, allowed in LIBRARIES_BELOW.items():
        for path in sources(library):
            for imported, line in imports_of(path):
                top = imported.split(".")[0]
                if top in ("django", "evalsite") or (top in LIBRARIES and top != library and top not in allowed):
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {library} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_of_one_app_import_each_other():
    modules = {module_name(p): p for p in sources("evalsite", *LIBRARIES)}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imported, _ in imports_of(path):
            if imported in modules and imported != name and imported.split(".")[:2] == name.split(".")[:2]:
                graph[name].add(imported)
    circles = []
    for name, targets in graph.items():
        for target in targets:
            if reaches(graph, target, name):
                circles.append(" <-> ".join(sorted((name, target))))
    assert not circles, "\n".join(sorted(set(circles)))


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return False


def test_the_rules_see_an_import_that_points_up(tmp_path):
    # the reader finds imports inside functions and relative ones, or the rules above prove nothing
    probe = ROOT / "evalsite" / "core" / "_layer_probe.py"
    probe.write_text("def f():\n    from ..judging import models\n    import evalsite.catalog.models\n")
    try:
        found = {imported for imported, _ in imports_of(probe)}
    finally:
        probe.unlink()
    assert {"evalsite.judging.models", "evalsite.catalog.models"} <= found
