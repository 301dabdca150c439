"""torchinit modules as drop-in activation layers of model factories: timm, torchvision, config names."""

import os

import torch

if not torch.cuda.is_available():  # Triton's interpreter runs the kernels on CPU tensors
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import torchinit  # noqa: E402
import torchinit.nn as tnn  # noqa: E402
from torchinit.backend import triton_can_run  # noqa: E402
from torchinit.registry import get  # noqa: E402

timm = pytest.importorskip("timm")
misc = pytest.importorskip("torchvision.ops.misc")

KERNELS_ON_CPU = triton_can_run(torch.device("cpu"))


def _train_step(model, x, backend):
    """Output and parameter gradients of one forward/backward pass under ``backend``."""
    model.zero_grad(set_to_none=True)
    with torchinit.use_backend(backend):
        out = model(x)
        (out.square().mean() + out.mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), grads


# (timm model, torchinit activation class, extra create_model arguments, the model's default activation
# types that must all be gone, whether to repeat the step on the Triton kernels)
TIMM_CASES = [
    ("resnet18", tnn.ReLU, {}, (torch.nn.ReLU,), False),  # timm builds act_layer(inplace=True)
    ("resnet18", tnn.SiLU, {}, (torch.nn.ReLU,), False),
    ("convnext_atto", tnn.GELU, {}, (timm.layers.GELU, torch.nn.GELU), False),
    ("convnext_atto", get("gelu_tanh"), {}, (timm.layers.GELU, torch.nn.GELU), False),
    ("vit_tiny_patch16_224", tnn.GELU, {"img_size": 32}, (torch.nn.GELU,), True),
    ("vit_tiny_patch16_224", get("quick_gelu"), {"img_size": 32}, (torch.nn.GELU,), False),
]


@pytest.mark.parametrize("model_name, act, kwargs, replaced, kernels", TIMM_CASES,
                         ids=[f"{c[0]}-{c[1].__name__}" for c in TIMM_CASES])
def test_timm_create_model_with_torchinit_act_layer(model_name, act, kwargs, replaced, kernels):
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=5, act_layer=act, **kwargs)
    acts = [m for m in model.modules() if type(m) is act]
    assert acts, f"{model_name}: no {act.__name__} was built"
    assert not [m for m in model.modules() if type(m) in replaced], "a default activation was left in place"
    x = torch.randn(2 if model_name == "resnet18" else 1, 3, 32, 32)  # BatchNorm needs 2 at 1x1 spatial
    out, grads = _train_step(model, x, "torch")
    assert out.shape == (x.shape[0], 5) and torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert sum(g.abs().sum() for g in grads.values()) > 0
    if kernels and KERNELS_ON_CPU:  # the same step on the Triton kernels (interpreter) agrees
        out_k, grads_k = _train_step(model, x, "triton")
        torch.testing.assert_close(out_k, out, rtol=1e-4, atol=1e-5)
        for name, g in grads.items():
            torch.testing.assert_close(grads_k[name], g, rtol=1e-3, atol=1e-5, msg=name)


def _twin(module_cls):
    """A factory of the torch.nn module a torchinit class subclasses, with the same defaults.

    torch's twin gets ``inplace`` only where it takes one (GELU, Hardsigmoid's twin... do not).
    """
    twin = next(c for c in module_cls.__mro__[1:] if c.__module__.startswith("torch.nn"))
    defaults = {"approximate": module_cls().approximate} if issubclass(twin, torch.nn.GELU) else {}

    def build(inplace=False):
        try:
            return twin(inplace=inplace, **defaults)
        except TypeError:
            return twin(**defaults)

    return build


BACKENDS = ["torch", "triton"] if KERNELS_ON_CPU else ["torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", [tnn.SiLU, tnn.Hardswish, tnn.ReLU6, tnn.GELU, get("hard_sigmoid")],
                         ids=lambda a: a.__name__)
def test_torchvision_conv_norm_activation(act, backend):
    torch.manual_seed(1)
    ours = misc.Conv2dNormActivation(3, 6, kernel_size=3, activation_layer=act)  # builds act(inplace=True)
    theirs = misc.Conv2dNormActivation(3, 6, kernel_size=3, activation_layer=_twin(act))
    theirs.load_state_dict(ours.state_dict())
    assert type(ours[-1]) is act and ours[-1].inplace is True
    x = torch.randn(2, 3, 9, 9)
    xo, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torchinit.use_backend(backend):
        yo = ours(xo)
        yo.sum().backward()
    yt = theirs(xt)
    yt.sum().backward()
    torch.testing.assert_close(yo, yt)
    torch.testing.assert_close(xo.grad, xt.grad)
    # a sum over 162 activation gradients that may differ by an ulp each (kernels vs torch)
    torch.testing.assert_close(ours[0].weight.grad, theirs[0].weight.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("inplace", [None, True, False])
def test_torchvision_mlp(inplace, backend):
    torch.manual_seed(2)
    for act in (tnn.GELU, tnn.ReLU, get("gelu_new")):
        ours = misc.MLP(8, [16, 12, 4], activation_layer=act, inplace=inplace, dropout=0.0)
        theirs = misc.MLP(8, [16, 12, 4], activation_layer=_twin(act), inplace=inplace, dropout=0.0)
        theirs.load_state_dict(ours.state_dict())
        built = [m for m in ours if type(m) is act]
        assert len(built) == 2 and all(m.inplace is bool(inplace) for m in built)
        x = torch.randn(5, 8)
        with torchinit.use_backend(backend):
            yo = ours(x)
            yo.square().sum().backward()
        yt = theirs(x)
        yt.square().sum().backward()
        torch.testing.assert_close(yo, yt)
        torch.testing.assert_close(ours[0].weight.grad, theirs[0].weight.grad, rtol=1e-4, atol=1e-5)
