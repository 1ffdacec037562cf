"""Images side by side for comparison: labelled grids, and the parameter sweeps that fill them
(one setting varied along each axis)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine.errors import UserError
from engine.images.imagegen import ImageSettings


# ------------------------------------------------------------------ grids
def _font(size: int):
    for name in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if Path(name).exists():
            return ImageFont.truetype(name, size)
    return ImageFont.load_default(size=size)


def grid(images: list[Image.Image], labels: list[str], columns: int, cell: int = 384,
         row_labels: list[str] | None = None, column_labels: list[str] | None = None,
         legend: list[str] | None = None) -> Image.Image:
    """Images in a labelled grid: a caption under each, optional row and column headers, and an
    optional legend under the grid (long texts, such as whole prompts, written out wrapped).

    Type sizes follow the cell size (readable once the grid is scaled down to fit a page); row
    headers wrap inside a left margin of their own and column headers above their column, so
    neither covers the other."""
    font = _font(max(12, cell // 20))
    head_font = _font(max(13, cell // 15))
    pad = max(6, cell // 40)

    def line_h(f) -> int:
        return f.size + max(2, f.size // 4)

    rows = (len(images) + columns - 1) // columns
    # whatever their length, headers stay inside their margin (a few wrapped lines, then "…")
    row_lines = [_wrap(text, head_font, cell // 2, HEADER_LINES) for text in row_labels or []]
    widest = max((head_font.getlength(x) for lines in row_lines for x in lines), default=0)
    left = int(widest) + 2 * pad if row_labels else 0
    col_lines = [_wrap(text, head_font, cell - 2 * pad, HEADER_LINES) for text in column_labels or []]
    top = max((len(lines) for lines in col_lines), default=0) * line_h(head_font) + 2 * pad if column_labels else 0
    caption_h = 2 * line_h(font) + pad
    width = left + columns * cell
    legend_lines = [line for text in legend or [] for line in _wrap(text, font, width - 2 * pad, LEGEND_LINES) or [""]]
    legend_h = len(legend_lines) * line_h(font) + 2 * pad if legend_lines else 0
    canvas = Image.new("RGB", (width, top + rows * (cell + caption_h) + legend_h), "white")
    draw = ImageDraw.Draw(canvas)
    for c, lines in enumerate(col_lines):
        for k, text in enumerate(lines):
            draw.text((left + c * cell + cell // 2, pad + k * line_h(head_font)), text, font=head_font, fill="#111",
                      anchor="ma")
    for r, lines in enumerate(row_lines[:rows]):
        y0 = top + r * (cell + caption_h) + cell // 2 - len(lines) * line_h(head_font) // 2
        for k, text in enumerate(lines):
            draw.text((pad, y0 + k * line_h(head_font)), text, font=head_font, fill="#111")
    for i, (img, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        x, y = left + c * cell, top + r * (cell + caption_h)
        canvas.paste(img.convert("RGB").resize((cell, cell)), (x, y))
        for k, text in enumerate(_wrap(label, font, cell - 8, 2)):
            draw.text((x + 4, y + cell + 3 + k * line_h(font)), text, font=font, fill="#222")
    y = top + rows * (cell + caption_h) + pad
    for k, text in enumerate(legend_lines):
        draw.text((pad, y + k * line_h(font)), text, font=font, fill="#111")
    return canvas


HEADER_LINES, LEGEND_LINES = 4, 40  # wrapped lines at most per row/column header and per legend entry


def _wrap(text: str, font, width: int, max_lines: int | None = None) -> list[str]:
    """``text`` in lines of at most ``width`` pixels (a word longer than that is cut across lines);
    past ``max_lines`` the last line ends with "…". Bounded work whatever the text's length."""
    cap = (max_lines or 10_000) * max(1, width // max(1, int(font.getlength("i")))) + 1  # characters that can show
    words, lines, line = str(text)[:cap].split(), [], ""
    for w in words:
        while font.getlength(w) > width and len(w) > 1:  # a long word: as much as fits, the rest on
            cut = _longest_prefix(w, font, width)
            if line:
                lines.append(line)
                line = ""
            lines.append(w[:cut])
            w = w[cut:]
        candidate = f"{line} {w}".strip()
        if font.getlength(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = w
    lines += [line] if line else []
    if max_lines is not None and len(lines) > max_lines:
        last = lines[max_lines - 1]
        lines = lines[:max_lines - 1] + [last[:_longest_prefix(last + "…", font, width) - 1] + "…"]
    return lines


def _longest_prefix(text: str, font, width: int) -> int:
    """How many characters of ``text`` fit in ``width`` pixels (at least 1)."""
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


# ------------------------------------------------------------------ sweeps
SWEEP_PARAMS = ("guidance", "steps", "seed", "style")


def parse_values(param: str, raw: str) -> list:
    values = [v.strip() for v in (raw or "").split(",") if v.strip()]
    if not values:
        raise UserError("img.err.sweep_values", param=param)
    try:
        if param == "guidance":
            return [float(v) for v in values]
        if param in ("steps", "seed"):
            return [int(v) for v in values]
    except ValueError as exc:
        raise UserError("img.err.sweep_values", param=param) from exc
    return values


def apply_sweep(settings: ImageSettings, param: str, value) -> ImageSettings:
    if param == "style":
        return replace(settings, prompt=f"{settings.prompt}, {value}")
    return replace(settings, **{param: value})
