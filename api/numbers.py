"""Numbers that arrive as text (headers, query strings, cursors): ASCII digits only, in range.

Python's own checks are too generous for input: `str.isdigit()` is true for '²' and '٣', `int()`
takes '٣' (3), '１' (1), ' 1', '+1' and '1_0' but raises on '²', and pydantic's int takes
'+1', ' 1', '1_0' and '1.0'. Every number the API reads from text goes through `ascii_int` (or
`AsciiDigits`, for parameters pydantic converts), so a number is `[0-9]+` and nothing else, and
it is range-checked before any SQL sees it (PostgreSQL's integer and bigint overflow otherwise).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BeforeValidator

from api.errors import ValidationFailed
from api.schemas import BIGINT_MAX, INT_MAX

__all__ = ["BIGINT_MAX", "INT_MAX", "AsciiDigits", "ascii_int", "parse_ascii_int"]

# Longer than any bigint, leading zeros allowed: past it a text is refused before int() reads it.
MAX_DIGITS = 32
_ASCII_DIGITS = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")


def ascii_int(text: str, *, low: int, high: int) -> int | None:
    """`text` as an integer when it is ASCII digits only and within [low, high], else None."""
    if not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_ascii_int(text: str, *, loc: list[str], low: int, high: int, what: str) -> int:
    """`text` as an integer in [low, high], or a 422 naming `loc` and saying `what` it must be."""
    value = ascii_int(text, low=low, high=high)
    if value is None:
        raise ValidationFailed(
            [{"loc": loc, "msg": f"must be {what}: ASCII digits, {low} to {high}", "type": "value"}]
        )
    return value


def _ascii_digits_only(value: Any) -> Any:
    if isinstance(value, str) and not _ASCII_DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in ASCII digits")
    return value


# For an int query or header parameter: pydantic still converts it and the parameter's own
# ge/le bound it; this refuses what pydantic would stretch. Put it after the Query/Field that
# holds ge/le (`Annotated[int, Query(ge=1), AsciiDigits]`): before it, pydantic's JSON schema
# shows them as "ge"/"le" instead of "minimum"/"maximum".
AsciiDigits = BeforeValidator(_ascii_digits_only)
