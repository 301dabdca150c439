"""Every ```python block of README.md runs as written, so the README cannot drift from the code.

Each block runs on its own, in a fresh namespace that holds only the prelude below: the names the
README's prose assumes (``model``: a Conv2d -> ReLU -> pool -> Linear net whose layers are named
``stem`` and ``head``; ``build_model`` that builds it; ``x``; ``inputs``, a batch for ``model``) and
the imports ``torch``, ``nn``, ``torchvision`` and ``torchinit as ti``. A block runs in a temporary
working directory, so files it writes (plots) land there. When one short paragraph after a block says
it "prints" and an unlabelled fenced block follows it, the block's standard output must be that text.
Blocks that are not Python (shell commands, printed output) are fenced without the ``python`` label.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

PRELUDE = '''
from collections import OrderedDict

import torch
import torchvision
from torch import nn

import torchinit as ti


def build_model():
    return nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 16, 3), act=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), head=nn.Linear(16, 10)))


torch.manual_seed(0)
model = build_model()
x = torch.randn(4, 8)
inputs = torch.randn(8, 3, 16, 16)
'''

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class Block:
    lang: str
    code: str
    line: int
    expected_output: str | None = None


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order; a Python block gets the output block that its prose says it prints."""
    found = []
    for m in _FENCE.finditer(text):
        found.append((m, Block(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 2)))
    for (m, block), nxt in zip(found, found[1:] + [None]):
        if block.lang != "python" or nxt is None:
            continue
        between = text[m.end():nxt[0].start()].strip()
        # one short paragraph saying "prints", right between the code and an unlabelled block
        if nxt[1].lang == "" and "\n\n" not in between and re.search(r"\bprints\b", between):
            block.expected_output = nxt[1].code
    return [b for _, b in found]


PYTHON_BLOCKS = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.lang == "python"]


def test_parser_finds_fences_and_their_printed_output():
    text = ("a\n```python\nprint(1)\n```\nprints:\n```\n1\n```\n```bash\nls\n```\n```python\nx = 2\n```\n"
            "It prints nothing.\n\n## Layout\n\n```\ntree\n```\n")
    blocks = readme_blocks(text)
    assert [(b.lang, b.line) for b in blocks] == [("python", 3), ("", 7), ("bash", 10), ("python", 13), ("", 20)]
    assert blocks[0].expected_output == "1\n" and blocks[3].expected_output is None  # not a later paragraph


def test_readme_has_python_blocks():
    assert len(PYTHON_BLOCKS) >= 4  # the three-line activations, apply_init, swap and diagnose tours


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"README.md:{b.line}" for b in PYTHON_BLOCKS])
def test_readme_python_block_runs_as_written(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(PRELUDE, "<README prelude>", "exec"), namespace)
    # the block's own line numbers in tracebacks: pad it down to where it starts in README.md
    code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    if block.expected_output is not None:
        got = [line.rstrip() for line in out.getvalue().strip("\n").splitlines()]
        want = [line.rstrip() for line in block.expected_output.strip("\n").splitlines()]
        assert got == want, f"README.md:{block.line} prints something else than the README shows"


def _layout_entries(text: str) -> list[str]:
    """The paths README's Layout block names: top-level entries, and ``  name`` entries inside the last folder."""
    section = text[text.index("## Layout"):]
    block = next(b for b in readme_blocks(section) if b.lang == "")
    paths, folder = [], ""
    for line in block.code.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent > 2:  # blank, or the continuation of a description
            continue
        names = line.strip().split("  ")[0]  # the path column ends at two spaces
        for name in (n.strip() for n in names.split(",")):
            if indent == 0:
                paths.append(name)
                folder = name if name.endswith("/") else ""
            else:
                paths.append(folder + name)
    return paths


def test_layout_names_paths_that_exist_and_every_package_folder():
    root = README.parent
    entries = _layout_entries(README.read_text(encoding="utf-8"))
    missing = [p for p in entries if not (root / p).exists()]
    assert not missing, f"README's Layout names paths that do not exist: {missing}"
    packages = {f"torchinit/{p.name}/" for p in (root / "torchinit").iterdir() if (p / "__init__.py").is_file()}
    assert packages | {"kernels/", "benchmarks/", "examples/", "tests/"} <= set(entries)
