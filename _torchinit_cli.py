"""Entry point of the ``torchinit`` command: the command line is parsed before torch is imported.

``from torchinit.cli import main`` would first run ``torchinit/__init__.py``, which imports torch and
registers the operators (seconds). The command's module, ``torchinit/cli.py``, imports only the
standard library at module level, so this loads it from its file without the package: ``--help``,
``--version`` and argument errors answer at once, and torch is imported by the commands that need it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_MODULE = "torchinit.cli"


def _load_cli():
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    package = importlib.util.find_spec("torchinit")  # finds the package without importing it
    if package is None or package.origin is None:
        raise SystemExit("torchinit: error: the torchinit package is not installed in this Python environment")
    spec = importlib.util.spec_from_file_location(_MODULE, Path(package.origin).with_name("cli.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module  # relative imports inside its functions import the package on demand
    spec.loader.exec_module(module)
    return module


def main() -> int:
    """Run ``torchinit <command> ...`` with ``sys.argv``; the exit status."""
    return _load_cli().main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
