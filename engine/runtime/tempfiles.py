"""One managed folder for the files the app writes for download (cards, images, CSVs).

Every tab asks :func:`new_dir` instead of ``tempfile.mkdtemp``: folders live under one root
(``GENAI_TEMP_DIR``, default ``<system temp>/genai-class-demo``), and each new folder first
triggers (at most every ``SWEEP_EVERY_S``) a clean-up that deletes folders older than the
profile's ``temp_age_s`` and then the oldest ones while the total exceeds ``temp_bytes``.
Gradio copies a returned file into its own cache when the event ends (that cache is cleaned
by ``delete_cache``), so a folder is only needed for the few seconds its event runs.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from engine import limits as limits_mod

SWEEP_EVERY_S = 30.0
MIN_AGE_S = 120.0  # a folder this young is never deleted: its event may still be writing or serving it
_lock = threading.Lock()
_last_sweep = 0.0


def root() -> Path:
    path = Path(os.environ.get("GENAI_TEMP_DIR") or Path(tempfile.gettempdir()) / "genai-class-demo")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_dir(prefix: str) -> Path:
    """A fresh folder ``<root>/<prefix>-XXXX`` (``prefix``: ``card``, ``images``, ``quant``…)."""
    _maybe_sweep()
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=root()))


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def sweep(max_age_s: float | None = None, max_bytes: int | None = None, now: float | None = None) -> int:
    """Delete folders older than ``max_age_s``, then the oldest while the total exceeds
    ``max_bytes`` (never one younger than ``MIN_AGE_S``). Returns how many were deleted."""
    limits = limits_mod.current()
    max_age_s = limits.temp_age_s if max_age_s is None else max_age_s
    max_bytes = limits.temp_bytes if max_bytes is None else max_bytes
    now = time.time() if now is None else now
    entries = []
    for child in root().iterdir():
        try:
            entries.append((child.stat().st_mtime, child))
        except OSError:
            continue
    entries.sort()
    deleted = 0
    kept: list[tuple[float, Path, int]] = []
    for mtime, child in entries:
        age = now - mtime
        if age > max(max_age_s, MIN_AGE_S):
            deleted += _remove(child)
        else:
            kept.append((mtime, child, _size(child) if child.is_dir() else child.stat().st_size))
    total = sum(size for _, _, size in kept)
    for mtime, child, size in kept:
        if total <= max_bytes or now - mtime < MIN_AGE_S:
            break
        deleted += _remove(child)
        total -= size
    return deleted


def _remove(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return 1
    except OSError:
        return 0


def _maybe_sweep() -> None:
    global _last_sweep
    with _lock:
        if time.monotonic() - _last_sweep < SWEEP_EVERY_S:
            return
        _last_sweep = time.monotonic()
    sweep()
