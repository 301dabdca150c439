"""The error :func:`~torchinit.init.apply_init` raises for an invalid plan (its own module, so the value kinds
that run module or user code can raise it without importing ``apply``)."""

from __future__ import annotations

__all__ = ["InitError"]


class InitError(ValueError):
    """Raised by apply_init when the plan is invalid; lists every problem found."""

