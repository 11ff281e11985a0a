"""The code reads top-down: each package imports only its own layer's allowances, and no module imports
itself back through others. Imports are read with ``ast`` (no code is run), function-level (lazy)
imports included: they are dependencies as real as the ones at the top of a file.

    top      recon (command line, configuration, orchestration of a date), bench (benchmarks of the stages),
             jobs/run.py (spark-submit's main file: a deployed path that is recon's command line)
    middle   connectors, normalizers, jobs, reports: each imports the bottom and itself, not another of
             the four (what one publishes, the next reads through schemas.layout)
    bottom   core (errors and exit codes, storage, secrets, dates, registry, settings values) may import
             schemas; schemas (records, storage layout, CSV dialect, money, times, masking) imports
             nothing of ours

The rules are data (``LAYER``, ``MAY_IMPORT``, ``CROSSING``) so a failure names the import and the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recon", "bench", "connectors", "normalizers", "jobs", "reports", "core", "schemas")

# What each package may import besides itself.
MAY_IMPORT = {
    "recon": {"connectors", "normalizers", "jobs", "reports", "core", "schemas"},
    "bench": {"recon", "connectors", "normalizers", "jobs", "reports", "core", "schemas"},
    "connectors": {"core", "schemas"},
    "normalizers": {"core", "schemas"},
    "jobs": {"core", "schemas"},
    "reports": {"core", "schemas"},
    "core": {"schemas"},
    "schemas": set(),
}
# Modules that belong to a higher layer than their folder, with the reason.
ENTRY_SCRIPTS = {
    "jobs.run": "spark-submit's main file (jobs/run.py is the path deployments pass to spark-submit); it is "
                "recon's command line, so it sits on top",
}
# Imports between two middle packages that are allowed, each with its reason. Keep this short.
CROSSING = {
    ("jobs.reconcile", "reports.build"): "the date's report.html and report.xlsx are written into the recon "
                                         "folder's staging copy, inside its atomic publish (before _SUCCESS)",
}
MAX_LINES = 450
SIZE_REASON = "Size:"  # a module over MAX_LINES says why on a line of its docstring starting with this


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]):
    """(line, imported module) for every import of one of our modules in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            # ``from pkg import mod`` depends on pkg.mod, not only on pkg's __init__
            subs = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in mods]
            targets = subs if subs and len(subs) == len(node.names) else [module] + subs
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                yield node.lineno, target


def _resolve(target: str, mods: dict[str, Path]) -> str:
    while target not in mods and "." in target:
        target = target.rpartition(".")[0]
    return target


def _graph():
    mods = _modules()
    edges = {}
    for name, path in mods.items():
        for line, target in _imports(name, path, mods):
            edges.setdefault(name, []).append((line, _resolve(target, mods)))
    return mods, edges


def _package(module: str) -> str:
    return "recon" if module in ENTRY_SCRIPTS else module.split(".")[0]


def test_imports_run_down_the_layers():
    mods, edges = _graph()
    wrong = []
    for name, imports in sorted(edges.items()):
        for line, target in imports:
            own, other = _package(name), _package(target)
            if other == own or other in MAY_IMPORT[own] or (name, target) in CROSSING:
                continue
            allowed = ", ".join(sorted(MAY_IMPORT[own]))
            rule = f"{own} may import only {allowed}" if allowed else f"{own} imports nothing of ours"
            wrong.append(f"{mods[name].relative_to(ROOT)}:{line} imports {target} ({rule})")
    assert not wrong, "imports against the layers:\n  " + "\n  ".join(wrong)


def test_crossings_are_still_needed():
    _, edges = _graph()
    present = {(name, target) for name, imports in edges.items() for _, target in imports}
    stale = [f"{a} -> {b}" for a, b in CROSSING if (a, b) not in present]
    assert not stale, f"CROSSING lists imports that no longer exist (remove them): {stale}"


def test_no_import_circles():
    mods, edges = _graph()
    graph = {name: sorted({t for _, t in edges.get(name, []) if t != name and t in mods}) for name in mods}
    lines = {(name, t): line for name, imports in edges.items() for line, t in imports}
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    described = []
    for component in circles:
        inside = set(component)
        arrows = [f"{a} -> {b} ({mods[a].relative_to(ROOT)}:{lines[(a, b)]})"
                  for a in component for b in graph[a] if b in inside]
        described.append("; ".join(arrows))
    assert not circles, "import circles:\n  " + "\n  ".join(described)


def test_no_module_over_the_size_limit_without_a_reason():
    too_long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        count = text.count("\n")
        if count <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith(SIZE_REASON) for line in doc.splitlines()):
            too_long.append(f"{path.relative_to(ROOT)} ({count} lines)")
    assert not too_long, (f"modules over {MAX_LINES} lines with no '{SIZE_REASON} …' line in their docstring "
                          f"(split them by concern, or say why not): {', '.join(too_long)}")


def test_every_package_of_the_layers_is_shipped():
    import tomllib

    from recon.packaging import PACKAGES as ZIPPED

    shipped = set(PACKAGES) - {"bench"}  # the benchmarks run from a checkout only
    assert set(ZIPPED) == shipped, "recon/packaging.py PACKAGES (the --py-files zip) must list every code package"
    with (ROOT / "pyproject.toml").open("rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in include} == shipped, "pyproject's packages.find include must list them too"
