"""No import cycles between the modules of `atoll`, at any depth.

The import-linter contracts (`.importlinter`, run by `make lint`) hold the layers and the
adapters, and forbid cycles between the siblings of each domain package; this checks every
module of the package one by one, the core included. It reads the import graph the way
import-linter does (grimp, from the installed package): imports inside functions and
under `if TYPE_CHECKING:` count, since a cycle hidden behind a lazy import is still one.
"""

from __future__ import annotations

import grimp


def _cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(imports[step]))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _module_imports() -> dict[str, set[str]]:
    """Each module of atoll and the atoll modules it imports; a package's `__init__` is the
    package, and a module importing its own parent package is not an edge (Python runs the
    parent's `__init__` first anyway)."""
    graph = grimp.build_graph("atoll")
    modules = set(graph.modules)
    return {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported in modules and not module.startswith(imported + ".")
        }
        for module in modules
    }


def test_the_cycle_finder_finds_cycles_and_nothing_else() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert _cycles(imports) == [["a", "b", "c"]]
    assert _cycles({"x": {"y"}, "y": {"x"}, "z": set()}) == [["x", "y"]]


def test_no_module_of_atoll_is_in_an_import_cycle() -> None:
    imports = _module_imports()
    assert "atoll.deployer.serving.predict" in imports, "the graph must hold the mapped folders"
    assert "atoll.deployer.serving.state" in imports["atoll.deployer.serving.predict"]
    cycles = _cycles(imports)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
