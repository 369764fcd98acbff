"""The dependency rule of docs/architecture.md, kept by a test on the import graph.

    sandbox (engine, no Django)  <-  labs  <-  cohorts, sso, monitoring  <-  labsite

No cycle between the project's modules, imports inside functions and under
TYPE_CHECKING included (grimp reads every import statement, wherever it is); a lower
part never imports a higher one (an app above labs subscribes to labs' events
instead); tasks modules are entry points: nothing but an app's registration, a
management command or another tasks module imports one.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sandbox", "labs", "cohorts", "sso", "monitoring", "labsite")
# Lower number = lower layer; a module may import its own layer's package and lower ones.
LAYER = {"sandbox": 0, "labs": 1, "cohorts": 2, "sso": 2, "monitoring": 2, "labsite": 3}
# What the engine must not know exists.
NOT_IN_ENGINE = ("django", "channels", "celery", "asgiref")
# labsite.logs is the logging setup the settings load; it imports nothing of the project
# (asserted below), so the apps' request/task log context may use it without a cycle.
UPWARD_ALLOWED = {("monitoring.hooks", "labsite.logs")}
TASK_IMPORTERS = (".apps", ".tasks", ".management.commands.")


def build(*packages: str) -> grimp.ImportGraph:
    """The import graph of the packages, external packages as one node each."""
    return grimp.build_graph(*packages, include_external_packages=True, cache_dir=None)


def cycles(graph: grimp.ImportGraph, packages: tuple[str, ...]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    ours = sorted(m for m in graph.modules if m.split(".")[0] in packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w.split(".")[0] not in packages:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(ours) + 100))
    try:
        for module in ours:
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _where(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    lines = [d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)]
    return f"{importer} -> {imported} (line {', '.join(map(str, lines)) or '?'})"


def rule_breaks(graph: grimp.ImportGraph) -> list[str]:
    """Imports that break the layer rule, each as 'importer -> imported (line n)'."""
    found = []
    for importer in sorted(graph.modules):
        top = importer.split(".")[0]
        if top not in LAYER:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            other = imported.split(".")[0]
            if top == "sandbox" and other in NOT_IN_ENGINE:
                found.append(_where(graph, importer, imported))
            elif other in LAYER and other != top and LAYER[other] >= LAYER[top] \
                    and (importer, imported) not in UPWARD_ALLOWED:
                found.append(_where(graph, importer, imported))
            elif imported.rsplit(".", 1)[-1] == "tasks" and other in LAYER and imported != importer \
                    and not any(k in importer + "." for k in TASK_IMPORTERS) \
                    and not imported.startswith(importer + "."):  # a package registering its tasks
                found.append(_where(graph, importer, imported))
    return found


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    return build(*PACKAGES)


def test_the_project_has_no_import_cycle_lazy_imports_included(graph):
    assert cycles(graph, PACKAGES) == []


def test_every_import_goes_down_the_layers_and_nothing_but_entry_points_imports_tasks(graph):
    assert rule_breaks(graph) == []


def test_the_allowed_upward_import_is_a_leaf(graph):
    for _, imported in UPWARD_ALLOWED:
        ours = {m for m in graph.find_modules_directly_imported_by(imported) if m.split(".")[0] in LAYER}
        assert ours == set(), f"{imported} must stay a leaf: it imports {sorted(ours)}"


def test_the_checks_catch_an_import_hidden_in_a_function(tmp_path, monkeypatch):
    """The machinery itself: a lazy import that closes a cycle, one that climbs a layer,
    and a service importing a tasks module are all found."""
    pkg = tmp_path / "archprobe"
    for name, text in {
        "__init__.py": "",
        "low.py": """
            def f():
                from archprobe import high  # hidden in a function: still an import
                return high
        """,
        "high.py": "from archprobe import low\n",
        "services.py": """
            def g():
                from archprobe.tasks import t
                return t
        """,
        "tasks.py": "t = 1\n",
    }.items():
        pkg.mkdir(exist_ok=True)
        (pkg / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = build("archprobe")
    assert cycles(probe, ("archprobe",)) == [["archprobe.high", "archprobe.low"]]
    monkeypatch.setitem(LAYER, "archprobe", 0)
    assert "archprobe.services -> archprobe.tasks (line 3)" in rule_breaks(probe)
