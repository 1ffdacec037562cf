"""The structured image prompt of the course: subject and setting, style, lighting, camera,
palette, mood, quality tags — assembled into one editable prompt."""
from __future__ import annotations

FIELDS = ("subject", "setting", "style", "lighting", "camera", "palette", "mood", "quality")

STYLE_PRESETS: dict[str, dict[str, str]] = {
    "photo": {"style": "professional photograph, 35mm film look", "lighting": "soft natural light",
              "camera": "shallow depth of field, 50mm lens, eye level", "quality": "sharp focus, highly detailed"},
    "vhs": {"style": "still frame from a 1990s VHS home video, analog noise, scan lines",
            "lighting": "flat on-camera light", "camera": "slightly tilted handheld shot",
            "palette": "cool cyan and faded blue tones", "quality": "low resolution, chromatic aberration"},
    "watercolor": {"style": "loose watercolor painting on textured paper", "lighting": "bright diffuse daylight",
                   "palette": "soft pastel palette", "quality": "visible brush strokes, paper grain"},
    "poster": {"style": "flat vector illustration, bold shapes, screen-print poster",
               "camera": "centered symmetrical composition", "palette": "limited palette of three colours",
               "quality": "clean edges"},
    "cinematic": {"style": "cinematic film still", "lighting": "golden hour backlight, volumetric haze",
                  "camera": "wide-angle shot, rule of thirds", "palette": "teal and orange grading",
                  "mood": "epic, quiet", "quality": "8k, highly detailed"},
}


def assemble(parts: dict[str, str]) -> str:
    """Non-empty fields in the course's order, comma-separated (palette and mood get their noun)."""
    out = []
    for name in FIELDS:
        value = (parts.get(name) or "").strip().strip(",")
        if not value:
            continue
        if name == "palette" and "palette" not in value and "tone" not in value:
            value += " colour palette"
        if name == "mood" and "mood" not in value and "atmosphere" not in value:
            value += " atmosphere"
        out.append(value)
    return ", ".join(out)


def apply_preset(parts: dict[str, str], preset: str) -> dict[str, str]:
    merged = dict(parts)
    merged.update(STYLE_PRESETS.get(preset, {}))
    return merged
