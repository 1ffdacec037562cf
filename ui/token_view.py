"""HTML views of tokenized text: one string per tokenizer, user text always escaped.

Each token is a ``<span class="tk">`` carrying its character span (``data-s``/``data-e``) and id
(``data-i``), so ``assets/token_view.js`` can highlight the same characters in the other views
on hover and show the id, piece and bytes as the token's title. Byte-fallback tokens are shown as their bytes and
grouped under the character they form. Styles: ``assets/tokenizers.css``.
"""
from __future__ import annotations

import itertools
from html import escape

from engine.tokenization.pieces import Encoding, Piece
from ui import fmt

MAX_SHOWN = 2_000  # tokens drawn per view; counts stay exact (Chromium lays out 8,000 spans in ~0.1 s)
FIRST_SHOWN = 300  # what a view shows without scrolling: drawn first, the rest right after
N_COLOURS = 6
_render_ids = itertools.count(1)


def _visible(text: str) -> str:
    """Escape, then make whitespace visible: · for spaces, → for tabs, ↵ for new lines (the line
    breaks themselves are added after the token, see :func:`_breaks`)."""
    out = escape(text)
    if " " in out:
        out = out.replace(" ", '<i class="ws">·</i>')
    if "\t" in out:
        out = out.replace("\t", '<i class="ws">→</i>')
    if "\r" in out:
        out = out.replace("\r", '<i class="ws">␍</i>')
    if "\n" in out:
        out = out.replace("\n", '<i class="ws">↵</i>')
    return out


def _breaks(p: Piece) -> str:
    return "<br>" * p.raw.count(b"\n") if p.raw and not p.partial else ""


def _hex(raw: bytes) -> str:
    """A byte-fallback token: its bytes in hex; a leading or trailing space (CLIP's end of word)
    kept visible as a space marker."""
    lead, trail = raw[:1] == b" ", raw[-1:] == b" " and len(raw) > 1
    body = raw[1 if lead else 0:len(raw) - 1 if trail else len(raw)]
    space = '<i class="ws">·</i>'
    return (space if lead else "") + " ".join(f"{b:02X}" for b in body) + (space if trail else "")


def _title(p: Piece) -> str:
    raw = " ".join(f"{b:02X}" for b in p.raw) if p.raw else "—"
    if p.special:
        label = p.special
    elif p.partial:  # part of a character: SentencePiece's byte notation
        label = "".join(f"<0x{b:02X}>" for b in p.raw)
    else:
        label = repr(p.text)
    return escape(f"id {p.id} · {label} · bytes {raw}", quote=True)


def _piece_html(p: Piece, index: int, show_ids: bool, cut: bool) -> str:
    classes = f"tk c{index % N_COLOURS}"
    if p.special:
        classes += " sp"
    if p.partial:
        classes += " byte"
    if cut:
        classes += " cut"
    if show_ids:
        body = str(p.id)
    elif p.special:
        body = escape(p.special)
    elif p.partial:
        body = _hex(p.raw)
    else:
        body = _visible(p.text)
    # In the pieces view the hover title (id, piece, bytes) is built by assets/token_view.js from
    # data-i and the shown piece: half the HTML. In the ids view the piece is not shown: title here.
    title = f' title="{_title(p)}"' if show_ids else ""
    return (f'<span class="{classes}" data-s="{p.start}" data-e="{p.end}" data-i="{p.id}"{title}>{body}</span>'
            f'{_breaks(p) or "<wbr>"}')


def cut_index(enc: Encoding, window: int | None) -> int | None:
    """Index of the first token dropped by a fixed window: CLIP keeps its start token and the
    next 75 and then puts its end token back, so tokens from index ``window - 1`` on are cut."""
    if not window or enc.n_tokens <= window:
        return None
    return window - 1


CHUNK = 200  # tokens per block that the browser lays out only when scrolled into view


def render_pieces(enc: Encoding, show_ids: bool = False, window: int | None = None,
                  max_shown: int = MAX_SHOWN, labels: dict[str, str] | None = None) -> str:
    """The tokens' HTML. Past ``CHUNK`` tokens they come in blocks (``.tkc``, CSS
    ``content-visibility: auto``), cut after a line break when there is one nearby: the browser
    lays out the blocks in view and skips the others until they are scrolled to."""
    cut_at = cut_index(enc, window)
    last = enc.n_tokens - 1  # the end token is never cut: the window always ends with it

    def is_cut(k: int) -> bool:
        return cut_at is not None and cut_at <= k < last

    parts: list[str] = []
    pieces = enc.pieces[:max_shown]
    chunked = len(pieces) > CHUNK
    chunks: list[str] = []
    chunk_start = 0
    i = 0
    while i < len(pieces):
        p = pieces[i]
        j = i + 1
        if p.group is not None:
            while j < len(pieces) and pieces[j].group == p.group:
                j += 1
        if cut_at is not None and i <= cut_at < j:
            parts.append(f'<span class="cutmark" title="{window} tokens">✂ {window}</span>')
        if j == i + 1:
            parts.append(_piece_html(p, i, show_ids, is_cut(i)))
        else:
            members = pieces[i:j]
            inner = "".join(_piece_html(m, i + k, show_ids, is_cut(i + k)) for k, m in enumerate(members))
            start, end = members[0].start, members[-1].end
            char = enc.text[start:end].strip() if start >= 0 else ""
            title = escape(f"{char} = {len(members)} byte tokens", quote=True)
            parts.append(f'<span class="tkg" data-s="{start}" data-e="{end}" title="{title}">'
                         f'<span class="tkg-b">{inner}</span><span class="tkg-c">{escape(char)}</span></span>')
        i = j
        size = i - chunk_start
        if chunked and (size >= 2 * CHUNK or (size >= CHUNK and pieces[i - 1].raw and pieces[i - 1].raw.endswith(b"\n"))):
            chunks.append(f'<div class="tkc">{"".join(parts)}</div>')
            parts, chunk_start = [], i
    if enc.n_tokens > max_shown:
        more = number(enc.n_tokens - max_shown, labels or DEFAULT_LABELS)
        parts.append(f'<span class="more">… +{more} tokens</span>')
    if chunks:
        chunks.append(f'<div class="tkc">{"".join(parts)}</div>' if parts else "")
        return "".join(chunks)
    return "".join(parts)


def number(x: float, labels: dict[str, str], decimals: int = 0) -> str:
    """``12345.6`` → ``12,345.6`` (English) or ``12 345,6`` (French): the language of ``labels``."""
    return fmt.number(x, labels.get("lang", "en"), decimals)


def _say(labels: dict[str, str], key: str, **params: object) -> str:
    return fmt.format_text(labels[key], labels.get("lang", "en"), **params)


def stats_line(enc: Encoding, labels: dict[str, str]) -> str:
    def n(x: float, d: int = 0) -> str:
        return escape(number(x, labels, d))

    return (f'<div class="tokstats" data-chars="{enc.n_chars}" data-tokens="{enc.n_tokens}"><b>{n(enc.n_tokens)}</b> {escape(labels["tokens"])} · {n(enc.n_chars)} '
            f'{escape(labels["chars"])} · {n(enc.n_bytes)} {escape(labels["bytes"])} · '
            f'<b>{n(enc.chars_per_token, 2)}</b> {escape(labels["cpt"])}</div>')


def render_view(enc: Encoding, labels: dict[str, str], show_ids: bool = False, window: int | None = None,
                max_shown: int = MAX_SHOWN) -> str:
    """One tokenizer's view: heading, counts, notes (window cut, display truncated), pieces."""
    note = ""
    if window and enc.n_tokens > window:
        note = f'<div class="toknote">{escape(_say(labels, "cut", window=window, n=enc.n_tokens))}</div>'
    if enc.n_tokens > max_shown:
        note += f'<div class="toknote">{escape(_say(labels, "truncated", shown=max_shown))}</div>'
    return (f'<div class="tokview" data-tok="{escape(enc.key, quote=True)}">'
            f'<div class="tokhead">{escape(enc.label)}</div>{stats_line(enc, labels)}{note}'
            f'<div class="tokpieces">{render_pieces(enc, show_ids, window, max_shown, labels)}</div></div>')


def render_views(encodings: list[Encoding], labels: dict[str, str], show_ids: bool = False,
                 windows: dict[str, int] | None = None, max_shown: int = MAX_SHOWN) -> str:
    """All views side by side; ``data-r`` changes on every render (the hover script's cache key)."""
    windows = windows or {}
    views = "".join(render_view(e, labels, show_ids, windows.get(e.key), max_shown) for e in encodings)
    return f'<div class="tokgrid" data-r="{next(_render_ids)}" style="--n:{max(1, len(encodings))}">{views}</div>'


def limit_html(message: str) -> str:
    """The views' place when the text cannot be tokenized (too long): one clear message."""
    return f'<div class="tok-limit" role="alert">{escape(message)}</div>'


def clip_window_html(text: str, labels: dict[str, str] | None = None) -> str:
    """CLIP's 77-token window for an image prompt: what is beyond it is greyed (never seen).
    Tokenized as diffusers does it (special strings in the prompt read as such)."""
    from engine.tokenization import tokenizers

    labels = labels or DEFAULT_LABELS
    tokenizers.check_text(text)
    tok = tokenizers.get("clip")
    enc = tok.encoding(text, parse_special=True)
    used = min(enc.n_tokens, tok.window)
    head = escape(_say(labels, "clip_count", used=used, window=tok.window, n=enc.n_tokens))
    cls = "clipcount over" if enc.n_tokens > tok.window else "clipcount"
    return (f'<div class="tokview clipwin" data-tok="clip" data-r="{next(_render_ids)}"><div class="{cls}">{head}</div>'
            f'<div class="tokpieces">{render_pieces(enc, False, tok.window)}</div></div>')


LABEL_KEYS = ("tokens", "chars", "bytes", "cpt", "cut", "truncated", "clip_count")


def translated_labels(lang: str) -> dict[str, str]:
    """The views' words in ``lang`` (templates kept: numbers are filled in per language)."""
    from ui.i18n import tables

    return {k: tables()[lang][f"tok.{k}"] for k in LABEL_KEYS} | {"lang": lang}


def _english_labels() -> dict[str, str]:
    from ui.strings.tokenizers import EN

    return {k: EN[f"tok.{k}"] for k in LABEL_KEYS} | {"lang": "en"}


DEFAULT_LABELS = _english_labels()
