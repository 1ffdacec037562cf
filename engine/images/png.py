"""An image's prompt and settings in its PNG metadata: written with every image made here, read
back (untrusted) when a student uploads one, so that it can be made again."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.models.catalog import IMAGE_ROLES
from engine.errors import UserError
from engine.images.imagegen import ImageResult, ImageSettings
from engine.limits import current as current_limits

METADATA_KEY = "genai-class-demo"


def save_png(result: ImageResult, folder: Path, name: str) -> Path:
    info = PngInfo()
    info.add_text(METADATA_KEY, json.dumps(asdict(result.settings), ensure_ascii=False))
    s = result.settings
    info.add_text("parameters", f"{s.prompt}\nNegative prompt: {s.negative_prompt}\nSteps: {s.steps}, "
                                f"CFG scale: {s.guidance}, Seed: {s.seed}, Size: {s.width}x{s.height}, Model: {s.model}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    result.image.save(path, format="PNG", pnginfo=info)
    result.path = path
    return path


def read_png_settings(path: str | Path) -> ImageSettings:
    """The settings stored in a PNG made here, read from its text chunks without decoding a
    pixel: the file's size and the image's dimensions are checked first."""
    raw = read_png_text(path, METADATA_KEY)
    if not raw:
        raise UserError("img.err.no_metadata")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UserError("img.err.no_metadata") from exc
    if not isinstance(data, dict) or data.get("role") not in IMAGE_ROLES:
        raise UserError("img.err.no_metadata")
    return checked_settings(data)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SETTINGS_RANGES = {"steps": (1, 1000), "width": (16, 8192), "height": (16, 8192), "seed": (0, 2**63 - 1),
                   "max_sequence_length": (1, 4096)}


def png_dimensions(path: str | Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR), before Pillow reads anything else."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise UserError("img.err.no_metadata")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def read_png_text(path: str | Path, key: str) -> str | None:
    """One text chunk of a PNG (those before the image data, where :func:`save_png` writes
    them). The pixels are never decoded (no ``load()``): a 13000×13000 PNG costs nothing."""
    limits = current_limits()
    size = Path(path).stat().st_size
    if size > limits.upload_bytes:
        raise UserError("safety.err.file_too_big", size=size / 1e6, limit=limits.upload_bytes / 1e6)
    width, height = png_dimensions(path)
    if width * height > limits.upload_pixels:
        raise UserError("safety.err.png_too_large", width=width, height=height,
                        limit=f"{limits.upload_pixels / 1e6:g}")
    try:
        with Image.open(path, formats=["PNG"]) as img:
            value = img.info.get(key)  # .text would load() the whole image to find late chunks
    except Exception as exc:  # noqa: BLE001 - truncated or not a PNG (Pillow raises several types)
        raise UserError("img.err.no_metadata") from exc
    return value if isinstance(value, str) else None


def checked_settings(data: dict) -> ImageSettings:
    """:class:`ImageSettings` from untrusted metadata: every field of the right type and range."""
    known = {k: v for k, v in data.items() if k in ImageSettings.__dataclass_fields__}
    for name in ("role", "model", "prompt", "negative_prompt"):
        value = known.get(name, "")
        if not isinstance(value, str) or len(value) > max(300, current_limits().image_prompt_chars):
            raise UserError("safety.err.png_settings", field=name)
    for name, (lo, hi) in SETTINGS_RANGES.items():
        value = known.get(name)
        if value is None and name == "max_sequence_length":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise UserError("safety.err.png_settings", field=name)
    guidance = known.get("guidance", 0.0)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0 <= guidance <= 100:
        raise UserError("safety.err.png_settings", field="guidance")
    return ImageSettings(**known)
