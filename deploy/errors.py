"""Errors shared by the configuration layer and the embedded stack."""

from __future__ import annotations


class StackError(RuntimeError):
    """A service could not start or stop; the message is one line naming the service and its log."""
