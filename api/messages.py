"""How user input is quoted in error messages: briefly, and never raising while doing so."""

from __future__ import annotations

import json
from typing import Any


def show_value(value: Any, limit: int = 60) -> str:
    """Renders a value briefly for an error message (JSON where possible)."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError):  # huge integers, mixed key types, cycles
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
