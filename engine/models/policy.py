"""Which model ids a student may ask for.

By default only the catalog's ids (and the few named presets a tab offers) are accepted: a
student cannot make the server download a repository, evict the class's models or probe its
disk. A teacher who wants the class to try other models starts the app with
``--allow-custom-models`` (or ``GENAI_ALLOW_CUSTOM_MODELS=1``): then any Hub id
(``organisation/name``) is accepted, and a local folder only inside the Hugging Face cache or
the tiny-model folder. The refusal is the same whether a path exists or not, and never names
a server path other than the one typed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from engine.errors import UserError

ENV_FLAG = "GENAI_ALLOW_CUSTOM_MODELS"
HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")
SHOWN_CHARS = 80  # the typed value is echoed back this long at most


def custom_models_allowed() -> bool:
    return os.environ.get(ENV_FLAG, "").strip().lower() in {"1", "true", "yes", "on"}


def set_custom_models_allowed(allowed: bool) -> None:
    os.environ[ENV_FLAG] = "1" if allowed else "0"


def model_roots() -> list[Path]:
    """Folders a local model path may point into when custom models are allowed."""
    from huggingface_hub import constants

    from engine.models.tiny import tiny_root

    return [Path(constants.HF_HUB_CACHE).resolve(), tiny_root().resolve()]


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", ".", "\\")) or "\\" in value or value.count("/") > 1 or ":" in value


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def shown(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"


def check_model_id(value: str, allowed: Iterable[str], *, allow_custom: bool | None = None) -> str:
    """``value`` stripped if a student may use it, else a :class:`UserError` that says why.

    ``allowed``: the ids this field offers (the catalog's, a tab's presets). Beyond those, only
    when custom models are enabled: a Hub id, or a folder inside the model caches.
    """
    value = (value or "").strip()
    if value in set(allowed):
        return value
    if not (custom_models_allowed() if allow_custom is None else allow_custom):
        raise UserError("safety.err.model_not_offered", model=shown(value))
    if looks_like_path(value) or os.path.exists(value):  # from_pretrained reads an existing folder first
        try:
            resolved = Path(value).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            resolved = None
        if resolved is None or not _inside(resolved, model_roots()):
            raise UserError("safety.err.model_path", model=shown(value))
        return str(resolved)
    if not HUB_ID.fullmatch(value) or ".." in value:
        raise UserError("safety.err.model_id", model=shown(value))
    return value
