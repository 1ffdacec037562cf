"""Keep secrets on the server: API keys, tokens and URL credentials removed from any text.

Used on every message built from a remote server's answer or an exception, on what About and
``/config`` show of an endpoint, and on every log record (:func:`install_log_redaction`).
"""
from __future__ import annotations

import html
import logging
import os
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
SECRET_ENV = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$")
_PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    # scheme://user:password@host → scheme://***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@"), r"\1" + MASK + "@"),
    # Authorization: Bearer …, "Authorization": "Basic …", api-key / x-api-key headers echoed by a proxy
    (re.compile(r"(?i)(\"?(?:proxy-)?authorization\"?\s*[:=]\s*\"?)(?:bearer|basic|token)?\s*[^\s\"',}]+"),
     r"\1" + MASK),
    (re.compile(r"(?i)(\"?(?:x-)?api[-_]?key\"?\s*[:=]\s*\"?)[^\s\"',}]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1" + MASK),
    # well-known token shapes: OpenAI-style sk-…, Hugging Face hf_…, GitHub, Slack, AWS access keys
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{8,}"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
    # ?api_key=… / &token=… in query strings
    (re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|secret)=)[^&\s\"']+"), r"\1" + MASK),
)


def _secret_values() -> list[str]:
    """The values of secret-looking environment variables (long enough not to match by chance)."""
    return sorted({v for k, v in os.environ.items() if SECRET_ENV.search(k.upper()) and len(v) >= 6},
                  key=len, reverse=True)


def redact(text: object) -> str:
    """``text`` with every credential replaced by ``***``."""
    out = str(text)
    for value in _secret_values():
        if value in out:
            out = out.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        out = pattern.sub(repl, out)
    return out


def redact_url(url: str | None) -> str:
    """An endpoint URL as it may be shown: no ``user:password@``, no secret query values."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]{0,2000}>", re.I | re.S)


def remote_text(body: str | bytes, limit: int = 200) -> str:
    """A remote server's error body as short plain text: tags dropped, entities decoded, secrets
    removed, whitespace collapsed, at most ``limit`` characters. Escape it where it is shown."""
    if isinstance(body, bytes):
        body = body[: 64 * 1024].decode("utf-8", errors="replace")
    text = body[: 64 * 1024]
    if "<" in text and ">" in text:
        text = html.unescape(_TAG.sub(" ", text))
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ logs
def redact_record(record: logging.LogRecord) -> None:
    if getattr(record, "_genai_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format
        message = str(record.msg)
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._genai_redacted = True


_installed = False


def install_log_redaction() -> None:
    """Every log record created from now on is redacted, whichever logger or handler writes it
    (uvicorn, httpx and Gradio install their own handlers, so a handler filter would miss some)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
