"""What the harness times: one :class:`Case` per op, discovered from torchinit's modules.

A case pairs a torchinit function with the torch computation a user would otherwise write (torch's
own op, e.g. ``torch.nn.functional.gelu``, or a composite such as ``F.silu(gate) * up`` for ops
torch lacks), builds random inputs for a size ``N`` (never zeros), and states the bytes each pass
must move (:class:`Traffic`).

Discovery: every public function of ``torchinit.functional`` and, where those modules exist,
``torchinit.fused`` and ``torchinit.softmax``. Activations of the core table
(:data:`torchinit.activations.ACTIVATIONS`) get their case automatically: against their
``torch.nn.functional`` twin, or, without one and without an entry in :data:`COMPOSITES`, against
the row's torch form (plain torch ops); every other op needs an entry in :data:`COMPOSITES` (its
inputs, its torch composite and its traffic). A discovered function with neither is listed as skipped, with the
reason, in the results; nothing is silently dropped.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

#: Modules searched for ops, in order (a name found twice is benchmarked once, under the first).
MODULES: tuple[str, ...] = ("torchinit.functional", "torchinit.fused", "torchinit.softmax")

#: Widest last dimension of the 2-D inputs; ``N`` elements are laid out as ``(N // cols, cols)``.
MAX_COLS = 1024


@dataclass(frozen=True)
class Traffic:
    """The fewest elements each pass must move through memory, as multiples of the case's size ``N``.

    The byte model (each tensor read or written once, parameters such as PReLU's weight or a bias
    vector neglected): forward reads its inputs and writes its output; backward reads the output
    gradient and what forward saved, and writes the input gradients; forward+backward moves the sum.
    For an element-wise activation that is ``2N`` forward and ``3N`` backward (grad, saved, grad_in).
    """

    fwd_read: float = 1.0
    fwd_write: float = 1.0
    bwd_read: float = 2.0
    bwd_write: float = 1.0

    def bytes(self, numel: int, element_size: int) -> dict[str, int]:
        """Bytes per pass (``fwd``, ``bwd``, ``fwdbwd``) for ``numel`` elements of ``element_size`` bytes."""
        fwd = round((self.fwd_read + self.fwd_write) * numel * element_size)
        bwd = round((self.bwd_read + self.bwd_write) * numel * element_size)
        return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}


@dataclass(frozen=True)
class Case:
    """One op to time: the torchinit function, its torch baseline, inputs and byte model."""

    name: str  # the name in tables, e.g. "gelu" or "gelu[tanh]"
    source: str  # where the torchinit function lives, e.g. "torchinit.functional.gelu"
    torchinit: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]  # plain torch: what eager and torch.compile run
    reference_desc: str  # how the baseline is written, for the report
    make_inputs: Callable[[int, torch.dtype, torch.device, int], list[Any]]  # (N, dtype, device, seed) -> args
    grad_args: tuple[int, ...] = (0,)  # positions of the arguments that get gradients
    traffic: Traffic = field(default_factory=Traffic)


def shape_2d(numel: int) -> tuple[int, int]:
    """The 2-D shape used for ``numel`` elements: ``cols = gcd(numel, MAX_COLS)`` columns."""
    if numel < 1:
        raise ValueError(f"benchmarks.cases.shape_2d: 'numel' must be >= 1, got {numel}")
    cols = math.gcd(numel, MAX_COLS)
    return numel // cols, cols


def _randn(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen, device=device, dtype=torch.float32).to(dtype)


def _one_activation(numel: int, dtype: torch.dtype, device: torch.device, seed: int) -> list[Any]:
    return [_randn(shape_2d(numel), dtype, device, seed)]


def _with_channel_weight(numel: int, dtype: torch.dtype, device: torch.device, seed: int) -> list[Any]:
    x = _randn(shape_2d(numel), dtype, device, seed)
    w = (0.25 + 0.05 * _randn((x.shape[1],), torch.float32, device, seed + 1)).to(dtype)
    return [x, w]


def _gate_and_up(numel: int, dtype: torch.dtype, device: torch.device, seed: int) -> list[Any]:
    shape = shape_2d(numel)
    return [_randn(shape, dtype, device, seed), _randn(shape, dtype, device, seed + 1)]


_UNARY = Traffic()
_UNARY_WITH_WEIGHT = Traffic()  # the weight (one value per channel) is neglected
_GATED = Traffic(fwd_read=2.0, fwd_write=1.0, bwd_read=3.0, bwd_write=2.0)  # gate, up -> out; grad, gate, up -> 2 grads
_GLU = Traffic(fwd_read=1.0, fwd_write=0.5, bwd_read=1.5, bwd_write=1.0)  # x (both halves) -> half-size out


@dataclass(frozen=True)
class Composite:
    """How to benchmark an op torch has no single function for (or whose call differs from torch's)."""

    reference: Callable[..., torch.Tensor]
    desc: str
    make_inputs: Callable[[int, torch.dtype, torch.device, int], list[Any]] = _one_activation
    grad_args: tuple[int, ...] = (0,)
    traffic: Traffic = _UNARY
    call: Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]] = lambda fn: fn


def _bias_inputs(numel: int, dtype: torch.dtype, device: torch.device, seed: int) -> list[Any]:
    x = _randn(shape_2d(numel), dtype, device, seed)
    return [x, _randn((x.shape[1],), dtype, device, seed + 1)]


#: Ops benchmarked against a torch composite. Signatures of the fused ops follow their issue
#: (``swiglu(gate, up)``, ``bias_act(x, bias, act)``); a call that fails is recorded as an error.
COMPOSITES: dict[str, Composite] = {
    "glu": Composite(lambda x: F.glu(x, -1), "F.glu(x, -1)", call=lambda fn: lambda x: fn(x, -1), traffic=_GLU),
    "swish": Composite(lambda x: x * torch.sigmoid(1.0 * x), "x * torch.sigmoid(beta * x), beta=1.0"),
    "squared_relu": Composite(lambda x: torch.relu(x).square(), "torch.relu(x).square()"),
    "star_relu": Composite(lambda x: 0.8944 * torch.relu(x) ** 2 + (-0.4472),
                           "0.8944 * torch.relu(x) ** 2 - 0.4472"),
    "swiglu": Composite(lambda g, u: F.silu(g) * u, "F.silu(gate) * up", _gate_and_up, (0, 1), _GATED),
    "geglu": Composite(lambda g, u: F.gelu(g) * u, "F.gelu(gate) * up", _gate_and_up, (0, 1), _GATED),
    "reglu": Composite(lambda g, u: F.relu(g) * u, "F.relu(gate) * up", _gate_and_up, (0, 1), _GATED),
    "bias_act": Composite(lambda x, b: F.gelu(x + b), "F.gelu(x + bias)", _bias_inputs, (0, 1),
                          call=lambda fn: lambda x, b: fn(x, b, "gelu")),
    "softmax": Composite(lambda x: F.softmax(x, dim=-1), "F.softmax(x, dim=-1)",
                         call=lambda fn: lambda x: fn(x, dim=-1)),
    "softmin": Composite(lambda x: F.softmin(x, dim=-1), "F.softmin(x, dim=-1)",
                         call=lambda fn: lambda x: fn(x, dim=-1)),
    "log_softmax": Composite(lambda x: F.log_softmax(x, dim=-1), "F.log_softmax(x, dim=-1)",
                             call=lambda fn: lambda x: fn(x, dim=-1)),
}

# Memory-lean variants compute torch's function and save less for backward (a bit mask, a few-bit code).
# They are charged the plain activation's traffic, so their GB/s reads directly against torch's op:
# saving fewer bytes shows as a higher figure.
for _name, _ref, _desc in [("relu_bits", F.relu, "F.relu"), ("relu6_bits", F.relu6, "F.relu6"),
                           ("leaky_relu_bits", F.leaky_relu, "F.leaky_relu"),
                           ("hardtanh_bits", F.hardtanh, "F.hardtanh"), ("gelu_fewbit", F.gelu, "F.gelu"),
                           ("silu_fewbit", F.silu, "F.silu"), ("mish_fewbit", F.mish, "F.mish")]:
    COMPOSITES[_name] = Composite(_ref, _desc)
COMPOSITES["prelu_bits"] = Composite(F.prelu, "F.prelu (per-channel weight)", _with_channel_weight, (0, 1))
COMPOSITES["gated"] = Composite(lambda g, u: F.silu(g) * u, "F.silu(gate) * up", _gate_and_up, (0, 1), _GATED,
                                call=lambda fn: lambda g, u: fn(g, u, "silu"))
del _name, _ref, _desc

#: Extra settings of one function worth their own row: name -> (function, keyword arguments).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gelu[tanh]": ("gelu", {"approximate": "tanh"}),
}

# torch.nn.functional's sigmoid and tanh are deprecated aliases: users call torch.sigmoid / torch.tanh
_TORCH_OPS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _torch_twin(torch_name: str) -> tuple[Callable[..., torch.Tensor], str] | None:
    if torch_name in _TORCH_OPS:
        return _TORCH_OPS[torch_name], f"torch.{torch_name}"
    fn = getattr(F, torch_name, None)
    return (fn, f"torch.nn.functional.{torch_name}") if callable(fn) else None


def _table_torch_form(name: str, kwargs: dict[str, Any]) -> tuple[Callable[..., torch.Tensor], str]:
    """The torch form of activation table row ``name`` (plain torch ops: what a user would write), the
    baseline of a row with no torch twin and no entry in :data:`COMPOSITES`."""
    from torchinit.activations import ACTIVATIONS

    activation = ACTIVATIONS[name]

    def reference(x: torch.Tensor, **arguments: Any) -> torch.Tensor:
        values = tuple(arguments.get(k, d) for k, d in activation.defaults.items())
        return activation.resolve(**activation.arguments(values)).torch_form(x, False)

    return reference, f"the torch form of {name!r} in torchinit.activations"


def _public_functions(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__]
    return [n for n in names if callable(getattr(module, n, None)) and not isinstance(getattr(module, n), type)]


def with_keywords(fn: Callable[..., torch.Tensor], kwargs: dict[str, Any]) -> Callable[..., torch.Tensor]:
    """``fn`` with keyword arguments bound, called the way a user writes ``fn(x, approximate="tanh")``: one
    generated function passing them as literal keywords. ``functools.partial(fn, **kwargs)`` merges a dict on
    every call, which a C builtin absorbs but a Python function pays for (measured: 16-element gelu(tanh),
    torchinit over torch 1.11x called with keywords, 1.44x through such a partial)."""
    if not all(k.isidentifier() for k in kwargs):
        raise ValueError(f"benchmarks.cases.with_keywords: keyword names must be identifiers, got {list(kwargs)}")
    scope = {"_fn": fn, **{f"_{i}": v for i, v in enumerate(kwargs.values())}}
    call = ", ".join(f"{k}=_{i}" for i, k in enumerate(kwargs))
    exec(f"def bound(*args):\n    return _fn(*args, {call})\n", scope)  # noqa: S102 - identifiers checked above
    return scope["bound"]


def _case_for(name: str, fn: Callable[..., torch.Tensor], source: str, kwargs: dict[str, Any]) -> Case | str:
    """A case for ``fn`` or, when the harness cannot benchmark it, the reason as a string."""
    from torchinit.activations import ACTIVATIONS

    if name in COMPOSITES and not kwargs:
        c = COMPOSITES[name]
        return Case(name, source, c.call(fn), c.reference, c.desc, c.make_inputs, c.grad_args, c.traffic)
    base = source.rsplit(".", 1)[-1]
    act = ACTIVATIONS.get(base)
    twin = _torch_twin(act.torch_name) if act is not None and act.torch_name else None
    if twin is None and act is not None and not act.takes_tensors:
        twin = _table_torch_form(base, kwargs)
    if twin is None:
        return (f"no benchmark case: {source} has no torch twin in the activation table and no entry in "
                f"benchmarks/cases.py COMPOSITES (add its torch composite there)")
    ref, desc = twin
    ti_fn = with_keywords(fn, kwargs) if kwargs else fn
    ref_fn = with_keywords(ref, kwargs) if kwargs else ref
    if kwargs:
        desc += "(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    if base == "prelu":
        return Case(name, source, ti_fn, ref_fn, desc + " (per-channel weight)", _with_channel_weight, (0, 1),
                    _UNARY_WITH_WEIGHT)
    return Case(name, source, ti_fn, ref_fn, desc, _one_activation, (0,), _UNARY)


@dataclass
class Discovery:
    """The cases found, the ops skipped (with reasons) and which modules were searched."""

    cases: list[Case]
    skipped: list[dict[str, str]]
    modules: dict[str, str]  # module -> "searched" | "absent" | "import failed: ..."


def discover(only: Sequence[str] | None = None, modules: Sequence[str] = MODULES) -> Discovery:
    """Find every benchmarkable op in ``modules``; ``only`` restricts to these case names.

    Raises ``ValueError`` naming the unknown entries when ``only`` names ops that were not found.
    """
    cases: list[Case] = []
    skipped: list[dict[str, str]] = []
    searched: dict[str, str] = {}
    seen: set[str] = set()
    for mod_name in modules:
        try:
            present = mod_name in sys.modules or importlib.util.find_spec(mod_name) is not None
        except (ModuleNotFoundError, ValueError):
            present = False
        if not present:
            searched[mod_name] = "absent"
            continue
        try:
            module = importlib.import_module(mod_name)
        except Exception as exc:  # a module being written may fail to import: say so, go on
            searched[mod_name] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        searched[mod_name] = "searched"
        for fn_name in _public_functions(module):
            if fn_name in seen:
                continue
            seen.add(fn_name)
            fn = getattr(module, fn_name)
            entries = [(fn_name, {})] + [(v, kw) for v, (base, kw) in VARIANTS.items() if base == fn_name]
            for case_name, kwargs in entries:
                made = _case_for(case_name, fn, f"{mod_name}.{fn_name}", kwargs)
                if isinstance(made, str):
                    skipped.append({"op": case_name, "reason": made})
                else:
                    cases.append(made)
    if only:
        wanted = list(dict.fromkeys(only))
        known = {c.name for c in cases}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(f"benchmarks: unknown op(s) {unknown}; discovered: {sorted(known)}")
        cases = [c for c in cases if c.name in wanted]
        skipped = [s for s in skipped if s["op"] in wanted]
    return Discovery(cases, skipped, searched)
