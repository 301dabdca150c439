"""The ``torchinit`` command: ``bench``, ``diagnose`` and ``demo``.

This module imports only the standard library at module level (torch and the rest of torchinit are
imported inside the commands), so that the command's entry point (``_torchinit_cli``) can load it
without the package: ``torchinit --help``, ``--version`` and argument errors return at once.

``bench`` and ``demo`` run code that lives in the source tree, not in the installed package
(``benchmarks/run.py`` and ``examples/digits_init_story.py``): they are looked for in the current
directory and its parents, then next to the package (an editable install), and a missing file is
reported with the places searched.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

PROG = "torchinit"
BENCH_FILE = Path("benchmarks") / "run.py"
DEMO_FILE = Path("examples") / "digits_init_story.py"


class CLIError(Exception):
    """A user error: printed as ``torchinit <command>: error: <message>`` with exit status 2."""


# ------------------------------------------------------------------------------------------- parser

def version() -> str:
    """The installed torchinit's version, read from its package metadata (without importing torch)."""
    from importlib import metadata

    try:
        return metadata.version("torchinit")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``torchinit`` command (subcommands bench, diagnose, demo)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="torchinit: weight initialisation and fast, exact activations for PyTorch.",
        epilog="Run 'torchinit <command> --help' for the options of one command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="{bench,diagnose,demo}")

    sub.add_parser(
        "bench", add_help=False,
        help="run the benchmark harness (benchmarks/run.py of a source checkout); every argument after "
             "'bench' goes to the harness: 'torchinit bench --help' shows its options",
        description="Run the benchmark harness benchmarks/run.py from a source checkout.")

    d = sub.add_parser(
        "diagnose", help="probe signal propagation through a model: per-layer table, verdict and plot",
        description="Build MODEL, optionally re-initialise it and swap its activations, run one forward and "
                    "backward pass on a random batch with torchinit.diagnose, print the per-layer report and "
                    "write the plot (forward std and gradient RMS against depth). Exit status 0 whatever the "
                    "verdict; use --json to read it from a program.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("model", metavar="MODEL",
                   help="a torchvision classification model name (resnet18, vit_b_16, ...; 'list' prints them) "
                        "or 'module:callable', a function of no arguments returning a model or a "
                        "(model, example_inputs) pair")
    d.add_argument("--scheme", action="append", default=None, metavar="NAME",
                   help="init scheme applied with torchinit.init.apply_init before probing (kaiming_normal, "
                        "xavier_uniform, lecun_normal, orthogonal, auto, lsuv, ...; 'list' prints them); give "
                        "it several times to compare schemes in one plot; default: the model's own init")
    d.add_argument("--act", metavar="NAME", default=None,
                   help="replace every activation module by torchinit's NAME (gelu, silu, relu, ...) with "
                        "torchinit.swap_activations; 'torchinit' swaps each to its torchinit twin")
    d.add_argument("--functional", action="store_true",
                   help="with --act, also switch functional activation calls inside forwards")
    d.add_argument("--input-shape", default="2,3,224,224", metavar="N,C,H,W",
                   help="shape of the random normal input batch (ignored when the callable returns inputs)")
    d.add_argument("--device", default="cpu", help="device to run on (cpu, cuda, cuda:1, mps, ...)")
    d.add_argument("--eval", action="store_true",
                   help="probe in eval mode (BatchNorm uses running statistics); default: train mode")
    d.add_argument("--factor", type=float, default=10.0,
                   help="growth or shrink over depth beyond which the verdict is exploding or vanishing")
    d.add_argument("--seed", type=int, default=0, help="seed for the input batch, the init and the cotangent")
    d.add_argument("--plot", default=None, metavar="PATH",
                   help="where to write the plot; default: diagnose-<model>[-<scheme>...][-<act>].png in the "
                        "current directory")
    d.add_argument("--no-plot", action="store_true", help="do not write a plot")
    d.add_argument("--json", default=None, metavar="PATH", help="also write the report(s) as JSON")

    sub.add_parser(
        "demo", add_help=False,
        help="run the digits example (examples/digits_init_story.py): 8 activations x 8 inits on "
             "scikit-learn's digits, a table of loss/accuracy/gradient norms and diagnostics plots; "
             "arguments after 'demo' go to the example ('torchinit demo --help')",
        description="Run examples/digits_init_story.py from a source checkout.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchinit`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "bench":
            return _run_script(BENCH_FILE, "benchmarks.run", "run", args[1:], "bench")
        if args and args[0] == "demo":
            return _run_script(DEMO_FILE, "digits_init_story", "main", args[1:], "demo")
        parser = build_parser()
        ns = parser.parse_args(args)
        if ns.command is None:
            parser.print_help()
            return 2
        return _diagnose(ns)
    except CLIError as exc:
        command = f"{PROG} {args[0]}" if args and args[0] in ("bench", "diagnose", "demo") else PROG
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------- bench / demo

def find_source_file(relative: Path, start: Path | None = None) -> tuple[Path | None, list[Path]]:
    """Look for ``relative`` (e.g. ``benchmarks/run.py``) in ``start`` (default: the current directory) and
    its parents, then in the source tree holding this package. Returns (path or None, places searched)."""
    start = Path.cwd() if start is None else Path(start)
    places = [d / relative for d in (start.resolve(), *start.resolve().parents)]
    places.append(Path(__file__).resolve().parent.parent / relative)
    seen: list[Path] = []
    for p in places:
        if p in seen:
            continue
        seen.append(p)
        if p.is_file():
            return p, seen
    return None, seen


def _run_script(relative: Path, module_name: str, func: str, argv: list[str], command: str) -> int:
    path, searched = find_source_file(relative)
    if path is None:
        shown = ", ".join(str(p) for p in searched[:4]) + (", ..." if len(searched) > 4 else "")
        raise CLIError(f"cannot find {relative} (searched {shown}); '{PROG} {command}' runs from a source "
                       f"checkout of torchinit: cd into the repository and run it again")
    fn = _load_function(path, module_name, func, command)
    try:
        accepts_prog = "prog" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        accepts_prog = False
    result = fn(argv, prog=f"{PROG} {command}") if accepts_prog else fn(argv)
    return result if isinstance(result, int) else 0


def _load_function(path: Path, module_name: str, func: str, command: str) -> Callable[[list[str]], Any]:
    if "." in module_name:  # a package inside the checkout (benchmarks/ imports its siblings)
        root = str(path.parents[module_name.count(".")])
        if root not in sys.path:
            sys.path.insert(0, root)
        stale = sys.modules.get(module_name)
        if stale is not None and Path(getattr(stale, "__file__", "") or "").resolve() != path:
            raise CLIError(f"module {module_name!r} is already imported from {stale.__file__}, not {path}")
        module = importlib.import_module(module_name)
        if Path(module.__file__ or "").resolve() != path:
            raise CLIError(f"importing {module_name!r} found {module.__file__}, not {path}: another package "
                           f"named {module_name.split('.')[0]!r} shadows the checkout's")
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise CLIError(f"{path} has no function {func}(argv) for '{PROG} {command}'")
    return fn


# ------------------------------------------------------------------------------------------ diagnose

def _diagnose(ns: argparse.Namespace) -> int:
    # the checks that need no torch first, so that these errors come back at once
    if ns.functional and ns.act is None:
        raise CLIError("--functional needs --act")
    shape = _parse_shape(ns.input_shape)

    import torch

    from .diagnose import compare_inits, diagnose, plot_reports

    if ns.model == "list":
        print("\n".join(_torchvision_models()))
        return 0
    if ns.scheme and "list" in ns.scheme:
        print("\n".join(_scheme_names()))
        return 0
    device = _parse_device(ns.device)
    schemes = ns.scheme or []
    for s in schemes:
        _check_scheme(s)

    def build() -> tuple[torch.nn.Module, Any]:
        torch.manual_seed(ns.seed)
        model, inputs = _build_model(ns.model)
        if inputs is None:
            gen = torch.Generator().manual_seed(ns.seed)
            inputs = torch.randn(shape, generator=gen)
        if ns.act is not None:
            _swap(model, ns.act, ns.functional)
        model = model.to(device)
        model.train(not ns.eval)
        return model, _to_device(inputs, device)

    model, inputs = build()
    label = ns.model.rsplit(":", 1)[-1]
    try:
        if len(schemes) <= 1:
            if schemes:
                _initialise(model, schemes[0], inputs, ns.seed)
            report = diagnose(model, inputs, factor=ns.factor, seed=ns.seed,
                              label=f"{label} ({schemes[0] if schemes else 'own init'})")
            reports = {report.label: report}
            print(report)
        else:
            models = iter([model] + [None] * (len(schemes) - 1))

            def fresh() -> torch.nn.Module:
                m = next(models)
                return m if m is not None else build()[0]

            reports = compare_inits(fresh, {s: _init_fn(s, inputs, ns.seed) for s in schemes}, inputs,
                                    factor=ns.factor, seed=ns.seed)
            for rep in reports.values():
                print(rep, end="\n\n")
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CLIError(f"probing {ns.model!r} failed: {exc}") from exc
    if not ns.no_plot:
        path = Path(ns.plot) if ns.plot else Path(plot_file_name(label, schemes, ns.act))
        plot_reports(reports, path, plot_title(ns.model, schemes, ns.act))
        print(f"plot written to {path}")
    if ns.json:
        Path(ns.json).write_text(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=1))
        print(f"report written to {ns.json}")
    return 0


def _torchvision_models() -> list[str]:
    try:
        import torchvision.models as tvm
    except ImportError as exc:
        raise CLIError(f"torchvision is not installed ({exc}); pip install torchvision, or use module:callable")
    return sorted(tvm.list_models(module=tvm))


def _build_model(spec: str) -> tuple[Any, Any]:
    import torch

    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        if not mod_name or not attr:
            raise CLIError(f"MODEL {spec!r} must be 'module:callable', e.g. 'mypkg.models:build'")
        try:
            obj: Any = importlib.import_module(mod_name)
        except ImportError as exc:
            raise CLIError(f"cannot import module {mod_name!r} for MODEL {spec!r}: {exc}") from exc
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise CLIError(f"module {mod_name!r} has no attribute {attr!r} (MODEL {spec!r})")
            obj = getattr(obj, part)
        if not callable(obj):
            raise CLIError(f"{spec!r} is not callable")
        made = obj() if not isinstance(obj, torch.nn.Module) else obj
        model, inputs = (made if isinstance(made, tuple) and len(made) == 2 else (made, None))
        if not isinstance(model, torch.nn.Module):
            raise CLIError(f"{spec!r} returned {type(model).__name__}, expected a torch.nn.Module or a "
                           "(module, example_inputs) pair")
        return model, inputs
    names = _torchvision_models()
    if spec not in names:
        import difflib
        close = difflib.get_close_matches(spec, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CLIError(f"unknown model {spec!r}: not a torchvision classification model nor 'module:callable'"
                       f"{hint} ('{PROG} diagnose list' prints the {len(names)} torchvision names)")
    import torchvision.models as tvm
    return tvm.get_model(spec, weights=None), None


def _scheme_names() -> list[str]:
    try:
        from .init import scheme_names
    except ImportError as exc:
        raise CLIError(f"torchinit.init is not available ({exc})") from exc
    return scheme_names()


def _check_scheme(name: str) -> None:
    """Accept what apply_init accepts: scheme names and aliases (data-dependent ones too), any case, with or
    without a trailing underscore."""
    from .init.schemes import is_scheme_name

    if not is_scheme_name(name):
        names = _scheme_names()
        import difflib
        close = difflib.get_close_matches(name.lower(), names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CLIError(f"unknown scheme {name!r}{hint} (known: {', '.join(names)})")


def _init_fn(scheme: str, inputs: Any, seed: int) -> Callable[[Any], None]:
    return lambda model: _initialise(model, scheme, inputs, seed)


def _initialise(model: Any, scheme: str, inputs: Any, seed: int) -> None:
    from .init.apply import apply_init_with_batch

    apply_init_with_batch(model, scheme, inputs, seed=seed)  # data-dependent schemes run on the probe batch


def _swap(model: Any, act: str, functional: bool) -> None:
    from .swap import SwapError, swap_activations

    mapping = None if act == "torchinit" else {"*": act}
    try:
        swap_activations(model, mapping, functional=functional)
    except SwapError as exc:
        raise CLIError(f"--act {act!r}: {exc}") from exc


def _parse_device(text: str) -> Any:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise CLIError(f"unknown device {text!r}: expected cpu, cuda, cuda:N, mps, ... ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"device {text!r} requested but CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CLIError(f"device {text!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise CLIError(f"device {text!r} requested but MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise CLIError(f"device {text!r} is not supported here: use cpu, cuda[:N], mps or xpu")
    return device


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise CLIError(f"--input-shape {text!r} must be positive integers separated by commas, e.g. 2,3,224,224")
    return shape


def _to_device(obj: Any, device: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def plot_file_name(model: str, schemes: Sequence[str], act: str | None) -> str:
    """``diagnose-<model>[-<scheme>...][-<act>].png``: runs with another init or activation do not overwrite it."""
    parts = [model, *schemes] + ([act] if act else [])
    return "diagnose-" + "-".join(_slug(p) for p in parts) + ".png"


def plot_title(model: str, schemes: Sequence[str], act: str | None) -> str:
    """The plot's title: the model, its init(s) and its activation."""
    init = ", ".join(schemes) if schemes else "the model's own"
    activation = act if act else "the model's own"
    return f"{model}: signal propagation (init: {init}; activation: {activation})"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
