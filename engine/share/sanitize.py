"""Allow-list HTML sanitizer for results restored from a shared link.

A stored experiment's HTML comes from the client that shared it (the browser sends the outputs it
shows; ``/share_experiment`` takes them from any script), so it is untrusted: restoring it into a
``gr.HTML`` must never run script. Kept: the structural tags the app's own views use, with ``class``,
``title``, ``id``, ``data-*``, ``role``, ``aria-*`` and ``tabindex`` (the token tooltips are reached
by keyboard) and a small set of inline style properties (no ``url()``); dropped: every
other tag and attribute (event handlers, links, images, forms, SVG), and the content of ``script``,
``style``, ``iframe``, ``svg``, ``math``, ``template``… The app's own HTML passes through unchanged in
meaning (same tags, attributes and text).
"""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

TAGS = {"div", "span", "p", "br", "wbr", "hr", "b", "strong", "i", "em", "small", "sub", "sup", "code", "pre",
        "kbd", "mark", "s", "u", "details", "summary", "ul", "ol", "li", "table", "thead", "tbody", "tfoot", "tr",
        "th", "td", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
VOID = {"br", "wbr", "hr"}
DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript", "textarea",
                "title", "select", "option", "frameset", "frame", "noembed", "xmp", "plaintext", "head"}
ATTRS = {"class", "title", "id", "open", "colspan", "rowspan", "style", "role", "tabindex"}
DATA_ATTR = re.compile(r"^(data|aria)-[a-z0-9_-]{1,40}$")
TABINDEX = re.compile(r"^-?[01]$")
ID_VALUE = re.compile(r"^[A-Za-z][\w-]{0,80}$")
STYLE_PROPS = {"background", "background-color", "color", "border", "border-color", "border-radius", "border-left",
               "border-bottom", "padding", "margin", "margin-top", "margin-bottom", "display", "flex", "flex-wrap",
               "gap", "min-width", "max-width", "width", "white-space", "font-size", "font-weight", "font-style",
               "opacity", "line-height", "text-align", "overflow-wrap", "word-break", "vertical-align"}
CUSTOM_PROP = re.compile(r"^--[a-z][a-z0-9-]{0,30}$")
STYLE_VALUE = re.compile(r"^[\w\s#%.,+()/-]*$")
STYLE_FORBIDDEN = re.compile(r"url|expression|image|attr|javascript|import|\\", re.I)


def clean_style(style: str) -> str:
    kept = []
    for decl in style.split(";"):
        if ":" not in decl:
            continue
        prop, value = (part.strip() for part in decl.split(":", 1))
        prop = prop.lower()
        if (prop in STYLE_PROPS or CUSTOM_PROP.match(prop)) and STYLE_VALUE.match(value) \
                and not STYLE_FORBIDDEN.search(value):
            kept.append(f"{prop}:{value}")
    return ";".join(kept)


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            if tag in DROP_CONTENT:
                self.skipping.append(tag)
            return
        if tag in DROP_CONTENT:
            self.skipping.append(tag)
            return
        if tag not in TAGS:
            return
        parts = [tag]
        for name, value in attrs:
            name = name.lower()
            if not (name in ATTRS or DATA_ATTR.match(name)):
                continue
            if value is None:
                parts.append(name)
                continue
            if name == "style":
                value = clean_style(value)
                if not value:
                    continue
            if (name == "id" and not ID_VALUE.match(value)) or (name == "tabindex" and not TABINDEX.match(value)):
                continue
            parts.append(f'{name}="{html.escape(value, quote=True)}"')
        self.out.append("<" + " ".join(parts) + ">")
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in TAGS and tag not in VOID and not self.skipping and self.open and self.open[-1] == tag:
            self.open.pop()
            self.out.append(f"</{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag in VOID or tag not in self.open:
            return
        while self.open:                      # close anything left open inside it
            top = self.open.pop()
            self.out.append(f"</{top}>")
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{t}>" for t in reversed(self.open))


def sanitize_html(text: str | None) -> str:
    if not text:
        return ""
    parser = _Sanitizer()
    parser.feed(str(text))
    return parser.result()


class _Text(HTMLParser):
    BREAKS = {"br", "div", "p", "li", "tr", "pre", "details", "summary", "h1", "h2", "h3", "h4"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in DROP_CONTENT:
            self.skip += 1
        elif tag in self.BREAKS and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in DROP_CONTENT and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(text: str | None) -> str:
    """The visible text of an HTML fragment (what a wall card or an export shows of an HTML result)."""
    if not text:
        return ""
    parser = _Text()
    parser.feed(str(text))
    parser.close()
    out = "".join(parser.parts)
    return re.sub(r"\n{3,}", "\n\n", out).strip()
