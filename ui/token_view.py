"""HTML views of tokenized text: one string per tokenizer, user text always escaped.

Each token is a ``<span class="tk">`` carrying its character span (``data-s``/``data-e``), so
``assets/token_view.js`` can highlight the same characters in the other views on hover.
Byte-fallback tokens are shown as their bytes and grouped under the character they form.
"""
from __future__ import annotations

from html import escape

from engine.tokenizers import Encoding, Piece

MAX_SHOWN = 20_000  # tokens drawn per view; counts stay exact beyond
N_COLOURS = 6


def _visible(text: str) -> str:
    """Escape, then make whitespace visible: · for spaces, → for tabs, ↵ for new lines."""
    out = escape(text)
    out = out.replace(" ", '<i class="ws">·</i>').replace("\t", '<i class="ws">→</i>')
    return out.replace("\n", '<i class="ws">↵</i><br>')


def _hex(raw: bytes) -> str:
    lead = " " if raw[:1] == b" " else ""
    body = raw[1:] if lead else raw
    return (_visible(lead) if lead else "") + " ".join(f"{b:02X}" for b in body)


def _title(p: Piece, show_ids: bool) -> str:
    raw = " ".join(f"{b:02X}" for b in p.raw) if p.raw else "—"
    label = p.special or repr(p.text)
    return escape(f"id {p.id} · {label} · bytes {raw}", quote=True)


def _piece_html(p: Piece, index: int, show_ids: bool, cut: bool) -> str:
    classes = f"tk c{index % N_COLOURS}" + (" sp" if p.special else "") + (" byte" if p.partial else "") + (" cut" if cut else "")
    if show_ids:
        body = str(p.id)
    elif p.special:
        body = escape(p.special)
    elif p.partial:
        body = _hex(p.raw)
    else:
        body = _visible(p.text)
    return f'<span class="{classes}" data-s="{p.start}" data-e="{p.end}" title="{_title(p, show_ids)}">{body}</span>'


def cut_index(enc: Encoding, window: int | None) -> int | None:
    """Index of the first token dropped by a fixed window (CLIP keeps 76 + its end token)."""
    if not window or enc.n_tokens <= window:
        return None
    return window - 1


def render_pieces(enc: Encoding, show_ids: bool = False, window: int | None = None, max_shown: int = MAX_SHOWN) -> str:
    cut_at = cut_index(enc, window)
    parts: list[str] = []
    pieces = enc.pieces[:max_shown]
    i = 0
    while i < len(pieces):
        if cut_at is not None and i == cut_at:
            parts.append(f'<span class="cutmark" title="{window} tokens">✂ {window}</span>')
        p = pieces[i]
        cut = cut_at is not None and i >= cut_at and i != enc.n_tokens - 1
        if p.group is not None:
            j = i
            while j < len(pieces) and pieces[j].group == p.group:
                j += 1
            members = pieces[i:j]
            char = enc.text[members[0].start:members[-1].end].strip() if members[0].start >= 0 else ""
            inner = "".join(_piece_html(m, i + k, show_ids, cut) for k, m in enumerate(members))
            title = escape(f"{char} = {len(members)} byte tokens", quote=True)
            parts.append(f'<span class="tkg" data-s="{members[0].start}" data-e="{members[-1].end}" title="{title}">'
                         f'<span class="tkg-b">{inner}</span><span class="tkg-c">{escape(char)}</span></span>')
            i = j
            continue
        parts.append(_piece_html(p, i, show_ids, cut))
        i += 1
    if enc.n_tokens > max_shown:
        parts.append(f'<span class="more">… +{enc.n_tokens - max_shown:,} tokens</span>')
    return "".join(parts)


def stats_line(enc: Encoding, labels: dict[str, str]) -> str:
    return (f'<div class="tokstats"><b>{enc.n_tokens:,}</b> {escape(labels["tokens"])} · {enc.n_chars:,} '
            f'{escape(labels["chars"])} · {enc.n_bytes:,} {escape(labels["bytes"])} · '
            f'<b>{enc.chars_per_token:.2f}</b> {escape(labels["cpt"])}</div>')


def render_view(enc: Encoding, labels: dict[str, str], show_ids: bool = False, window: int | None = None) -> str:
    note = ""
    if window and enc.n_tokens > window:
        note = f'<div class="toknote">{escape(labels["cut"].format(window=window, n=enc.n_tokens))}</div>'
    if enc.n_tokens > MAX_SHOWN:
        note += f'<div class="toknote">{escape(labels["truncated"].format(shown=MAX_SHOWN))}</div>'
    return (f'<div class="tokview" data-tok="{escape(enc.key, quote=True)}">'
            f'<div class="tokhead">{escape(enc.label)}</div>{stats_line(enc, labels)}{note}'
            f'<div class="tokpieces">{render_pieces(enc, show_ids, window)}</div></div>')


def render_views(encodings: list[Encoding], labels: dict[str, str], show_ids: bool = False,
                 windows: dict[str, int] | None = None) -> str:
    windows = windows or {}
    views = "".join(render_view(e, labels, show_ids, windows.get(e.key)) for e in encodings)
    return f'<div class="tokgrid" style="--n:{max(1, len(encodings))}">{views}</div>'


def clip_window_html(text: str, labels: dict[str, str] | None = None) -> str:
    """CLIP's 77-token window for an image prompt: what is beyond it is greyed (never seen)."""
    from engine import tokenizers

    labels = labels or DEFAULT_LABELS
    tok = tokenizers.get("clip")
    enc = tok.encoding(text)
    used = min(enc.n_tokens, tok.window)
    head = escape(labels["clip_count"].format(used=used, window=tok.window, n=enc.n_tokens))
    cls = "clipcount over" if enc.n_tokens > tok.window else "clipcount"
    return (f'<div class="tokview clipwin" data-tok="clip"><div class="{cls}">{head}</div>'
            f'<div class="tokpieces">{render_pieces(enc, False, tok.window)}</div></div>')


LABEL_KEYS = ("tokens", "chars", "bytes", "cpt", "cut", "truncated", "clip_count")


def translated_labels(lang: str) -> dict[str, str]:
    from ui.i18n import t

    return {k: t(f"tok.{k}", lang) for k in LABEL_KEYS}


DEFAULT_LABELS = {
    "tokens": "tokens", "chars": "characters", "bytes": "bytes", "cpt": "characters per token",
    "cut": "Only the first {window} tokens reach the model; the greyed part ({n} tokens in all) is cut.",
    "truncated": "Showing the first {shown:,} tokens; the counts are for the whole text.",
    "clip_count": "CLIP: {used} / {window} tokens used ({n} in the prompt, start and end tokens included)",
}
