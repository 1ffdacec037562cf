"""Turn engine errors into translated ``gr.Error`` / ``gr.Warning`` messages (never a traceback)."""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from engine.errors import UserError, as_user_error
from ui.i18n import request_lang, t

log = logging.getLogger(__name__)


def _find_request(args: tuple, kwargs: dict) -> gr.Request | None:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, gr.Request):
            return value
    return None


def to_gr_error(exc: BaseException, request: gr.Request | None = None) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    lang = request_lang(request)
    user = as_user_error(exc)
    if user is None:
        log.exception("unexpected error in an event handler", exc_info=exc)
        return gr.Error(t("err.unexpected", lang, detail=f"{type(exc).__name__}: {exc}"[:300]))
    return gr.Error(t(user.key, lang, **user.params))


def warn(key: str, request: gr.Request | None = None, **params: object) -> None:
    gr.Warning(t(key, request_lang(request), **params))


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


__all__ = ["UserError", "guard", "to_gr_error", "warn"]
