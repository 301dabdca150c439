"""Rules: which parameters a scheme applies to.

A :class:`Rule` selects parameters by the owning module's type (``isinstance``, or a class name), by a
dotted-name pattern (glob, or regex with a ``re:`` prefix or a compiled pattern) matched against the
module's qualified name *and* the parameter's qualified name, and by the parameter's own name
(``params="weight_hh*"``). Rules apply in order; for each parameter the last rule that covers it wins.

What a rule does to what it selects
-----------------------------------
* Selected *explicitly* (``params=`` matched, or ``names`` matched the parameter's full name, e.g.
  ``"*.bias"`` or ``"head.*"``): the scheme is applied to the parameter as it is.
* Selected through its module (``layers=``, ``names`` matching the module, or a rule with no filters):
  weights get the scheme (recurrent weights of RNN/LSTM/GRU: orthogonal per gate for random-matrix
  schemes); biases get ``bias`` (default ``"zeros"``; ``bias=None`` leaves them to other rules);
  normalisation weights get 1 for matrix schemes and for rules without filters, else the scheme (so
  ``Rule(layers=nn.BatchNorm2d, scheme="zeros")`` zeroes them); parameters of unknown roles (a ViT's
  ``cls_token``, a layer-scale ``gamma``) are not covered: name them explicitly.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from torch import nn

from .fans import ParamInfo
from .schemes import Scheme, SchemeDef, resolve_scheme

__all__ = ["Rule", "Resolved", "normalize_rules"]


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, (list, tuple, set, frozenset)):
        return list(x)
    return [x]


@dataclass(frozen=True)
class Resolved:
    """The scheme one rule gives one parameter."""

    scheme: SchemeDef
    kwargs: dict[str, Any]
    how: str  # "explicit", "weight", "bias", "norm", "recurrent"


class Rule:
    """Apply ``scheme`` (a name, alias or :class:`Scheme`) with ``kwargs`` to the parameters selected by
    ``layers`` (types or class names, ``isinstance``), ``names`` (glob or ``re:`` regex over module and
    parameter qualified names) and ``params`` (glob over the parameter's own name). All given filters must
    match. ``bias`` is the scheme for biases of modules selected as a whole.
    """

    def __init__(self, layers: type | str | Sequence[type | str] | None = None,
                 names: str | re.Pattern[str] | Sequence[str | re.Pattern[str]] | None = None,
                 params: str | Sequence[str] | None = None, scheme: str | Scheme = "auto",
                 bias: str | Scheme | None = "zeros", **kwargs: Any) -> None:
        self.layers = tuple(_as_list(layers))
        for t in self.layers:
            if not (isinstance(t, str) or (isinstance(t, type) and issubclass(t, nn.Module))):
                raise TypeError(f"Rule: layers must be nn.Module subclasses or class names, got {t!r}")
        self.names = tuple(_as_list(names))
        self._patterns = []
        for n in self.names:
            if isinstance(n, re.Pattern):
                self._patterns.append(("re", n))
            elif isinstance(n, str) and n.startswith("re:"):
                try:
                    self._patterns.append(("re", re.compile(n[3:])))
                except re.error as e:
                    raise ValueError(f"Rule: invalid regex in names {n!r}: {e}") from None
            elif isinstance(n, str):
                self._patterns.append(("glob", n))
            else:
                raise TypeError(f"Rule: names must be strings or compiled regexes, got {n!r}")
        self.params = tuple(_as_list(params))
        for p in self.params:
            if not isinstance(p, str):
                raise TypeError(f"Rule: params must be glob strings, got {p!r}")
        self.scheme = scheme
        self.bias = bias
        self.kwargs = dict(kwargs)

    def __repr__(self) -> str:
        parts = []
        if self.layers:
            parts.append("layers=" + ",".join(t if isinstance(t, str) else t.__name__ for t in self.layers))
        if self.names:
            parts.append("names=" + ",".join(n.pattern if isinstance(n, re.Pattern) else n for n in self.names))
        if self.params:
            parts.append("params=" + ",".join(self.params))
        parts.append(f"scheme={self.scheme!r}")
        parts.extend(f"{k}={v!r}" for k, v in self.kwargs.items())
        return "Rule(" + ", ".join(parts) + ")"

    def label(self, index: int) -> str:
        """A short label for reports: ``#index`` and the filters."""
        filt = []
        if self.layers:
            filt.append(",".join(t if isinstance(t, str) else t.__name__ for t in self.layers))
        if self.names:
            filt.append(",".join(n.pattern if isinstance(n, re.Pattern) else n for n in self.names))
        if self.params:
            filt.append("." + ",".join(self.params))
        return f"#{index}" + (" " + " ".join(filt) if filt else " all")

    # -- validation ---------------------------------------------------------------------------
    def validate(self, fn: str = "apply_init") -> tuple[SchemeDef, dict[str, Any], tuple[SchemeDef, dict[str, Any]] | None]:
        """Resolve the scheme and the bias scheme (raises on unknown names or arguments)."""
        sdef, kw = resolve_scheme(self.scheme, self.kwargs, f"{fn}: {self!r}")
        bias = None
        if self.bias is not None:
            bias = resolve_scheme(self.bias, {}, f"{fn}: {self!r} (bias)")
        return sdef, kw, bias

    # -- matching -----------------------------------------------------------------------------
    def _layer_match(self, m: nn.Module) -> bool:
        if not self.layers:
            return True
        for t in self.layers:
            if isinstance(t, str):
                if any(c.__name__ == t for c in type(m).__mro__):
                    return True
            elif isinstance(m, t):
                return True
        return False

    def _name_match(self, name: str) -> bool:
        for kind, pat in self._patterns:
            if kind == "re":
                if pat.fullmatch(name):
                    return True
            elif fnmatch.fnmatchcase(name, pat):
                return True
        return False

    def select(self, info: ParamInfo) -> str | None:
        """``"explicit"``, ``"module"`` or None: how this rule selects ``info``'s parameter."""
        if not self._layer_match(info.module):
            return None
        explicit = False
        if self.params:
            if not any(fnmatch.fnmatchcase(info.local_name, p) for p in self.params):
                return None
            explicit = True
        if self._patterns:
            if self._name_match(info.name):
                explicit = True
            elif not self._name_match(info.module_name):
                return None
        return "explicit" if explicit else "module"

    def resolve(self, info: ParamInfo, sdef: SchemeDef, kw: dict[str, Any],
                bias: tuple[SchemeDef, dict[str, Any]] | None) -> Resolved | None:
        """The scheme this rule gives ``info``'s parameter, or None when it does not cover it."""
        how = self.select(info)
        if how is None:
            return None
        if how == "explicit":
            return Resolved(sdef, kw, "explicit")
        role = info.role
        if sdef.name == "torch_default" and role != "other":
            return Resolved(sdef, kw, "weight")  # the layer's own reset covers its biases and norms too
        if role == "weight":
            if info.recurrent and sdef.random_matrix:
                ortho, okw = resolve_scheme("orthogonal", {}, "apply_init")
                return Resolved(ortho, okw, "recurrent")
            return Resolved(sdef, kw, "weight")
        if role in ("bias", "norm_bias"):
            return Resolved(bias[0], bias[1], "bias") if bias is not None else None
        if role == "norm_weight":
            if sdef.fan_based or not (self.layers or self.names):
                ones, okw = resolve_scheme("ones", {}, "apply_init")
                return Resolved(ones, okw, "norm")
            return Resolved(sdef, kw, "norm")
        return None


def normalize_rules(scheme_or_rules: Any, scheme_kwargs: dict[str, Any], fn: str = "apply_init") -> list[Rule]:
    """Turn apply_init's second argument into a list of rules (a name/Scheme becomes one rule for all)."""
    if isinstance(scheme_or_rules, (str, Scheme)):
        return [Rule(scheme=scheme_or_rules, **scheme_kwargs)]
    if isinstance(scheme_or_rules, Rule):
        items: Iterable[Any] = [scheme_or_rules]
    elif isinstance(scheme_or_rules, (list, tuple)):
        items = scheme_or_rules
    else:
        raise TypeError(f"{fn}: expected a scheme name, a Scheme, a Rule or a list of them, got {type(scheme_or_rules).__name__}")
    if scheme_kwargs:
        raise ValueError(f"{fn}: scheme keyword arguments {sorted(scheme_kwargs)} apply to a single scheme; put them in each Rule")
    rules = []
    for r in items:
        if isinstance(r, (list, tuple)):  # a preset returns a list: splice it in
            rules.extend(normalize_rules(r, {}, fn))
        elif isinstance(r, Rule):
            rules.append(r)
        elif isinstance(r, (str, Scheme)):
            rules.append(Rule(scheme=r))
        else:
            raise TypeError(f"{fn}: rule {r!r} is not a Rule, a scheme name or a Scheme")
    return rules
