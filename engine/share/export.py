"""A room's wall as a ZIP for the course report: ``wall.md`` + ``entries.csv`` + ``images/*.png``.

Everything students typed is escaped for the format it lands in: Markdown text has its markup and
HTML characters escaped (``<script>`` stays visible text), prompts and outputs sit in code fences
longer than any backtick run inside them, and CSV cells that a spreadsheet would read as a formula
(``=``, ``+``, ``-``, ``@``, tab, carriage return) start with an apostrophe.
"""
from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from engine.share.store import Store
from engine.share.wall import Entry, Room, Wall

MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SAFE_URL = re.compile(r"^https?://[^\s<>\"'`]{1,300}$")


@dataclass(frozen=True)
class ExportLabels:
    """The export's words in the teacher's language (the UI passes them: the engine formats no UI text)."""

    title: str | Callable[..., str] = "Class wall {room}"       # a format string, or fn(**fields) (plurals)
    exported: str | Callable[..., str] = "Exported {time} · {n} entries"
    prompt: str = "Prompt"
    link: str = "Link:"           # with its colon, the language's way ("Lien :")
    hidden: str = "hidden"
    pinned: str = "pinned"
    columns: tuple[str, ...] = ("entry", "time", "name", "tab", "prompt", "link", "hidden", "pinned", "images")
    number: Callable[[Union[int, float]], str] = str   # a card table's number in wall.md ("2,56"); the CSV keeps raw values


def md_escape(text: str) -> str:
    """One line of plain text inside Markdown: HTML characters as entities, markup characters escaped."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MD_SPECIAL.sub(r"\\\1", text)


def md_fence(text: str, info: str = "text") -> str:
    """``text`` verbatim in a fenced code block whose fence no line inside can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def md_table(headers: list, rows: list[list], number: Callable[[Union[int, float]], str] = str) -> str:
    """A Markdown table; numbers (and numbers stored as text by older cards) written by ``number``."""
    def cell(v: object) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return number(v)
        if isinstance(v, str) and NUMBER.match(v):
            return number(float(v) if "." in v else int(v))
        return md_escape("" if v is None else str(v)) or " "
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fill(text: str | Callable[..., str], **fields) -> str:
    return text(**fields) if callable(text) else text.format(**fields)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def entry_markdown(entry: Entry, tab_name: str, translate: Callable[[str], str], labels: ExportLabels,
                   link: str, images: list[list[str]]) -> str:
    """One entry's section; ``images[i]`` are the ZIP paths of the card's part ``i``."""
    flags = [labels.pinned] if entry.pinned else []
    flags += [labels.hidden] if entry.hidden else []
    head = f"## #{entry.num} · {md_escape(entry.name)} · {md_escape(tab_name)}"
    lines = [head + (f" ({', '.join(flags)})" if flags else ""), "",
             f"*{_when(entry.created)}* · {labels.link} <{link}>", "", f"**{md_escape(labels.prompt)}**", "",
             md_fence(entry.title)]
    for i, part in enumerate(entry.card.get("parts", [])):
        label = md_escape(translate(part.get("label", "")))
        kind = part.get("kind")
        if kind in ("text", "markdown"):
            lines += ["", f"**{label}**", "", md_fence(str(part.get("text", "")))]
        elif kind == "table":
            lines += ["", f"**{label}**", "", md_table(part.get("headers", []), part.get("rows", []), labels.number)]
        elif kind == "images":
            lines += ["", f"**{label}**", ""]
            lines += [f"![#{entry.num}]({path})" for path in (images[i] if i < len(images) else [])]
    return "\n".join(lines)


def export_zip(wall: Wall, code: str, token: str, dest_dir: str | Path, tab_names: dict[str, str],
               translate: Callable[[str], str], labels: ExportLabels | None = None, base_url: str = "") -> Path:
    """Write ``wall-<code>.zip`` in ``dest_dir`` (teacher only: hidden entries included and marked)."""
    labels = labels or ExportLabels()
    base_url = base_url if SAFE_URL.match(base_url or "") else ""
    room: Room = wall.require_teacher(code, token)
    entries = sorted(wall.entries(room.code, include_hidden=True), key=lambda e: e.num)
    store: Store = wall.store
    path = Path(dest_dir) / f"wall-{room.code}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(labels.columns)
    sections = [f"# {md_escape(_fill(labels.title, room=room.code))}", "",
                md_escape(_fill(labels.exported, time=_when(time.time()), n=len(entries)))]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry in entries:
            images: list[list[str]] = []
            for part in entry.card.get("parts", []):
                images.append([])
                for rel in part.get("files", []):
                    name = f"images/{entry.num:03d}-{sum(map(len, images)) + 1}.png"
                    try:
                        zf.write(store.image_path(rel), name)
                    except Exception:  # noqa: BLE001 - a missing file must not lose the rest of the wall
                        continue
                    images[-1].append(name)
            link = f"{base_url}?x={entry.experiment}"
            tab_name = tab_names.get(entry.tab, entry.tab)
            sections += ["", entry_markdown(entry, tab_name, translate, labels, link, images)]
            writer.writerow([csv_cell(v) for v in (entry.num, _when(entry.created), entry.name, tab_name, entry.title,
                                                   link, entry.hidden, entry.pinned,
                                                   " ".join(sum(images, [])))])
        zf.writestr("wall.md", "\n".join(sections) + "\n")
        zf.writestr("entries.csv", "\ufeff" + table.getvalue())   # BOM: Excel reads the accents right
    return path
