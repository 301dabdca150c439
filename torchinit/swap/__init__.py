"""``swap_activations``: move an existing network onto torchinit's activations, in place.

>>> report = swap_activations(model)                        # every torch.nn, HF and timm activation -> torchinit.nn
>>> report = swap_activations(model, {nn.ReLU: ti.nn.GELU()}, functional=True)
>>> report = swap_activations(model, fuse=True)             # + Linear/Conv+act -> bias_act, GLUs -> swiglu
>>> swap_activations(model, TORCH, functional=True)         # back to plain torch.nn modules and forwards

See :mod:`torchinit.swap.mapping` for what a mapping may contain, :mod:`torchinit.swap.foreign` for the
Hugging Face / timm classes the default mapping knows (and :mod:`torchinit.swap.probe` for how each is
checked), :mod:`torchinit.swap.calls` for how
functional calls are switched, :mod:`torchinit.swap.fuse` for what ``fuse=True`` fuses, :class:`SwapReport`
for what comes back.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from . import calls, fuse as fusion, table
from .mapping import Mapping, SwapError, unmatched_keys
from .modules import commit_modules, plan_modules, walk
from .report import Left, Replaced, SwapReport

#: The default mapping: every torch.nn activation class with a torchinit twin -> that twin (exact types).
DEFAULT: dict[type[nn.Module], type[nn.Module]] = {
    torch_cls: table.TI_CLASSES[kind] for kind, torch_cls in table.TORCH_CLASSES.items() if torch_cls is not None
}


def _swish_to_torch(name: str, module: nn.Module) -> nn.Module | None:
    """torchinit's Swish back to torch.nn.SiLU when it is one (fixed beta == 1); otherwise leave it."""
    if getattr(module, "learnable", False) or float(getattr(module, "beta", 0.0)) != 1.0:
        return None
    return nn.SiLU(inplace=bool(getattr(module, "inplace", False)))


#: The mapping back to plain torch.nn: torchinit activation class -> its torch.nn twin. SquaredReLU and
#: StarReLU have none and stay (reported); Swish becomes SiLU only where it equals it (beta fixed at 1).
TORCH: dict[type[nn.Module], Any] = {
    table.TI_CLASSES[kind]: torch_cls for kind, torch_cls in table.TORCH_CLASSES.items() if torch_cls is not None
}
TORCH[table.TI_CLASSES["swish"]] = _swish_to_torch

def swap_activations(model: nn.Module, mapping: dict | None = None, functional: bool = False,
                     fuse: bool = False) -> SwapReport:
    """Replace the activations of ``model`` in place and return a :class:`SwapReport`.

    Args:
        model: the network (changed in place; swap before ``torch.compile``, scripting or DDP/FSDP wrapping).
        mapping: ``None`` for :data:`DEFAULT` (each torch.nn activation -> its torchinit twin with the same
            settings, PReLU weights and hooks kept, exact types only; and the Hugging Face / timm activation
            classes of :mod:`torchinit.swap.foreign`, known by qualified name and checked on a probe by
            :mod:`torchinit.swap.probe` before they are replaced), :data:`TORCH` to go back, or a dict
            whose keys are classes (exact type; a torch.nn class also matches its torchinit twin), module
            instances, module names or globs (``"layer1.*"``; never activation names) and whose values are
            ``None`` (leave), a class, a module (copied per replaced module), a torchinit activation name,
            or a factory ``f(name, module) -> module | None``. Only the entries given apply. Every module
            that is or looks like an activation and is not replaced is in ``report.left`` with the reason;
            string keys that matched nothing are in ``report.unmatched``.
        functional: also switch functional calls in forwards (``F.relu(x)``, ``torch.relu(x)``, ``x.relu_()``,
            ``F.gelu(x, approximate=...)``; a mapping entry for a module class covers its functional twins),
            with torch.fx where a forward traces and by run-time interception where it does not. With
            :data:`TORCH`, forwards rewritten by an earlier swap are restored.
        fuse: after the swap, rewrite forwards (torch.fx, one module at a time) so that a Linear/ConvNd or
            Hugging Face ``Conv1D`` with a bias followed only by an activation runs as the layer without bias +
            ``torchinit.fused.bias_act`` (the same Parameter objects), and gated MLPs, ``act(gate) * up`` /
            ``chunk(2) + act + mul`` (Llama, Phi-3, T5, timm's SwiGLU/GluMlp...), run as ``swiglu`` /
            ``geglu`` / ``reglu`` (``gated`` for other gates); see :mod:`torchinit.swap.fuse`. Fusions are reported as
            ``how="fused"``, near misses in ``report.unfused``. Undo with ``swap_activations(model, TORCH,
            functional=True)``.

    Raises:
        SwapError: (a ValueError) for a bad mapping (unknown value, a key matching a non-activation module,
            a replacement that is not an activation or changes the output shape), before anything changes.
        SwapError: also for ``fuse=True`` with :data:`TORCH` (fusing is the opposite of going back).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"swap_activations: argument 'model' must be an nn.Module, got {type(model).__name__}")
    to_torch = mapping is TORCH
    if fuse and to_torch:
        raise SwapError("swap_activations: fuse=True cannot be combined with mapping TORCH (which undoes swaps and, "
                        "with functional=True, fusions); call it with fuse=False")
    parsed = Mapping(mapping) if mapping is not None else None
    default = Mapping(DEFAULT, twins=False)  # torchinit modules are left as they are
    report = SwapReport()

    # 1. plan everything (building and validating replacements); the model is not touched
    places, first_path = walk(model)
    plan = plan_modules(places, parsed, default, model)
    report.left.extend(plan.left)
    root_is_activation = (table.is_known_activation_class(type(model)) and
                          ((parsed or default).lookup(("",), type(model), model) or
                           (parsed is None and table.recognise(model) is not None)))
    if root_is_activation:
        report.left.append(Left("", type(model).__name__, "the root module itself cannot be replaced in place"))
    # modules being replaced (and what is inside them) go as a whole: their own calls are not switched
    owners = [model] + [p.module for p in places if not plan.covers(p)]
    rewrites, intercepts, attrs, restores = [], [], [], []
    if functional:
        for owner in owners:
            path = first_path[id(owner)]
            if to_torch and calls.installed_kind(owner) is not None:
                restores.append((owner, path))
                continue
            for site in calls.attribute_sites(owner):
                name = f"{path}:{site.attr}"
                action = calls.resolve(parsed, site.spelling, dict(site.params), name, owner)
                if action.function is None or action.write_back:
                    if action.module is not None or action.write_back:
                        report.left.append(Left(name, site.label, "a function-valued attribute can only be "
                                                "switched to a twin function that works the same way"))
                    elif action.reason and action.reason != "already torchinit":
                        report.left.append(Left(name, site.label, action.reason))
                    continue
                attrs.append((owner, site.attr, site.replacement(action),
                              Replaced((name,), site.label, action.new, "attribute")))
            if not calls.is_candidate_owner(owner):
                continue
            rw = calls.plan_rewrite(owner, path, parsed)
            if rw.why_not:
                intercepts.append((owner, path, rw.why_not))
                continue
            for label, old, action in rw.sites:
                if action.leaves and action.reason != "already torchinit":
                    report.left.append(Left(label, old, action.reason))
            if rw.changes:
                rewrites.append((rw, calls.compile_rewrite(rw)))

    if parsed is not None:  # calls in intercepted forwards are only seen when they run: not judged then
        report.unmatched.extend(unmatched_keys(parsed, [n for p in places for n in p.names],
                                               calls_seen=functional and not intercepts))

    # 2. commit
    report.replaced.extend(commit_modules(plan))
    for owner, attr, fn, record in attrs:
        owner.__dict__[attr] = fn
        report.replaced.append(record)
    for rw, fn in rewrites:
        notes = []
        inspected = calls.inspected_tensors(rw.graph, rw.owner)
        if inspected:  # the trace froze a decision on these tensors: other dtypes/devices switch at run time
            fallback = calls.make_intercepting_forward(rw.owner, rw.path, parsed)
            fn = calls.guarded_forward(fn, fallback, inspected, "fx")
            notes.append(f"the forward reads {', '.join(inspected)} in Python (a dtype check, say): the rewritten "
                         "forward runs while the inputs have its dtype and device, run-time interception otherwise")
        calls.install(rw.owner, fn, rw.hidden)
        for label, old, action in rw.sites:
            if not action.leaves:
                report.replaced.append(Replaced((label,), old, action.new, "fx",
                                                (["in-place result written back"] if action.write_back else [])
                                                + notes))
    for owner, path in restores:
        calls.restore(owner)
        report.restored.append(path)
    for owner, path, why in intercepts:
        fn = calls.make_intercepting_forward(owner, path, parsed)
        calls.install(owner, fn, {})
        report.intercepted.append(Left(path, type(owner).__name__, why))

    # 3. fuse, on the swapped model (fusions are made only where they keep the function; none can fail)
    if fuse:
        done = fusion.fuse_model(model)
        report.replaced.extend(done.fused)
        report.unfused.extend(done.left)
    return report


__all__ = ["swap_activations", "SwapReport", "SwapError", "TORCH", "DEFAULT", "Replaced", "Left"]
