"""apply_init's second argument as a list of rules: a scheme name, :class:`~torchinit.init.Scheme` or init
function becomes one rule for all; presets (called or not) are planned for the model and spliced in.

Its own module: it needs both ``rules`` and ``presets``, and ``presets`` builds on ``rules``.
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import nn

from .presets import Preset, is_preset_function
from .rules import Rule
from .schemes import Scheme, resolve_scheme

__all__ = ["normalize_rules"]


def _is_scheme_like(obj: Any) -> bool:
    """A scheme name, a Scheme, or an init function (not a Rule, list, preset or class)."""
    if isinstance(obj, (str, Scheme)):
        return True
    return callable(obj) and not isinstance(obj, (type, Rule, Preset)) and not is_preset_function(obj)


def normalize_rules(scheme_or_rules: Any, scheme_kwargs: dict[str, Any], fn: str = "apply_init",
                    model: nn.Module | None = None) -> tuple[list[Rule], list[str]]:
    """Turn apply_init's second argument into (rules, notes): a name, Scheme or init function becomes one rule
    for all; presets (called or not) are planned for ``model`` and spliced in, their notes collected."""
    if _is_scheme_like(scheme_or_rules):
        resolve_scheme(scheme_or_rules, scheme_kwargs, fn)  # unknown keywords: named here, with the closest
        return [Rule(scheme=scheme_or_rules, **scheme_kwargs)], []
    if isinstance(scheme_or_rules, (Rule, Preset)) or is_preset_function(scheme_or_rules):
        items: Iterable[Any] = [scheme_or_rules]
    elif isinstance(scheme_or_rules, (list, tuple)):
        items = scheme_or_rules
    else:
        raise TypeError(f"{fn}: expected a scheme name, a Scheme, an init function, a Rule, a preset or a list of them, "
                        f"got {type(scheme_or_rules).__name__}")
    if scheme_kwargs:
        if isinstance(scheme_or_rules, Preset) or is_preset_function(scheme_or_rules):
            name = getattr(scheme_or_rules, "name", getattr(scheme_or_rules, "__name__", "preset"))
            raise ValueError(f"{fn}: {sorted(scheme_kwargs)} are not apply_init arguments; a preset's options go in its "
                             f"call: ti.init.{name}({', '.join(f'{k}=...' for k in sorted(scheme_kwargs))})")
        raise ValueError(f"{fn}: scheme keyword arguments {sorted(scheme_kwargs)} apply to a single scheme; put them in each Rule")
    rules: list[Rule] = []
    notes: list[str] = []
    for r in items:
        if is_preset_function(r):
            r = r()
        if isinstance(r, Preset):
            if model is None:
                raise TypeError(f"{fn}: preset {r!r} needs the model")
            plan = r.plan(model)
            rules.extend(plan.rules)
            notes.extend(plan.notes)
        elif isinstance(r, (list, tuple)):
            more, more_notes = normalize_rules(r, {}, fn, model)
            rules.extend(more)
            notes.extend(more_notes)
        elif isinstance(r, Rule):
            rules.append(r)
        elif _is_scheme_like(r):
            rules.append(Rule(scheme=r))
        else:
            raise TypeError(f"{fn}: rule {r!r} is not a Rule, a scheme name, a Scheme, an init function or a preset")
    return rules, notes
