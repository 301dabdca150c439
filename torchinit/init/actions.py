"""Init value kinds: what a scheme plans for one block of a parameter, as small classes.

Each kind owns its checks, how it makes its values (:meth:`Action.materialize`: a new tensor, fp32 math
then cast), whether and how it writes them straight into a parameter (:meth:`Action.writes_in_place`,
:meth:`Action.fill_`: elementwise kinds only, shard-aware through global element numbers) and what the
report says of them (:meth:`Action.report_std`). Schemes (``schemes.py``) produce them; ``fill.py`` and
``apply.py`` call these methods and never ask which kind they hold.

A :class:`Stream` is where randomness comes from: a Philox ``key`` (counter-based: element ``i`` of the
parameter is a function of ``(key, i)``; ``start`` is the global index of the block's first element) or a
torch ``generator`` (``None`` means torch's global RNG), used like torch.nn.init does. Matrix kinds
(orthogonal, delta-orthogonal, sparse) draw their Gaussian matrix from the same stream and do the QR
factorisation in float64 on the CPU, so every device gets the same matrix.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch

from . import philox
from .errors import InitError
from .sampling import Dist, _f32, derive_key, sample, sample_into_, trunc_params

if TYPE_CHECKING:
    from .fans import ParamInfo

__all__ = ["Stream", "Whole", "Action", "Draw", "Constant", "Eye", "Dirac", "Orthogonal", "DeltaOrthogonal",
           "Sparse", "TorchDefault", "Function", "Empty"]


@dataclass(frozen=True)
class Stream:
    """A source of randomness for one parameter block."""

    key: int | None = None
    generator: torch.Generator | None = None
    start: int = 0

    def sub(self, tag: str) -> Stream:
        """An independent stream for a second use of the same elements (e.g. sparse's zero pattern)."""
        if self.key is None:
            return self
        return Stream(derive_key(self.key, tag), None, self.start)


@dataclass
class Whole:
    """A whole parameter, for the kinds whose value comes from its module or from user code."""

    param: torch.Tensor
    info: ParamInfo  # the occurrence (module, names) the rule selected
    name: str  # the checkpoint name: the seed key
    scheme: str  # the scheme's name, for messages
    seed: int | None
    generator: torch.Generator | None
    notes: dict[str, Any]  # the entry's report notes (a measured std goes here)


def _draw(d: Dist, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, s: Stream,
          index: torch.Tensor | None = None) -> torch.Tensor:
    gen_device = s.generator.device if s.generator is not None else device
    if s.key is None and gen_device != device:
        return sample(d, shape, torch.float32, gen_device, None, s.generator).to(device=device, dtype=dtype)
    return sample(d, shape, dtype, device, s.key, s.generator, start=s.start, index=index)


def _orthogonal(rows: int, cols: int, gain: float, s: Stream) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal rows or columns (whichever fits), times ``gain``; float64 CPU."""
    flat = _draw(Dist("normal"), (rows, cols), torch.float32, torch.device("cpu"), s).double()
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    d = torch.sign(torch.diagonal(r))
    d[d == 0] = 1
    q = q * d.unsqueeze(0)
    if rows < cols:
        q = q.t()
    return q * gain


class Action:
    """What to write into one block of a parameter (the base of every value kind)."""

    kind: ClassVar[str] = "action"  # the kind's name, for messages
    random: ClassVar[bool] = False  # draws random numbers (needs a floating-point tensor)
    elementwise: ClassVar[bool] = False  # every element from one law: written in place and per shard
    whole: ClassVar[bool] = False  # made for the whole parameter by its module or user code (:meth:`stage`)
    writes: ClassVar[bool] = True  # False: nothing to write (a zero-element parameter)

    def check(self, fn: str, name: str) -> None:
        """Checks planning cannot do from the arguments alone (raises ValueError); most kinds have none."""

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    stream: Stream) -> torch.Tensor:
        """A new tensor of ``shape``/``dtype`` on ``device`` holding this action's values."""
        raise ValueError(f"materialize: action {self.kind!r} cannot be written without its module")

    def writes_in_place(self, out: torch.Tensor, stream: Stream) -> bool:
        """Whether :meth:`fill_` can write straight into ``out``."""
        return False

    def fill_(self, out: torch.Tensor, stream: Stream, ws: philox.Workspace | None = None) -> torch.Tensor:
        """Write the values :meth:`materialize` returns for ``out`` into ``out`` in place; returns ``out``."""
        raise ValueError(f"fill_: {self.kind!r} actions are not written in place")

    def sampled(self) -> Dist | None:
        """The distribution :meth:`fill_` samples (apply runs each such path once before writing), or None."""
        return None

    def stage(self, whole: Whole) -> torch.Tensor:
        """The new value of a whole parameter (kinds with ``whole`` set: they run module or user code)."""
        raise ValueError(f"stage: action {self.kind!r} is written per block (materialize)")

    def report_std(self, shape: tuple[int, ...]) -> float | None:
        """The standard deviation of the written values (None where it is not known before writing)."""
        return None


class _Elementwise(Action):
    """Each element's value depends on its global index only: written in place, block by block or per shard."""

    elementwise = True

    def writes_in_place(self, out: torch.Tensor, stream: Stream) -> bool:
        return out.is_contiguous()


@dataclass(frozen=True)
class Draw(_Elementwise):
    """Independent draws from an elementwise distribution."""

    dist: Dist
    kind: ClassVar[str] = "dist"
    random = True

    def check(self, fn: str, name: str) -> None:
        """The scalars must fit fp32 (values are drawn in fp32); a truncation interval must have mass."""
        d = self.dist
        scalars = {"mean": d.mean, "std": d.std} if d.kind != "uniform" else {"b - a": d.b - d.a, "a": d.a}
        for label, v in scalars.items():
            if not math.isfinite(v) or abs(v) > 3.4e38:
                raise ValueError(f"{fn}: {name}: {label} = {v:g} is beyond fp32's range (values are drawn in fp32)")
        if d.kind == "trunc_normal":
            try:
                trunc_params(d)
            except ValueError as exc:
                raise ValueError(f"{fn}: {name}: {exc}") from None

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, stream: Stream,
                    index: torch.Tensor | None = None) -> torch.Tensor:
        """``index``: the global flat indices of the elements (a shard), instead of ``stream.start`` onwards."""
        return _draw(self.dist, shape, dtype, torch.device(device), stream, index)

    def writes_in_place(self, out: torch.Tensor, stream: Stream) -> bool:
        """Contiguous, and (torch-style sampling) a generator on ``out``'s device."""
        if not out.is_contiguous():
            return False
        if stream.key is None and stream.generator is not None:
            return stream.generator.device == out.device
        return True

    def fill_(self, out: torch.Tensor, stream: Stream, ws: philox.Workspace | None = None) -> torch.Tensor:
        return sample_into_(out, self.dist, stream.key, stream.generator, stream.start, ws)

    def sampled(self) -> Dist | None:
        return self.dist

    def report_std(self, shape: tuple[int, ...]) -> float | None:
        return self.dist.variance_std


@dataclass(frozen=True)
class Constant(_Elementwise):
    """One value everywhere (rounded to fp32 first, as every value is computed in fp32)."""

    value: float = 0.0
    kind: ClassVar[str] = "constant"

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, stream: Stream,
                    index: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full(shape, self.value, dtype=torch.float32, device=torch.device(device)).to(dtype)

    def fill_(self, out: torch.Tensor, stream: Stream, ws: philox.Workspace | None = None) -> torch.Tensor:
        return out.fill_(_f32(self.value))

    def report_std(self, shape: tuple[int, ...]) -> float | None:
        return 0.0


@dataclass(frozen=True)
class Eye(Action):
    """The identity matrix (2-D)."""

    kind: ClassVar[str] = "eye"

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    stream: Stream) -> torch.Tensor:
        return torch.eye(shape[0], shape[1], dtype=dtype, device=torch.device(device))


@dataclass(frozen=True)
class Dirac(Action):
    """The identity convolution: 1 at torch's kernel centre ``k // 2`` of channel ``d -> d`` in each group."""

    groups: int = 1
    kind: ClassVar[str] = "dirac"

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    stream: Stream) -> torch.Tensor:
        out = torch.zeros(shape, dtype=dtype, device=torch.device(device))
        per_group = shape[0] // self.groups
        n = min(per_group, shape[1])
        center = tuple(k // 2 for k in shape[2:])
        for g in range(self.groups):
            for d in range(n):
                out[(g * per_group + d, d) + center] = 1
        return out


def _orthogonal_std(gain: float, rows: int, cols: int) -> float:
    return gain / math.sqrt(max(rows, cols))


@dataclass(frozen=True)
class Orthogonal(Action):
    """A (semi-)orthogonal matrix over ``(shape[0], prod(shape[1:]))``, times ``gain``."""

    gain: float = 1.0
    kind: ClassVar[str] = "orthogonal"
    random = True

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    stream: Stream) -> torch.Tensor:
        q = _orthogonal(shape[0], math.prod(shape[1:]), self.gain, stream)
        return q.reshape(shape).to(device=torch.device(device), dtype=dtype)

    def report_std(self, shape: tuple[int, ...]) -> float | None:
        return _orthogonal_std(self.gain, shape[0], math.prod(shape[1:])) if len(shape) >= 2 else None


@dataclass(frozen=True)
class DeltaOrthogonal(Action):
    """Zero but JAX's tap ``(k - 1) // 2`` of each kernel dimension, which holds an orthogonal (out, in) matrix."""

    gain: float = 1.0
    kind: ClassVar[str] = "delta_orthogonal"
    random = True

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    stream: Stream) -> torch.Tensor:
        q = _orthogonal(shape[0], shape[1], self.gain, stream)
        out = torch.zeros(shape, dtype=torch.float64)
        center = tuple((k - 1) // 2 for k in shape[2:])  # JAX's tap: the identity under padding="same"
        out[(slice(None), slice(None)) + center] = q
        return out.to(device=torch.device(device), dtype=dtype)

    def report_std(self, shape: tuple[int, ...]) -> float | None:
        if len(shape) < 2:
            return None
        return _orthogonal_std(self.gain, shape[0], shape[1]) / math.sqrt(math.prod(shape[2:]))


@dataclass(frozen=True)
class Sparse(Action):
    """N(0, std^2) with ``ceil(sparsity * rows)`` zeros per column, the pattern drawn from a second stream."""

    sparsity: float = 0.0
    std: float = 0.0
    kind: ClassVar[str] = "sparse"
    random = True

    def materialize(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    stream: Stream) -> torch.Tensor:
        device = torch.device(device)
        rows = shape[0]
        values = _draw(Dist("normal", 0.0, self.std), shape, torch.float32, device, stream)
        zeros = math.ceil(self.sparsity * rows)
        if zeros:
            keys = _draw(Dist("uniform", a=0.0, b=1.0), shape, torch.float32, device, stream.sub("sparse-pattern"))
            order = torch.argsort(keys, dim=0, stable=True)[:zeros]
            values.scatter_(0, order, 0.0)
        return values.to(dtype)

    def report_std(self, shape: tuple[int, ...]) -> float | None:
        if len(shape) != 2:
            return None
        zeros = math.ceil(self.sparsity * shape[0])
        return self.std * math.sqrt(1 - zeros / shape[0])


def _seed_rng(seed: int | None, generator: torch.Generator | None, key: str, tag: str) -> None:
    """Seed torch's global RNG (inside a fork_rng) per parameter from ``seed``, or from one draw of ``generator``."""
    if seed is not None:
        torch.manual_seed(derive_key(seed, key, tag))
    elif generator is not None:
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator, device=generator.device)))


@dataclass(frozen=True)
class TorchDefault(Action):
    """The layer's own ``reset_parameters``, run on a seeded RNG."""

    kind: ClassVar[str] = "torch_default"
    whole = True

    def stage(self, whole: Whole) -> torch.Tensor:
        """This parameter's value after the owning module's reset; every parameter of the module is restored."""
        m = whole.info.module
        reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
        if reset is None:
            raise InitError(f"apply_init: {whole.info.name}: torch_default needs {type(m).__name__}.reset_parameters()")
        saved = {n: p.detach().clone() for n, p in m.named_parameters(recurse=False)}
        devices = [p.device for p in saved.values() if p.device.type == "cuda"]
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                _seed_rng(whole.seed, whole.generator, whole.info.module_name, "torch_default")
                reset()
                new = getattr(m, whole.info.local_name).detach().clone()
        finally:
            with torch.no_grad():
                for n, p in m.named_parameters(recurse=False):
                    p.copy_(saved[n])
        return new


@dataclass(frozen=True)
class Function(Action):
    """A torch.nn.init-style function ``fn(tensor, **kwargs)`` called on a fresh tensor like the parameter."""

    fn: Callable[..., Any] = field(default=None, compare=False)  # type: ignore[assignment]
    fn_kwargs: tuple[tuple[str, Any], ...] = ()
    kind: ClassVar[str] = "function"
    random = True
    whole = True

    def stage(self, whole: Whole) -> torch.Tensor:
        """Run the function (user code runs before any write), seeded per parameter name with ``seed``; the
        std of its result goes to the notes (``measured_std``)."""
        p = whole.param
        out = torch.empty(p.shape, dtype=p.dtype, device=p.device)
        kwargs = dict(self.fn_kwargs)
        try:
            takes_generator = "generator" in inspect.signature(self.fn).parameters
        except (TypeError, ValueError):
            takes_generator = False
        generator = whole.generator
        devices = [p.device] if p.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            if whole.seed is None and generator is not None and takes_generator and generator.device == p.device:
                kwargs["generator"] = generator
            else:
                _seed_rng(whole.seed, generator, whole.name, "function")
            try:
                result = self.fn(out, **kwargs)
            except Exception as exc:
                raise InitError(f"apply_init: {whole.name}: {whole.scheme} raised {type(exc).__name__}: {exc}") from exc
        value = result if isinstance(result, torch.Tensor) and result.shape == out.shape else out
        whole.notes["measured_std"] = float(value.detach().double().std()) if value.numel() > 1 else None
        return value


@dataclass(frozen=True)
class Empty(Action):
    """A zero-element parameter: nothing to write (torch.nn.init warns that it is a no-op)."""

    kind: ClassVar[str] = "empty"
    writes = False
