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

from typing import Callable, Sequence

#: how a parameter argument broadcasts: one value per channel, the whole tensor as one set of values, or
#: per channel when it has more than one element (PReLU's weight: one slope, or one per channel)
PARAM_KINDS = ("channel", "whole", "auto")


def _numel(meta) -> int:
    n = 1
    for s in getattr(meta, "shape", ()):
        n *= s
    return n


def _is_tensor(meta) -> bool:
    return meta is not None and hasattr(meta, "shape")


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

    bad = [k for k in params if k not in PARAM_KINDS]
    if bad:
        raise ValueError(f"pointwise_rule: parameter kinds {bad} are not among {list(PARAM_KINDS)}")

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


def register(op, strategy) -> None:
    """Register ``strategy`` (from :func:`pointwise_rule` or :func:`off_dim_rule`) as ``op``'s DTensor
    sharding strategy. Imports DTensor: call it through :func:`torchinit.ops.on_dtensor_import`."""
    from torch.distributed.tensor.experimental import register_sharding

    register_sharding(op)(strategy)


def register_pointwise(op, elementwise: int, params: Sequence[str] = ("auto", "auto"),
                       outputs: Sequence[str] = ("elementwise",),
                       channel_dim: Callable[[int, tuple], int] = torch_channel_dim) -> None:
    """Register :func:`pointwise_rule` for ``op`` (see there)."""
    register(op, pointwise_rule(elementwise, params, outputs, channel_dim))


def register_off_dim(op, tensors: int, outputs: int = 1, dim_index: int | None = None) -> None:
    """Register :func:`off_dim_rule` for ``op`` (see there)."""
    register(op, off_dim_rule(tensors, outputs, dim_index))


__all__ = ["PARAM_KINDS", "pointwise_rule", "off_dim_rule", "register", "register_pointwise", "register_off_dim",
           "torch_channel_dim", "dim_argument"]
