"""Engine results worded in the visitor's language: stop reasons, progress stages, image labels,
tokenizer names. The engine reports codes and numbers; the words live in ``ui/strings``."""
from __future__ import annotations

import re

from ui.i18n import t, tables

_COMPILING = re.compile(r"compiling the decode step \((\d+) tokens\)")
_STAGES = ("tokenizer", "weights", "ready", "components", "pipeline", "generate", "perplexity")


def stop_reason(code: str | None, lang: str) -> str:
    """``eos`` / ``length`` / ``stopped`` → "end of sequence" / "fin de séquence" …"""
    if not code:
        return ""
    key = f"stop.{code}"
    return t(key, lang) if key in tables()["en"] else code


def progress_stage(desc: str, lang: str) -> str:
    """One engine progress description ("tiny/mistral: tokenizer") with its stage translated;
    the model or precision names before the colons are kept."""
    head, sep, stage = (desc or "").rpartition(": ")
    if stage in _STAGES:
        stage = t(f"progress.{stage}", lang)
    else:
        match = _COMPILING.fullmatch(stage)
        if match:
            stage = t("progress.compiling", lang, bucket=int(match.group(1)))
    return head + sep + stage


def image_label(settings, lang: str, seconds: float | None = None) -> str:
    """An image's caption: model, steps, guidance, seed (and the time it took)."""
    from engine.images.imagegen import DEFAULTS

    label = t("img.label", lang, model=DEFAULTS[settings.role].title, steps=settings.steps,
              guidance=float(settings.guidance), seed=settings.seed)
    return t("img.label_seconds", lang, label=label, seconds=seconds) if seconds is not None else label


def tokenizer_label(key: str, lang: str, default: str, vocab_size: int = 0) -> str:
    """The offline tokenizers' names in ``lang``; other tokenizers keep their own name."""
    name = f"tok.label.{key}"
    return t(name, lang, n=vocab_size) if name in tables()["en"] else default
