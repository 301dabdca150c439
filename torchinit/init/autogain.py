"""``gain="auto"``: find the activation that acts on the signal a layer's weights scale.

The rule, and why
-----------------
* ``mode="fan_in"`` keeps the *forward* second moment constant: ``Var(y) = fan_in * Var(W) * E[x^2]``
  (He et al. 2015, eq. 10), where ``x = f(previous pre-activation)``. The gain must cancel
  ``E[f(z)^2]`` of the activation applied to the layer's **input**. A layer that sees raw data, or the
  output of a normalisation layer or another weight layer directly, gets gain 1.
* ``mode="fan_out"`` keeps the *backward* second moment constant; the gradient reaching the weights has
  passed back through the activation applied to the layer's **output** (after any normalisation layer),
  so that activation's gain is used (torchvision's ResNet uses ``fan_out`` with ReLU for this reason).
* ``mode="fan_avg"`` uses the input-side activation, like ``fan_in``.

How the activation is found: by an FX trace when the model traces (so functional activations in
``forward`` are seen), otherwise by module registration order. Walking from the layer, dropout,
identity, flatten/reshape and pooling steps are looked through; normalisation layers are looked through
only on the output side; any other module stops the walk (gain 1).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .fans import is_norm_layer, is_weight_layer
from .gain import activation_name, calculate_gain, is_activation, module_gain

__all__ = ["LayerGains", "find_gains"]


@dataclass(frozen=True)
class LayerGains:
    """The activations found around one weight layer and their gains (1 and ``None`` when there is none)."""

    gain_in: float = 1.0
    act_in: str | None = None
    gain_out: float = 1.0
    act_out: str | None = None
    source: str = "order"  # "fx" or "order"

    def gain(self, mode: str) -> tuple[float, str | None]:
        """(gain, activation name) for ``mode``."""
        if mode == "fan_out":
            return self.gain_out, self.act_out
        return self.gain_in, self.act_in


_TRANSPARENT_TYPES: tuple[type, ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
    nn.Flatten, nn.Unflatten, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)
_TRANSPARENT_METHODS = {"view", "reshape", "flatten", "contiguous", "permute", "transpose", "squeeze", "unsqueeze",
                        "to", "float", "type_as"}
_TRANSPARENT_FUNCTIONS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
                          torch.unsqueeze, F.dropout, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d,
                          F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                          F.adaptive_avg_pool3d, operator.getitem}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
                "sigmoid_": "sigmoid"}


def _is_transparent(m: nn.Module) -> bool:
    return isinstance(m, _TRANSPARENT_TYPES) or type(m).__name__ in ("DropPath", "StochasticDepth")


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf-like modules in registration order: weight layers, norms, activations and other leaves."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        if prefix and (is_weight_layer(m) or is_norm_layer(m) or is_activation(m) or not m._modules):
            out.append((prefix, m))
            return
        for name, child in m._modules.items():
            if child is not None:
                walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return out


def _by_order(model: nn.Module) -> dict[str, LayerGains]:
    leaves = _leaves(model)
    result: dict[str, LayerGains] = {}
    for i, (name, m) in enumerate(leaves):
        if not is_weight_layer(m):
            continue
        g_in, a_in = 1.0, None
        for _, prev in reversed(leaves[:i]):
            if _is_transparent(prev):
                continue
            if is_activation(prev):
                g_in, a_in = module_gain(prev), activation_name(prev)
            break
        g_out, a_out = 1.0, None
        for _, nxt in leaves[i + 1 :]:
            if _is_transparent(nxt) or is_norm_layer(nxt):
                continue
            if is_activation(nxt):
                g_out, a_out = module_gain(nxt), activation_name(nxt)
            break
        result[name] = LayerGains(g_in, a_in, g_out, a_out, "order")
    return result


def _node_activation(node: torch.fx.Node, modules: dict[str, nn.Module]) -> tuple[float, str] | None:
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if m is not None and is_activation(m):
            return module_gain(m), activation_name(m)
        return None
    if node.op == "call_method" and node.target in _ACT_METHODS:
        name = _ACT_METHODS[str(node.target)]
        return calculate_gain(name), name
    if node.op == "call_function" and callable(node.target):
        fn = node.target
        mod = getattr(fn, "__module__", "") or ""
        fname = getattr(fn, "__name__", "")
        if not (id(fn) in _functional_ids() or mod.startswith("torchinit")):
            return None
        if fname.startswith("_") or fname in ("linear", "conv1d", "conv2d", "conv3d", "dropout", "layer_norm", "softmax",
                                               "log_softmax", "scaled_dot_product_attention", "embedding", "glu"):
            return None
        extra = {k: v for k, v in node.kwargs.items() if k != "inplace" and not isinstance(v, torch.fx.Node)}
        pos = [a for a in node.args[1:] if not isinstance(a, torch.fx.Node)]
        try:
            if fn is F.leaky_relu:
                g = calculate_gain("leaky_relu", pos[0] if pos else extra.get("negative_slope", 0.01))
            elif pos or extra:
                # the traced call is fn(x, *pos, **extra): bind the extra arguments after the input
                g = calculate_gain(lambda t, _f=fn, _p=tuple(pos), _k=dict(extra): _f(t, *_p, **_k))
            else:
                g = calculate_gain(fn)
        except Exception:
            return None
        return g, fname
    return None


@functools.lru_cache(maxsize=1)
def _functional_ids() -> frozenset[int]:
    ids = {id(v) for v in vars(F).values() if callable(v)}
    ids.update(id(f) for f in (torch.relu, torch.relu_, torch.tanh, torch.sigmoid, torch.selu, torch.nn.functional.silu))
    return frozenset(ids)


def _node_transparent(node: torch.fx.Node, modules: dict[str, nn.Module], allow_norm: bool) -> bool:
    if node.op == "call_module":
        m = modules.get(str(node.target))
        return m is not None and (_is_transparent(m) or (allow_norm and is_norm_layer(m)))
    if node.op == "call_method":
        return node.target in _TRANSPARENT_METHODS
    if node.op == "call_function":
        return node.target in _TRANSPARENT_FUNCTIONS or (allow_norm and node.target in (F.layer_norm, F.batch_norm, F.group_norm))
    return False


def _by_fx(model: nn.Module) -> dict[str, LayerGains]:
    graph_module = torch.fx.symbolic_trace(model)
    modules = dict(graph_module.named_modules())
    result: dict[str, LayerGains] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_module":
            continue
        m = modules.get(str(node.target))
        if m is None or not is_weight_layer(m):
            continue
        g_in, a_in = 1.0, None
        cur = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
        while cur is not None:
            found = _node_activation(cur, modules)
            if found is not None:
                g_in, a_in = found
                break
            if not _node_transparent(cur, modules, allow_norm=False):
                break
            cur = cur.args[0] if cur.args and isinstance(cur.args[0], torch.fx.Node) else None
        g_out, a_out = 1.0, None
        cur = node
        while True:
            users = list(cur.users)
            if len(users) != 1:
                break
            nxt = users[0]
            found = _node_activation(nxt, modules)
            if found is not None:
                g_out, a_out = found
                break
            if not _node_transparent(nxt, modules, allow_norm=True):
                break
            cur = nxt
        name = str(node.target)
        if name in result:  # a layer called twice: keep the first call's neighbours
            continue
        result[name] = LayerGains(g_in, a_in, g_out, a_out, "fx")
    return result


def find_gains(model: nn.Module, use_fx: bool = True) -> dict[str, LayerGains]:
    """Map each weight layer's qualified name to the activations around it and their gains.

    Tries an FX trace first (``use_fx``); falls back to module registration order when tracing fails.
    """
    if use_fx:
        try:
            found = _by_fx(model)
        except Exception:
            found = None
        if found is not None:
            # layers the trace did not reach (e.g. inside a leaf) keep their module-order answer
            order = _by_order(model)
            order.update(found)
            return order
    return _by_order(model)
