"""One exception type for every user-facing mistake.

`GenlabError` subclasses `ValueError` so callers that already catch ValueError keep working. The CLI
prints such errors as one line (``error: ...``) instead of a traceback.
"""


class GenlabError(ValueError):
    """Bad input (unknown name, wrong shape, missing or corrupt file, out-of-range value)."""


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as int, or raise a GenlabError naming ``name`` when it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (hasattr(value, "__index__")):
        raise GenlabError(f"{name} must be a positive integer, got {value!r}")
    value = int(value)
    if value <= 0:
        raise GenlabError(f"{name} must be a positive integer, got {value}")
    return value
