"""The comparison card: one PNG sized for slides (1920×1080) and the same content in Markdown."""
from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CARD_SIZE = (1920, 1080)
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu",)


@dataclass
class PaneResult:
    title: str  # e.g. "Base"
    model: str
    output: str
    stats: str


@dataclass
class CardContent:
    prompt: str
    settings: str
    panes: list[PaneResult]
    date: str = ""

    def __post_init__(self) -> None:
        if not self.date:
            self.date = dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in _FONT_DIRS:
        path = Path(folder) / name
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width_px: int, max_lines: int) -> list[str]:
    avg = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz ") / 27)
    chars = max(10, int(width_px / avg))
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        wrapped = textwrap.wrap(para, width=chars, replace_whitespace=False) or [""]
        for line in wrapped:
            while font.getlength(line) > width_px and len(line) > 5:
                line = line[:-2]
            lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = (lines[-1][:-1] if len(lines[-1]) > 1 else lines[-1]) + " …"
    return lines


def render_png(card: CardContent, path: str | Path) -> Path:
    width, height = CARD_SIZE
    img = Image.new("RGB", CARD_SIZE, "white")
    draw = ImageDraw.Draw(img)
    margin = 60
    title_font, head_font, body_font, small_font = _font(44, True), _font(30, True), _font(24), _font(20)
    draw.text((margin, 40), "Base vs Instruct", font=title_font, fill="#111")
    draw.text((width - margin, 52), card.date, font=small_font, fill="#555", anchor="ra")
    y = 110
    for line in _wrap(draw, "Prompt: " + card.prompt, head_font, width - 2 * margin, 3):
        draw.text((margin, y), line, font=head_font, fill="#1d3557")
        y += 38
    draw.text((margin, y + 4), card.settings, font=small_font, fill="#555")
    y += 44
    col_gap = 40
    col_w = (width - 2 * margin - col_gap * (len(card.panes) - 1)) // max(1, len(card.panes))
    colours = ["#e76f51", "#2a9d8f", "#6d597a", "#457b9d"]
    for i, pane in enumerate(card.panes):
        x = margin + i * (col_w + col_gap)
        draw.rounded_rectangle((x, y, x + col_w, height - 50), radius=18, outline=colours[i % 4], width=4)
        draw.text((x + 20, y + 16), pane.title, font=head_font, fill=colours[i % 4])
        draw.text((x + 20, y + 56), pane.model, font=small_font, fill="#333")
        ty = y + 96
        max_lines = (height - 50 - 60 - ty) // 31
        for line in _wrap(draw, pane.output or "—", body_font, col_w - 40, max_lines):
            draw.text((x + 20, ty), line, font=body_font, fill="#111")
            ty += 31
        draw.text((x + 20, height - 95), pane.stats, font=small_font, fill="#555")
    path = Path(path)
    img.save(path, format="PNG")
    return path


def render_markdown(card: CardContent) -> str:
    parts = [f"## Base vs Instruct — {card.date}", "", f"**Prompt:** {card.prompt}", "", f"*{card.settings}*", ""]
    for pane in card.panes:
        parts += [f"### {pane.title} — `{pane.model}`", "", pane.output.strip() or "—", "", f"*{pane.stats}*", ""]
    return "\n".join(parts)
