"""One way to define a torchinit operator: schema, kernel-or-torch implementation, fake, vmap, sharding, autograd.

:func:`operator` registers ``torchinit::<name>`` from those parts (``torch.library``: define, one
CompositeExplicitAutograd implementation, fake, vmap, DTensor rule, ``register_autograd``) and
:func:`autograd_function` makes the new-style ``torch.autograd.Function`` (works under ``torch.func``,
which ``register_autograd`` does not, up to at least torch 2.14) from the same setup/backward pair.
:func:`kernel_or_torch` is "the Triton kernel where it runs, else the torch form" (registered per
dispatch key: the device chooses, no second backend decision), and
:func:`per_sample` the vmap rule of an operator that reduces over its tensors (parameter gradients):
one call per sample.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import backend, kernels
from .layout import to_front

LIB = torch.library.Library("torchinit", "DEF")  # noqa: TOR901 - the project's own namespace


_HALF = (torch.float16, torch.bfloat16)


@functools.cache
def kernel_pair(kernel: str, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """The Triton pair ``kernels/math.py:<kernel>_fwd`` / ``<kernel>_bwd`` (imports Triton on first use).

    For results rounded to fp16/bf16 (``dtype``) the pair ``<kernel>_fwd_half`` / ``<kernel>_bwd_half`` where
    math.py has one: the same formula without the steps only fp32 and fp64 results can see (each within
    about half an ulp of the half-precision result; math.py says how it was checked)."""
    math = kernels.math
    pair = getattr(math, kernel + "_fwd"), getattr(math, kernel + "_bwd")
    if dtype in _HALF:
        return getattr(math, kernel + "_fwd_half", pair[0]), getattr(math, kernel + "_bwd_half", pair[1])
    return pair


@functools.cache
def param_grad_kernel(kernel: str) -> Any:
    """The Triton function ``kernels/math.py:<kernel>_pgrad`` (per-element parameter gradients)."""
    return getattr(kernels.math, kernel + "_pgrad")


@dataclass(frozen=True)
class Implementation:
    """An operator's two implementations over the same arguments: its Triton ``kernel`` and its ``torch_form``.

    :func:`operator` registers them per dispatch key, so that the device picks between them and no backend
    decision is made again inside the operator (the entry points made it: :func:`torchinit.backend.route`):
    CUDA runs the kernel (the torch form where Triton is not installed, under the forced "torch" backend --
    the documented off-switch, "always the pure-torch path", for direct calls and exported programs -- or,
    with ``nonempty``, for a tensor without elements); CPU runs the kernel only where Triton's interpreter
    runs the kernels there (:func:`torchinit.backend.kernel_runs_on`: the forced "triton" backend with
    ``TRITON_INTERPRET=1``); every other device the torch form. ``device_of`` is the tensor argument
    ``nonempty`` looks at."""

    kernel: Callable[..., Any]
    torch_form: Callable[..., Any]
    device_of: int = 0
    nonempty: bool = False

    def on_cuda(self, *args):
        """The CUDA implementation: the kernel (the "auto" rule is not asked again: only the off-switch)."""
        if (backend.torch_forced() or not backend.triton_available()
                or (self.nonempty and args[self.device_of].numel() == 0)):
            return self.torch_form(*args)
        return self.kernel(*args)

    def on_cpu(self, *args):
        """The CPU implementation: the torch form, or the kernel under Triton's interpreter."""
        if backend.kernel_runs_on(_CPU) and not (self.nonempty and args[self.device_of].numel() == 0):
            return self.kernel(*args)
        return self.torch_form(*args)


_CPU = torch.device("cpu")


def kernel_or_torch(kernel: Callable[..., Any], torch_form: Callable[..., Any], device_of: int = 0,
                    nonempty: bool = False) -> Implementation:
    """An operator implementation (:class:`Implementation`): ``kernel(*args)`` where a Triton kernel runs on
    the tensors' device (and, with ``nonempty``, tensor argument ``device_of`` has elements), else
    ``torch_form(*args)``."""
    return Implementation(kernel, torch_form, device_of, nonempty)


def refuse_batched(op: str, in_dims: Sequence[int | None], indices: Sequence[int], what: str) -> None:
    """vmap rules: raise unless the arguments at ``indices`` are unbatched (``what`` names them)."""
    if any(in_dims[i] is not None for i in indices):
        raise NotImplementedError(f"torchinit.{op}: vmap over {what} is not supported")


def per_sample(op_name: str, batched: int, unbatched: Sequence[int] = (), what: str = "the parameters"):
    """The vmap rule of an operator whose first ``batched`` tensors are per sample and whose outputs (a
    tensor or a tuple) include reductions over them (parameter gradients, codes packed per tensor): one call
    per sample, results stacked. Arguments at ``unbatched`` must not be batched (``what`` names them)."""

    def rule(info, in_dims, *args):
        refuse_batched(op_name, in_dims, unbatched, what)
        op = getattr(torch.ops.torchinit, op_name)
        front = [to_front(a, d, info.batch_size) for a, d in zip(args[:batched], in_dims[:batched])]
        rest = args[batched:]
        outs = [op(*(t[b] if t is not None else None for t in front), *rest) for b in range(info.batch_size)]
        if isinstance(outs[0], torch.Tensor):
            return torch.stack(outs), 0
        return tuple(torch.stack(parts) for parts in zip(*outs)), (0,) * len(outs[0])

    return rule


def operator(name: str, schema: str, implementation: Implementation, fake: Callable[..., Any],
             vmap: Callable[..., Any] | None = None, sharding: Callable[[Any], None] | None = None,
             autograd: tuple[Callable[..., Any], Callable[..., Any]] | None = None) -> Any:
    """Register ``torchinit::<name><schema>`` and return its ``torch.ops`` packet.

    ``implementation`` is registered per dispatch key (:class:`Implementation`: the kernel on CUDA, the
    torch form as CompositeExplicitAutograd for every device without a kernel),
    ``fake`` gives outputs with exactly the real strides, ``vmap`` is its batching rule,
    ``sharding(op_overload)`` registers its DTensor rule (:mod:`torchinit.sharding`), and ``autograd``
    = ``(setup_context, backward)`` makes the bare operator differentiable (exported programs).
    """
    LIB.define(name + schema)
    LIB.impl(name, implementation.torch_form, "CompositeExplicitAutograd")  # every device without a kernel
    LIB.impl(name, implementation.on_cuda, "CUDA")
    LIB.impl(name, implementation.on_cpu, "CPU")
    qualified = f"torchinit::{name}"
    torch.library.register_fake(qualified, fake, lib=LIB)
    if vmap is not None:
        torch.library.register_vmap(qualified, vmap, lib=LIB)
    packet = getattr(torch.ops.torchinit, name)
    if sharding is not None:
        sharding(packet.default)
    if autograd is not None:
        setup_context, backward = autograd
        torch.library.register_autograd(qualified, backward, setup_context=setup_context, lib=LIB)
    return packet


def autograd_function(name: str, forward: Callable[..., Any], setup_context: Callable[..., Any],
                      backward: Callable[..., Any], doc: str) -> type[torch.autograd.Function]:
    """A new-style ``torch.autograd.Function`` (generated vmap rule) from a forward and the operator's own
    setup/backward pair, so the functional API and ``register_autograd`` share one derivative.

    ``forward`` carries its signature (``__signature__``): ``Function.apply`` binds the arguments with
    ``inspect.signature`` at every call, which otherwise rebuilds it from the code object each time."""
    forward.__signature__ = inspect.signature(forward)
    return type(name, (torch.autograd.Function,), {
        "__doc__": doc, "__module__": forward.__module__, "generate_vmap_rule": True,
        "forward": staticmethod(forward), "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })


__all__ = ["LIB", "Implementation", "kernel_pair", "param_grad_kernel", "kernel_or_torch", "refuse_batched", "per_sample",
           "operator",
           "autograd_function"]
