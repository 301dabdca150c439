"""The result of ``swap_activations``: what was replaced, where, how, and what was left and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Replaced:
    """One replacement: a module (every path it sits at) or a functional call inside a module's forward."""

    names: tuple[str, ...]  # module paths, or "owner:spelling" for a functional call
    old: str  # e.g. "ReLU(inplace=True)" or "F.relu(inplace=True)"
    new: str  # e.g. "torchinit.nn.ReLU(inplace=True)" or "torchinit.functional.relu"
    how: str  # "module", "fx" (call rewritten with torch.fx), "attribute" (a function-valued attribute) or "fused"
    notes: list[str] = field(default_factory=list)  # carried parameters/hooks, moved devices, ...


@dataclass
class Left:
    """Something ``swap_activations`` considered and did not replace, with the reason."""

    name: str
    what: str
    reason: str


@dataclass
class SwapReport:
    """What ``swap_activations`` did to a model.

    ``replaced``: every replacement (a module shared at several paths is one entry listing them all);
    ``left``: activation modules and functional calls left as they were, with the reason;
    ``intercepted``: modules whose forward could not be rewritten with torch.fx, so their functional
    activation calls are switched while they run (with why tracing failed); ``restored``: modules whose
    rewritten forward was undone (mapping ``TORCH`` with ``functional=True``); ``unfused`` (with
    ``fuse=True``): layer + activation and GLU patterns not fused, with the reason; ``unmatched``: string
    keys of the mapping that matched no module or call (a string key is a module name, not an activation
    name: ``"relu"`` matches a module *named* relu; ``{nn.ReLU: ...}`` matches every ReLU).
    """

    replaced: list[Replaced] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)
    intercepted: list[Left] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    unfused: list[Left] = field(default_factory=list)
    unmatched: list[Left] = field(default_factory=list)

    @property
    def modules(self) -> list[Replaced]:
        """Module replacements only."""
        return [r for r in self.replaced if r.how == "module"]

    @property
    def functional(self) -> list[Replaced]:
        """Functional-call replacements only (rewritten with torch.fx, or function-valued attributes)."""
        return [r for r in self.replaced if r.how in ("fx", "attribute")]

    @property
    def fused(self) -> list[Replaced]:
        """Fusions only (``fuse=True``): layer + activation -> bias_act, GLU patterns -> swiglu/geglu/reglu."""
        return [r for r in self.replaced if r.how == "fused"]

    def __len__(self) -> int:
        return len(self.replaced)

    def __str__(self) -> str:
        lines = [f"swap_activations: {len(self.modules)} module(s) and {len(self.functional)} functional call(s) "
                 f"replaced, {len(self.fused)} fused, {len(self.left)} left, {len(self.intercepted)} forward(s) "
                 "intercepted at run time" + (f", {len(self.unmatched)} mapping key(s) matched nothing"
                                              if self.unmatched else "")]
        for r in self.replaced:
            where = ", ".join(r.names)
            note = f"  [{'; '.join(r.notes)}]" if r.notes else ""
            lines.append(f"  {where}: {r.old} -> {r.new} ({r.how}){note}")
        if self.left:
            lines.append("left:")
            lines.extend(f"  {x.name}: {x.what} ({x.reason})" for x in self.left)
        if self.intercepted:
            lines.append("intercepted (functional activations switched while these forwards run):")
            lines.extend(f"  {x.name or '<root>'}: {x.what} ({x.reason})" for x in self.intercepted)
        if self.unfused:
            lines.append("not fused:")
            lines.extend(f"  {x.name}: {x.what} ({x.reason})" for x in self.unfused)
        if self.unmatched:
            lines.append("mapping keys that matched nothing:")
            lines.extend(f"  {x.name!r}: {x.reason}" for x in self.unmatched)
        if self.restored:
            lines.append("forwards restored: " + ", ".join(n or "<root>" for n in self.restored))
        return "\n".join(lines)


__all__ = ["SwapReport", "Replaced", "Left"]
