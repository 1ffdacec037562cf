"""One place for every UI string: merges ``ui/strings/*.py`` and builds ``gr.I18n``.

Components get ``I18N("key")`` (translated in the browser by Gradio). Messages produced
server-side (errors, warnings, Markdown built from results) use :func:`t` with the language
of the request: ``--lang`` if forced, else the header's language switch (the ``genai_lang``
cookie that ``assets/header.js`` sets), else the browser's ``Accept-Language``. :func:`t`
formats numbers the language's way (:mod:`ui.fmt`).
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

import gradio as gr

import ui.strings as _strings_pkg
from ui.fmt import format_text

LANGS = ("en", "fr")
LANG_COOKIE = "genai_lang"  # set by the header's FR / EN switch (assets/header.js)
_forced_lang: str | None = None


@lru_cache(maxsize=1)
def tables() -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {lang: {} for lang in LANGS}
    for mod_info in pkgutil.iter_modules(_strings_pkg.__path__):
        mod = importlib.import_module(f"ui.strings.{mod_info.name}")
        en, fr = getattr(mod, "EN"), getattr(mod, "FR")
        missing = set(en) ^ set(fr)
        if missing:
            raise KeyError(f"ui/strings/{mod_info.name}.py: keys not in both languages: {sorted(missing)}")
        for key in en:
            if key in merged["en"]:
                raise KeyError(f"duplicate UI string key {key!r} in ui/strings/{mod_info.name}.py")
        merged["en"].update(en)
        merged["fr"].update(fr)
    return merged


def set_forced_lang(lang: str | None) -> None:
    global _forced_lang
    _forced_lang = lang if lang in LANGS else None


def forced_lang() -> str | None:
    return _forced_lang


def build_i18n() -> gr.I18n:
    """The ``gr.I18n`` given to ``launch``. With ``--lang`` forced, every locale gets that table."""
    tab = tables()
    if _forced_lang:
        forced = tab[_forced_lang]
        return gr.I18n(en=forced, fr=forced, de=forced, es=forced, it=forced)
    return gr.I18n(en=tab["en"], fr=tab["fr"])


_I18N: gr.I18n | None = None


def I18N(key: str):  # noqa: N802 - reads like a constructor at call sites
    """A translatable string for a component label/value (resolved in the browser)."""
    global _I18N
    if key not in tables()["en"]:
        raise KeyError(f"unknown UI string key {key!r}")
    if _I18N is None:
        _I18N = gr.I18n(en=tables()["en"], fr=tables()["fr"])
    return _I18N(key)


def _header(request: gr.Request | None, name: str) -> str:
    if request is None:
        return ""
    try:
        return request.headers.get(name, "") or ""
    except Exception:  # noqa: BLE001 - a request without headers (API call)
        return ""


def cookie_lang(request: gr.Request | None) -> str | None:
    """The language chosen with the header's switch (its cookie), if any."""
    for part in _header(request, "cookie").split(";"):
        name, _, value = part.strip().partition("=")
        if name == LANG_COOKIE and value.strip() in LANGS:
            return value.strip()
    return None


def request_lang(request: gr.Request | None) -> str:
    """The language to use for server-side text: forced, else the switch's, else the browser's first choice."""
    if _forced_lang:
        return _forced_lang
    chosen = cookie_lang(request)
    if chosen:
        return chosen
    header = _header(request, "accept-language")
    for part in header.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "en"


def t(key: str, lang: str = "en", **params: object) -> str:
    """The string ``key`` in ``lang``, its parameters filled in with the language's number formats."""
    table = tables().get(lang, tables()["en"])
    text = table.get(key) or tables()["en"].get(key) or key
    try:
        return format_text(text, lang, **params)
    except (KeyError, IndexError, ValueError, TypeError):
        return text
