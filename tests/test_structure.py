"""The package's import structure, read from the source (AST), not from what happens to be imported:
``kernels/`` (installed as ``torchinit.kernels``) imports nothing from the package above it, and the modules
of ``torchinit`` import each other without cycles."""

from __future__ import annotations

import ast
import itertools
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, deferred ones (inside functions) included;
    relative imports resolved against the ``torchinit.kernels`` package."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                out.append((node.lineno, node.module or ""))
            else:
                base = ["torchinit", "kernels"][: 3 - node.level] if node.level <= 2 else []
                out.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
    return out


def test_kernels_import_nothing_from_the_package_above():
    bad = [f"kernels/{p.name}:{line}: {mod}" for p in sorted((ROOT / "kernels").glob("*.py"))
           for line, mod in _imports(p)
           if (mod == "torchinit" or mod.startswith("torchinit.")) and not mod.startswith("torchinit.kernels")]
    assert not bad, "kernels/ must stay importable on its own:\n" + "\n".join(bad)


#: Import cycles allowed, each by its set of modules: none (the last, torchinit.functional <->
#: torchinit.fused.functions, went in issue 15).
ALLOWED_CYCLES: set[frozenset[str]] = set()


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: pathlib.Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported torchinit module: line} for every ``torchinit/*.py`` and ``torchinit/*/*.py`` (AST,
    module-level and deferred imports alike; ``if TYPE_CHECKING:`` blocks too, which are rare here).

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg`` (its
    ``__init__``); a module's import of a sibling is not counted as an import of their package's ``__init__``
    (Python runs that first, but it is already being imported: counting it would make every submodule of
    ``torchinit`` cycle with the root ``__init__``, which imports them all). ``torchinit.kernels`` (the
    top-level ``kernels/`` folder, which imports nothing from here) is left out."""
    files = sorted(root.glob("torchinit/*.py")) + sorted(root.glob("torchinit/*/*.py"))
    modules = {_module_name(p, root): p for p in files}
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: list[tuple[int, str]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: package.count(".") + 2 - node.level]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from . import kernels``: the kernels package (its own folder), not torchinit's __init__
                found += [(node.lineno, f"{target}.{a.name}" if f"{target}.{a.name}" in modules
                           or f"{target}.{a.name}" == "torchinit.kernels" else target) for a in node.names]
        edges: dict[str, int] = {}
        for line, target in found:
            if target == "torchinit.kernels" or target.startswith("torchinit.kernels."):
                continue
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle ``[a, b, ..., a]`` through each module that lies on one (breadth-first search)."""
    cycles, seen = [], set()
    for start in sorted(graph):
        if start in seen:
            continue
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            nxt = []
            for m in frontier:
                for t in sorted(graph.get(m, {})):
                    if t not in parents:
                        parents[t] = m
                        nxt.append(t)
            frontier = nxt
        if start in parents:
            path = [start]
            while len(path) == 1 or path[-1] != start:
                path.append(parents[path[-1]])
            cycle = path[::-1]
            seen.update(cycle)
            cycles.append(cycle)
    return cycles


def test_no_import_cycles():
    graph = import_graph()
    assert "torchinit.nn" in graph and "torchinit.fused.functions" in graph  # the walk sees the subpackages
    bad = [c for c in import_cycles(graph) if frozenset(c) not in ALLOWED_CYCLES]
    lines = [" -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(c)) + f" -> {c[-1]}"
             for c in bad]
    assert not bad, "import cycles (module-level or deferred imports):\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the activation table drives the rest: function, module, registry name, swap spellings, benchmark and test cases
# ---------------------------------------------------------------------------------------------


def test_every_table_row_has_its_function_module_name_spellings_and_cases():
    from activation_cases import CASES, INPLACE

    import torchinit.functional as F
    import torchinit.nn as tinn
    from benchmarks import cases as bench
    from torchinit.activations import ACTIVATIONS
    from torchinit.registry import names
    from torchinit.swap import table

    found = {c.name for c in bench.discover().cases}
    ti_spellings = {s.kind for s in table.FUNCTIONS.values() if s.family == "ti"}
    for name, activation in ACTIVATIONS.items():
        assert name in F.__all__ and callable(getattr(F, name)), name
        assert name in tinn.ACTIVATION_MODULES and name in names() and name in table.TI_CLASSES, name
        assert name in ti_spellings and name in found, name
        if None not in activation.defaults.values():
            assert name in CASES, name
        assert (name in INPLACE) == (activation.inplace and name in CASES), name


def _table_rows_with_numbers():
    from torchinit.activations import ACTIVATIONS

    return [n for n, a in ACTIVATIONS.items() if None not in a.defaults.values()]


def test_functions_made_from_the_table_match_the_written_ones():
    """from_table gives each row the signature and results of its hand-written function (torch's)."""
    import inspect

    import torch

    import torchinit.functional as F

    x = torch.linspace(-4, 4, 41)
    for name in _table_rows_with_numbers():
        made, written = F.from_table(name), getattr(F, name)
        assert inspect.signature(made).parameters.keys() == inspect.signature(written).parameters.keys(), name
        assert [p.default for p in inspect.signature(made).parameters.values()] == [
            p.default for p in inspect.signature(written).parameters.values()], name
        assert torch.equal(made(x.clone()), written(x.clone())), name


def test_a_new_row_gets_function_module_registry_swap_benchmark(monkeypatch):
    """A row added to the table (here one reusing the leaky_relu formula) gets a working function, a module
    (arguments, inplace, repr), and a benchmark case against its torch form, with no other edit."""
    import torch
    import torch.nn.functional as TF

    import torchinit.functional as F
    import torchinit.nn as tinn
    from benchmarks import cases as bench
    from torchinit.activations import ACTIVATIONS, FORMULAS, Activation, Resolved

    row = Activation("leaky_again", {"negative_slope": 0.01}, True,
                     lambda negative_slope=0.01, **_: Resolved(FORMULAS["leaky_relu"], scalars=(negative_slope, 0, 0)))
    monkeypatch.setitem(ACTIVATIONS, "leaky_again", row)
    fn = F.from_table("leaky_again")
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(fn(x, 0.2), TF.leaky_relu(x, 0.2)) and torch.equal(fn(x), TF.leaky_relu(x))
    y = x.clone()
    assert fn(y, negative_slope=0.3, inplace=True) is y and torch.equal(y, TF.leaky_relu(x, 0.3))
    monkeypatch.setattr(F, "leaky_again", fn, raising=False)
    cls = tinn.module_from_table("leaky_again")
    assert cls.__name__ == "LeakyAgain" and cls.__module__ == "torchinit.nn"
    m = cls(0.2)
    assert torch.equal(m(x), TF.leaky_relu(x, 0.2)) and repr(m) == "LeakyAgain(negative_slope=0.2)"
    assert repr(cls(negative_slope=0.5, inplace=True)) == "LeakyAgain(negative_slope=0.5, inplace=True)"
    case = bench._case_for("leaky_again", fn, "torchinit.functional.leaky_again", {})
    assert not isinstance(case, str) and torch.equal(case.reference(x), TF.leaky_relu(x))


def test_modules_made_from_the_table_match_the_written_ones():
    """module_from_table for a row with a torch twin subclasses it like the written module: same base, repr,
    state_dict keys and results, positional and keyword arguments, in place where the row is."""
    import torch

    import torchinit.nn as tinn
    from torchinit.activations import ACTIVATIONS

    x = torch.linspace(-8, 8, 33)
    args = {"leaky_relu": (0.2,), "elu": (0.5,), "celu": (2.0,), "softplus": (2.0, 5.0), "hardtanh": (-2.0, 0.5)}
    twins = 0
    for name in _table_rows_with_numbers():
        made, written = tinn.module_from_table(name), tinn.ACTIVATION_MODULES[name]
        if made.__bases__[0] is torch.nn.Module:
            continue
        twins += 1
        assert made.__bases__ == written.__bases__[:1] and made.__name__ == written.__name__, name
        m, w = made(*args.get(name, ())), written(*args.get(name, ()))
        assert repr(m) == repr(w) and m.state_dict().keys() == w.state_dict().keys(), name
        assert torch.equal(m(x.clone()), w(x.clone())), name
        if ACTIVATIONS[name].inplace:
            y = x.clone()
            assert made(inplace=True)(y) is y and torch.equal(y, written()(x.clone())), name
    assert twins >= 15
