"""One exception type for every user-facing mistake, and the checks that raise it.

`GenlabError` subclasses `ValueError` so callers that already catch ValueError keep working. The CLI prints such
errors as one line (``error: ...``) instead of a traceback. Every numeric argument a user can pass goes through one
of the checks below, so the message always names the parameter.
"""

from __future__ import annotations

import math
import numbers
import operator


class GenlabError(ValueError):
    """Bad input (unknown name, wrong shape, missing or corrupt file, out-of-range value)."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), cut to `limit`."""
    line = next((s.strip() for s in str(error).splitlines() if s.strip()), type(error).__name__)
    return line[:limit]


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None,
              allow_integral_float: bool = False) -> int:
    """`value` as an int in [minimum, maximum], or a GenlabError naming `name`. Booleans are refused; floats such
    as 4.0 only with allow_integral_float (form fields and YAML send those)."""
    kind = "a positive integer" if minimum == 1 and maximum is None else "an integer"
    integer = None
    if not isinstance(value, bool):
        try:
            integer = operator.index(value)  # ints, numpy ints, integer tensors
        except TypeError:
            pass
    if integer is not None:
        value = integer
    elif (allow_integral_float and isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and value == int(value)):
        value = int(value)
    else:
        raise GenlabError(f"{name} must be {kind}, got {value!r}")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise GenlabError(f"{name} must be between {minimum} and {maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise GenlabError(f"{name} must be {kind if minimum == 1 else f'an integer >= {minimum}'}, got {value}")
    if maximum is not None and value > maximum:
        raise GenlabError(f"{name} must be an integer <= {maximum}, got {value}")
    return value


def check_positive_int(value, name: str, allow_integral_float: bool = False) -> int:
    """Return ``value`` as int, or raise a GenlabError naming ``name`` when it is not a positive integer."""
    return check_int(value, name, minimum=1, allow_integral_float=allow_integral_float)


def check_number(value, name: str, minimum: float | None = None, maximum: float | None = None,
                 strict_minimum: bool = False) -> float:
    """`value` as a finite float in the given range, or a GenlabError naming `name` (None, NaN, inf, text and
    booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise GenlabError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise GenlabError(f"{name} must be a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise GenlabError(f"{name} must be {'>' if strict_minimum else '>='} {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise GenlabError(f"{name} must be <= {maximum:g}, got {value:g}")
    return value
