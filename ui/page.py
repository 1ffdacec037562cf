"""The page as served: in the visitor's language from its first paint, with no secret in its address.

Gradio serves one page for every visitor: its title, and the first values of the views that the
server renders (the probability legend, the tokenizer views, the About panel…), are those of the
language the app was built in, and the page used to put them in the visitor's language only after a
round trip through the queue on load (English for 2–3 s on a French page, and the page usable later).

:class:`LanguagePage` is an ASGI middleware on the app (``launch(app_kwargs=...)``, see app.py) that
rewrites that one HTML response, for the language the visitor will see (``--lang``, else ``?lang=``,
else the header switch's cookie, else the browser's ``Accept-Language``, as :func:`ui.i18n.request_lang`):

- ``<html lang>``, ``<title>`` and the config's ``title`` (the browser tab's name);
- the first value of every view registered with :meth:`ui.context.AppContext.on_language`, computed
  once per language at start-up by the same function the language switch calls;
- ``assets/boot.js`` inlined at the top of ``<head>``, which runs before Gradio's scripts: it gives
  Gradio's own texts the page's language from the start, takes a teacher token out of the address
  (``?teacher=`` or ``#teacher=``) before anything can show or send it, and hands the client-side
  texts to ``assets/*.js`` (``window.genaiBoot``).

The header (ui/header.py, assets/header.js) then has nothing to re-render on load when the browser
agrees with the server about the language, which is the usual case: no event, no flash.
"""
from __future__ import annotations

import html
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio.data_classes import GradioModel, GradioRootModel

from ui.i18n import LANG_COOKIE, LANGS, forced_lang, t, tables

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parent.parent / "assets"
BOOT = ASSETS / "boot.js"
CLIENT_PREFIX = "client."           # UI strings the page's scripts need (ui/strings/interface.py)
_CONFIG = re.compile(r"window\.gradio_config = (\{.*?\});</script>", re.S)
_HTML_LANG = re.compile(r'<html(\s+)lang="[^"]*"')


def served_lang(query: str, cookie: str, accept_language: str) -> str:
    """The language a page request will be served in (the same rules as ui.i18n.request_lang, plus ?lang=)."""
    if forced_lang():
        return forced_lang()
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "lang" and value in LANGS:
            return value
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == LANG_COOKIE and value.strip() in LANGS:
            return value.strip()
    for part in accept_language.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "en"


def page_title(lang: str) -> str:
    return t("app.page_title", lang)


# ============================================================================ first values per language
def _input_value(comp: gr.components.Component) -> Any:
    """A component's first value as its event handlers receive it (preprocessed)."""
    value = comp.value
    model = getattr(comp, "data_model", None)
    if value is not None and isinstance(model, type):
        if issubclass(model, GradioModel) and isinstance(value, dict):
            value = model(**value)
        elif issubclass(model, GradioRootModel):
            value = model(root=value)
    return comp.preprocess(value)


def _props(comp: gr.components.Component, result: Any) -> dict:
    """What a handler's result for ``comp`` changes in the page's config (``props``): the component
    built again with the result's changes, as Gradio builds an update, and the changed props taken."""
    if isinstance(result, gr.blocks.Block):                      # an update: gr.Dropdown(choices=...)
        changed = dict(result.constructor_args)
    elif isinstance(result, dict) and result.get("__type__") == "update":
        changed = {k: v for k, v in result.items() if k != "__type__"}
    else:
        changed = {"value": result}
    changed.pop("render", None)
    if not changed:
        return {}
    config = comp.__class__(**{**comp.constructor_args, **changed, "render": False}).get_config()
    return {k: config[k] for k in changed if k in config}


def localized_props(hooks: list[tuple[Callable, list, list]]) -> dict[str, dict[int, dict]]:
    """For each language: component id → the props its language hook gives it for the first values.
    A hook that fails (or reads a value computed per visitor) is left to the switch, as before."""
    out: dict[str, dict[int, dict]] = {lang: {} for lang in LANGS}
    for fn, inputs, outputs in hooks:
        try:
            values = [_input_value(c) for c in inputs]
            if any(callable(c.value) for c in inputs):
                continue
            for lang in LANGS:
                result = fn(lang, *values)
                results = list(result) if isinstance(result, (tuple, list)) and len(outputs) > 1 else [result]
                for comp, value in zip(outputs, results):
                    props = _props(comp, value)
                    if props:
                        out[lang].setdefault(comp._id, {}).update(props)
        except Exception:  # noqa: BLE001 - the page still works: the switch re-renders this view on load
            log.warning("could not pre-render a language hook", exc_info=True)
    return out


def client_strings() -> dict[str, dict[str, str]]:
    """The UI strings the page's scripts show themselves (keys ``client.*``, and the page's title), in
    every language."""
    return {lang: {**{k[len(CLIENT_PREFIX):]: v for k, v in table.items() if k.startswith(CLIENT_PREFIX)},
                   "page_title": page_title(lang)}
            for lang, table in tables().items()}


FRONTEND = Path(gr.__file__).resolve().parent / "templates" / "frontend" / "assets"


def _chunk(pattern: str) -> str:
    found = sorted(p.name for p in FRONTEND.glob(pattern))
    return found[0] if found else ""


def chart_module() -> str:
    """The file name of Gradio's Vega-Embed chunk (what gr.LinePlot/BarPlot draw with): the page
    sets Vega's number format locale through it (assets/header.js), so chart axes read "0,5"."""
    return _chunk("embed-*.js")


def warm_modules() -> list[str]:
    """Gradio chunks a tab's first open waits for (its charts, its matplotlib plots), which the page
    loads once it is idle (assets/header.js)."""
    return [name for name in (chart_module(), _chunk("MatplotlibPlot-*.js")) if name]


def _json_for_script(value: Any) -> str:
    """JSON safe inside a <script> element (as Gradio writes its config)."""
    from gradio.routes import toorjson

    return str(toorjson(value))


# ============================================================================ the middleware
class LanguagePage:
    """ASGI middleware: the app's HTML page served in the visitor's language (see the module docstring)."""

    def __init__(self, app, hooks: list[tuple[Callable, list, list]] | None = None,
                 props: dict[str, dict[int, dict]] | None = None) -> None:
        self.app = app
        self.hooks = hooks or []
        self._props = props
        self._lock = threading.Lock()
        self._boot = BOOT.read_text(encoding="utf-8")
        self._strings = json.dumps(client_strings(), ensure_ascii=False)
        self._chart = chart_module()
        self._warm = warm_modules()

    def props(self) -> dict[str, dict[int, dict]]:
        with self._lock:                                  # computed once, on the first page served
            if self._props is None:
                self._props = localized_props(self.hooks)
            return self._props

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD" and scope["path"] in ("/", ""):
            # "is the app up?" (Gradio's own launch check, load balancers): headers only, at once. Gradio
            # would build the whole page and its API description to throw them away, and its launch
            # gives up after 3 s: on a loaded machine the app failed to start.
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if message["status"] == 200 and headers.get(b"content-type", b"").startswith(b"text/html"):
                    start.update(message)
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and start:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = self.rewrite(b"".join(chunks).decode("utf-8"), scope).encode("utf-8")
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, capture)

    def rewrite(self, page: str, scope: dict) -> str:
        match = _CONFIG.search(page)
        if match is None or "<head>" not in page:
            return page
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        lang = served_lang(scope.get("query_string", b"").decode("latin-1"), headers.get("cookie", ""),
                           headers.get("accept-language", ""))
        config = json.loads(match.group(1))
        config["title"] = page_title(lang)
        config["genai_lang"] = lang
        props = self.props().get(lang, {})
        for comp in config.get("components", []):
            changes = props.get(comp.get("id"))
            if changes:
                comp.setdefault("props", {}).update(changes)
            if comp.get("props", {}).get("elem_id") == "lang-switch":   # ui/header.py: already set
                comp["props"]["value"] = lang
        page = page[:match.start(1)] + _json_for_script(config) + page[match.end(1):]
        page = _HTML_LANG.sub(lambda m: f'<html{m.group(1)}lang="{lang}"', page, count=1)
        boot = (f"<title>{html.escape(page_title(lang))}</title>\n<script>window.genaiServed = "
                f"{_json_for_script({'lang': lang, 'forced': bool(forced_lang()), 'chart': self._chart, 'warm': self._warm, 'strings': json.loads(self._strings)})};"
                f"\n{self._boot}</script>")
        return page.replace("<head>", "<head>\n" + boot, 1)
