"""HTML of the class wall: the room banner (its code big enough for the back row) and the entry cards.

Everything a student typed (name, prompt) and every stored result is escaped here; Markdown results
are rendered by markdown-it with raw HTML, links and images disabled. Images are the stored JPEG
thumbnails, served from the data folder's ``images/`` (a static path) by a URL relative to the page,
so the wall works behind ``--share`` and on Spaces.
"""
from __future__ import annotations

from html import escape
from urllib.parse import quote

from markdown_it import MarkdownIt

from engine.share import Entry, Room, Store
from ui.i18n import t

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


def _image_url(store: Store, rel: str) -> str:
    return "gradio_api/file=" + quote(str(store.image_path(rel)))


def _part_html(part: dict, lang: str, store: Store, big: bool) -> str:
    label = f'<div class="wall-part-label">{escape(t(part.get("label", ""), lang))}</div>'
    kind = part.get("kind")
    if kind == "text":
        return label + f'<div class="wall-text">{escape(str(part.get("text", "")))}</div>'
    if kind == "markdown":
        return label + f'<div class="wall-md">{_MD.render(str(part.get("text", "")))}</div>'
    if kind == "table":
        head = "".join(f"<th>{escape(str(h))}</th>" for h in part.get("headers", []))
        rows = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
                       for row in part.get("rows", []))
        return label + f'<table class="wall-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    if kind == "images":
        files = part.get("files" if big else "thumbs") or part.get("files", [])
        imgs = []
        for rel in files:
            try:
                imgs.append(f'<img src="{escape(_image_url(store, rel), quote=True)}" alt="" loading="lazy">')
            except Exception:  # noqa: BLE001 - a file removed by hand: the card still shows
                continue
        return label + f'<div class="wall-images">{"".join(imgs)}</div>'
    return ""


def card_html(entry: Entry, lang: str, store: Store, big: bool = False) -> str:
    classes = ["wall-card"] + (["wall-pinned"] if entry.pinned else []) + (["wall-hidden"] if entry.hidden else [])
    hidden = f'<span class="wall-badge">{escape(t("wall.hidden_badge", lang))}</span> ' if entry.hidden else ""
    badges = ("📌 " if entry.pinned else "") + hidden
    parts = "".join(_part_html(p, lang, store, big) for p in entry.card.get("parts", []))
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
