"""torchinit's operators on DTensors across 2 gloo ranks (spawned processes, run once for the module; a
one-process mesh cannot tell Shard from Replicate). Both backends ("triton" runs the operators through the
interpreter, "torch" the torch form):

* every activation's forward and backward on Shard(0), Shard(1), Shard(last) and Replicate inputs equals
  the unsharded op, keeps the input's placement and communicates nothing; PReLU's per-channel weight and
  glu's halves too;
* the fused operators (swiglu in both forms, bias_act along the last dim and the channel dim, rational, the
  bit-mask and few-bit modes, softmax) equal the unsharded ones, and the element-wise ones keep the placement;
* a tensor-parallel MLP (ColwiseParallel/RowwiseParallel) with a torchinit activation, and a SwiGLU MLP,
  give the unsharded outputs and gradients, also after ``swap_activations(fuse=True)`` and then
  ``parallelize_module`` (the fused layer still runs the layer's hooks).
"""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

SHAPE = (2, 4, 6)  # every dim splits evenly over 2 ranks


def _placements():
    from torch.distributed.tensor import Replicate, Shard

    return [Shard(0), Shard(1), Shard(2), Replicate()]


TORCH_UNSUPPORTED: set[str] = set()


def _torch_supports(ref, dx, dg, kw) -> bool:
    """Whether torch's own function runs forward and backward on this DTensor."""
    try:
        y = ref(dx, **kw)
        torch.autograd.grad(y, dx, dg if dg is not None else torch.ones_like(y))
    except NotImplementedError:
        return False
    return True


def _check_activations(mesh, backend, ok):
    import torchinit as ti
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor.debug import CommDebugMode

    sys.path.insert(0, os.path.dirname(__file__))
    from activation_cases import CASES

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float64) * 3
    g = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    for name, (fn, ref, variants) in CASES.items():
        kw = variants[-1]
        leaf = x.clone().requires_grad_()
        with ti.use_backend(backend):
            y_ref = fn(leaf, **kw)
            (gx_ref,) = torch.autograd.grad(y_ref, leaf, g)
        for pl in _placements():
            dx = distribute_tensor(x, mesh, [pl]).requires_grad_()
            dg = distribute_tensor(g, mesh, [pl])
            if backend == "torch" and not _torch_supports(ref, dx, dg, kw):
                # the torch path is torch's own ops: where DTensor has no rule for one of them (see the test
                # below), it fails as torch's function does
                with pytest.raises(NotImplementedError, match="sharding strategy"), ti.use_backend(backend):
                    torch.autograd.grad(fn(dx, **kw), dx, dg)
                ok[f"{backend}:{name}:{pl}"] = True
                TORCH_UNSUPPORTED.add(name)
                continue
            comm = CommDebugMode()
            with comm, ti.use_backend(backend):
                y = fn(dx, **kw)
                (gx,) = torch.autograd.grad(y, dx, dg)
            key = f"{backend}:{name}:{pl}"
            ok[key] = (torch.allclose(y.full_tensor(), y_ref, rtol=1e-12, atol=1e-12)
                       and torch.allclose(gx.full_tensor(), gx_ref, rtol=1e-12, atol=1e-12)
                       and tuple(y.placements) == (pl,) and tuple(gx.placements) == (pl,)
                       and comm.get_total_counts() == 0)


def _check_prelu(x, w, dx, dw, pl, mesh, backend, want, ok):
    import torch.nn.functional as TF
    import torchinit as ti
    from torch.distributed.tensor import distribute_tensor

    with ti.use_backend(backend):
        y = ti.functional.prelu(dx, dw)
        gx, gw = torch.autograd.grad(y, (dx, dw), distribute_tensor(torch.ones(x.shape, dtype=torch.float64),
                                                                    mesh, [pl]))
    ok[f"{backend}:prelu:{pl}"] = (torch.allclose(y.full_tensor(), TF.prelu(x, w))
                                   and torch.allclose(gx.full_tensor(), want[0])
                                   and torch.allclose(gw.full_tensor(), want[1])
                                   and tuple(y.placements) == (pl,))


def _check_prelu_and_glu(mesh, backend, ok):
    import torch.nn.functional as TF
    import torchinit as ti
    from torch.distributed.tensor import Replicate, distribute_tensor

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    w = torch.rand(SHAPE[1], generator=gen, dtype=torch.float64)
    for pl in _placements():
        leaf, wl = x.clone().requires_grad_(), w.clone().requires_grad_()
        want = torch.autograd.grad(TF.prelu(leaf, wl), (leaf, wl), torch.ones(SHAPE, dtype=torch.float64))
        dx = distribute_tensor(x, mesh, [pl]).requires_grad_()
        dw = distribute_tensor(w, mesh, [Replicate()]).requires_grad_()
        if backend == "torch" and not _torch_supports(lambda t: TF.prelu(t, dw), dx, None, {}):
            # torch 2.14.1's DTensor has no rule for aten._prelu_kernel_backward: the torch path inherits that
            with pytest.raises(NotImplementedError, match="sharding strategy"), ti.use_backend(backend):
                torch.autograd.grad(ti.functional.prelu(dx, dw).sum(), dx)
            ok[f"{backend}:prelu:{pl}"] = True
            TORCH_UNSUPPORTED.add("prelu")
        else:
            _check_prelu(x, w, dx, dw, pl, mesh, backend, want, ok)
        for dim in (0, 2):
            leaf = x.clone().requires_grad_()
            gy = torch.ones(TF.glu(x, dim).shape, dtype=torch.float64)
            (want_gx,) = torch.autograd.grad(TF.glu(leaf, dim), leaf, gy)
            dx = distribute_tensor(x, mesh, [pl]).requires_grad_()
            with ti.use_backend(backend):
                y = ti.functional.glu(dx, dim)
                (gx,) = torch.autograd.grad(y, dx, distribute_tensor(gy, mesh, [Replicate()]).redistribute(
                    mesh, y.placements))
            keeps = getattr(pl, "dim", None) != dim
            ok[f"{backend}:glu{dim}:{pl}"] = (torch.allclose(y.full_tensor(), TF.glu(x, dim))
                                              and torch.allclose(gx.full_tensor(), want_gx)
                                              and (not keeps or tuple(y.placements) == (pl,)))


def _check_fused(mesh, backend, ok):
    import torch.nn.functional as TF
    import torchinit as ti
    import torchinit.fused as fu
    from torch.distributed.tensor import Replicate, distribute_tensor

    gen = torch.Generator().manual_seed(2)
    a, b = (torch.randn(SHAPE, generator=gen, dtype=torch.float64) for _ in range(2))
    bias_last, bias_channel = (torch.randn(n, generator=gen, dtype=torch.float64) for n in (SHAPE[-1], SHAPE[1]))
    num, den = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    # name -> (torchinit function of the tensors and parameters, the same in torch, keeps the placement:
    # True, or None for ops along dim 1 that keep any placement but Shard(1), False for the gathered bit modes)
    cases = {
        "swiglu": (lambda x, y, p: fu.swiglu(x, y), lambda x, y, p: TF.silu(x) * y, True),
        "swiglu_halves": (lambda x, y, p: fu.swiglu(x, dim=1), lambda x, y, p: TF.silu(x[:, :2]) * x[:, 2:], None),
        "bias_act_last": (lambda x, y, p: fu.bias_act(x, p["bias_last"], "gelu"),
                          lambda x, y, p: TF.gelu(x + p["bias_last"]), True),
        "bias_act_channel": (lambda x, y, p: fu.bias_act(x, p["bias_channel"], "silu", dim=1),
                             lambda x, y, p: TF.silu(x + p["bias_channel"][:, None]), True),
        "rational": (lambda x, y, p: fu.rational(x, p["num"], p["den"]),
                     lambda x, y, p: fu.torch_rational(x, p["num"], p["den"]), True),
        "leaky_relu_bits": (lambda x, y, p: fu.leaky_relu_bits(x, 0.1), lambda x, y, p: TF.leaky_relu(x, 0.1), False),
        "softmax": (lambda x, y, p: ti.functional.softmax(x, 1), lambda x, y, p: TF.softmax(x, 1), None),
    }
    params = {"bias_last": bias_last, "bias_channel": bias_channel, "num": num, "den": den}
    replicated = {k: distribute_tensor(v, mesh, [Replicate()]) for k, v in params.items()}
    for name, (ours, ref, keeps) in cases.items():
        leaves = [t.clone().requires_grad_() for t in (a, b)]
        y_ref = ref(*leaves, params)
        g = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
        grads_ref = torch.autograd.grad(y_ref, leaves, g, allow_unused=True)
        for pl in _placements():
            da, db = (distribute_tensor(t, mesh, [pl]).requires_grad_() for t in (a, b))
            with ti.use_backend(backend):
                y = ours(da, db, replicated)
                dg = distribute_tensor(g, mesh, [pl]).redistribute(mesh, y.placements) if y.shape == g.shape else \
                    distribute_tensor(g, mesh, y.placements)
                grads = torch.autograd.grad(y, (da, db), dg, allow_unused=True)
            same = torch.allclose(y.full_tensor(), y_ref, rtol=1e-10, atol=1e-12) and all(
                (r is None and (d is None or not d.full_tensor().any())) or
                (r is not None and d is not None and torch.allclose(d.full_tensor(), r, rtol=1e-10, atol=1e-12))
                for d, r in zip(grads, grads_ref))
            placed = keeps is None or not keeps or tuple(y.placements) == (pl,)
            if keeps is None:  # ops along dim 1 keep any placement but Shard(1)
                placed = getattr(pl, "dim", None) == 1 or tuple(y.placements) == (pl,)
            ok[f"fused:{backend}:{name}:{pl}"] = same and placed


def _tp_models():
    import torchinit as ti
    from torch import nn

    class MLP(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(8, 16), act, nn.Linear(16, 8)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class GatedMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate, self.up = nn.Linear(8, 16, bias=False), nn.Linear(8, 16, bias=False)
            self.down = nn.Linear(16, 8, bias=False)

        def forward(self, x):
            return self.down(nn.functional.silu(self.gate(x)) * self.up(x))

    torch.manual_seed(0)
    return {
        "mlp_ti_gelu": (MLP(ti.nn.GELU(approximate="tanh")), {"fc1": "col", "fc2": "row"}, False),
        "mlp_fused_gelu": (MLP(nn.GELU()), {"fc1": "col", "fc2": "row"}, True),
        "glu_fused_swiglu": (GatedMLP(), {"gate": "col", "up": "col", "down": "row"}, True),
    }


def _check_tensor_parallel(mesh, backend, ok):
    import copy

    import torchinit as ti
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    styles = {"col": ColwiseParallel, "row": RowwiseParallel}
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    for name, (model, plan, fuse) in _tp_models().items():
        ref = copy.deepcopy(model)
        with ti.use_backend(backend):
            y_ref = ref(x)
            y_ref.square().sum().backward()
            if fuse:
                report = ti.swap_activations(model, fuse=True)
                if not any(r.how == "fused" for r in report.replaced):
                    ok[f"tp:{backend}:{name}"] = False
                    continue
            tp = parallelize_module(model, mesh, {k: styles[v]() for k, v in plan.items()})
            y = tp(x)
            y.square().sum().backward()
        full = y.full_tensor() if hasattr(y, "full_tensor") else y
        grads_equal = all(
            torch.allclose(p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad,
                           ref.get_parameter(n).grad, rtol=1e-5, atol=1e-6)
            for n, p in tp.named_parameters())
        ok[f"tp:{backend}:{name}"] = torch.allclose(full, y_ref, rtol=1e-5, atol=1e-6) and grads_equal


def _worker(rank, world, init_file, result_file):
    from torch.distributed.device_mesh import init_device_mesh

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    ok: dict[str, bool] = {}
    try:
        for backend in ("torch", "triton"):
            _check_activations(mesh, backend, ok)
            _check_prelu_and_glu(mesh, backend, ok)
            _check_fused(mesh, backend, ok)
            _check_tensor_parallel(mesh, backend, ok)
    finally:
        if rank == 0:
            torch.save({"ok": ok, "torch_unsupported": sorted(TORCH_UNSUPPORTED)}, result_file)
        dist.destroy_process_group()
    # Leave without interpreter teardown: after destroy_process_group a spawned rank sometimes aborts at exit
    # ("terminate called without an active exception": a joinable C++ thread destroyed at shutdown; 2 of 15 runs of
    # this file here, after every check had passed and rank 0 had saved its results). Flush, then exit 0.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.fixture(scope="module")
def results():
    """Run every check on 2 spawned gloo ranks once; rank 0's verdicts."""
    os.environ.setdefault("TRITON_INTERPRET", "1")  # the spawned ranks inherit it (set before they import)
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "res.pt")
        mp.spawn(_worker, args=(2, init_file, result_file), nprocs=2, join=True)
        return torch.load(result_file)


def test_activation_operators_on_two_ranks(results):
    sys.path.insert(0, os.path.dirname(__file__))
    from activation_cases import CASES

    ok = {k: v for k, v in results["ok"].items() if not k.startswith(("fused:", "tp:"))}
    assert len(ok) == 2 * 4 * (len(CASES) + 3)
    bad = sorted(k for k, v in ok.items() if not v)
    assert not bad, bad
    # torch 2.14.1's DTensor lacks rules for aten.hardtanh_backward, hardsigmoid_backward, hardswish_backward,
    # log_sigmoid_forward and _prelu_kernel_backward: on those the torch path fails as torch's own function does
    assert set(results["torch_unsupported"]) <= {"relu6", "hardtanh", "prelu", "hardsigmoid", "hardswish",
                                                 "logsigmoid"}, results["torch_unsupported"]


def test_fused_operators_on_two_ranks(results):
    ok = {k: v for k, v in results["ok"].items() if k.startswith("fused:")}
    assert len(ok) == 2 * 4 * 7
    bad = sorted(k for k, v in ok.items() if not v)
    assert not bad, bad


def test_tensor_parallel_mlps_and_fuse_then_parallelize(results):
    ok = {k: v for k, v in results["ok"].items() if k.startswith("tp:")}
    assert len(ok) == 2 * 3
    bad = sorted(k for k, v in ok.items() if not v)
    assert not bad, bad
