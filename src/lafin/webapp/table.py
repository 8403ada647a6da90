"""The page's landmark table: (68, 2) landmarks as editable rows ``[point, part, x, y]`` and back."""

from __future__ import annotations

from typing import Any

import numpy as np

from lafin.landmarks import NUM_POINTS, POINT_PARTS
from lafin.webapp.errors import DemoError

TABLE_HEADERS = ["point", "part", "x", "y"]


def landmarks_to_table(landmarks: np.ndarray | None) -> list[list[Any]]:
    """(68, 2) -> rows ``[point, part, x, y]`` (x, y rounded to 0.1 px); [] for None."""
    if landmarks is None:
        return []
    return [
        [i, POINT_PARTS[i], round(float(x), 1), round(float(y), 1)]
        for i, (x, y) in enumerate(np.asarray(landmarks, np.float64))
    ]


def table_to_landmarks(table: Any) -> np.ndarray:
    """Rows ``[point, part, x, y]`` (a list of lists, numpy array or pandas DataFrame) -> (68, 2)
    float32, rows placed by their point number. Raises :class:`DemoError` naming a bad row."""
    if table is None:
        raise DemoError("there are no landmarks yet: click Inpaint first")
    if hasattr(table, "values") and hasattr(table, "columns"):  # pandas / polars
        table = table.values.tolist()
    rows = [list(r) for r in (table.tolist() if isinstance(table, np.ndarray) else table)]
    if len(rows) != NUM_POINTS:
        raise DemoError(f"the landmark table must have {NUM_POINTS} rows, it has {len(rows)}")
    out = np.full((NUM_POINTS, 2), np.nan, np.float32)
    for n, row in enumerate(rows):
        if len(row) < 4:
            raise DemoError(f"landmark table row {n + 1} needs the columns point, part, x, y")
        try:
            index = int(float(row[0]))
            x, y = float(row[2]), float(row[3])
        except (TypeError, ValueError):
            raise DemoError(
                f"landmark table row {n + 1}: point, x and y must be numbers, got "
                f"{row[0]!r}, {row[2]!r}, {row[3]!r}"
            ) from None
        if not 0 <= index < NUM_POINTS:
            raise DemoError(f"landmark table row {n + 1}: point must be 0..67, got {index}")
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DemoError(f"landmark table row {n + 1}: x and y must be finite numbers")
        out[index] = (x, y)
    missing = np.flatnonzero(np.isnan(out[:, 0]))
    if missing.size:
        raise DemoError(f"the landmark table has no row for point(s) {', '.join(map(str, missing))}")
    return out
