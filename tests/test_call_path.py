"""The eager call path (issue 15): one backend decision, and on CPU under "auto" straight to torch's own ops.

Each resolved call may carry ``direct``, the out-of-place torch form as one torch function of ``x``
(torch's own C function, numbers at their default left out). It must be the table's torch form
bit for bit: compared here with ``Formula.forward`` and with torch's own function, NaN, infinities and
signed zeros included.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as TF
from activation_cases import CASES, params
from torch.utils._python_dispatch import TorchDispatchMode

import torchinit as ti
import torchinit.functional as F
from torchinit import backend
from torchinit.activations import ACTIVATIONS, SELU_ALPHA, SELU_SCALE

SPECIAL = [0.0, -0.0, 1.0, -1.0, 3.5, -3.5, 30.0, -30.0, 1e-30, -1e-30, float("inf"), float("-inf"), float("nan")]


def _inputs(dtype):
    torch.manual_seed(0)
    return torch.cat([torch.tensor(SPECIAL, dtype=torch.float64), torch.randn(64, dtype=torch.float64) * 4]).to(dtype)


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where NaN, and the same sign on every zero."""
    same_nan = torch.equal(a.isnan(), b.isnan())
    ok = ~a.isnan()
    return same_nan and torch.equal(a[ok], b[ok]) and torch.equal(torch.signbit(a[ok]), torch.signbit(b[ok]))


def _resolve(name, kwargs):
    act = ACTIVATIONS[name]
    return act.resolve(**{**act.defaults, **kwargs})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("case", params(), ids=lambda p: p[0] + "-" + "-".join(f"{k}={v}" for k, v in p[1].items()))
def test_direct_form_is_the_torch_form(case, dtype):
    name, kwargs = case
    resolved = _resolve(name, kwargs)
    x = _inputs(dtype)
    want = resolved.formula.forward(x.clone(), *resolved.args, False)
    got = resolved.torch_form(x.clone(), False)
    assert _bits_equal(got, want)
    if resolved.direct is not None:
        assert _bits_equal(resolved.direct(x.clone()), want)


@pytest.mark.parametrize(("alpha", "scale", "input_scale", "torch_fn"), [
    (SELU_ALPHA, SELU_SCALE, 1.0, torch.selu),
    (2.0, 1.0, 0.5, lambda x: torch.celu(x, 2.0)),
    (1.0, 1.0, 1.0, TF.elu),
    (-0.5, 1.0, 1.0, lambda x: TF.elu(x, -0.5)),
])
def test_elu_family_direct_is_torchs(alpha, scale, input_scale, torch_fn):
    from torchinit.activations import FORMULAS

    direct = FORMULAS["elu"].direct(alpha, scale, input_scale)
    x = _inputs(torch.float32)
    assert _bits_equal(direct(x), torch_fn(x))
    assert _bits_equal(direct(x), torch._C._nn.elu(x, alpha, scale, input_scale))


def test_signed_zero_arguments_are_not_confused():
    """0.0 and -0.0 are one dictionary key: a cached resolution of one must not serve the other."""
    x = torch.tensor([-2.0, -1.0, 3.0])
    for slope in (0.0, -0.0, 0.0, -0.0):
        assert _bits_equal(F.leaky_relu(x, slope), TF.leaky_relu(x, slope))
    for lo in (0.0, -0.0, 0.0):
        assert _bits_equal(F.hardtanh(x, lo, 6.0), TF.hardtanh(x, lo, 6.0))
    for slope in (0.0, -0.0):
        assert _bits_equal(ti.fused.gated(x, x, "leaky_relu", negative_slope=slope), TF.leaky_relu(x, slope) * x)
    for slope in (0, -0.0, False, -0.0):  # 0 == False == -0.0 too, as dictionary keys
        assert _bits_equal(F.leaky_relu(x, slope), TF.leaky_relu(x, float(slope)))
        assert _bits_equal(ti.fused.leaky_relu_bits(x, slope), TF.leaky_relu(x, float(slope)))
    for lo in (False, -0.0):
        assert _bits_equal(F.hardtanh(x, lo, 1.0), TF.hardtanh(x, float(lo), 1.0))


def test_the_cache_holds_only_what_it_can_serve():
    """NaN arguments (never equal to themselves) and unknown names add no entries; unhashable arguments take
    the slow path, which names the argument, for every input dtype."""
    from torchinit import entry

    x = torch.tensor([-1.0, 2.0])
    before = len(entry._RESOLVED["leaky_relu"])
    for _ in range(50):
        assert _bits_equal(F.leaky_relu(x, float("nan")), TF.leaky_relu(x, float("nan")))
    assert len(entry._RESOLVED["leaky_relu"]) == before
    with pytest.raises(KeyError):
        entry.call("no_such_activation", x)
    assert "no_such_activation" not in entry._RESOLVED
    for inp in (torch.arange(3), torch.randn(3)):
        with pytest.raises(ValueError, match="torchinit.gelu: argument 'approximate'"):
            F.gelu(inp, ["none"])
    with pytest.raises(TypeError, match="torchinit.leaky_relu_bits: argument 'input' must be a floating"):
        ti.fused.leaky_relu_bits(torch.arange(3), [0.1])


def test_generated_functions_keep_their_type_hints():
    """The generated functions' annotations resolve (typing.get_type_hints), as the written ones' did."""
    import typing

    assert typing.get_type_hints(F.relu) == {"input": torch.Tensor, "inplace": bool, "return": torch.Tensor}
    assert typing.get_type_hints(F.prelu) == {"input": torch.Tensor, "weight": torch.Tensor, "return": torch.Tensor}
    assert typing.get_type_hints(ti.fused.gelu_fewbit)["bits"] is int


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_auto_eager_runs_torch_ops_only(name):
    """CPU under "auto": the call and its backward reach torch's own ops only (no torchinit operator)."""
    fn, _, variants = CASES[name]
    x = torch.randn(2, 3, 4, requires_grad=True)
    kwargs = dict(variants[-1])
    with ti.use_backend("auto"), _Recorder() as rec:
        y = fn(x, **kwargs)
        y.sum().backward()
    assert rec.ops and not any("torchinit" in op for op in rec.ops)


def test_route_is_one_rule():
    """route() on a CPU tensor: "auto" and "torch" take the torch form; export would take the operator."""
    x = torch.randn(3)
    with ti.use_backend("auto"):
        assert backend.route("relu", x) is False
    with ti.use_backend("torch"):
        assert backend.route("relu", x) is False
    if backend.triton_can_run(x.device):
        with ti.use_backend("triton"):
            assert backend.route("relu", x) is True
            assert backend.kernel_runs_on(x.device)


def test_capabilities_in_the_table():
    """The table names the two-valued (bits mode) and few-bit formulas; the memory modes agree with it."""
    from torchinit.activations import BIT_FORMULAS, FEWBIT_FORMULAS, FORMULAS
    from torchinit.fused import bits

    assert set(BIT_FORMULAS) == set(bits.BIT_FORMULAS)
    assert set(FEWBIT_FORMULAS) == set(bits.FEWBIT_FORMULAS)
    assert all(FORMULAS[name].two_valued for name in bits.BIT_FORMULAS)
    learnable = {name: act.learnable for name, act in ACTIVATIONS.items() if act.learnable}
    assert learnable == {"prelu": "prelu", "swish": "swish", "star_relu": "star_relu"}
    assert all(FORMULAS[f].param_grads is not None for f in learnable.values())


@pytest.mark.parametrize(("op", "call", "message"), [
    ("gelu", lambda x: F.gelu(x, approximate="fast"), "torchinit.gelu: argument 'approximate' must be"),
    ("gelu_fewbit", lambda x: ti.fused.gelu_fewbit(x, approximate="fast"), "torchinit.gelu_fewbit: argument"),
    ("geglu", lambda x: ti.fused.geglu(x, x, approximate="fast"), "torchinit.geglu: argument 'approximate'"),
    ("GEGLU", lambda x: ti.nn.GEGLU(approximate="fast"), "torchinit.nn.GEGLU: argument 'approximate'"),
    ("hardtanh", lambda x: F.hardtanh(x, 2.0, 1.0), "torchinit.hardtanh: 'min_val' (2.0) must not exceed"),
    ("hardtanh_bits", lambda x: ti.fused.hardtanh_bits(x, 2.0, 1.0), "torchinit.hardtanh_bits: 'min_val'"),
])
def test_argument_checks_come_from_the_table(op, call, message):
    """One check per argument, in the table, named after the function called; raised on every call."""
    x = torch.randn(4, 6)
    for _ in range(2):  # a failed call is never cached
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call(x)


# inputs PReLU's table check rejects (a weight that is 2-D, not a tensor, or per-channel against an input
# without that many channels): torch's own F.prelu must reject each too, or the torch route would return a
# result where torchinit used to raise (Activation.torch_checks)
_PRELU_REJECTED = [
    (torch.randn(2, 4), torch.rand(1, 4)), (torch.randn(2, 4), torch.rand(4, 1)), (torch.randn(2, 4, 3), torch.rand(2, 2)),
    (torch.randn(4), torch.rand(4)), (torch.randn(()), torch.rand(4)), (torch.randn(2, 3), torch.rand(4)),
    (torch.randn(2, 4), torch.rand(0)), (torch.randn(2, 4), 0.25),
]


@pytest.mark.parametrize("x,w", _PRELU_REJECTED)
def test_torch_rejects_what_prelus_check_rejects(x, w):
    assert ACTIVATIONS["prelu"].torch_checks
    with pytest.raises((TypeError, ValueError)) as ours:
        ACTIVATIONS["prelu"].check((w,), x=x)
    with pytest.raises((TypeError, RuntimeError)):
        TF.prelu(x, w)
    with pytest.raises(type(ours.value), match="torchinit.prelu"):  # the error users see is still the table's
        F.prelu(x, w)


def test_prelu_on_the_torch_route_skips_the_check_and_matches_torch(monkeypatch):
    calls = []
    counting = dataclasses.replace(ACTIVATIONS["prelu"], checks=lambda *a: calls.append(a))
    monkeypatch.setitem(ACTIVATIONS, "prelu", counting)
    x, w = torch.randn(2, 4, 3), torch.rand(4)
    torch.testing.assert_close(F.prelu(x, w), TF.prelu(x, w), rtol=0, atol=0)
    assert calls == []  # CPU under "auto": torch's F.prelu checks the weight itself
    with ti.use_backend("torch"):
        F.prelu(x, w)
    assert calls == []


def test_operators_are_registered_per_dispatch_key():
    """Every torchinit operator has a CUDA kernel, a CPU one and a CompositeExplicitAutograd torch form: the
    device picks between kernel and torch form, so nothing inside an operator decides the backend again."""
    ops = torch.ops.torchinit
    names = [n for n in ops if not n.startswith("_") and hasattr(getattr(ops, n), "default")]
    assert len(names) > 80  # 29 formulas x (op, op_, op_backward), the fused, memory-mode and softmax ones
    for name in names:
        qualified = f"torchinit::{name}"
        for key in ("CUDA", "CPU", "CompositeExplicitAutograd"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, key), (name, key)


def test_the_cuda_implementation_reads_no_backend(monkeypatch):
    """On CUDA an operator runs its kernel without asking the backend's rule (the entry point asked): a rule
    read here would raise. The torch form takes over only under the forced "torch" backend (the off-switch,
    for direct calls and exported programs), without Triton, or for an empty tensor where asked."""
    from torchinit.opdef import kernel_or_torch

    def refuse(*_a, **_k):
        raise AssertionError("the backend was read inside the operator")

    monkeypatch.setattr(backend, "get_backend", refuse)
    monkeypatch.setattr(backend, "kernel_runs_on", refuse)
    monkeypatch.setattr(backend, "triton_available", lambda: True)
    impl = kernel_or_torch(lambda x: "kernel", lambda x: "torch", nonempty=True)
    assert impl.on_cuda(torch.ones(2)) == "kernel"
    assert impl.on_cuda(torch.ones(0)) == "torch"
    with ti.use_backend("torch"):
        assert impl.on_cuda(torch.ones(2)) == "torch"
    with ti.use_backend("triton"):
        assert impl.on_cuda(torch.ones(2)) == "kernel"
    monkeypatch.setattr(backend, "triton_available", lambda: False)
    assert impl.on_cuda(torch.ones(2)) == "torch"


def test_a_cpu_operator_call_decides_by_the_interpreter_rule():
    """A direct call of an operator on CPU: the torch form, except under Triton's interpreter with the forced
    "triton" backend (then the kernel, equal to the torch form to within the formula's rounding)."""
    x = torch.linspace(-3, 3, 7)
    args = (None, None, 0.0, 0.0, 0.0)
    with ti.use_backend("auto"):
        assert torch.equal(torch.ops.torchinit.sigmoid(x, *args), torch.sigmoid(x))
    if backend.triton_can_run(x.device):
        with ti.use_backend("triton"):
            torch.testing.assert_close(torch.ops.torchinit.sigmoid(x, *args), torch.sigmoid(x))


def _decisions(fn, *args):
    """The calls of torchinit.backend's deciding functions while ``fn(*args)`` runs (profiled, not patched:
    the generated entry points hold their own reference to route)."""
    import sys

    watched = {f.__code__: f.__name__ for f in (backend.route, backend.use_custom_op, backend.kernel_runs_on,
                                                  backend._kernels_for)}
    seen = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in watched:
            seen.append(watched[frame.f_code])

    sys.setprofile(profile)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return seen


def _every_op():
    from benchmarks import cases

    return cases.discover().cases


@pytest.mark.parametrize("case", _every_op(), ids=lambda c: c.name)
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_one_decision_per_call(case, grad):
    """Every op the benchmark harness finds (the table's functions, the fused ops, the memory modes, softmax),
    on CPU under "auto", with and without a gradient to record: one backend decision (route) and none after."""
    args = case.make_inputs(16, torch.float32, torch.device("cpu"), 0)
    if grad:
        args = [a.detach().requires_grad_() if i in case.grad_args else a for i, a in enumerate(args)]
    with ti.use_backend("auto"):
        case.torchinit(*args)  # first sight: the arguments are checked and the resolution cached
        assert _decisions(case.torchinit, *args) == ["route"], case.name


def test_kernels_load_lazily_through_one_loader():
    """Importing torchinit imports no Triton and no kernel module; ``torchinit.kernels.<module>`` is imported
    when first named (PEP 562), and no torchinit module imports a kernel module any other way."""
    import ast
    import pathlib
    import subprocess
    import sys

    probe = ("import sys, torch, torchinit, torchinit.functional as F, torchinit.nn, torchinit.fused; "
             "F.gelu(torch.randn(4)); "
             "print(sorted(m for m in sys.modules if m == 'triton' or m.startswith('torchinit.kernels.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "TORCHINIT_BACKEND": "auto"}).stdout
    assert out.strip() == "[]"
    import torchinit.kernels as kernels

    assert kernels.launch.__name__ == "torchinit.kernels.launch"
    with pytest.raises(AttributeError, match="its kernels are"):
        kernels.no_such_module  # noqa: B018
    root = pathlib.Path(ti.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module.startswith("torchinit.kernels") or (node.level and node.module.startswith("kernels"))):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.skipif(not backend.triton_can_run(torch.device("cpu")), reason="needs Triton's interpreter on CPU")
@pytest.mark.parametrize("name", ["sigmoid", "gelu[tanh]", "prelu", "relu_bits", "silu_fewbit", "swiglu", "bias_act",
                                  "softmax", "glu"])
def test_one_decision_on_the_kernels_route(name):
    """Under the "triton" backend (the interpreter on CPU) a call decides once: route (its rule, use_custom_op,
    asks _kernels_for once); the operator's CPU implementation then asks once whether the interpreter runs
    the kernels under this backend (kernel_runs_on: on CPU a direct call of an operator must answer it too; on
    CUDA the dispatcher picks the kernel and nothing is asked, test_the_cuda_implementation_reads_no_backend)."""
    (case,) = [c for c in _every_op() if c.name == name]
    args = case.make_inputs(16, torch.float32, torch.device("cpu"), 0)
    with ti.use_backend("triton"):
        case.torchinit(*args)
        seen = _decisions(case.torchinit, *args)
    assert seen.count("route") == 1 and seen.count("use_custom_op") == 1 and seen.count("kernel_runs_on") <= 1, seen


@pytest.mark.gpu
def test_cuda_calls_decide_once_launch_once_and_keep_the_off_switch(monkeypatch):
    """On CUDA under "auto": one route, one kernel launch, no backend rule asked inside the operator; under
    the forced "torch" backend a direct operator call takes the torch form (no launch)."""
    import torchinit.kernels.elementwise as elementwise

    launches = []
    real = elementwise.launch_unary_forward
    monkeypatch.setattr(elementwise, "launch_unary_forward", lambda *a, **k: launches.append(1) or real(*a, **k))
    x = torch.randn(4096, device="cuda")
    with ti.use_backend("auto"):
        F.gelu(x)
        launches.clear()
        seen = _decisions(F.gelu, x)
        y = F.gelu(x)
    assert seen.count("route") == 1 and "kernel_runs_on" not in seen and len(launches) == 2, (seen, launches)
    torch.testing.assert_close(y, TF.gelu(x))
    launches.clear()
    with ti.use_backend("torch"):
        z = torch.ops.torchinit.gelu(x, None, None, 0.0, 0.0, 0.0)
    assert not launches and torch.equal(z, TF.gelu(x))


def test_calls_at_the_defaults_look_up_the_dtype_alone():
    """A call leaving its arguments at their defaults finds its resolution under the dtype alone (the default
    objects themselves, compared by identity); equal arguments passed explicitly, of another type or not,
    give the same results through the full key."""
    from torchinit import entry

    x = torch.linspace(-30, 30, 61)
    assert _bits_equal(F.softplus(x), TF.softplus(x))
    assert torch.float32 in entry._RESOLVED["softplus"] and torch.bfloat16 in entry._RESOLVED["softplus"]
    for beta, threshold in [(1.0, 20.0), (1, 20), (True, 20.0), (2.0, 20.0)]:
        assert _bits_equal(F.softplus(x, beta, threshold), TF.softplus(x, beta, threshold)), (beta, threshold)
    assert _bits_equal(F.gelu(x), TF.gelu(x)) and _bits_equal(F.gelu(x, "none"), TF.gelu(x))
    assert _bits_equal(F.gelu(x, approximate="tanh"), TF.gelu(x, approximate="tanh"))
    assert _bits_equal(F.leaky_relu(x), TF.leaky_relu(x)) and torch.float32 in entry._RESOLVED["leaky_relu"]
    w = torch.tensor(1.0)  # a tensor equal to a default is not the default
    assert _bits_equal(F.swish(x, w), x * torch.sigmoid(x))
