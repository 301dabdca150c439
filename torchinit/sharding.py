"""DTensor sharding rules for torchinit's element-wise operators, built from one description of an op's arguments.

Every torchinit operator is element-wise over some of its tensor arguments (the input, or the gradient and
the saved tensor) and may take per-channel or whole-tensor parameters (PReLU's weight, a bias) and scalars.
:func:`pointwise_rule` turns that description into the strategy list ``register_sharding`` wants:

* everything replicated;
* for each dim ``d`` of the element-wise tensors: all of them ``Shard(d)``, whole-tensor parameters
  replicated, per-channel parameters replicated unless ``d`` is the channel dim, where they are
  ``Shard(0)`` too (a local slice of a replicated weight: no communication);
* outputs that are element-wise follow the inputs; outputs that are parameter gradients (sums over the
  element-wise tensors) are ``Partial()`` where the sharded dim is not the channel dim, ``Shard(0)`` where it is.

A wrong rule is worse than none: DTensor would run the local op on shards that do not line up, so the
rule describes exactly which arguments are element-wise. Importing ``torch.distributed.tensor`` is
deferred to the first call (it costs over a second at ``import torchinit``).
"""

from __future__ import annotations

from typing import Callable, Sequence


def _numel(meta) -> int:
    n = 1
    for s in getattr(meta, "shape", ()):
        n *= s
    return n


def _is_tensor(meta) -> bool:
    return meta is not None and hasattr(meta, "shape")


def pointwise_rule(elementwise: int, params: int = 0, outputs: Sequence[str] = ("elementwise",),
                   channel_dim: Callable[[int], int | None] | None = None):
    """The strategy function for an operator whose first ``elementwise`` arguments are same-shaped tensors
    the op works on element by element, followed by ``params`` optional parameter tensors (per channel
    when they have more than one element, channel dim ``channel_dim(ndim)``: torch's dim 1, or 0 for 1-d)
    and then any scalars. ``outputs`` names each output: ``"elementwise"`` (shaped like the inputs) or
    ``"param_grad"`` (the gradient of the matching parameter: a sum over the element-wise tensors).
    """
    from torch.distributed.tensor import Partial, Replicate, Shard

    channel_of = channel_dim or (lambda ndim: 1 if ndim >= 2 else 0)

    def strategy(*args):
        x = args[0]
        ndim = len(x.shape)
        weights = args[elementwise:elementwise + params]
        scalars = [None] * (len(args) - elementwise - params)
        per_channel = [_is_tensor(w) and len(w.shape) >= 1 and _numel(w) > 1 for w in weights]
        present = [_is_tensor(w) for w in weights]

        def params_at(d: int | None) -> list:
            out = []
            for w_present, w_channel in zip(present, per_channel):
                if not w_present:
                    out.append(None)
                elif d is not None and w_channel:
                    out.append(Shard(0))
                else:
                    out.append(Replicate())
            return out

        def outs_at(d: int | None, on_channel: bool) -> list:
            placed, k = [], 0
            for kind in outputs:
                if kind == "elementwise":
                    placed.append(Replicate() if d is None else Shard(d))
                    continue
                # the gradient of parameter k: local sums that add up, or split along the channels
                if d is None or not present[k]:
                    placed.append(Replicate())
                else:
                    placed.append(Shard(0) if on_channel and per_channel[k] else Partial())
                k += 1
            return placed

        options = [(outs_at(None, False), [Replicate()] * elementwise + params_at(None) + scalars)]
        channel = channel_of(ndim) if any(per_channel) else None
        for d in range(ndim):
            on_channel = d == channel
            if channel is not None and on_channel and not all(
                    len(w.shape) == 1 and w.shape[0] == x.shape[d] for w, c in zip(weights, per_channel) if c):
                continue  # a per-channel parameter that is not a (C,) vector cannot be split along C
            weight_places = params_at(d) if on_channel else [Replicate() if p else None for p in present]
            options.append((outs_at(d, on_channel), [Shard(d)] * elementwise + weight_places + scalars))
        return options

    return strategy


def halves_rule(tensors: int):
    """The strategy function for an operator over ``tensors`` tensors followed by an int ``dim`` along which it
    splits (or joins) halves, GLU-style: any sharding that does not split ``dim`` itself is kept."""
    from torch.distributed.tensor import Replicate, Shard

    def strategy(*args):
        ndim = len(args[0].shape)
        dim = args[tensors] % ndim if ndim else 0
        rest = [None] * (len(args) - tensors)
        options = [([Replicate()], [Replicate()] * tensors + rest)]
        options += [([Shard(d)], [Shard(d)] * tensors + rest) for d in range(ndim) if d != dim]
        return options

    return strategy


def register_halves(op, tensors: int) -> None:
    """Register :func:`halves_rule` as ``op``'s DTensor sharding strategy (imports DTensor)."""
    from torch.distributed.tensor.experimental import register_sharding

    register_sharding(op)(halves_rule(tensors))


def register_pointwise(op, elementwise: int, params: int = 0, outputs: Sequence[str] = ("elementwise",),
                       channel_dim: Callable[[int], int | None] | None = None) -> None:
    """Register :func:`pointwise_rule` as ``op``'s DTensor sharding strategy (imports DTensor: call it from
    :func:`torchinit.ops.on_dtensor_import`)."""
    from torch.distributed.tensor.experimental import register_sharding

    register_sharding(op)(pointwise_rule(elementwise, params, outputs, channel_dim))


__all__ = ["pointwise_rule", "register_pointwise", "halves_rule", "register_halves"]
