"""Component values ↔ what a shared experiment stores (JSON records + images), both ways, validated.

Inputs (the controls a tab's action reads) are stored as plain JSON values and checked against the
component on the way back (choices, slider range, text length), so a hand-written or tampered link
can only set what a student could set by hand. Results are stored as typed records::

    {"type": "text" | "markdown" | "html", "value": str}      # html sanitized (engine/share/sanitize.py)
    {"type": "json", "value": ...}
    {"type": "table", "headers": [...], "data": [[...]]}     # gr.Dataframe
    {"type": "chart", "columns": [...], "data": [[...]]}     # gr.BarPlot / ScatterPlot / LinePlot
    {"type": "image" | "gallery" | "plot", "files": [...], "thumbs": [...], "captions": [...]}
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import weakref
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
from gradio.components.native_plot import NativePlot

from engine.share.sanitize import html_to_text, sanitize_html
from engine.share.store import Store
from ui import fmt

MAX_TEXT = 100_000                      # the tokenizer tab takes 100,000 characters
CARD_TEXT = 1200
CARD_ROWS, CARD_COLUMNS, CARD_IMAGES = 8, 6, 4
TRUE = {"1", "true", "yes", "on", "oui", "vrai"}
FALSE = {"0", "false", "no", "off", "non", "faux", ""}
IMAGE_KINDS = ("image", "gallery", "plot")
_HTML_CARRIERS: "weakref.WeakSet[gr.Textbox]" = weakref.WeakSet()
_JSON_INPUTS: "weakref.WeakKeyDictionary[gr.JSON, Callable[[Any], Any]]" = weakref.WeakKeyDictionary()


def carries_html(box: gr.Textbox) -> gr.Textbox:
    """Mark a (hidden) text box whose value the page puts in place as HTML (assets/tokenizer_input.js):
    shared links store and restore it as HTML, sanitized, never as plain text."""
    _HTML_CARRIERS.add(box)
    return box


def json_input(component: gr.JSON, check: Callable[[Any], Any]) -> gr.JSON:
    """Let a ``gr.JSON`` input (e.g. a hidden conversation history) be stored and restored by links:
    ``check(value)`` returns the value to set, or raises when it is not acceptable."""
    _JSON_INPUTS[component] = check
    return component


def output_kind(component: gr.components.Component) -> str:
    """The record type for a result component; TypeError (at build time) for anything else."""
    if component in _HTML_CARRIERS:
        return "html"
    for cls, kind in ((gr.HTML, "html"), (gr.Markdown, "markdown"), (gr.JSON, "json"), (gr.Dataframe, "table"),
                      (NativePlot, "chart"), (gr.Plot, "plot"), (gr.Image, "image"), (gr.Gallery, "gallery"),
                      (gr.Code, "text"), (gr.Textbox, "text")):
        if isinstance(component, cls):
            if kind == "markdown" and not component.sanitize_html:
                raise TypeError("a shared gr.Markdown must keep sanitize_html=True")
            return kind
    raise TypeError(f"{type(component).__name__} cannot be part of a shared result")


# ============================================================================ results
def _json_safe(value: Any, depth: int = 0) -> Any:
    """Plain JSON (numpy numbers → Python, NaN/inf → None, anything else → str); bounded depth."""
    if depth > 40:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist(), depth + 1)
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    return str(value)


def _to_pil(item: Any):
    from PIL import Image

    if item is None:
        return None
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return Image.fromarray(item.astype(np.uint8) if item.dtype != np.uint8 else item)
    path = getattr(item, "path", None) or item
    with Image.open(path) as img:
        img.load()
        return img.copy()


def _image_item(item: Any):
    """A PNG file's own bytes (its text chunks, e.g. the image tab's settings, kept), else a PIL image."""
    path = getattr(item, "path", None) or item
    if isinstance(path, (str, Path)) and str(path).lower().endswith(".png") and Path(path).is_file():
        return Path(path).read_bytes()
    return _to_pil(item)


def encode_output(component: gr.components.Component, value: Any) -> dict | None:
    """A result component's value (as its event handler receives it) → a record; None when empty."""
    kind = output_kind(component)
    if value is None or (isinstance(value, (str, list, dict)) and not value):
        return None
    if kind in ("text", "markdown"):
        return {"type": kind, "value": str(value)}
    if kind == "html":
        return {"type": "html", "value": sanitize_html(str(value))}
    if kind == "json":
        return {"type": "json", "value": _json_safe(value)}
    if kind == "table":
        frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(value.get("data", []),
                                                                           columns=value.get("headers"))
        if frame.empty and not len(frame.columns):
            return None
        split = json.loads(frame.to_json(orient="split", date_format="iso"))
        return {"type": "table", "headers": [str(c) for c in split["columns"]], "data": split["data"]}
    if kind == "chart":
        columns = getattr(value, "columns", None) if not isinstance(value, dict) else value.get("columns")
        data = getattr(value, "data", None) if not isinstance(value, dict) else value.get("data")
        if isinstance(value, pd.DataFrame):
            split = json.loads(value.to_json(orient="split"))
            columns, data = split["columns"], split["data"]
        if not columns:
            return None
        return {"type": "chart", "columns": [str(c) for c in columns], "data": _json_safe(data or [])}
    if kind == "plot":
        plot = value.get("plot") if isinstance(value, dict) else getattr(value, "plot", None)
        ptype = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if ptype != "matplotlib" or not isinstance(plot, str) or not plot.startswith("data:image/"):
            return None                                         # only pictures: never script-bearing chart JSON
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(plot.split(",", 1)[1]))) as img:
            img.load()
            return {"type": "plot", "images": [img.copy()]}
    if kind == "image":
        return {"type": "image", "images": [_image_item(value)]}
    items = [(item, None) if not isinstance(item, (tuple, list)) else (item[0], item[1]) for item in value]
    return {"type": "gallery", "images": [_image_item(i) for i, _ in items],
            "captions": [None if c is None else str(c)[:300] for _, c in items]}


def accept_record(component: gr.components.Component, record: Any, allow_images: bool = True) -> dict | None:
    """A stored (or API-given) record checked against the component: right type, right shape; else None."""
    kind = output_kind(component)
    if not isinstance(record, dict) or record.get("type") != kind:
        return None
    if kind in ("text", "markdown", "html"):
        value = record.get("value")
        if not isinstance(value, str):
            return None
        return {"type": kind, "value": sanitize_html(value) if kind == "html" else value}
    if kind == "json":
        return {"type": "json", "value": _json_safe(record.get("value"))}
    if kind in ("table", "chart"):
        cols_key = "headers" if kind == "table" else "columns"
        cols, data = record.get(cols_key), record.get("data")
        if not isinstance(cols, list) or not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            return None
        return {"type": kind, cols_key: [str(c) for c in cols], "data": _json_safe(data)}
    if not allow_images:
        return None
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return {k: record[k] for k in ("type", "files", "thumbs", "captions") if k in record}


def decode_output(component: gr.components.Component, record: Any, store: Store, lang: str = "en") -> Any:
    """A stored record → the value to return for ``component`` (``gr.skip()`` if it does not fit); a
    table's numbers written the ``lang`` way, as the tab itself shows them (ui/fmt.py)."""
    record = accept_record(component, record)
    if record is None:
        return gr.skip()
    kind = record["type"]
    if kind in ("text", "markdown", "html", "json"):
        return record["value"]
    if kind == "table":
        frame = pd.DataFrame(record["data"], columns=record["headers"])
        datatypes = component.datatype if isinstance(component.datatype, list) else [component.datatype]
        if any(d in ("html", "markdown") for d in datatypes):
            frame = frame.map(lambda v: sanitize_html(v) if isinstance(v, str) else v)
        return fmt.table(frame, lang) if len(frame.columns) == len(set(frame.columns)) else frame
    if kind == "chart":
        return pd.DataFrame(record["data"], columns=record["columns"])
    paths = [str(store.image_path(rel)) for rel in record["files"]]     # served as they are: a static path
    if kind == "plot":
        from gradio.components.plot import PlotData

        png = base64.b64encode(Path(paths[0]).read_bytes()).decode()
        return PlotData(type="matplotlib", plot="data:image/png;base64," + png)
    if kind == "image":
        return paths[0] if paths else None
    captions = record.get("captions") or [None] * len(paths)
    return list(zip(paths, captions))


# ============================================================================ inputs
def encode_input(value: Any) -> Any:
    return _json_safe(value)


def _choice_values(component: Any) -> list:
    return [c[1] if isinstance(c, (tuple, list)) else c for c in (component.choices or [])]


def _match_choice(component: Any, value: Any) -> Any:
    for choice in _choice_values(component):
        if choice == value or str(choice) == str(value):
            return choice
    if getattr(component, "allow_custom_value", False) and isinstance(value, (str, int, float)):
        return str(value).strip()[:300]
    raise ValueError(f"not one of the choices: {value!r}")


def _number(component: Any, value: Any) -> float | int:
    number = float(str(value).replace(",", ".")) if isinstance(value, str) else float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError("not a number")
    low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
    number = max(low, number) if low is not None else number
    number = min(high, number) if high is not None else number
    number = float(number)
    integral = (isinstance(component, gr.Number) and component.precision == 0) or \
        (isinstance(component, gr.Slider) and float(component.step or 1).is_integer() and number.is_integer())
    return int(round(number)) if integral else number


def decode_input(component: gr.components.Component, value: Any) -> Any:
    """A stored or hand-written value → one the component accepts; ValueError if it cannot be."""
    if isinstance(component, gr.Checkbox):
        if isinstance(value, str):
            if value.strip().lower() not in TRUE | FALSE:
                raise ValueError(f"not true/false: {value!r}")
            return value.strip().lower() in TRUE
        return bool(value)
    if isinstance(component, (gr.Slider, gr.Number)):
        return _number(component, value)
    if isinstance(component, gr.CheckboxGroup) or (isinstance(component, gr.Dropdown) and component.multiselect):
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
        return [_match_choice(component, v.strip() if isinstance(v, str) else v) for v in items]
    if isinstance(component, (gr.Dropdown, gr.Radio)):
        return _match_choice(component, value)
    if isinstance(component, (gr.Textbox, gr.Code)):
        text = "" if value is None else str(value)
        if len(text) > MAX_TEXT:
            raise ValueError("too long")
        return text
    if isinstance(component, gr.JSON) and component in _JSON_INPUTS:
        if isinstance(value, str):
            if len(value) > MAX_TEXT * 4:
                raise ValueError("too long")
            value = json.loads(value) if value.strip() else None
        return _JSON_INPUTS[component](_json_safe(value))
    raise ValueError(f"{type(component).__name__} values cannot be restored")


# ============================================================================ wall cards
def is_blank(record: dict | None) -> bool:
    """A result record that shows nothing: no text (HTML counted as its text), no table row, no image."""
    if not record:
        return True
    kind = record.get("type")
    if kind in ("text", "markdown", "html"):
        value = record.get("value") or ""
        return not (html_to_text(value) if kind == "html" else value).strip()
    if kind in ("table", "chart"):
        return not record.get("data")
    if kind == "json":
        return record.get("value") in (None, "", [], {})
    return not (record.get("images") or record.get("files"))


def fingerprint(kind: str, inputs: dict, records: dict[str, dict | None], store: Store | None = None) -> str:
    """A hash of an action, its inputs and the given results (images by their PNG bytes, stored or not):
    equal for the same experiment sent twice, whatever was stored in between."""
    from engine.share.store import encode_png

    digest = hashlib.sha256()
    digest.update(json.dumps([kind, inputs], sort_keys=True, ensure_ascii=False, default=str).encode())
    for name in sorted(records):
        record = records[name] or {}
        digest.update(name.encode())
        if "images" in record or "files" in record:
            blobs = ([encode_png(i) for i in record["images"]] if "images" in record
                     else [store.image_path(f).read_bytes() for f in record["files"]] if store is not None else [])
            for blob in blobs:
                digest.update(hashlib.sha256(blob).digest())
        else:
            digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()[:32]


def card_part(label: str, record: dict | None) -> dict | None:
    """What a wall card shows of one stored result (text cut, first rows, a few thumbnails)."""
    if not record:
        return None
    kind = record["type"]
    if kind in ("text", "html", "markdown"):
        text = html_to_text(record["value"]) if kind == "html" else record["value"]
        text = text if len(text) <= CARD_TEXT else text[:CARD_TEXT] + "…"
        return {"kind": "markdown" if kind == "markdown" else "text", "label": label, "text": text}
    if kind in ("table", "chart"):
        headers = record["headers" if kind == "table" else "columns"][:CARD_COLUMNS]
        rows = [[_cell(v) for v in row[:CARD_COLUMNS]] for row in record["data"][:CARD_ROWS]]
        return {"kind": "table", "label": label, "headers": headers, "rows": rows}
    if kind in IMAGE_KINDS:
        return {"kind": "images", "label": label, "files": record["files"][:CARD_IMAGES],
                "thumbs": record.get("thumbs", [])[:CARD_IMAGES],
                "captions": [c if isinstance(c, str) else "" for c in (record.get("captions") or [])][:CARD_IMAGES]}
    return None


def _cell(value: Any) -> Any:
    """A table cell as the card keeps it: numbers stay numbers (the wall writes them in its reader's
    language, ui/wall_view.py), floats to 4 significant digits; anything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value
    return str(value)[:80]
