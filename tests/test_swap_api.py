"""swap_activations: mappings, sharing, carried state, functional calls, interception, refusals, undo."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchinit as ti
from torchinit.swap import TORCH, SwapError, swap_activations
from torchinit.swap import calls


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)
        self.act = nn.ReLU(inplace=True)  # shared: used twice
        self.lrelu = nn.LeakyReLU(0.2)
        self.prelu = nn.PReLU(6, init=0.1)
        self.head = nn.Sequential(nn.GELU(approximate="tanh"), nn.Linear(6, 3))

    def forward(self, x):
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.head(self.prelu(self.lrelu(self.fc3(x))))


def test_default_keeps_settings_parameters_sharing_and_hooks():
    torch.manual_seed(0)
    net = Net().double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    ref = net(x)
    weight = net.prelu.weight
    seen = []
    handle = net.act.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    report = swap_activations(net)
    assert type(net.act) is ti.nn.ReLU and net.act.inplace
    assert type(net.lrelu) is ti.nn.LeakyReLU and net.lrelu.negative_slope == 0.2
    assert type(net.head[0]) is ti.nn.GELU and net.head[0].approximate == "tanh"
    assert type(net.prelu) is ti.nn.PReLU and net.prelu.weight is weight  # the same Parameter: optimizers keep it
    assert not net.training
    entry = next(r for r in report.modules if r.names == ("act",))
    assert "hooks kept" in " ".join(entry.notes)
    torch.testing.assert_close(net(x), ref)
    assert len(seen) == 2  # the hook came along and fires at both uses
    handle.remove()
    net(x)
    assert len(seen) == 2  # and its handle still removes it
    assert len(report.modules) == 4 and not report.left


def test_shared_instance_stays_shared_and_named_at_every_place():
    act = nn.SiLU()
    model = nn.Sequential(nn.Linear(3, 3), act, nn.Linear(3, 3), act)
    report = swap_activations(model)
    assert model[1] is model[3] and type(model[1]) is ti.nn.SiLU
    assert report.modules[0].names == ("1", "3")


def test_mapping_by_type_instance_name_glob_factory_and_string():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU()),
        nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh()),
    )
    special = model[1][1]
    mapping = {
        nn.ReLU: ti.nn.GELU,                          # class: constructed
        special: None,                                # instance: left alone
        "0.3": "mish",                                # exact name, torchinit activation name
        "1.*": lambda name, m: ti.nn.Hardtanh(-2, 2),  # glob + factory
    }
    report = swap_activations(model, mapping)
    assert type(model[0][1]) is ti.nn.GELU
    assert type(model[0][3]) is ti.nn.Mish
    assert model[1][1] is special and type(special) is nn.ReLU
    assert type(model[1][3]) is ti.nn.Hardtanh and model[1][3].max_val == 2
    assert any(x.name == "1.1" and "None" in x.reason for x in report.left)


def test_template_instance_is_copied_per_module_and_moved_to_the_model_dtype():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU()).double()
    template = ti.nn.PReLU(1, init=0.3)
    report = swap_activations(model, {nn.ReLU: template})
    assert model[1] is not model[3] and model[1] is not template
    assert model[1].weight.dtype == torch.float64
    assert any("moved" in n for r in report.modules for n in r.notes)
    assert any("state_dict keys change" in n for r in report.modules for n in r.notes)


def test_training_mode_and_subclasses():
    class MyReLU(nn.ReLU):
        pass

    model = nn.Sequential(nn.ReLU(), MyReLU(), nn.Softmax(dim=-1))
    model[0].eval()
    report = swap_activations(model, {nn.ReLU: ti.nn.ELU()})
    assert type(model[0]) is ti.nn.ELU and not model[0].training
    default = swap_activations(nn.Sequential(MyReLU(), nn.Softmax(dim=-1)))
    reasons = {x.name: x.reason for x in default.left}
    assert "exact types only" in reasons["0"] and "no torchinit twin" in reasons["1"]
    assert type(model[1]) is MyReLU and "no mapping entry" in {x.name: x.reason for x in report.left}["1"]


@pytest.mark.parametrize("bad,match", [
    ({nn.ReLU: nn.Linear(4, 4)}, "not an activation|multi-dimensional"),
    ({nn.ReLU: nn.GLU()}, "changes the output shape"),
    ({nn.Linear: ti.nn.GELU()}, "not an activation module"),
    ({nn.ReLU: 3}, "must be None, a module"),
    ({nn.ReLU: "nope"}, "not a torchinit activation"),
    ({nn.ReLU: nn.Sequential(nn.ReLU())}, "has submodules"),
])
def test_bad_mappings_refused_before_anything_changes(bad, match):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.GELU())
    before = [type(m) for m in model.modules()]
    mapping = {nn.GELU: ti.nn.GELU, **bad}
    with pytest.raises(SwapError, match=match):
        swap_activations(model, mapping)
    assert [type(m) for m in model.modules()] == before


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        h = self.lin(x)
        a = F.relu(h) + torch.relu(h) + h.relu() + F.leaky_relu(h, 0.3)
        b = F.gelu(h, approximate="tanh") + torch.sigmoid(h) + F.silu(h)
        c = h.clone()
        c.relu_()
        d = h.clone()
        torch.sigmoid_(d)
        return a + b + c + d


def test_functional_default_catches_every_spelling():
    torch.manual_seed(0)
    m = Functional()
    x = torch.randn(3, 8)
    ref = m(x)
    report = swap_activations(m, functional=True)
    olds = sorted(r.old for r in report.functional)
    assert olds == sorted(["F.relu(inplace=False)", "torch.relu()", "Tensor.relu()",
                           "F.leaky_relu(negative_slope=0.3, inplace=False)", "F.gelu(approximate='tanh')",
                           "torch.sigmoid()", "F.silu(inplace=False)", "Tensor.relu_(inplace=True)",
                           "torch.sigmoid_(inplace=True)"]), olds
    assert all(r.how == "fx" for r in report.functional)
    torch.testing.assert_close(m(x), ref)
    called = [v for v in m.forward.__func__.__globals__.values() if callable(v)]
    assert all(any(f is v for v in called) for f in (ti.functional.relu, ti.functional.gelu, ti.functional.sigmoid))
    assert not any(v is F.relu or v is torch.sigmoid for v in called)
    # undo restores the class's own forward
    undo = swap_activations(m, TORCH, functional=True)
    assert undo.restored == [""] and "forward" not in m.__dict__


def test_functional_cross_mapping_keeps_in_place_semantics():
    class Inplace(nn.Module):
        def forward(self, x):
            y = x * 1
            F.relu(y, inplace=True)
            y.sigmoid_()
            return y

    m = Inplace()
    x = torch.randn(5)
    swap_activations(m, {nn.ReLU: ti.nn.GELU(), nn.Sigmoid: ti.nn.Tanh()}, functional=True)
    torch.testing.assert_close(m(x), torch.tanh(F.gelu(x)))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so it is intercepted."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.inner = Inner()

    def forward(self, x):
        h = self.lin(x)
        if h.sum() > -1e9:
            h = F.relu(h)
        return self.inner(h).sigmoid()


class Inner(nn.Module):
    def forward(self, x):
        return F.relu(x) * 2 - x  # its own relu: handled on its own (traced), not by the parent's interceptor


def test_untraceable_forward_is_intercepted_and_scoped():
    torch.manual_seed(0)
    m = Untraceable()
    x = torch.randn(3, 4)
    report = swap_activations(m, {nn.ReLU: ti.nn.ELU(alpha=0.5), "inner:*": None}, functional=True)
    assert [i.name for i in report.intercepted] == [""] and "could not trace" in report.intercepted[0].reason
    assert calls.installed_kind(m) == "intercept"
    h = F.elu(m.lin(x), alpha=0.5)
    want = (F.relu(h) * 2 - h).sigmoid()  # inner untouched (mapped to None), parent's relu -> ELU
    torch.testing.assert_close(m(x), want)
    # the default mapping on an intercepted module: same numbers
    m2 = Untraceable()
    ref = m2(x)
    swap_activations(m2, functional=True)
    torch.testing.assert_close(m2(x), ref)


def test_function_valued_attribute_of_transformer_layer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    x = torch.randn(2, 3, 8)
    ref = layer(x)
    report = swap_activations(layer, functional=True)
    assert layer.activation is ti.functional.relu
    assert any(r.how == "attribute" for r in report.replaced)
    torch.testing.assert_close(layer(x), ref)


def test_torch_round_trip_and_state_dict():
    torch.manual_seed(0)
    net = Net()
    keys = list(net.state_dict())
    swap_activations(net)
    assert list(net.state_dict()) == keys
    report = swap_activations(net, TORCH)
    assert all(not type(m).__module__.startswith("torchinit") for m in net.modules())
    assert type(net.prelu) is nn.PReLU and type(net.head[0]) is nn.GELU and net.head[0].approximate == "tanh"
    assert len(report.modules) == 4
    extra = nn.Sequential(ti.nn.SquaredReLU(), ti.nn.Swish(), ti.nn.Swish(beta=2.0))
    r = swap_activations(extra, TORCH)
    assert type(extra[1]) is nn.SiLU
    assert {x.name for x in r.left} == {"0", "2"}


def test_report_text_and_fuse_with_torch_refused():
    net = Net()
    text = str(swap_activations(net))
    assert "act: ReLU(inplace=True) -> torchinit.nn.ReLU(inplace=True) (module)" in text
    with pytest.raises(SwapError, match="fuse=True"):
        swap_activations(Net(), TORCH, fuse=True)


def test_bad_arguments():
    with pytest.raises(TypeError, match="'model'"):
        swap_activations(object())
    with pytest.raises(SwapError, match="'mapping'"):
        swap_activations(nn.ReLU(), [nn.ReLU])
    with pytest.raises(SwapError, match="mapping key"):
        swap_activations(Net(), {3: ti.nn.ReLU})


def test_unmatched_string_keys_are_reported_with_what_to_write():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.GELU())
    report = swap_activations(model, {"0.l": ti.nn.Tanh(), "gelu": ti.nn.ReLU(), "9.*": None, "1": ti.nn.SiLU()})
    assert type(model[1]) is ti.nn.SiLU and type(model[0][1]) is nn.ReLU
    reasons = {x.name: x.reason for x in report.unmatched}
    assert set(reasons) == {"0.l", "gelu", "9.*"}
    assert "closest module names: 0.1" in reasons["0.l"] or "closest module names: 0.0" in reasons["0.l"]
    assert "{nn.GELU: ...}" in reasons["gelu"]
    # keys naming functional calls are judged only when every call was seen (functional=True, nothing intercepted)
    quiet = swap_activations(nn.Sequential(nn.ReLU()), {":F.relu": None})
    assert not quiet.unmatched


def test_partial_attributes_keyword_bound_only():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.act = functools.partial(F.leaky_relu, negative_slope=0.2)
            self.odd = functools.partial(F.leaky_relu, torch.ones(1))  # binds the input: not an activation site

        def forward(self, x):
            return self.act(self.lin(x))

    m = Holder()
    x = torch.randn(3, 4)
    ref = m(x)
    report = swap_activations(m, functional=True)
    assert isinstance(m.act, functools.partial) and m.act.func is ti.functional.leaky_relu
    assert m.act.keywords == {"negative_slope": 0.2}
    assert m.odd.func is F.leaky_relu
    assert [r.old for r in report.replaced if r.how == "attribute"] == ["functools.partial(F.leaky_relu, "
                                                                          "negative_slope=0.2)"]
    torch.testing.assert_close(m(x), ref)
    back = swap_activations(m, TORCH, functional=True)
    assert m.act.func is F.leaky_relu and m.act.keywords == {"negative_slope": 0.2}
    assert any(r.how == "attribute" for r in back.replaced)


class _DtypeCheckedMLP(nn.Module):
    """T5's feed-forward pattern: a cast decided in Python on a parameter's dtype (which a trace freezes)."""

    def __init__(self):
        super().__init__()
        self.wi, self.wo = nn.Linear(4, 8), nn.Linear(8, 4)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.wi(x))
        if isinstance(self.wo.weight, torch.Tensor) and h.dtype != self.wo.weight.dtype:
            h = h.to(self.wo.weight.dtype)
        return self.wo(h)


def test_functional_rewrite_guards_a_decision_on_a_parameter_dtype():
    """functional=True traces the forward with the parameters' dtype; a bf16 input with wo kept in fp32 (as T5
    keeps it) takes the branch the trace did not see, so it runs under run-time interception instead."""
    torch.manual_seed(0)
    model = _DtypeCheckedMLP()
    model.wi.to(torch.bfloat16)
    ref = copy.deepcopy(model)
    report = ti.swap_activations(model, functional=True)
    switched = [r for r in report.replaced if r.how == "fx"]
    assert switched and "reads wo.weight in Python" in " ".join(switched[0].notes)
    x16 = torch.randn(3, 4, dtype=torch.bfloat16)
    torch.testing.assert_close(model(x16), ref(x16))  # the frozen branch would feed bf16 into the fp32 wo
    model.to(torch.float32), ref.to(torch.float32)
    x32 = torch.randn(3, 4)
    torch.testing.assert_close(model(x32), ref(x32))
    ti.swap_activations(model, ti.TORCH, functional=True)
    assert "forward" not in model.__dict__
