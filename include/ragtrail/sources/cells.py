"""One table cell as a JSON-safe value (:func:`plain`) or as text (:func:`cell_text`), whatever the file format.

Example::

    cell_text(1.0), cell_text("1"), plain(float("nan"))  # "1", "1", None
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

# Cell types with a fixed conversion, tried in order after None, scalars and floats.
_CONVERT = (
    (datetime | date | time, lambda v: v.isoformat()),
    (Decimal, str),
    (bytes, lambda v: v.decode("utf-8", errors="replace")),
    (dict, lambda v: {str(k): plain(x) for k, x in v.items()}),
    (list | tuple | set, lambda v: [plain(x) for x in v]),
)


def plain(value: Any) -> Any:
    """A JSON-safe Python value for one cell: NaN/NA → None, numpy → Python, dates → ISO 8601."""
    try:
        if value is None or type(value).__name__ in ("NAType", "NaTType"):
            return None
        if isinstance(value, bool | str | int):
            return value
        if isinstance(value, float):
            return None if math.isnan(value) or math.isinf(value) else value
        convert = next((fn for kind, fn in _CONVERT if isinstance(value, kind)), None)
        if convert is not None:
            return convert(value)
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return plain(value.tolist())
        return str(value)
    except Exception:  # a cell whose own __str__ fails must not fail the row
        return None


def cell_text(value: Any) -> str | None:
    """A cell as text, the same whatever the file format: ``1``, ``1.0`` and ``"1"`` all give ``"1"``."""
    value = plain(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value).encode("utf-8", "replace").decode("utf-8")
