"""The report apply_init returns: one row per initialised parameter (a tied parameter once, with its other
names), the parameters left untouched, the rules that matched nothing and the presets' notes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["ReportRow", "InitReport"]


@dataclass(frozen=True)
class ReportRow:
    """How one parameter was initialised."""

    name: str
    shape: tuple[int, ...]
    layer: str
    rule: str
    scheme: str
    fan_in: int | None
    fan_out: int | None
    gain: float | None
    activation: str | None
    std: float | None
    sampled: bool  # False for meta tensors: planned, not written
    tied: tuple[str, ...] = ()  # the parameter's other names (tied/shared): initialised once, under ``name``


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}"


class InitReport:
    """Rows (``report.rows``), untouched parameters (``report.untouched``: name, shape, layer), the labels of
    rules that matched nothing (``report.unmatched``), notes (``report.notes``: what presets skipped and
    why) and a table. After a data-dependent scheme, ``report.data_report`` is that scheme's own report."""

    def __init__(self, rows: list[ReportRow], untouched: list[tuple[str, tuple[int, ...], str]], seed: int | None = None,
                 notes: list[str] | None = None, unmatched: list[str] | None = None):
        self.rows = rows
        self.untouched = untouched
        self.seed = seed
        self.notes = list(notes or [])
        self.unmatched = list(unmatched or [])
        self.data_report: Any = None

    def __iter__(self) -> Iterator[ReportRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> ReportRow:
        for r in self.rows:
            if r.name == name or name in r.tied:
                return r
        raise KeyError(f"InitReport: no initialised parameter named {name!r}")

    @property
    def planned_only(self) -> bool:
        """True when nothing was sampled (a model on the meta device)."""
        return bool(self.rows) and not any(r.sampled for r in self.rows)

    def to_dicts(self) -> list[dict[str, object]]:
        """The rows as plain dicts (for logging or JSON)."""
        return [dict(r.__dict__) for r in self.rows]

    def __str__(self) -> str:
        header = ("parameter", "shape", "rule", "scheme", "fan_in", "fan_out", "gain", "std")
        body = []
        for r in self.rows:
            gain = _fmt(r.gain)
            if r.activation and r.gain is not None:
                gain += f" ({r.activation})"
            tied = f" (= {', '.join(r.tied)})" if r.tied else ""
            body.append((r.name + tied + ("" if r.sampled else " [planned]"), "x".join(map(str, r.shape)), r.rule, r.scheme,
                         _fmt(r.fan_in, 8), _fmt(r.fan_out, 8), gain, _fmt(r.std)))
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [line(header), line(tuple("-" * w for w in widths))]
        out += [line(row) for row in body]
        title = f"InitReport: {len(self.rows)} parameters initialised" + (f" (seed {self.seed})" if self.seed is not None else "")
        out.insert(0, title)
        if self.untouched:
            out.append(f"untouched ({len(self.untouched)}): no rule covers these")
            out += [f"  {n}  {'x'.join(map(str, s))}  ({layer})" for n, s, layer in self.untouched]
        else:
            out.append("untouched: none")
        if self.unmatched:
            out.append(f"rules matching nothing ({len(self.unmatched)}): " + "; ".join(self.unmatched))
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"InitReport({len(self.rows)} initialised, {len(self.untouched)} untouched)"
