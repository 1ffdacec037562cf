"""User-facing errors.

The engine raises :class:`UserError` with a message *key* and parameters; the UI
translates the key (see ``ui/strings``) into the user's language and shows it with
``gr.Error`` / ``gr.Warning``. Nothing in the engine formats UI text itself.
"""
from __future__ import annotations

import errno
import socket


class UserError(Exception):
    """An error a student or teacher can act on (never shown as a traceback)."""

    def __init__(self, key: str, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(f"{key}: {params}")


def _walk(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def as_user_error(exc: BaseException, model_id: str = "") -> UserError | None:
    """Map library exceptions (Hub, network, memory) to a :class:`UserError`; None if unknown."""
    try:
        from huggingface_hub import errors as hf_errors
    except ImportError:  # pragma: no cover - huggingface_hub is a hard dependency
        hf_errors = None
    import torch

    for e in _walk(exc):
        if isinstance(e, UserError):
            return e
        name = type(e).__name__
        text = str(e)
        if hf_errors is not None:
            if isinstance(e, hf_errors.GatedRepoError) or "gated repo" in text.lower():
                return UserError("err.gated", model=model_id)
            if isinstance(e, hf_errors.RepositoryNotFoundError):
                return UserError("err.unknown_model", model=model_id)
            if isinstance(e, (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled)):
                return UserError("err.not_cached", model=model_id)
        if isinstance(e, torch.OutOfMemoryError) or "out of memory" in text.lower():
            return UserError("err.oom", model=model_id)
        if isinstance(e, (socket.gaierror, ConnectionError, TimeoutError)) or name in {
            "ConnectError", "ConnectTimeout", "ReadTimeout",
        }:
            return UserError("err.not_cached", model=model_id)
        if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.ECONNREFUSED):
            return UserError("err.not_cached", model=model_id)
        if isinstance(e, OSError) and (
            "is not a local folder and is not a valid model identifier" in text
            or "is not a valid model identifier" in text
        ):
            return UserError("err.unknown_model", model=model_id)
        if isinstance(e, OSError) and ("offline" in text.lower() or "couldn't connect" in text.lower()
                                       or "cannot find the requested files" in text.lower()):
            return UserError("err.not_cached", model=model_id)
    return None
