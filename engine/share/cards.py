"""The comparison card: one PNG sized for slides (1920×1080) and the same content in Markdown.

Each pane shows its title, model, **what the model sees** (the exact input, chat template
included: the lesson's key point), the output and its stats. After follow-ups, each pane also lists
its earlier turns (the user's message and that model's answer, shortened) above the last answer,
and "what the model sees" keeps the end of the input (where the last message is). The text size adapts to the content
(large for short answers, smaller for long ones) and the boxes are as tall as their content, so a
short answer does not sit in a mostly empty frame. Emoji are drawn in colour from Noto Color Emoji
(Debian's ``fonts-noto-color-emoji``) when it is installed; without it they fall back to the text font.
The words on the card (``labels``) come from the UI, in its language.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CARD_SIZE = (1920, 1080)
TEXT_FONTS = {"regular": "dejavu/DejaVuSans.ttf", "bold": "dejavu/DejaVuSans-Bold.ttf",
              "mono": "dejavu/DejaVuSansMono.ttf"}
EMOJI_FONT = "noto/NotoColorEmoji.ttf"
FONT_ROOT = Path("/usr/share/fonts/truetype")
EMOJI_STRIKE = 109  # the only size Noto Color Emoji's bitmaps come in
DEFAULT_LABELS = {"title": "Base vs Instruct", "prompt": "Prompt:", "sees": "What the model sees",
                  "output": "Output", "date_format": "%Y-%m-%d %H:%M", "earlier": "Earlier turns"}
EARLIER_SHOWN = 3  # earlier turns drawn on the PNG (the last ones; the Markdown lists them all)
TURN_SIZE = 20  # text size of the earlier turns (px)
COLOURS = ("#c0392b", "#1f6f8b", "#6d597a", "#457b9d")
INK, GREY, SEES_BG = "#111111", "#555555", "#f1f3f5"
MARGIN, GAP, PAD = 60, 40, 22
MAX_SIZE, MIN_SIZE = 56, 14  # output text size range (px)


@dataclass
class PaneResult:
    title: str  # e.g. "Base model — continues the text"
    model: str
    output: str
    stats: str
    sees: str = ""  # the exact text the model receives (after its chat template)
    turns: list[tuple[str, str]] = field(default_factory=list)  # earlier (user message, this model's answer)


@dataclass
class CardContent:
    prompt: str
    settings: str
    panes: list[PaneResult]
    date: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = {**DEFAULT_LABELS, **(self.labels or {})}
        if not self.date:
            self.date = dt.datetime.now().strftime(self.labels["date_format"])


# ------------------------------------------------------------------ fonts and emoji
@lru_cache(maxsize=64)
def _font(kind: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONT_ROOT / TEXT_FONTS[kind]
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


@lru_cache(maxsize=1)
def _charmaps() -> tuple[frozenset, frozenset]:
    """Code points of the text font and of the emoji font (empty when a font is missing)."""
    from matplotlib.ft2font import FT2Font

    def cmap(path: Path) -> frozenset:
        return frozenset(FT2Font(str(path)).get_charmap()) if path.exists() else frozenset()

    return cmap(FONT_ROOT / TEXT_FONTS["regular"]), cmap(FONT_ROOT / EMOJI_FONT)


_JOINERS = {0x200D, 0xFE0F, 0x20E3} | set(range(0x1F3FB, 0x1F400)) | set(range(0xE0020, 0xE0080))


def _is_emoji_start(text: str, i: int) -> bool:
    text_cmap, emoji_cmap = _charmaps()
    cp = ord(text[i])
    if cp not in emoji_cmap or cp < 0x80:
        return False
    followed_by_vs16 = i + 1 < len(text) and text[i + 1] == "\ufe0f"
    return cp >= 0x1F000 or followed_by_vs16 or cp not in text_cmap


def runs(text: str) -> list[tuple[bool, str]]:
    """``text`` cut into (is_emoji, part): an emoji part is one whole emoji (ZWJ sequences, skin
    tones, flags and keycaps kept together)."""
    out: list[tuple[bool, str]] = []
    i, plain = 0, []
    while i < len(text):
        if not _is_emoji_start(text, i):
            plain.append(text[i])
            i += 1
            continue
        if plain:
            out.append((False, "".join(plain)))
            plain = []
        j = i + 1
        if 0x1F1E6 <= ord(text[i]) <= 0x1F1FF and j < len(text) and 0x1F1E6 <= ord(text[j]) <= 0x1F1FF:
            j += 1  # a flag: two regional indicators
        while j < len(text) and ord(text[j]) in _JOINERS:
            j += 1
            if ord(text[j - 1]) == 0x200D and j < len(text):
                j += 1  # the emoji after a zero-width joiner
        out.append((True, text[i:j]))
        i = j
    if plain:
        out.append((False, "".join(plain)))
    return out


@lru_cache(maxsize=256)
def _emoji_image(cluster: str, size: int) -> Image.Image | None:
    path = FONT_ROOT / EMOJI_FONT
    if not path.exists():
        return None
    font = ImageFont.truetype(str(path), EMOJI_STRIKE)
    canvas = Image.new("RGBA", (EMOJI_STRIKE * 2, EMOJI_STRIKE + 40), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), cluster, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop((0, 0, box[2], max(box[3], EMOJI_STRIKE)))
    scale = size / EMOJI_STRIKE
    return glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)


def _width(text: str, font: ImageFont.FreeTypeFont) -> float:
    total = 0.0
    for is_emoji, part in runs(text):
        if is_emoji and _emoji_image(part, font.size) is not None:
            total += _emoji_image(part, font.size).width + 2
        else:
            total += font.getlength(part)
    return total


def _draw(img: Image.Image, xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont, fill: str) -> None:
    draw = ImageDraw.Draw(img)
    x, y = xy
    for is_emoji, part in runs(text):
        glyph = _emoji_image(part, font.size) if is_emoji else None
        if glyph is not None:
            img.paste(glyph, (round(x + 1), round(y + font.size * 0.08)), glyph)
            x += glyph.width + 2
        else:
            draw.text((x, y), part, font=font, fill=fill)
            x += font.getlength(part)


@lru_cache(maxsize=8192)
def _word_width(word: str, kind: str, size: int) -> float:
    return _width(word, _font(kind, size))


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float, kind: str = "regular") -> list[str]:
    """Lines of ``text`` no wider than ``width``: breaks between words, inside a word only when
    the word alone is wider than a line. Widths add up word by word (kerning across a space is nil)."""
    space = _word_width(" ", kind, font.size)
    lines: list[str] = []
    for para in (text or "").split("\n"):
        line, line_w = "", 0.0
        for word in para.split(" "):
            word_w = _word_width(word, kind, font.size)
            if not line and line_w == 0.0 and word_w <= width:
                line, line_w = word, word_w
                continue
            if line_w + space + word_w <= width:
                line, line_w = f"{line} {word}", line_w + space + word_w
                continue
            if line:
                lines.append(line)
            while word_w > width and len(word) > 1:
                cut = len(word)
                while cut > 1 and _width(word[:cut], font) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
                word_w = _word_width(word, kind, font.size)
            line, line_w = word, word_w
        lines.append(line)
    return lines


def _clip(lines: list[str], max_lines: int) -> list[str]:
    if len(lines) <= max_lines:
        return lines
    last = lines[max_lines - 1].rstrip()
    last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    return lines[:max_lines - 1] + [last + " …"]


def _clip_tail(lines: list[str], max_lines: int) -> list[str]:
    """The first line, "…", then the last lines: a long multi-turn input ends with the new message."""
    if len(lines) <= max_lines:
        return lines
    return lines[:1] + ["…"] + lines[len(lines) - (max_lines - 2):]


def _turn_lines(pane: PaneResult, width: float) -> list[tuple[bool, str]]:
    """The earlier turns as drawn: (is the user's message, line); each message and answer cut short."""
    font = _font("regular", TURN_SIZE)
    shown = pane.turns[-EARLIER_SHOWN:]
    lines: list[tuple[bool, str]] = [(False, "…")] if len(pane.turns) > len(shown) else []
    for user, answer in shown:
        lines += [(True, line) for line in _clip(wrap("› " + " ".join(user.split()), font, width), 1)]
        lines += [(False, line) for line in _clip(wrap(" ".join(answer.split()) or "—", font, width), 2)]
    return lines


# ------------------------------------------------------------------ layout
@dataclass
class _PaneLayout:
    sees: list[str]
    output: list[str]
    turns: list[tuple[bool, str]] = field(default_factory=list)


def _layout(card: CardContent, col_w: int, size: int, available: int) -> tuple[list[_PaneLayout], int] | None:
    """Lines of every pane at output size ``size``; None when the tallest pane does not fit."""
    body, mono = _font("regular", size), _font("mono", max(16, round(size * 0.62)))
    inner = col_w - 2 * PAD
    sees_lines = 5
    panes, tallest = [], 0
    for pane in card.panes:
        clip = _clip_tail if pane.turns else _clip
        sees = clip(wrap(pane.sees.strip(), mono, inner - 16, "mono"), sees_lines) if pane.sees.strip() else []
        out = wrap(pane.output.strip() or "—", body, inner)
        turns = _turn_lines(pane, inner)
        height = _pane_height(len(sees), len(out), size, len(turns))
        if height > available:
            return None
        panes.append(_PaneLayout(sees, out, turns))
        tallest = max(tallest, height)
    return panes, tallest


def _pane_height(n_sees: int, n_out: int, size: int, n_turns: int = 0) -> int:
    mono_line = round(max(16, round(size * 0.62)) * 1.35)
    head = PAD + 40 + 34  # title, model
    sees = (26 + n_sees * mono_line + 20) if n_sees else 0
    turns = (26 + n_turns * round(TURN_SIZE * 1.3) + 14) if n_turns else 0
    return head + sees + turns + 30 + n_out * round(size * 1.3) + 16 + 30 + PAD  # output label, output, stats


def _header_height(card: CardContent, width: int) -> int:
    head_font = _font("bold", 30)
    prompt_lines = _clip(wrap(f"{card.labels['prompt']} {card.prompt}", head_font, width - 2 * MARGIN), 3)
    return 104 + 40 * len(prompt_lines) + 48


def _fit(card: CardContent, col_w: int, available: int) -> tuple[int, list[_PaneLayout], int]:
    """The largest output size whose panes fit ``available`` pixels; outputs cut at the smallest size."""
    for size in range(MAX_SIZE, MIN_SIZE - 1, -2):
        layout = _layout(card, col_w, size, available)
        if layout is not None:
            return size, layout[0], layout[1]
    size = MIN_SIZE
    no_output = CardContent(card.prompt, card.settings, [PaneResult(p.title, p.model, "", p.stats, p.sees, p.turns)
                                                           for p in card.panes], card.date, card.labels)
    panes, _ = _layout(no_output, col_w, size, 10**6)
    body = _font("regular", size)
    for pl, pane in zip(panes, card.panes):
        room = (available - _pane_height(len(pl.sees), 0, size, len(pl.turns))) // round(size * 1.3)
        pl.output = _clip(wrap(pane.output.strip() or "—", body, col_w - 2 * PAD), max(1, room))
    return size, panes, available


def text_size(card: CardContent) -> tuple[int, int]:
    """(output text size in px, pane height in px) the card is drawn with."""
    width, height = CARD_SIZE
    n = max(1, len(card.panes))
    col_w = (width - 2 * MARGIN - GAP * (n - 1)) // n
    size, _, box_h = _fit(card, col_w, height - 40 - _header_height(card, width))
    return size, box_h


def render_png(card: CardContent, path: str | Path) -> Path:
    width, height = CARD_SIZE
    img = Image.new("RGB", CARD_SIZE, "white")
    draw = ImageDraw.Draw(img)
    labels = card.labels
    n = max(1, len(card.panes))
    col_w = (width - 2 * MARGIN - GAP * (n - 1)) // n
    header_h = _header_height(card, width)
    size, panes_lines, box_h = _fit(card, col_w, height - 40 - header_h)
    top = max(0, (height - 40 - header_h - box_h) // 2)  # spare room: the whole block is centred
    title_font, head_font, small_font = _font("bold", 44), _font("bold", 30), _font("regular", 22)
    _draw(img, (MARGIN, top + 36), labels["title"], title_font, INK)
    draw.text((width - MARGIN, top + 50), card.date, font=small_font, fill=GREY, anchor="ra")
    y = top + 104
    for line in _clip(wrap(f"{labels['prompt']} {card.prompt}", head_font, width - 2 * MARGIN), 3):
        _draw(img, (MARGIN, y), line, head_font, "#1d3557")
        y += 40
    _draw(img, (MARGIN, y + 2), card.settings, small_font, GREY)
    y += 48
    body, mono = _font("regular", size), _font("mono", max(16, round(size * 0.62)))
    mono_line, body_line = round(mono.size * 1.35), round(size * 1.3)
    for i, (pane, pl) in enumerate(zip(card.panes, panes_lines)):
        colour = COLOURS[i % len(COLOURS)]
        x = MARGIN + i * (col_w + GAP)
        draw.rounded_rectangle((x, y, x + col_w, y + box_h), radius=18, outline=colour, width=4)
        ty = y + PAD
        _draw(img, (x + PAD, ty), pane.title, head_font, colour)
        ty += 40
        draw.text((x + PAD, ty), pane.model, font=small_font, fill="#333333")
        ty += 34
        if pl.sees:
            draw.text((x + PAD, ty), labels["sees"], font=_font("bold", 20), fill=GREY)
            ty += 26
            block_h = len(pl.sees) * mono_line + 8
            draw.rounded_rectangle((x + PAD, ty, x + col_w - PAD, ty + block_h), radius=8, fill=SEES_BG)
            for line in pl.sees:
                _draw(img, (x + PAD + 8, ty + 4), line, mono, "#333333")
                ty += mono_line
            ty += 20
        if pl.turns:
            draw.text((x + PAD, ty), labels["earlier"], font=_font("bold", 20), fill=GREY)
            ty += 26
            for is_user, line in pl.turns:
                _draw(img, (x + PAD, ty), line, _font("bold" if is_user else "regular", TURN_SIZE),
                      "#1d3557" if is_user else GREY)
                ty += round(TURN_SIZE * 1.3)
            ty += 14
        draw.text((x + PAD, ty), labels["output"], font=_font("bold", 20), fill=GREY)
        ty += 30
        for line in pl.output:
            _draw(img, (x + PAD, ty), line, body, INK)
            ty += body_line
        _draw(img, (x + PAD, y + box_h - PAD - 26), pane.stats, small_font, GREY)
    path = Path(path)
    img.save(path, format="PNG")
    return path


def render_markdown(card: CardContent) -> str:
    labels = card.labels
    parts = [f"## {labels['title']} — {card.date}", "", f"**{labels['prompt']}** {card.prompt}", "",
             f"*{card.settings}*", ""]
    for pane in card.panes:
        parts += [f"### {pane.title} — `{pane.model}`", ""]
        if pane.sees.strip():
            fence = "````" if "```" in pane.sees else "```"
            parts += [f"**{labels['sees']}**", "", f"{fence}text", pane.sees.strip(), fence, ""]
        if pane.turns:
            parts += [f"**{labels['earlier']}**", ""]
            for user, answer in pane.turns:
                parts += ["> › " + " ".join(user.split()), ">", "> " + (" ".join(answer.split()) or "—"), ""]
        parts += [f"**{labels['output']}**", "", pane.output.strip() or "—", "", f"*{pane.stats}*", ""]
    return "\n".join(parts)
