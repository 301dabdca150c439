"""Which implementation runs an activation: the Triton kernels or the pure-torch path.

Three backends:

* ``"auto"`` (default): Triton kernels for CUDA tensors when Triton imports, the torch path otherwise.
* ``"triton"``: always the Triton kernels. A CPU tensor needs Triton's interpreter
  (``TRITON_INTERPRET=1`` set before torchinit is imported); without it a clear error is raised.
* ``"torch"``: always the pure-torch path.

The environment variable ``TORCHINIT_BACKEND``, read when torchinit is imported, sets the
process-wide default (:func:`set_default_backend` changes it later); :func:`use_backend` overrides it
for a block of code (thread- and task-local, through a context variable).

Under ``torch.compile`` the torch path is used by default even for CUDA tensors, so that Inductor
sees plain aten code and can fuse the activation with its neighbours (a hand-written kernel is a
fusion barrier). :func:`use_kernels_in_compile` (or ``TORCHINIT_COMPILE_KERNELS=1``) keeps the
Triton kernels inside compiled graphs instead. ``torch.export`` always records torchinit's own
operators, so an exported program keeps them.

One decision per call: the entry points (``torchinit.functional``, the modules, the fused functions)
decide with :func:`route` whether to call torchinit's operator or the op's torch form. The operators
themselves are registered per dispatch key: on a CUDA tensor an operator runs its Triton kernel (where
Triton is installed) without asking the "auto" rule again, on other devices its torch form, on CPU the
kernel only under the interpreter with the forced "triton" backend. The forced "torch" backend stays an
off-switch everywhere (:func:`torch_forced`): a direct ``torch.ops.torchinit.<op>`` call or an exported
program run under it takes the torch form on CUDA too.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import os
from types import SimpleNamespace
from typing import Iterator, Literal

import torch

BackendName = Literal["auto", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch")

_backend_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("torchinit_backend", default=None)
_kernels_in_compile: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "torchinit_kernels_in_compile", default=None
)


def _closest(name: object) -> str:
    """``"; did you mean 'x'?"`` for the valid backend closest to ``name``, else ``""``."""
    close = difflib.get_close_matches(str(name).strip().lower(), BACKENDS, n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_backend_name(name: str, where: str = "torchinit backend") -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where}: expected one of {list(BACKENDS)}, got {name!r}{_closest(name)}")
    return name


def _backend_from_env() -> str:
    raw = os.environ.get("TORCHINIT_BACKEND", "auto")
    name = raw.strip().lower() or "auto"
    if name not in BACKENDS:
        hint = (" (the device is not a backend: \"auto\" runs the Triton kernels on CUDA tensors)"
                if name in ("cuda", "gpu", "cpu") else "")
        raise ValueError(f"environment variable TORCHINIT_BACKEND={raw!r}: expected one of {list(BACKENDS)}"
                         f"{_closest(name)}{hint}")
    return name


# the process-wide default: TORCHINIT_BACKEND as it was when torchinit was imported (reading the
# environment on every call would cost more than a small activation itself), or set_default_backend()
_default_backend: str = _backend_from_env()


def set_default_backend(name: BackendName | None = None) -> None:
    """Set the process-wide default backend; ``None`` re-reads ``TORCHINIT_BACKEND`` from the environment."""
    global _default_backend
    _default_backend = (_backend_from_env() if name is None
                        else _check_backend_name(name, "torchinit.set_default_backend"))


def get_backend() -> str:
    """The backend in force here: the innermost :func:`use_backend`, else the process default
    (:func:`set_default_backend`, or ``TORCHINIT_BACKEND`` read at import), else ``"auto"``."""
    override = _backend_override.get()
    return _default_backend if override is None else override


@contextlib.contextmanager
def use_backend(name: BackendName) -> Iterator[None]:
    """Run the enclosed block with backend ``name`` ("auto", "triton" or "torch")."""
    token = _backend_override.set(_check_backend_name(name, "torchinit.use_backend"))
    try:
        yield
    finally:
        _backend_override.reset(token)


@contextlib.contextmanager
def use_kernels_in_compile(enabled: bool = True) -> Iterator[None]:
    """Keep (or, with ``enabled=False``, drop) torchinit's Triton kernels inside ``torch.compile`` graphs.

    Dynamo reads this flag while it traces, so it applies to graphs compiled inside the block.
    """
    token = _kernels_in_compile.set(bool(enabled))
    try:
        yield
    finally:
        _kernels_in_compile.reset(token)


def kernels_in_compile() -> bool:
    """Whether compiled graphs keep torchinit's kernels (default False: hand Inductor plain aten code)."""
    flag = _kernels_in_compile.get()
    if flag is not None:
        return flag
    return os.environ.get("TORCHINIT_COMPILE_KERNELS", "0").strip() in ("1", "true", "yes")


_triton_importable: bool | None = None


def triton_available() -> bool:
    """True when ``import triton`` works (Linux with a triton wheel); the answer is cached."""
    global _triton_importable
    if _triton_importable is None:
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401

            _triton_importable = True
        except Exception:  # pragma: no cover - depends on the platform
            _triton_importable = False
    return _triton_importable


def interpreter_enabled() -> bool:
    """True when Triton's interpreter is switched on (``TRITON_INTERPRET=1``), so kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0").strip() == "1"


def triton_can_run(device: torch.device) -> bool:
    """Whether a Triton kernel can run on tensors of ``device``."""
    return _kernels_for("triton", device.type)


def _kernels_for(backend: str, device_type: str) -> bool:
    """The one rule: does ``backend`` run the Triton kernels on tensors of ``device_type``?

    "auto" runs them on CUDA only, "triton" wherever they can run (CPU under the interpreter),
    "torch" never.
    """
    if backend == "torch":
        return False
    if device_type == "cuda":
        return triton_available()
    return backend == "triton" and device_type == "cpu" and interpreter_enabled() and triton_available()


_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)
_is_compiling = torch.compiler.is_compiling
# the flag torch.compiler.is_exporting() returns (torch >= 2.5), read directly on the hot path
_compiler = torch.compiler if hasattr(torch.compiler, "_is_exporting_flag") else SimpleNamespace(
    _is_exporting_flag=False)


def route(op: str, x: torch.Tensor) -> bool:
    """The backend decision of one call of ``op`` on tensor ``x``: True runs torchinit's operator (Triton
    kernels where they can run), False the op's torch form (plain torch ops, differentiated by torch).

    This runs on every call, so the common case is decided first and cheaply: under "auto" a tensor
    that is not on CUDA takes the torch form, except while ``torch.export`` traces (an exported
    program records torchinit's operators). The rest is :func:`use_custom_op`.
    """
    if (_backend_override.get() or _default_backend) == "auto" and not x.is_cuda:
        # torch.compiler.is_exporting() returns this flag (and Dynamo's handling of it reads it too)
        return _compiler._is_exporting_flag
    return use_custom_op(op, x.device)


def use_custom_op(op: str, device: torch.device) -> bool:
    """Decide, for one call of activation ``op`` on ``device``, whether it goes through torchinit's operator.

    True means the registered ``torch.ops.torchinit`` operator (Triton kernels where they can run,
    the reference implementation elsewhere); False means the plain torch path. Raises a clear
    error when the "triton" backend is forced where no kernel can run. The entry points call it
    through :func:`route`.
    """
    if _is_exporting():
        return True
    compiling = _is_compiling()
    if compiling and not kernels_in_compile():
        return False
    backend = get_backend()
    if backend == "auto":
        return _kernels_for(backend, device.type)
    if backend != "triton" or compiling:
        return backend == "triton"
    if not _kernels_for(backend, device.type):
        if not triton_available():
            why = "Triton is not installed"
        elif device.type == "cpu":
            why = "a CPU tensor needs Triton's interpreter: set TRITON_INTERPRET=1 before importing torchinit"
        else:
            why = f"Triton kernels do not run on device type {device.type!r}"
        raise RuntimeError(f"torchinit.{op}: backend 'triton' was requested but {why}")
    return True


def torch_forced() -> bool:
    """Whether the backend in force is "torch" (always the pure-torch path): the one thing an operator's CUDA
    implementation asks, so that the off-switch holds for direct calls and exported programs too."""
    return (_backend_override.get() or _default_backend) == "torch"


def kernel_runs_on(device: torch.device) -> bool:
    """Whether the Triton kernels run on tensors of ``device`` under the backend in force (the entry points'
    rule, :func:`_kernels_for`).

    Operators do not ask it on CUDA: they are registered per dispatch key (:class:`torchinit.opdef.Implementation`),
    so an operator called on a CUDA tensor runs its kernel (unless :func:`torch_forced`) -- the entry points
    decided before calling it. On CPU an operator asks it, because there the kernels run only under Triton's
    interpreter with the forced "triton" backend.
    """
    return _kernels_for(get_backend(), device.type)
