"""Rules: which parameters a scheme applies to.

A :class:`Rule` selects parameters by the owning module's type (``isinstance``, a class name, or a
predicate ``fn(module) -> bool`` such as :func:`~torchinit.init.is_norm_layer`), by a dotted-name pattern (glob, or regex with a ``re:`` prefix or a compiled pattern) matched against the
module's qualified name *and* the parameter's qualified name, and by the parameter's own name
(``params="weight_hh*"``). Rules apply in order; for each parameter the last rule that covers it wins.

What a rule does to what it selects
-----------------------------------
* Selected *explicitly* (``params=`` matched, or ``names`` matched the parameter's full name, e.g.
  ``"*.bias"`` or ``"head.*"``): the scheme is applied to the parameter as it is.
* Selected through its module (``layers=``, ``names`` matching the module, or a rule with no filters):
  weights get the scheme (recurrent weights of RNN/LSTM/GRU: orthogonal per gate for random-matrix
  schemes); biases get ``bias`` (default ``"zeros"``; ``bias=None`` leaves them to other rules);
  normalisation weights get their reset (``norm_reset``: 1, or 0 for norms that scale by ``1 + weight``
  such as Gemma's RMSNorm) for matrix schemes and for rules without filters, else the scheme (so
  ``Rule(layers=nn.BatchNorm2d, scheme="zeros")`` zeroes them); parameters of unknown roles (a ViT's
  ``cls_token``, a layer-scale ``gamma``) are not covered: name them explicitly.
* A bias-only scheme (``prior_prob``) selected through a module applies to its biases only; given a
  weight explicitly it is an error.

A parameter shared by several modules (tied embeddings: GPT-2's ``wte`` and ``lm_head``) is one parameter:
a rule selecting it through any of its names covers it, and it is initialised and reported once.

A Rule's keyword arguments other than its own (``layers``, ``names``, ``params``, ``scheme``, ``bias``,
``label``) go to the scheme; a misspelt Rule keyword (``layer=``, ``schem=``) is an error naming it.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from torch import nn

from .fans import ParamInfo
from .schemes import Scheme, SchemeDef, resolve_scheme, scheme_def

_RULE_KEYWORDS = ("layers", "names", "params", "scheme", "bias", "label")
_LABEL_WIDTH = 36

__all__ = ["Rule", "Resolved"]


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


def _check_keywords(scheme: Any, kwargs: dict[str, Any]) -> None:
    """A keyword the scheme does not take, close to one of Rule's own, is a misspelt Rule keyword."""
    try:
        accepted = set(scheme_def(scheme, "Rule").params)
    except (ValueError, TypeError):
        accepted = set()  # an unknown scheme is reported by apply_init with the others
    if isinstance(scheme, Scheme):
        accepted |= set(scheme.kwargs)
    for k in kwargs:
        if k in accepted:
            continue
        close = difflib.get_close_matches(k, _RULE_KEYWORDS, n=1, cutoff=0.6)
        if close:
            raise TypeError(f"Rule: unexpected keyword argument {k!r}; did you mean {close[0]!r}? (Rule's keywords: "
                            f"{', '.join(_RULE_KEYWORDS)}; others go to the scheme)")


def _short(text: str, width: int = _LABEL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class Rule:
    """Apply ``scheme`` (a name, alias, :class:`Scheme` or init function ``f(tensor, ...)``) with ``kwargs``
    to the parameters selected by ``layers`` (types, class names or predicates ``fn(module) -> bool``),
    ``names`` (glob or ``re:`` regex over module and parameter qualified names) and ``params`` (glob over
    the parameter's own name). All given filters must match. ``bias`` is the scheme for biases of modules
    selected as a whole; ``label`` names the rule in reports (default: its filters, shortened).
    """

    def __init__(self, layers: type | str | Callable[[nn.Module], bool] | Sequence[Any] | None = None,
                 names: str | re.Pattern[str] | Sequence[str | re.Pattern[str]] | None = None,
                 params: str | Sequence[str] | None = None, scheme: Any = "auto",
                 bias: str | Scheme | None = "zeros", label: str | None = None, **kwargs: Any) -> None:
        _check_keywords(scheme, kwargs)
        if label is not None and not isinstance(label, str):
            raise TypeError(f"Rule: label must be a string, got {label!r}")
        self.description = label
        self.origin: str | None = None  # the preset that made this rule, if any
        self.layers = tuple(_as_list(layers))
        for t in self.layers:
            if not (isinstance(t, str) or (isinstance(t, type) and issubclass(t, nn.Module))
                    or (callable(t) and not isinstance(t, type))):
                raise TypeError(f"Rule: layers must be nn.Module subclasses, class names or predicates fn(module) -> "
                                f"bool, got {t!r}")
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

    @staticmethod
    def _layer_name(t: Any) -> str:
        return t if isinstance(t, str) else getattr(t, "__name__", repr(t))

    def __repr__(self) -> str:
        if self.description is not None:
            return f"Rule({self.description!r})"
        parts = []
        if self.layers:
            parts.append("layers=" + ",".join(self._layer_name(t) for t in self.layers))
        if self.names:
            parts.append("names=" + ",".join(n.pattern if isinstance(n, re.Pattern) else n for n in self.names))
        if self.params:
            parts.append("params=" + ",".join(self.params))
        parts.append(f"scheme={self.scheme!r}")
        parts.extend(f"{k}={v!r}" for k, v in self.kwargs.items())
        return "Rule(" + ", ".join(parts) + ")"

    def label(self, index: int) -> str:
        """A short label for reports: ``#index`` and the rule's label or filters (at most ~40 characters)."""
        if self.description is not None:
            return f"#{index} " + _short(self.description)
        filt = []
        if self.layers:
            filt.append(",".join(self._layer_name(t) for t in self.layers))
        if self.names:
            shown = [n.pattern if isinstance(n, re.Pattern) else n for n in self.names]
            filt.append(shown[0] + (f" +{len(shown) - 1}" if len(shown) > 1 else ""))
        if self.params:
            filt.append("." + ",".join(self.params))
        return f"#{index}" + (" " + _short(" ".join(filt)) if filt else " all")

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
            elif isinstance(t, type):
                if isinstance(m, t):
                    return True
            elif t(m):
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
        role = info.role
        if sdef.bias_only and role not in ("bias", "norm_bias"):
            if how == "explicit" and role in ("weight", "norm_weight"):
                raise ValueError(f"{self!r}: {sdef.name} is a bias-only scheme and {info.name} is a weight; select the "
                                 f"biases, e.g. Rule(..., params='bias', scheme={sdef.name}(...))")
            if how != "explicit":
                return None  # a bias-only scheme through its module: the biases only
        if sdef.bias_only and how != "explicit":
            return Resolved(sdef, kw, "bias")
        if how == "explicit":
            return Resolved(sdef, kw, "explicit")
        if sdef.whole_module and role != "other":
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
                reset, rkw = resolve_scheme("norm_reset", {}, "apply_init")
                return Resolved(reset, rkw, "norm")
            return Resolved(sdef, kw, "norm")
        return None
