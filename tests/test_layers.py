"""The layers of README's "What is where", enforced on the code: every import (at the top of a
module or inside a function) points down. Read from the source with ast, so nothing is imported
and nothing is skipped."""

from __future__ import annotations

import ast
import shutil
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("generation", "training", "stats")

# each app and what it may import (besides itself, the libraries, evalsite.env and evalsite.celery)
APPS_BELOW = {
    "core": set(),
    "catalog": {"core"},
    "answering": {"core", "catalog"},
    "annotation": {"core", "catalog"},
    "crowd": {"core", "catalog", "annotation"},
    "judging": {"core", "catalog", "annotation"},
    "dashboard": {"core", "catalog", "annotation", "judging"},
    "finetune": {"core", "catalog", "answering", "annotation", "judging", "dashboard"},
    "arena": {"core", "catalog", "answering", "annotation", "crowd"},
    "pipeline": {"core", "catalog", "answering", "annotation", "judging", "dashboard", "finetune"},
}
# what each library may import of ours (never Django, never evalsite)
LIBRARIES_BELOW = {"stats": set(), "generation": set(), "training": {"generation"}}
PROJECT_MODULES = {"evalsite.env", "evalsite.celery"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """(module imported, line) for every import statement; `from a import b` also counts a.b,
    since b may be a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
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


def sources(*tops: str, root: Path = ROOT) -> list[Path]:
    paths = []
    for top in tops:
        paths += [p for p in (root / top).rglob("*.py") if "migrations" not in p.parts]
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


def unit_of(module: str) -> str:
    """What a circle is looked for within: an app (evalsite.X) or a library (stats, ...)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "evalsite" else parts[0]


def circles(root: Path = ROOT) -> list[str]:
    """Pairs of modules of one app or one library that reach each other through their imports."""
    modules = {module_name(p, root): p for p in sources("evalsite", *LIBRARIES, root=root) if p.exists()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imported, _ in imports_of(path, root):
            if imported in modules and imported != name and unit_of(imported) == unit_of(name):
                graph[name].add(imported)
    found = []
    for name, targets in graph.items():
        for target in targets:
            if reaches(graph, target, name):
                found.append(" <-> ".join(sorted((name, target))))
    return sorted(set(found))


def test_no_two_modules_of_one_app_or_library_import_each_other():
    found = circles()
    assert not found, "\n".join(found)


def test_a_circle_between_two_modules_of_one_library_is_found(tmp_path):
    """Planted in a copy of the source (never in the tree itself): stats.a imports stats.b, which
    imports stats.a inside a function."""
    for top in ("evalsite", *LIBRARIES):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    (tmp_path / "stats" / "a.py").write_text("from stats import b\n")
    (tmp_path / "stats" / "b.py").write_text("def f():\n    from stats.a import g\n")
    assert circles(tmp_path) == ["stats.a <-> stats.b"]


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
    (tmp_path / "evalsite" / "core").mkdir(parents=True)
    probe = tmp_path / "evalsite" / "core" / "_layer_probe.py"
    probe.write_text("def f():\n    from ..judging import models\n    import evalsite.catalog.models\n")
    found = {imported for imported, _ in imports_of(probe, tmp_path)}
    assert {"evalsite.judging.models", "evalsite.catalog.models"} <= found


def test_the_web_process_imports_no_torch():
    """The site's pages need no model: a web process that imported torch with the local server's
    port held 362 MiB instead of 157 (bench/demo.py measures the served processes)."""
    import subprocess
    import sys

    code = (
        "import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'evalsite.settings'); "
        "django.setup(); from django.urls import get_resolver; get_resolver().url_patterns; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
