"""The package's import structure, read from the source (AST), not from what happens to be imported:
``kernels/`` (installed as ``torchinit.kernels``) imports nothing from the package above it."""

from __future__ import annotations

import ast
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
