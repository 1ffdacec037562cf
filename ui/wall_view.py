"""HTML of the class wall: the room banner (its code big enough for the back row) and the entry cards.

Everything a student typed (name, prompt) and every stored result is escaped here; Markdown results
are rendered by markdown-it with raw HTML, links and images disabled. Images are the stored JPEG
thumbnails, served from the data folder's ``images/`` (a static path) by a URL relative to the page,
so the wall works behind ``--share`` and on Spaces.
"""
from __future__ import annotations

import re
from html import escape
from urllib.parse import quote

from markdown_it import MarkdownIt

from engine.share import Entry, Room, Store
from ui import fmt
from ui.i18n import t

# a number stored as text by older cards ("2.56", "32000"): written the reader's way like the others
_PLAIN_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")

_MD = MarkdownIt("commonmark", {"html": False}).disable(["link", "image", "autolink", "html_inline", "html_block"])


def tab_name(entry: Entry, lang: str) -> str:
    labels = entry.card.get("labels") or []
    return " · ".join(t(key, lang) for key in labels) or entry.tab


def room_banner(room: Room | None, lang: str, teacher: bool = False) -> str:
    if room is None:
        return f'<div class="wall-banner wall-empty">{escape(t("wall.no_room_yet", lang))}</div>'
    state = t("wall.closed_badge", lang) if room.closed else t("wall.open_badge", lang)
    title = f'<div class="wall-title">{escape(room.title)}</div>' if room.title else ""
    role = f' · <span class="wall-role">{escape(t("wall.teacher_view", lang))}</span>' if teacher else ""
    label = escape(t("wall.room", lang), quote=True)
    return (f'<div class="wall-banner{" wall-closed" if room.closed else ""}">'
            f'<div class="wall-code" aria-label="{label}">{escape(room.code)}</div>{title}'
            f'<div class="wall-meta">{escape(t("wall.how_to_join", lang))} · '
            f'{escape(t("wall.count", lang, n=room.entries))} · {escape(state)}{role}</div></div>')


def cell_text(value: object, lang: str) -> str:
    """A card's table cell: numbers (and numbers older cards stored as text) the ``lang`` way."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return fmt.number(value, lang)
    text = "" if value is None else str(value)
    if _PLAIN_NUMBER.match(text):
        number = float(text)
        return fmt.number(int(number) if number.is_integer() and "." not in text else number, lang)
    return text


def image_alt(entry: Entry, part: dict, index: int, lang: str) -> str:
    """What a wall image shows, for screen readers and when it does not load: its caption (model,
    settings, seed), the tab's description of the result if the card has one, and the prompt."""
    captions = part.get("captions") or []
    caption = captions[index] if index < len(captions) and captions[index] else ""
    described = (entry.card.get("alt") or {}).get(lang) or (entry.card.get("alt") or {}).get("en") or ""
    what = caption or described or t(part.get("label", ""), lang)
    return t("wall.image_alt", lang, what=what, n=index + 1, name=entry.name, prompt=entry.title[:200])


def _image_url(store: Store, rel: str) -> str:
    return "gradio_api/file=" + quote(str(store.image_path(rel)))


def _part_html(entry: Entry, part: dict, lang: str, store: Store, big: bool) -> str:
    plain = t(part.get("label", ""), lang)
    label = f'<div class="wall-part-label">{escape(plain)}</div>'
    kind = part.get("kind")
    if kind == "text":
        return label + f'<div class="wall-text">{escape(str(part.get("text", "")))}</div>'
    if kind == "markdown":
        return label + f'<div class="wall-md">{_MD.render(str(part.get("text", "")))}</div>'
    if kind == "table":
        head = "".join(f"<th>{escape(str(h))}</th>" for h in part.get("headers", []))
        rows = "".join("<tr>" + "".join(f'<td{_numeric(v)}>{escape(cell_text(v, lang))}</td>' for v in row) + "</tr>"
                       for row in part.get("rows", []))
        # a wide table scrolls inside its card (a phone, a projected card), never past it
        return (label + f'<div class="wall-table-wrap" tabindex="0" role="region" aria-label="{escape(plain, quote=True)}">'
                f'<table class="wall-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
    if kind == "images":
        files = part.get("files" if big else "thumbs") or part.get("files", [])
        imgs = []
        for i, rel in enumerate(files):
            try:
                alt = escape(image_alt(entry, part, i, lang), quote=True)
                imgs.append(f'<img src="{escape(_image_url(store, rel), quote=True)}" alt="{alt}" loading="lazy">')
            except Exception:  # noqa: BLE001 - a file removed by hand: the card still shows
                continue
        return label + f'<div class="wall-images">{"".join(imgs)}</div>'
    return ""


def _numeric(value: object) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ' class="num"' if numeric or _PLAIN_NUMBER.match(str(value or "")) else ""


def card_html(entry: Entry, lang: str, store: Store, big: bool = False) -> str:
    classes = ["wall-card"] + (["wall-pinned"] if entry.pinned else []) + (["wall-hidden"] if entry.hidden else [])
    if any(p.get("kind") == "table" for p in entry.card.get("parts", [])):
        classes.append("wall-wide")                  # two columns of the grid where there is room (share.css)
    hidden = f'<span class="wall-badge">{escape(t("wall.hidden_badge", lang))}</span> ' if entry.hidden else ""
    badges = ("📌 " if entry.pinned else "") + hidden
    parts = "".join(_part_html(entry, p, lang, store, big) for p in entry.card.get("parts", []))
    prompt = entry.title if len(entry.title) <= 400 or big else entry.title[:400] + "…"
    return (f'<div class="{" ".join(classes)}" data-entry="{entry.num}">'
            f'<div class="wall-card-head">{badges}<b>#{entry.num}</b> · '
            f'<span class="wall-name">{escape(entry.name)}</span> · '
            f'<span class="wall-tab">{escape(tab_name(entry, lang))}</span></div>'
            f'<div class="wall-prompt">{escape(prompt)}</div>{parts}'
            f'<a class="wall-link" href="?x={escape(entry.experiment, quote=True)}" target="_blank" rel="noopener">'
            f'🔗 {escape(t("wall.open_link", lang))}</a></div>')


def cards_html(entries: list[Entry], lang: str, store: Store) -> str:
    if not entries:
        return f'<div class="wall-grid wall-none">{escape(t("wall.no_entries", lang))}</div>'
    return '<div class="wall-grid">' + "".join(card_html(e, lang, store) for e in entries) + "</div>"


def compare_html(left: Entry, right: Entry, lang: str, store: Store) -> str:
    return ('<div class="wall-compare">' + card_html(left, lang, store, big=True)
            + card_html(right, lang, store, big=True) + "</div>")


def entry_choices(entries: list[Entry], lang: str) -> list[tuple[str, int]]:
    """Dropdown choices "#3 · Alice · Tokenizers" (labels are shown as text by Gradio)."""
    return [(f"#{e.num} · {e.name} · {tab_name(e, lang)}", e.num) for e in entries]
