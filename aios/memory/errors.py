"""Errors of the memory store; each names the problem and the fix.

They subclass `aios.errors.AiosError` so the CLI maps them to exit codes: bad input is a usage
error (2), a damaged or locked store a failure at run time (1).
"""

from __future__ import annotations

from aios.errors import AiosError


class StoreError(AiosError):
    """A store cannot be opened or used: it is damaged, locked, missing or not a store."""


class StoreLockedError(StoreError):
    """Another process holds the store's write lock."""


class CorruptStoreError(StoreError):
    """A file of the store fails its checks (size, checksum, schema): named with the cause."""


class InvalidRecordError(AiosError, ValueError):
    """Records or a query are malformed (wrong dimension, NaN, duplicate id, ...)."""

    exit_code = 2


class RecordNotFoundError(AiosError, KeyError):
    """Ids asked for that the store does not hold."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""
