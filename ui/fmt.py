"""Numbers, units and plurals written the way each UI language writes them.

English: ``20,004`` · ``0.28 s`` · ``45%`` · ``3.54 × 10⁻⁶``.
French: ``20 004`` (narrow no-break space) · ``0,28 s`` · ``45 %`` · ``3,54 × 10⁻⁶``.

:func:`ui.i18n.t` formats every parameter of a UI string through :class:`LocalFormatter`, so a
string holding ``{seconds:.2f} s`` or ``{n:,}`` comes out right in both languages without the
call site doing anything. Two additions to Python's format specification:

- ``{n:plural|# step|# steps}`` picks the form for ``n`` (French: 0 and 1 are singular) and puts the
  formatted number in place of ``#``;
- ``e`` / ``E`` give ``3.54 × 10⁻⁶`` rather than ``3.54e-06``.
"""
from __future__ import annotations

import math
import numbers
import string

THIN = "\u202f"  # French thousands separator and the space before % (narrow no-break space)
NBSP = "\u00a0"
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _localise(text: str, lang: str) -> str:
    """English digits (``1,234.5``) → the language's (``1 234,5``)."""
    if lang != "fr":
        return text
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", THIN)


def number(value: float | int, lang: str = "en", decimals: int | None = None, group: bool = True) -> str:
    """``12345.678`` → ``12,345.7`` / ``12 345,7``. ``decimals=None``: as many as needed, at most
    3 below 10, 2 below 1,000, then 1 (what a table of measurements needs)."""
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else ("-∞" if value < 0 else "—")
    comma = "," if group else ""
    if decimals is None:
        if float(value).is_integer():
            text = f"{int(value):{comma}d}"
        else:
            places = 3 if abs(value) < 10 else 2 if abs(value) < 1000 else 1
            text = f"{value:{comma}.{places}f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:{comma}.{decimals}f}"
    return _localise(text, lang)


def plain(value: float | int, lang: str = "en") -> str:
    """A number exactly as given (``0.05``, ``1e-05``, ``4,294,967,295``, ``∞``), the language's way:
    for values quoted back to the user, where rounding would misquote them."""
    if isinstance(value, float) and not math.isfinite(value):
        return number(value, lang)
    if float(value).is_integer():
        return number(int(value), lang)
    return _localise(f"{value:,g}", lang)


def seconds(value: float, lang: str = "en", decimals: int = 2) -> str:
    """``0.283`` → ``0.28 s`` / ``0,28 s``."""
    return number(value, lang, decimals) + NBSP + "s"


def percent(fraction: float, lang: str = "en", decimals: int = 0) -> str:
    """``0.456`` → ``46%`` / ``46 %``."""
    text = number(100 * fraction, lang, decimals)
    return text + (THIN + "%" if lang == "fr" else "%")


def scientific(value: float, lang: str = "en", digits: int = 2) -> str:
    """``3.54e-06`` → ``3.54 × 10⁻⁶`` / ``3,54 × 10⁻⁶``; plain notation between 0.01 and 10,000."""
    if value == 0 or not math.isfinite(value):
        return number(value, lang, 0) if value == 0 else number(value, lang)
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10 ** exponent
    if round(abs(mantissa), digits) >= 10:  # 9.999 rounds up to 10.00
        mantissa, exponent = mantissa / 10, exponent + 1
    if exponent == 0:
        return number(mantissa, lang, digits)
    return f"{number(mantissa, lang, digits)} × 10{str(exponent).translate(_SUPERSCRIPT)}"


def plural(n: float, lang: str, one: str, many: str) -> str:
    """``one`` or ``many`` for ``n`` (French treats 0 and 1 as singular, English only 1);
    ``#`` in the chosen form is replaced by the number."""
    singular = abs(n) < 2 if lang == "fr" else n == 1
    form = one if singular else many
    return form.replace("#", number(n, lang)) if "#" in form else form


class LocalFormatter(string.Formatter):
    """``str.format`` whose numbers follow the language (see the module docstring)."""

    def __init__(self, lang: str = "en") -> None:
        self.lang = lang

    def format_field(self, value: object, format_spec: str) -> str:
        if format_spec.startswith("plural|"):
            forms = format_spec.split("|")[1:]
            one, many = (forms + forms)[:2] if forms else ("", "")
            return plural(value if _is_number(value) else 0, self.lang, one, many)
        if not _is_number(value):
            return super().format_field(value, format_spec)
        kind = format_spec[-1:] if format_spec else ""
        if kind in ("e", "E"):
            precision = format_spec[:-1].rsplit(".", 1)
            digits = int(precision[1]) if len(precision) == 2 and precision[1].isdigit() else 2
            return scientific(float(value), self.lang, digits)
        if kind == "%" and self.lang == "fr":
            return _localise(super().format_field(value, format_spec)[:-1], "fr") + THIN + "%"
        if not format_spec and isinstance(value, float):
            return number(value, self.lang)
        return _localise(super().format_field(value, format_spec), self.lang)


def format_text(text: str, lang: str, **params: object) -> str:
    """``text.format(**params)`` with the language's number formats."""
    return LocalFormatter(lang).vformat(text, (), params)


def table(frame, lang: str, decimals: dict[str, int] | None = None):
    """A DataFrame shown with its numbers written the language's way: a pandas ``Styler``, so that
    ``gr.Dataframe`` displays ``20 004`` / ``0,28`` while the data (and the API) keep numbers.

    ``decimals`` fixes a column's decimals; other float columns keep up to 3 (trailing zeros
    dropped), integer columns are grouped. Missing values show as "—"."""
    import pandas as pd

    decimals = decimals or {}

    def formatter(places: int | None):
        def format_cell(value: object) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "—"
            return number(value, lang, places) if _is_number(value) else str(value)
        return format_cell

    def is_numeric(column) -> bool:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            return False
        if pd.api.types.is_numeric_dtype(series):
            return True
        values = [v for v in series if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return bool(values) and all(_is_number(v) for v in values)  # an object column holding numbers

    numeric = [c for c in frame.columns if is_numeric(c)]
    return frame.style.format({c: formatter(decimals.get(c)) for c in numeric})
