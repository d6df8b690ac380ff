"""Text cells that a spreadsheet will show as text, never run as a formula (the OWASP CSV-injection rule).

Exports carry client-chosen text (file names, above all): a name such as ``=HYPERLINK("http://evil","x").jpg``
or ``@SUM(A1)`` becomes a live formula when the CSV is opened in Excel, LibreOffice or Google Sheets. A cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote, which
spreadsheets hide and treat as "this is text". Numbers are left alone (a negative number is data, not a formula),
so only strings change. The results exports and the CLI's CSV use this one function; it has no dependencies, so
the CLI can import it.
"""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is a string a spreadsheet would read as a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: neutralise(v) for k, v in row.items()}
