"""A link for every experiment: the "Copy link" / "Send to the wall" row and restoring from a link.

Each tab calls :func:`share_row` once, at the end of its ``build()``::

    share_row(ctx, "tokenizers", api="tokenize", outputs={"views": views, "stats": stats},
              card={"share.card.counts": "stats"}, title="text")

``api`` names the tab's action: its inputs (and their names, the API's parameter names) are read from
that event, so a link restores exactly what the action reads and ``/open_experiment`` returns
arguments ready for ``client.predict(**inputs, api_name=...)``. The enclosing ``gr.Tab``s are found
from where the row is built, so opening a link selects the tab (and a sub-tab) with no extra wiring.

``app.py`` calls :func:`restore_banner` above the tabs and :func:`install` after them: ``demo.load``
reads ``?x=<id>`` (a stored experiment) or ``?tab=<tab or action>&<input>=<value>…`` (hand-written
links) and ``?room=`` / ``?teacher=`` (the class wall); see ui/share_restore.py.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import gradio as gr
from gradio.context import Context
from gradio.utils import get_function_params

from engine.errors import UserError
from engine.share import Experiment, Sharing
from engine.share.backup import start_hub_backup
from engine.share.export import md_escape
from ui import share_codec as codec
from ui.context import AppContext
from ui.feedback import guard, to_gr_error
from ui.i18n import I18N, LANGS, request_lang, t
from ui.share_restore import Restorer

# what a wall card shows under a label: an output's name, or fn(label, stored outputs) -> card part
CardPart = str | Callable[[str, dict], dict | None]

# "?x=<id>" from the server → the full link as this browser sees the app (works behind --share and on Spaces)
LINK_JS = """(query) => {
  if (!query || !query.startsWith('?')) return query;
  const url = new URL(window.location.href); url.search = query; url.hash = '';
  const link = url.toString();
  try { navigator.clipboard.writeText(link).catch(() => {}); } catch (e) {}
  return link;
}"""
STRIP_TEACHER_JS = """() => {
  const url = new URL(window.location.href);
  if (url.searchParams.has('teacher')) { url.searchParams.delete('teacher'); history.replaceState(null, '', url); }
}"""
TAKE_TEACHER_JS = "(state, _) => [state, (window.genaiBoot && window.genaiBoot.takeTeacher()) || '']"
LINK_TRIGGER_JS = """() => { const p = new URLSearchParams(window.location.search);
  return (p.get('x') || p.get('tab')) ? 'link ' + Date.now() : ''; }"""
# "Run again" presses the tab's own button, exactly as a student would
RUN_AGAIN_JS = """(target) => {
  const b = document.getElementById(target);
  if (b) { b.scrollIntoView({block: 'center'}); b.click(); }
  return target;
}"""
AUTO_RUN_JS = "(target) => { if (target) { const b = document.getElementById(target); if (b) b.click(); } }"


@dataclass
class ShareSpec:
    """One shareable action of a tab: what a link stores and restores."""

    kind: str                                   # the action's API name ("compare", "tokenize", …)
    tab: str                                    # top-level tab id
    path: list[tuple[gr.Tabs, str]]             # enclosing Tabs and the tab id each must select, outermost first
    labels: list[str]                           # the enclosing tabs' label keys (wall cards, export)
    inputs: dict[str, gr.components.Component]
    outputs: dict[str, gr.components.Component]
    # (label key, output name or part maker) on a wall card, or a function of the experiment's inputs giving them
    card: list[tuple[str, CardPart]] | Callable[[dict], Mapping[str, CardPart]]
    title: Callable[[dict], str]
    run_elem_id: str | None
    on_restore: tuple[Callable[[dict, str], tuple], list[gr.components.Component]] | None = None
    live: bool = False                          # the tab recomputes the result when an input changes
    recorded: Callable[[dict, dict], dict] | None = None  # (inputs, outputs) → the inputs the result was made with
    settle: bool = True                         # restored values may fire events that undo them: set them twice
    empty: str = "wall.err.no_result"           # the tab's "no result yet" message (a blank result is not sent)
    describe: Callable[[dict, str], str] | None = None   # inputs, lang → what the result's images show (alt text)

    @property
    def components(self) -> list[gr.components.Component]:
        return list(self.inputs.values()) + list(self.outputs.values())

    def experiment(self, values: tuple) -> Experiment:
        """Values as the share event receives them (inputs, then outputs) → an Experiment to store."""
        n = len(self.inputs)
        given = dict(zip(self.inputs, values[:n]))
        if self.recorded is not None:
            given = self.recorded(given, dict(zip(self.outputs, values[n:])))
        inputs = {name: codec.encode_input(v) for name, v in given.items()}
        outputs = {}
        for (name, comp), value in zip(self.outputs.items(), values[n:]):
            record = codec.encode_output(comp, value)
            if record is not None:
                outputs[name] = record
        return Experiment(kind=self.kind, tab=self.tab, inputs=inputs, outputs=outputs)

    def card_pairs(self, inputs: dict) -> list[tuple[str, CardPart]]:
        return list(self.card(inputs).items()) if callable(self.card) else list(self.card)

    def card_for(self, exp: Experiment) -> dict:
        parts = [name(label, exp.outputs) if callable(name) else codec.card_part(label, exp.outputs.get(name))
                 for label, name in self.card_pairs(exp.inputs)]
        card = {"labels": self.labels, "parts": [p for p in parts if p]}
        if self.describe is not None:                # in every language: the wall is read in either
            card["alt"] = {lang: self.describe(dict(exp.inputs), lang) for lang in LANGS}
        return card

    def shown(self, exp: Experiment) -> dict[str, dict | None]:
        """The results a wall card shows (every result when the tab names none); a part maker names
        the output it reads in its ``output`` attribute."""
        names = [name if isinstance(name, str) else getattr(name, "output", None)
                 for _, name in self.card_pairs(exp.inputs)]
        names = [name for name in names if name] or list(self.outputs)
        return {name: exp.outputs.get(name) for name in names}

    def is_blank(self, exp: Experiment) -> bool:
        """Nothing the card would show: the tab has no result yet (its placeholders only)."""
        return all(codec.is_blank(record) for record in self.shown(exp).values())


@dataclass
class Registry:
    """Every share row of one app, the wall's shared fields, and the storage behind them."""

    sharing: Sharing
    specs: dict[str, ShareSpec] = field(default_factory=dict)
    room_box: gr.Textbox | None = None
    name_box: gr.Textbox | None = None
    browser: gr.BrowserState | None = None
    wall_hook: tuple[Callable[..., dict], list] | None = None
    banner: dict[str, Any] = field(default_factory=dict)

    def shared_fields(self) -> None:
        """The room code and name boxes (rendered by the wall tab, read by every "Send to the wall")."""
        if self.room_box is None:
            self.room_box = gr.Textbox(label=I18N("wall.room"), placeholder="GENAI-…", max_length=40, render=False,
                                       elem_id="wall-room")
            self.name_box = gr.Textbox(label=I18N("wall.name"), placeholder=I18N("wall.name_placeholder"),
                                       max_length=self.sharing.wall.limits.name_chars, render=False,
                                       elem_id="wall-name")
            self.browser = gr.BrowserState({}, storage_key="genai-class-wall", secret=browser_secret(self.sharing))

    def find(self, name: str) -> ShareSpec | None:
        """A spec by action name ("tokenize") or by tab id ("tokenizers": its first action)."""
        if name in self.specs:
            return self.specs[name]
        return next((s for s in self.specs.values() if s.tab == name), None)

    # ------------------------------------------------------------------ actions
    def share(self, spec: ShareSpec, values: tuple, request: gr.Request | None) -> str:
        exp = self.sharing.share(spec.experiment(values), *client_keys(request))
        return f"?x={exp.id}"

    def post(self, spec: ShareSpec, exp: Experiment | None, room: str, name: str, request: gr.Request | None,
             values: tuple = ()):
        """Send to the wall: from the page, a result to show (never a blank card; an API caller may post
        a stored experiment with inputs only); once per student (the same result sent again is the card
        already there); checks first (room, name, rate), then stores the experiment, then the entry."""
        if not (room or "").strip():
            raise UserError("wall.err.join_first")
        wall, store = self.sharing.wall, self.sharing.store
        if exp is None:                                   # from the page: a result to show, never a blank card
            exp = spec.experiment(values)
            if spec.is_blank(exp):
                raise UserError(spec.empty)
        mark = codec.fingerprint(spec.kind, exp.inputs, spec.shown(exp), store)
        code = wall.room(room).code
        same = wall.find_duplicate(code, name, mark)      # before the rate limit: clicking again costs nothing
        if same is not None:
            return same
        session, address = client_keys(request)
        room_obj, name = wall.check_post(code, name, session, address)
        if not exp.id:
            exp = store.put_experiment(exp)
        title = spec.title(exp.inputs)
        return wall.add_entry(room_obj.code, name, exp.id, spec.tab, title, spec.card_for(exp), fingerprint=mark)


# ============================================================================ helpers
def client_keys(request: gr.Request | None) -> tuple[str, str]:
    """(browser session, network address): what rate limits count by."""
    session = getattr(request, "session_hash", None) or ""
    client = getattr(request, "client", None)
    return session, getattr(client, "host", "") or ""


def browser_secret(sharing: Sharing) -> str:
    """The key BrowserState encrypts with, kept in the data folder so a restart keeps students' names."""
    path = Path(sharing.folder) / "browser-state.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def registry(ctx: AppContext) -> Registry:
    """The registry of the app being built (one per ``gr.Blocks``)."""
    root = Context.root_block
    reg = getattr(root, "_genai_share", None)
    if reg is None:
        folder = ctx.settings.get("data_dir") or None
        reg = Registry(Sharing(folder))
        setattr(root, "_genai_share", reg)
    return reg


def _enclosing_tabs() -> tuple[list[tuple[gr.Tabs, str]], list[str]]:
    path, labels = [], []
    block = Context.block
    while block is not None:
        if isinstance(block, gr.Tab) and isinstance(block.parent, gr.Tabs) and block.id is not None:
            path.insert(0, (block.parent, block.id))
            labels.insert(0, getattr(block.label, "key", None) or str(block.label))
        block = getattr(block, "parent", None)
    return path, labels


def _event(api: str):
    fns = Context.root_block.default_config.fns.values()
    found = [fn for fn in fns if fn.api_name == api]
    if len(found) != 1:
        raise ValueError(f"share_row: no single event with api_name={api!r}")
    return found[0]


def _title_fn(title: str | Callable[[dict], str] | None, inputs: dict) -> Callable[[dict], str]:
    if callable(title):
        return title
    name = title or next((n for n, c in inputs.items() if isinstance(c, gr.Textbox)), None)
    return lambda values: str(values.get(name, "")) if name else ""


# ============================================================================ building
def share_row(ctx: AppContext, tab_id: str, *, api: str,
              outputs: Mapping[str, gr.components.Component],
              card: Mapping[str, CardPart] | Callable[[dict], Mapping[str, CardPart]] | None = None,
              title: str | Callable[[dict], str] | None = None,
              on_restore: tuple[Callable[[dict, str], tuple], list] | None = None,
              recorded: Callable[[dict, dict], dict] | None = None, settle: bool = True,
              empty: str = "wall.err.no_result", describe: Callable[[dict, str], str] | None = None) -> ShareSpec:
    """The "Copy link" / "Send to the wall" row for the action ``api`` of tab ``tab_id``.

    ``outputs``: name → result component stored with the link; ``card``: label key → output name
    shown on a wall card, or ``fn(label, stored outputs) -> card part`` (or a function of the stored
    inputs giving that mapping); ``title``: the input shown as the card's prompt (default: the first
    textbox), or a function of the input values; ``on_restore``: ``(fn(inputs, lang) -> updates,
    components)`` for what restoring values does not redo by itself (visibility, interactivity);
    ``recorded``: ``fn(inputs, outputs) -> inputs`` when the result on screen was made with other
    inputs than the controls show now (a conversation's last turn), so that a link replays exactly
    the call that made it; ``settle=False`` when no event of the tab changes its inputs or results as
    restored values land (the restore is final at once, and what the visitor starts right after
    opening the link is never overwritten by a second pass); ``empty``: the tab's "no result yet"
    message, shown instead of sending a blank card; ``describe``: ``fn(inputs, lang)`` → what the
    result's images show (their alt text on the wall).

    The results become inputs of the row's events: they are made read-only here (Gradio would
    otherwise offer "drop an image here" on an output image, or editable output tables).
    """
    reg = registry(ctx)
    reg.shared_fields()
    event = _event(api)
    names = [p[0] for p in get_function_params(event.fn)]
    inputs = dict(zip(names, event.inputs))
    for comp in outputs.values():
        codec.output_kind(comp)                      # unsupported components fail at build time, not in class
        if getattr(comp, "interactive", False) is None:
            comp.interactive = False
    path, labels = _enclosing_tabs()
    if path and path[0][1] != tab_id:
        raise ValueError(f"share_row({tab_id!r}) is built inside the tab {path[0][1]!r}")
    spec = ShareSpec(kind=api, tab=tab_id, path=path, labels=labels, inputs=inputs, outputs=dict(outputs),
                     card=card if callable(card) else [(label, name) for label, name in (card or {}).items()],
                     title=_title_fn(title, inputs), run_elem_id=_button_id(event), on_restore=on_restore,
                     recorded=recorded, settle=settle, empty=empty, describe=describe)
    reg.specs[api] = spec

    with gr.Row(elem_classes="share-row", equal_height=True):
        copy = gr.Button(I18N("share.copy"), size="sm", scale=0, min_width=150, elem_id=f"share-{api}-copy")
        link = gr.Textbox(label=I18N("share.link_label"), show_label=False, container=False, interactive=False,
                          buttons=["copy"], scale=3, placeholder=I18N("share.link_placeholder"), min_width=220,
                          elem_id=f"share-{api}-link")
        send = gr.Button(I18N("share.send"), size="sm", scale=0, min_width=170, elem_id=f"share-{api}-send")
    status = gr.Markdown(elem_id=f"share-{api}-status", elem_classes="share-status")

    @guard
    def copy_link(request: gr.Request, *values):
        return reg.share(spec, values, request)

    def send_to_wall(request: gr.Request, room: str, name: str, *values):
        """The answer goes in the row's status line, beside the button (a refusal too: it stays readable)."""
        lang = request_lang(request)
        try:
            entry = reg.post(spec, None, room, name, request, values)
        except Exception as exc:  # noqa: BLE001 - every refusal is a message, never a traceback
            return "⚠️ " + to_gr_error(exc, request).message
        key = "share.sent_again" if entry.duplicate else "share.sent"
        return t(key, lang, room=entry.room, name=md_escape(entry.name), n=entry.num)

    copy.click(copy_link, inputs=spec.components, outputs=link, api_name=False, concurrency_limit=None,
               show_progress="minimal").success(None, inputs=link, outputs=link, js=LINK_JS)
    send.click(send_to_wall, inputs=[reg.room_box, reg.name_box] + spec.components, outputs=status, api_name=False,
               concurrency_limit=None, show_progress="minimal")
    return spec


def _mark_live(reg: Registry) -> None:
    """A spec is live when an input's ``.change`` event writes one of its results (tokenizers, weights)."""
    fns = Context.root_block.default_config.fns.values()
    for spec in reg.specs.values():
        inputs = {c._id for c in spec.inputs.values()}
        outputs = {c._id for c in spec.outputs.values()}
        spec.live = any((target[0] if isinstance(target, (tuple, list)) else target) in inputs
                        and (target[1] if isinstance(target, (tuple, list)) else "") == "change"
                        and outputs & {o._id for o in fn.outputs}
                        for fn in fns for target in (fn.targets or []))


def _button_id(event) -> str | None:
    """The elem_id of the button that runs the action ("Run again" clicks it, as a student would)."""
    blocks = Context.root_block.default_config.blocks
    for target in event.targets or []:
        block_id = target[0] if isinstance(target, (tuple, list)) else target
        block = blocks.get(block_id)
        if isinstance(block, gr.Button) and block.elem_id:
            return block.elem_id
    return None


def restore_banner() -> None:
    """The "opened from a link" notice with "Run again" (hidden until a link restores something)."""
    with gr.Row(visible=False, elem_id="share-banner", elem_classes="share-banner", equal_height=True) as row:
        text = gr.Markdown(elem_id="share-banner-text")
        run = gr.Button(I18N("share.run_again"), variant="primary", size="sm", scale=0, min_width=140,
                        elem_id="share-run-again")
        close = gr.Button("✕", size="sm", scale=0, min_width=40, elem_id="share-banner-close")
        target = gr.Textbox(visible=False, elem_id="share-run-target")
        auto = gr.Textbox(visible=False, elem_id="share-auto-run")
    Context.root_block._genai_share_banner = {"row": row, "text": text, "run": run, "target": target, "auto": auto}
    run.click(lambda _target: gr.Row(visible=False), inputs=target, outputs=row, js=RUN_AGAIN_JS, api_name=False,
              queue=False)
    close.click(lambda: gr.Row(visible=False), outputs=row, api_name=False, queue=False)


def install(demo: gr.Blocks, ctx: AppContext) -> Registry:
    """After every tab is built: the restore on page load, the link endpoints, image serving, backup."""
    reg = registry(ctx)
    reg.shared_fields()
    if not hasattr(demo, "_genai_share_banner"):
        restore_banner()                               # app.py places it above the tabs; else it goes last
    reg.banner = demo._genai_share_banner
    if not reg.room_box.is_rendered:
        reg.room_box.render(), reg.name_box.render()   # no wall tab: the fields still exist (hidden)
        reg.room_box.visible = reg.name_box.visible = False
    _mark_live(reg)
    restorer = Restorer(reg, demo)
    outputs = restorer.outputs()
    # a teacher link's token never stays in the address: assets/boot.js takes it out before Gradio starts
    # and hands it to this event only (a hidden input: never in the page)
    teacher_in = gr.Textbox(visible=False, max_length=200, elem_id="share-teacher-in")
    demo.load(guard(restorer.restore_wall), inputs=[reg.browser, teacher_in], outputs=restorer.wall_outputs(),
              api_name=False, show_progress="hidden", js=TAKE_TEACHER_JS).then(None, js=STRIP_TEACHER_JS)
    # a link's passes only when the address holds one: the page sets this box, whose change runs them
    link_trigger = gr.Textbox("", visible="hidden", max_length=40, elem_id="share-link-trigger")
    demo.load(None, outputs=link_trigger, api_name=False, js=LINK_TRIGGER_JS)
    link_trigger.change(guard(restorer.restore), inputs=[reg.browser, link_trigger], outputs=outputs, api_name=False,
                        show_progress="hidden", concurrency_limit=None
                        ).then(guard(restorer.settle), inputs=[reg.browser, link_trigger], outputs=outputs,
                               api_name=False, show_progress="hidden", concurrency_limit=None
                        ).then(None, inputs=reg.banner["auto"], js=AUTO_RUN_JS)
    gr.set_static_paths([str(reg.sharing.store.images_dir)])   # wall thumbnails; the database is never served

    @guard
    def share_experiment(kind: str, inputs: dict, outputs: dict | None = None, request: gr.Request = None) -> dict:
        """Store an experiment (inputs named like the action's parameters; optional text/table/JSON results)
        and return its id and link query (``?x=<id>``)."""
        spec = reg.specs.get(kind)
        if spec is None:
            raise UserError("share.err.unknown_kind", kind=kind, kinds=", ".join(reg.specs))
        decoded, skipped = restorer.apply_inputs(spec, inputs or {})
        if skipped:
            raise UserError("share.err.bad_inputs", names=", ".join(skipped))
        stored_inputs = {name: codec.encode_input(value) for name, value in decoded.items()}
        stored_outputs = {}
        for name, record in (outputs or {}).items():
            comp = spec.outputs.get(name)
            accepted = codec.accept_record(comp, record, allow_images=False) if comp is not None else None
            if accepted is None:
                raise UserError("share.err.bad_outputs", names=name)
            stored_outputs[name] = accepted
        exp = reg.sharing.share(Experiment(kind, spec.tab, stored_inputs, stored_outputs), *client_keys(request))
        return {"id": exp.id, "query": f"?x={exp.id}"}

    @guard
    def open_experiment(id: str) -> dict:  # noqa: A002 - the API's parameter name
        """A stored experiment: its action (``api``), inputs, outputs and when it was shared."""
        exp = reg.sharing.store.get_experiment(id)
        if exp is None:
            raise UserError("share.err.not_found")
        return {"id": exp.id, "kind": exp.kind, "api": f"/{exp.kind}", "tab": exp.tab, "created": exp.created,
                "inputs": exp.inputs, "outputs": exp.outputs}

    gr.api(share_experiment, api_name="share_experiment")
    gr.api(open_experiment, api_name="open_experiment")
    start_hub_backup(reg.sharing.store, ctx.settings.get("hub_backup"))
    return reg
