"""The house rules, read from the source with `ast` (nothing is imported to check them).

- the floor (every `aios/*.py` file) imports the floor and the wings' faces;
- a wing (`aios/<wing>/`) imports the floor, its own modules and other wings' faces;
  `cli/` and `serve/` may import any module of any wing;
- nothing in `aios/` imports a pack;
- a pack imports only `aios`, floor modules and wing faces, never a wing's inner module;
- no import circles (imports inside functions count: they run too);
- no source file imports a path that moved (`aios._moved.MOVED`).

A face's lazy table (`_EXPORTS`) is read too, so `from aios.models import Backbone` counts as an
arrow to `aios.models.backbone`: a circle through a face is still a circle.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FREE_WINGS = {"cli", "serve"}  # may import any wing's inner modules
PACK_ROOTS = sorted([*ROOT.glob("plugins/*/aios_*"), ROOT / "examples" / "aios-shout"])


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    """Every module of the core and the packs, by dotted name."""
    found = {module_name(p, ROOT): p for p in (ROOT / "aios").rglob("*.py")}
    for root in PACK_ROOTS:
        base = root.parent if root.name.startswith("aios_") else root
        found.update({module_name(p, base): p for p in root.rglob("*.py")
                      if "tests" not in p.relative_to(base).parts})
    return found


MODULES = sources()


def face_tables() -> dict[str, dict[str, str]]:
    """Each face's lazy names: face -> {name: module}."""
    tables = {}
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "_EXPORTS"):
                table = ast.literal_eval(node.value)
                tables[name] = {n: f"{name}.{m}" for m, ns in table.items() for n in ns}
    return tables


FACES = face_tables()


def imports_of(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(target module, imported names, line) for every import statement, nested ones too."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, target] if target else base)
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def arrows() -> dict[str, set[str]]:
    """module -> the modules of the core and packs it imports, faces resolved per name."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = set()
        for target, names, _ in imports_of(path, module):
            if target not in MODULES:
                continue
            for name in names or [None]:
                if name and f"{target}.{name}" in MODULES:
                    targets.add(f"{target}.{name}")
                elif name and name in FACES.get(target, {}):
                    targets.add(FACES[target][name])
                else:
                    targets.add(target)
        graph[module] = targets - {module}
    return graph


def place(module: str) -> tuple[str, str]:
    """('floor'|'wing'|'pack', the wing or pack name)."""
    parts = module.split(".")
    if parts[0] != "aios":
        return "pack", parts[0]
    if len(parts) == 1 or MODULES[".".join(parts[:2])].parent == ROOT / "aios":
        return "floor", "aios"  # every aios/*.py file is floor; every aios/<wing>/ a wing
    return "wing", parts[1]


def is_face(module: str) -> bool:
    return module in MODULES and MODULES[module].name == "__init__.py"


def violations() -> list[str]:
    found = []
    for module, path in MODULES.items():
        kind, owner = place(module)
        where = path.relative_to(ROOT)
        for target, _, line in imports_of(path, module):
            top = target.split(".")[0]
            if top.startswith("aios_") and top != "aios_native" and kind != "pack":
                found.append(f"{where}:{line}: the core imports the pack {target}")
            if top != "aios" or target not in MODULES:
                continue
            target_kind, target_owner = place(target)
            if target_kind != "wing" or (is_face(target) and target.count(".") == 1):
                continue  # the floor and the faces are open to everyone
            if kind == "wing" and (target_owner == owner or owner in FREE_WINGS):
                continue
            found.append(f"{where}:{line}: {module} ({kind}) imports {target}, an inner module "
                         f"of the {target_owner} wing; import its face aios.{target_owner}")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_each_module_imports_only_what_its_place_allows():
    assert violations() == []


def test_there_are_no_import_circles():
    assert circles(arrows()) == []


def test_the_circle_finder_finds_a_circle_through_a_face():
    graph = {"aios.a": {"aios.models.b"}, "aios.models.b": {"aios.a"}, "aios.c": set()}
    assert circles(graph) == [["aios.a", "aios.models.b"]]


def test_a_face_import_is_an_arrow_to_the_module_defining_the_name():
    graph = arrows()
    assert "aios.models.backbone_numpy" in graph["aios.models.gaussian_numpy"]
    lazy = FACES["aios.models"]
    assert lazy["ArrayBackbone"] == "aios.models.backbone_numpy"


def test_no_source_imports_a_moved_path():
    from aios._moved import MOVED

    old = set(MOVED)
    files = [*MODULES.values(), *ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/*.py"),
             *ROOT.glob("benchmarks/*.py"), *ROOT.glob("aios_native/tests/*.py")]
    found = [f"{path.relative_to(ROOT)}:{line}: {target} moved to {MOVED[target]}"
             for path in files if path.name != "test_architecture.py"
             for target, _, line in imports_of(path, "") if target in old]
    assert found == []


@pytest.mark.parametrize("face", sorted(m for m in MODULES if is_face(m)))
def test_every_face_declares_all_and_each_name_resolves(face):
    module = importlib.import_module(face)
    assert isinstance(module.__all__, list) and module.__all__
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert set(FACES.get(face, {})) <= set(module.__all__)


@pytest.mark.parametrize("face", sorted(FACES))
def test_each_lazy_name_is_listed_once_under_the_module_that_defines_it(face):
    """A name listed under two modules resolves to whichever comes last, so a misplaced entry
    would go unnoticed while the right one follows it."""
    tree = ast.parse(MODULES[face].read_text())
    table = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and len(node.targets) == 1
                 and getattr(node.targets[0], "id", None) == "_EXPORTS")
    listed = [name for names in table.values() for name in names]
    assert sorted(n for n in set(listed) if listed.count(n) > 1) == []
    wrong = [f"{module}.{name}" for module, names in table.items() for name in names
             if not hasattr(importlib.import_module(f"{face}.{module}"), name)]
    assert wrong == []


def test_old_import_paths_still_work_and_are_the_same_module():
    import aios  # noqa: F401  (installs the finder of moved paths)
    from aios._moved import MOVED

    for old, new in MOVED.items():
        with pytest.warns(DeprecationWarning, match=new):
            importlib.invalidate_caches()
            import sys
            sys.modules.pop(old, None)
            moved = importlib.import_module(old)
        assert moved is importlib.import_module(new)
