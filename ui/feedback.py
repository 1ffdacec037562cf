"""Turn engine errors into translated ``gr.Error`` / ``gr.Warning`` messages (never a traceback)."""
from __future__ import annotations

import functools
import html
import inspect
import logging
import re
from typing import Any, Callable

import gradio as gr

from engine.errors import UserError, as_user_error
from engine.runtime.redact import redact
from ui.i18n import request_lang, t

log = logging.getLogger(__name__)


def _find_request(args: tuple, kwargs: dict) -> gr.Request | None:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, gr.Request):
            return value
    return None


_PATH = re.compile(r"(?<![\w/.:])(?:~|/)[\w.~-]+(?:/[\w.~-]+)*")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def escape_text(text: str, markdown: bool = False) -> str:
    """``text`` shown as text: secrets removed, HTML escaped, and for Markdown its syntax too."""
    out = html.escape(redact(text), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", out) if markdown else out


def safe_params(params: dict, markdown: bool = False) -> dict:
    """Message parameters for a toast (Gradio renders its text as HTML) or Markdown: text values
    escaped, secrets removed; numbers untouched (their format specs still apply)."""
    return {k: escape_text(v, markdown) if isinstance(v, str) else v for k, v in params.items()}


def unexpected_detail(exc: BaseException) -> str:
    """What a student sees of an unexpected exception: its type and a short message without
    secrets or server paths (the full traceback goes to the server's log)."""
    text = _PATH.sub("…", redact(f"{type(exc).__name__}: {exc}"))
    return text[:200]


def to_gr_error(exc: BaseException, request: gr.Request | None = None) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    lang = request_lang(request)
    user = as_user_error(exc)
    if user is None:
        log.exception("unexpected error in an event handler", exc_info=exc)
        message = t("err.unexpected", lang, detail=html.escape(unexpected_detail(exc), quote=False))
    else:
        message = t(user.key, lang, **safe_params(user.params))
    # logged above (redacted) when unexpected: Gradio's own traceback print would bypass the redaction
    return gr.Error(message, print_exception=False)


def message(key: str, lang: str, markdown: bool = False, **params: object) -> str:
    """A translated message safe to show in a toast, or in Markdown (parameters escaped)."""
    return t(key, lang, **safe_params(params, markdown))


def error_message(error: BaseException, lang: str, markdown: bool = False) -> str:
    """An error carried by a result (a pane's, a row's) as a translated, escaped message."""
    user = as_user_error(error)
    if user is None:
        return t("err.unexpected", lang, detail=escape_text(unexpected_detail(error), markdown))
    return message(user.key, lang, markdown, **user.params)


def warn(key: str, request: gr.Request | None = None, **params: object) -> None:
    gr.Warning(message(key, request_lang(request), **params))


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for event handlers: any exception becomes a translated ``gr.Error``.

    Keeps the signature (Gradio reads parameter names for the API and injects
    ``gr.Request`` / ``gr.Progress`` from the annotations) and keeps generators streaming.
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001
                raise to_gr_error(exc, _find_request(args, kwargs)) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise to_gr_error(exc, _find_request(args, kwargs)) from exc
    return wrapper


__all__ = ["UserError", "error_message", "escape_text", "guard", "message", "safe_params", "to_gr_error", "warn"]
