"""MSLS's CSV metadata (``postprocessed.csv``, ``raw.csv``, ``subtask_index.csv``): tables
of strings with columns found by any of their usual header names, and typed columns with
one-line errors naming the file, column and row."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sfrs.errors import DataError

# Logical column -> accepted header names (compared case-insensitively).
COLUMNS: Dict[str, Tuple[str, ...]] = {
    "key": ("key",),
    "easting": ("easting", "utm_easting", "utm_east", "east"),
    "northing": ("northing", "utm_northing", "utm_north", "north"),
    "night": ("night",),
    "view_direction": ("view_direction", "qualitative_view_direction"),
    "pano": ("pano",),
}
_TRUE = ("true", "1", "yes", "t", "1.0")
_FALSE = ("false", "0", "no", "f", "0.0")


@dataclass(frozen=True)
class Table:
    """A CSV file: header and rows of strings (the unnamed pandas index column included)."""

    path: Path
    header: List[str]
    rows: List[List[str]]

    def find(self, names: Sequence[str]) -> Optional[int]:
        lowered = [h.strip().lower() for h in self.header]
        for name in names:
            if name.lower() in lowered:
                return lowered.index(name.lower())
        return None

    def columns(self, logical: Sequence[str]) -> Dict[str, int]:
        """Logical column name -> index; DataError listing every missing column."""
        found = {name: self.find(COLUMNS.get(name, (name,))) for name in logical}
        missing = [name for name, index in found.items() if index is None]
        if missing:
            present = ", ".join(h for h in self.header if h.strip()) or "none"
            raise DataError(
                f"{self.path}: missing column(s) {', '.join(repr(m) for m in missing)} (found: {present})"
            )
        return {name: int(index) for name, index in found.items()}

    def values(self, index: int) -> List[str]:
        return [row[index].strip() for row in self.rows]


def read_csv(path: Path, what: str) -> Table:
    if not path.is_file():
        raise DataError(f"{path}: missing ({what})")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file (no header row)")
            rows = []
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}: line {line} has {len(row)} fields but the header has {len(header)}")
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({' '.join(str(exc).split())})") from None
    return Table(path, header, rows)


def booleans(table: Table, index: int) -> np.ndarray:
    result = np.empty(len(table.rows), dtype=bool)
    for i, value in enumerate(table.values(index)):
        lowered = value.lower()
        if lowered in _TRUE:
            result[i] = True
        elif lowered in _FALSE:
            result[i] = False
        else:
            raise DataError(
                f"{table.path}: column '{table.header[index].strip()}' row {i + 1} is '{value}', not a boolean"
            )
    return result


def floats(table: Table, index: int) -> np.ndarray:
    result = np.empty(len(table.rows), dtype=np.float64)
    for i, value in enumerate(table.values(index)):
        try:
            result[i] = float(value)
        except ValueError:
            result[i] = math.nan
        if not math.isfinite(result[i]):
            raise DataError(
                f"{table.path}: column '{table.header[index].strip()}' row {i + 1} is '{value}', not a finite number"
            )
    return result


def aligned(table: Table, reference_keys: List[str], reference: Path, values: np.ndarray) -> np.ndarray:
    """``values`` (one per row of ``table``) reordered to the rows of ``reference``: by key
    when ``table`` has a ``key`` column, else by position (equal row counts required)."""
    key_index = table.find(COLUMNS["key"])
    if key_index is None:
        if len(table.rows) != len(reference_keys):
            raise DataError(
                f"{table.path}: {len(table.rows):,} rows but {reference.name} has {len(reference_keys):,} "
                f"(rows are matched by position when there is no 'key' column)"
            )
        return values
    position = {key: i for i, key in enumerate(table.values(key_index))}
    order = np.empty(len(reference_keys), dtype=np.int64)
    for i, key in enumerate(reference_keys):
        if key not in position:
            raise DataError(f"{table.path}: no row for key '{key}' of {reference}")
        order[i] = position[key]
    return values[order]
