"""DTensor sharding rules for torchinit's operators, built from one description of an op's arguments.

Every torchinit operator is element-wise over some of its tensor arguments (the input, or the gradient and
the saved tensor) and may take parameters (PReLU's per-channel weight, a bias along ``dim``, a rational
function's coefficients) and scalars. :func:`pointwise_rule` turns that description into the strategy list
``register_sharding`` wants:

* everything replicated;
* for each dim ``d`` of the element-wise tensors: all of them ``Shard(d)``, parameters replicated, except
  per-channel parameters when ``d`` is their channel dim: then they are ``Shard(0)`` too (a local slice of
  a replicated weight: no communication);
* outputs that are element-wise follow the inputs; outputs that are parameter gradients (sums over the
  element-wise tensors) are ``Partial()``, or ``Shard(0)`` when ``d`` is the channel dim of a per-channel one.

:func:`off_dim_rule` covers operators that work along one ``dim`` argument (glu's halves, softmax's rows):
any sharding of another dim is kept. A wrong rule is worse than none (DTensor would run the local op on
shards that do not line up), so each op states exactly which arguments are which. ``torch.distributed.tensor``
is imported on the first call only (it costs over a second at ``import torchinit``).
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
import warnings
from typing import Callable, Sequence

import torch

#: how a parameter argument broadcasts: one value per channel, the whole tensor as one set of values, or
#: per channel when it has more than one element (PReLU's weight: one slope, or one per channel)
PARAM_KINDS = ("channel", "whole", "auto")


# ---------------------------------------------------------------------------------------------
# when: importing torch.distributed.tensor costs about 1.5 s, more than the rest of torchinit, so the rules
# are registered when it is imported (at once if it already is; else by a one-shot import hook), since no
# DTensor can reach an operator before that
# ---------------------------------------------------------------------------------------------

_DTENSOR_MODULE = "torch.distributed.tensor"
_on_dtensor: list = []  # registrations waiting for torch.distributed.tensor


def _run_dtensor_registrations() -> None:
    while _on_dtensor:
        register = _on_dtensor.pop(0)
        try:
            register()
        except Exception as exc:  # pragma: no cover - a torch whose DTensor API moved
            warnings.warn(f"torchinit: a DTensor sharding rule could not be registered ({exc}); DTensor inputs "
                          "to that operator will fail", RuntimeWarning, stacklevel=2)


class _DTensorImportHook(importlib.abc.MetaPathFinder):
    """Runs the waiting registrations right after ``torch.distributed.tensor`` has been imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _DTENSOR_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):  # pragma: no cover - an unusual importer
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _run_dtensor_registrations()

        loader.exec_module = exec_then_register  # this spec's own loader instance
        return spec


_HOOK = _DTensorImportHook()


def on_dtensor_import(register) -> None:
    """Call ``register()`` once ``torch.distributed.tensor`` is imported: now if it is, else right after."""
    _on_dtensor.append(register)
    if _DTENSOR_MODULE in sys.modules:
        _run_dtensor_registrations()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)



def is_dtensor(t) -> bool:
    """Whether ``t`` is a DTensor (without importing DTensor when nothing could have made one)."""
    if t is None or type(t) is torch.Tensor or _DTENSOR_MODULE not in sys.modules:
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def on_local_shards(fn, x):
    """``fn`` (an element-wise function of one tensor) on each rank's shard of the DTensor ``x``: the result
    has ``x``'s placements, with no communication (a Partial placement is reduced first: a nonlinear function
    of partial sums is not the function of their sum). Differentiable: autograd flows through the shards."""
    from torch.distributed.tensor import DTensor, Partial, Replicate

    if any(isinstance(p, Partial) for p in x.placements):
        x = x.redistribute(x.device_mesh, [Replicate() if isinstance(p, Partial) else p for p in x.placements])
    y = fn(x.to_local())
    return DTensor.from_local(y, x.device_mesh, x.placements, run_check=False, shape=x.shape, stride=x.stride())


# ---------------------------------------------------------------------------------------------
# what: the strategies
# ---------------------------------------------------------------------------------------------


def _numel(meta) -> int:
    n = 1
    for s in getattr(meta, "shape", ()):
        n *= s
    return n


def _is_tensor(meta) -> bool:
    return meta is not None and hasattr(meta, "shape")


def _check_kinds(fn: str, params: Sequence[str]) -> None:
    bad = [k for k in params if k not in PARAM_KINDS]
    if bad:
        raise ValueError(f"torchinit.sharding.{fn}: parameter kinds {bad} are not among {list(PARAM_KINDS)}")


def torch_channel_dim(ndim: int, args: tuple) -> int:
    """torch's channel dim (PReLU's): 1, or 0 for a 1-d input."""
    return 1 if ndim >= 2 else 0


def dim_argument(index: int) -> Callable[[int, tuple], int]:
    """The channel dim is the op's int argument at ``index`` (bias_act's ``dim``), made non-negative."""
    def channel(ndim: int, args: tuple) -> int:
        return args[index] % ndim if ndim else 0
    return channel


def pointwise_rule(elementwise: int, params: Sequence[str] = ("auto", "auto"),
                   outputs: Sequence[str] = ("elementwise",),
                   channel_dim: Callable[[int, tuple], int] = torch_channel_dim):
    """The strategy function for an operator whose first ``elementwise`` arguments are same-shaped tensors it
    works on element by element, followed by one optional tensor per entry of ``params`` (each a kind of
    :data:`PARAM_KINDS`), then any other arguments. ``outputs`` names each output: ``"elementwise"`` (shaped
    like the inputs) or ``"param_grad"`` (the gradient of the next parameter: a sum over the elements).
    ``channel_dim(ndim, args)`` says which dim per-channel parameters follow.
    """
    from torch.distributed.tensor import Partial, Replicate, Shard

    _check_kinds("pointwise_rule", params)

    def strategy(*args):
        x = args[0]
        ndim = len(x.shape)
        weights = args[elementwise:elementwise + len(params)]
        rest = [None] * (len(args) - elementwise - len(params))
        present = [_is_tensor(w) for w in weights]
        per_channel = [p and (kind == "channel" or (kind == "auto" and len(w.shape) >= 1 and _numel(w) > 1))
                       for w, p, kind in zip(weights, present, params)]
        channel = channel_dim(ndim, args) if any(per_channel) else None

        def placements(d: int | None) -> tuple[list, list]:
            on_channel = d is not None and d == channel
            ins = [Replicate() if d is None else Shard(d)] * elementwise
            for p, c in zip(present, per_channel):
                ins.append(None if not p else Shard(0) if on_channel and c else Replicate())
            outs, k = [], 0
            for kind in outputs:
                if kind == "elementwise":
                    outs.append(Replicate() if d is None else Shard(d))
                    continue
                if d is None or not present[k]:
                    outs.append(Replicate())
                else:
                    outs.append(Shard(0) if on_channel and per_channel[k] else Partial())
                k += 1
            return outs, ins + rest

        options = [placements(None)]
        for d in range(ndim):
            if d == channel and not all(len(w.shape) == 1 and w.shape[0] == x.shape[d]
                                        for w, c in zip(weights, per_channel) if c):
                continue  # a per-channel parameter that is not a (C,) vector cannot be split along C
            options.append(placements(d))
        return options

    return strategy


def off_dim_rule(tensors: int, outputs: int = 1, dim_index: int | None = None):
    """The strategy function for an operator over ``tensors`` tensors that works along the int ``dim``
    argument at ``dim_index`` (default: right after the tensors): GLU's halves, softmax's rows. Any sharding
    that does not split ``dim`` is kept, for the inputs and all ``outputs`` outputs."""
    from torch.distributed.tensor import Replicate, Shard

    where = tensors if dim_index is None else dim_index

    def strategy(*args):
        ndim = len(args[0].shape)
        dim = args[where] % ndim if ndim else 0
        rest = [None] * (len(args) - tensors)
        options = [([Replicate()] * outputs, [Replicate()] * tensors + rest)]
        options += [([Shard(d)] * outputs, [Shard(d)] * tensors + rest) for d in range(ndim) if d != dim]
        return options

    return strategy


def replicated_rule(outputs: int = 1):
    """The strategy function of an operator that only runs on whole tensors (the bit-packing ops, whose codes
    are packed over the whole tensor): inputs are gathered, outputs replicated."""
    from torch.distributed.tensor import Replicate

    def strategy(*args):
        return [([Replicate()] * outputs, [Replicate() if _is_tensor(a) else None for a in args])]

    return strategy


def _register_now(op, make_strategy, *args) -> None:
    from torch.distributed.tensor.experimental import register_sharding

    register_sharding(op)(make_strategy(*args))


def pointwise(op, elementwise: int, params: Sequence[str] = ("auto", "auto"), outputs: Sequence[str] = ("elementwise",),
              channel_dim: Callable[[int, tuple], int] = torch_channel_dim) -> None:
    """Give ``op`` the :func:`pointwise_rule` (see there) once DTensor is imported."""
    _check_kinds("pointwise", params)  # a wrong description fails at import, not at the first DTensor call
    on_dtensor_import(functools.partial(_register_now, op, pointwise_rule, elementwise, tuple(params),
                                        tuple(outputs), channel_dim))


def off_dim(op, tensors: int, outputs: int = 1, dim_index: int | None = None) -> None:
    """Give ``op`` the :func:`off_dim_rule` (see there) once DTensor is imported."""
    on_dtensor_import(functools.partial(_register_now, op, off_dim_rule, tensors, outputs, dim_index))


def replicated(op, outputs: int = 1) -> None:
    """Give ``op`` the :func:`replicated_rule` (see there) once DTensor is imported."""
    on_dtensor_import(functools.partial(_register_now, op, replicated_rule, outputs))


__all__ = ["PARAM_KINDS", "on_dtensor_import", "is_dtensor", "on_local_shards", "pointwise", "off_dim", "replicated", "pointwise_rule",
           "off_dim_rule", "replicated_rule", "torch_channel_dim", "dim_argument"]
