"""Metadata filters, evaluated to a row mask *before* ranking.

Because the mask goes into the scan, the top-k is taken among matching rows only: whenever `k`
records match, `k` come back (a post-filter on the top-k of everything could return fewer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aios.memory.errors import InvalidRecordError


@dataclass(frozen=True)
class Filter:
    """Which records a search may return; unset fields do not restrict.

    `modality`, `category` and `source` take one value or a list of accepted values; `since` and
    `until` bound the timestamp (inclusive); `min_quality` excludes records without a quality.
    """

    modality: str | Sequence[str] | None = None
    category: str | Sequence[str] | None = None
    source: str | Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_quality: float | None = None

    @classmethod
    def of(cls, value: Filter | Mapping[str, Any] | None) -> Filter | None:
        """Accept a Filter, a dict of its fields, or None (no filter)."""
        if value is None or isinstance(value, Filter):
            return value if value is None or not value.is_empty() else None
        if not isinstance(value, Mapping):
            raise InvalidRecordError(f"filter must be a dict or aios.memory.Filter, got "
                                     f"{type(value).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise InvalidRecordError(f"unknown filter keys {sorted(unknown)}; valid keys are "
                                     f"{', '.join(sorted(names))}")
        built = cls(**value)
        return None if built.is_empty() else built

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def mask(self, table: pa.Table) -> np.ndarray:
        """A boolean array: True for the rows of `table` this filter accepts."""
        keep = pa.array(np.ones(len(table), bool))
        metadata = table.column("metadata")
        for name, column in (("modality", table.column("modality")),
                             ("category", pc.struct_field(metadata, "category")),
                             ("source", pc.struct_field(metadata, "source"))):
            wanted = getattr(self, name)
            if wanted is not None:
                values = [wanted] if isinstance(wanted, str) else list(wanted)
                keep = pc.and_(keep, pc.is_in(column, value_set=pa.array(values, pa.string())))
        stamps = table.column("timestamp")
        if self.since is not None:
            keep = pc.and_(keep, pc.greater_equal(stamps, _utc(self.since, "since")))
        if self.until is not None:
            keep = pc.and_(keep, pc.less_equal(stamps, _utc(self.until, "until")))
        if self.min_quality is not None:
            quality = pc.struct_field(metadata, "quality")
            keep = pc.and_(keep, pc.fill_null(
                pc.greater_equal(quality, pa.scalar(float(self.min_quality), pa.float32())),
                False))
        return np.asarray(pc.fill_null(keep, False).to_numpy(zero_copy_only=False), bool)


def _utc(value: Any, name: str) -> pa.Scalar:
    if not isinstance(value, datetime):
        raise InvalidRecordError(f"filter {name} must be a datetime, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return pa.scalar(value, pa.timestamp("us", tz="UTC"))
