"""Class wall: the teacher opens a room, students send results to it, the wall shows them live."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass

import gradio as gr

from engine.errors import UserError
from engine.share import Entry, normalize_code
from engine.share.wall import clean_name
from engine.share.export import ExportLabels, export_zip
from ui.context import AppContext
from ui.feedback import guard
from ui import fmt
from ui.i18n import I18N, request_lang, t
from ui.share import client_keys, registry
from ui.wall_view import cards_html, compare_html, entry_choices, room_banner

REFRESH_S = 3.0
SHOW_SECRET_S = 10
# the teacher link carries its token after "#": a fragment never reaches a server (logs, Referer), and
# assets/boot.js takes it out of the address before the page does anything else
TEACHER_LINK_JS = """(room, key) => {
  const url = new URL(window.location.href); url.hash = '';
  url.search = '?tab=wall&room=' + encodeURIComponent(room);
  url.hash = 'teacher=' + encodeURIComponent(key);
  const teacher = url.toString();
  url.hash = ''; url.search = '?room=' + encodeURIComponent(room);
  return [teacher, url.toString()];
}"""
# "Show" unmasks the teacher link for a few seconds, then masks it again by itself (and at once when the
# page is hidden or presentation mode is turned on): never left in clear on a projected screen
SHOW_SECRET_JS = """() => { window.genaiHeader && window.genaiHeader.revealSecret('#wall-teacher-link', %d); }""" % SHOW_SECRET_S
FULLSCREEN_JS = "() => { document.getElementById('wall-panel')?.requestFullscreen?.(); }"
BASE_URL_JS = "(room, key, base) => [room, key, window.location.origin + window.location.pathname]"


SCREEN = ("banner", "cards", "controls", "entry", "left", "right", "close", "reopen", "seen")  # what render() sets


# =============================================================================== helpers
def render(wall, store, room: str, key: str, lang: str, seen_key: str = "") -> list:
    """The wall's components for ``room`` (skipped when nothing changed since ``seen_key``), in the
    order of :data:`SCREEN`."""
    code = normalize_code(room) if (room or "").strip() else ""
    version = wall.version(code) if code else None
    if version is None:
        return [room_banner(None, lang), "", gr.Group(visible=False)] + [gr.skip()] * 5 + [""]
    teacher = wall.is_teacher(code, key)
    signature = f"{code}|{version}|{teacher}|{lang}"
    if signature == seen_key:
        return [gr.skip()] * len(SCREEN)
    entries = wall.entries(code, include_hidden=teacher)
    choices = entry_choices(entries, lang)
    room_now = wall.room(code)
    closed = room_now.closed is not None
    return [room_banner(room_now, lang, teacher), cards_html(entries, lang, store),
            gr.Group(visible=teacher), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices),
            gr.Dropdown(choices=choices), gr.Button(visible=not closed), gr.Button(visible=closed), signature]


def pick(wall, room: str, key: str, num) -> Entry:
    if num is None:
        raise UserError("wall.err.pick_entry")
    return wall.entry(room, int(num), include_hidden=wall.is_teacher(room, key))


# =============================================================================== layout
@dataclass
class View:
    room_box: gr.Textbox
    name_box: gr.Textbox
    join: gr.Button
    join_status: gr.Markdown
    teacher_panel: gr.Accordion
    title_box: gr.Textbox
    open_btn: gr.Button
    key_box: gr.Textbox
    teacher_link: gr.Textbox
    show_link: gr.Button
    student_link: gr.Textbox
    banner: gr.HTML
    fullscreen: gr.Button
    cards: gr.HTML
    controls: gr.Group
    entry: gr.Dropdown
    hide: gr.Button
    pin: gr.Button
    close: gr.Button
    reopen: gr.Button
    export: gr.Button
    confirm: gr.Row
    close_yes: gr.Button
    close_no: gr.Button
    export_file: gr.File
    base_url: gr.Textbox
    left: gr.Dropdown
    right: gr.Dropdown
    compare_btn: gr.Button
    compare_out: gr.HTML
    timer: gr.Timer
    seen: gr.State

    @property
    def screen(self) -> list:
        """The components :func:`render` sets."""
        return [getattr(self, name) for name in SCREEN]


def layout(ctx: AppContext) -> View:
    reg = registry(ctx)
    gr.Markdown(I18N("wall.intro"), elem_classes="tab-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                room_box, name_box = reg.room_box.render(), reg.name_box.render()
                join = gr.Button(I18N("wall.join"), variant="primary", scale=0, min_width=150, elem_id="wall-join")
            join_status = gr.Markdown(elem_id="wall-join-status")
        with gr.Column(scale=2):
            with gr.Accordion(I18N("wall.teacher"), open=False, elem_id="wall-teacher") as teacher_panel:
                title_box = gr.Textbox(label=I18N("wall.room_title"), max_length=120, elem_id="wall-room-title")
                open_btn = gr.Button(I18N("wall.open_room"), elem_id="wall-open")
                key_box = gr.Textbox(label=I18N("wall.key"), type="password", info=I18N("wall.key_info"),
                                     elem_id="wall-key")
                # masked like the key: copied with its button, shown only for a few seconds on request
                teacher_link = gr.Textbox(label=I18N("wall.teacher_link"), info=I18N("wall.teacher_link_info"),
                                          type="password", interactive=False, buttons=["copy"],
                                          elem_id="wall-teacher-link")
                show_link = gr.Button(I18N("wall.show_link"), size="sm", elem_id="wall-show-link")
                student_link = gr.Textbox(label=I18N("wall.student_link"), interactive=False, buttons=["copy"],
                                          elem_id="wall-student-link")
    with gr.Column(elem_id="wall-panel"):
        with gr.Row(equal_height=False):
            banner = gr.HTML(room_banner(None, "en"), elem_id="wall-banner", min_width=300)
            fullscreen = gr.Button(I18N("wall.fullscreen"), size="sm", scale=0, min_width=150,
                                   elem_id="wall-fullscreen")
        cards = gr.HTML(elem_id="wall-cards")
    teacher = _layout_teacher_controls()
    with gr.Accordion(I18N("wall.compare"), open=False, elem_id="wall-compare"):
        with gr.Row(equal_height=True):
            left = gr.Dropdown([], value=None, label=I18N("wall.compare_left"), elem_id="wall-left")
            right = gr.Dropdown([], value=None, label=I18N("wall.compare_right"), elem_id="wall-right")
            compare_btn = gr.Button(I18N("wall.compare_run"), elem_id="wall-compare-run", scale=0, min_width=150)
        compare_out = gr.HTML(elem_id="wall-compare-out")
    timer = gr.Timer(REFRESH_S, active=False)
    seen = gr.State("")
    return View(room_box=room_box, name_box=name_box, join=join, join_status=join_status,
                teacher_panel=teacher_panel, title_box=title_box, open_btn=open_btn, key_box=key_box,
                teacher_link=teacher_link, show_link=show_link, student_link=student_link, banner=banner,
                fullscreen=fullscreen, cards=cards, **teacher, left=left, right=right, compare_btn=compare_btn,
                compare_out=compare_out, timer=timer, seen=seen)


def _layout_teacher_controls() -> dict:
    """Under the wall, for the teacher only: pick an entry, hide, pin, close (asked first), export."""
    with gr.Group(visible=False, elem_id="wall-controls") as controls:
        with gr.Row(equal_height=True):
            entry = gr.Dropdown([], value=None, label=I18N("wall.entry"), elem_id="wall-entry", scale=2)
            hide = gr.Button(I18N("wall.hide"), elem_id="wall-hide", scale=1)
            pin = gr.Button(I18N("wall.pin"), elem_id="wall-pin", scale=1)
            close = gr.Button(I18N("wall.close"), variant="stop", elem_id="wall-close", scale=1)
            reopen = gr.Button(I18N("wall.reopen"), elem_id="wall-reopen", scale=1, visible=False)
            export = gr.Button(I18N("wall.export"), elem_id="wall-export", scale=1)
        with gr.Row(visible=False, equal_height=True, elem_id="wall-close-confirm", elem_classes="wall-confirm") as confirm:
            gr.Markdown(I18N("wall.close_confirm"), elem_id="wall-close-question")
            close_yes = gr.Button(I18N("wall.close_yes"), variant="stop", scale=0, min_width=170, elem_id="wall-close-yes")
            close_no = gr.Button(I18N("wall.close_no"), scale=0, min_width=130, elem_id="wall-close-no")
        export_file = gr.File(label=I18N("wall.export_file"), interactive=False, visible=False,
                              elem_id="wall-export-file")
        base_url = gr.Textbox(visible=False)
    return dict(controls=controls, entry=entry, hide=hide, pin=pin, close=close, reopen=reopen, export=export,
                confirm=confirm, close_yes=close_yes, close_no=close_no, export_file=export_file, base_url=base_url)


# =============================================================================== handlers
# Each is made from the app's class wall and result store (``reg.sharing``: ui/share.py).
def restore_hook_for(wall, store):
    def restore_hook(room: str, teacher: str, lang: str, show: bool) -> list:
        return [teacher or gr.skip(), gr.Timer(active=bool(show and room))] + render(wall, store, room, teacher, lang)

    return restore_hook


def refresh_for(wall, store):
    def refresh(room: str, key: str, seen_key: str, request: gr.Request):
        return render(wall, store, room, key, request_lang(request), seen_key)

    return refresh


def join_room_for(wall, store):
    @guard
    def join_room(room: str, name: str, key: str, state: dict | None, request: gr.Request = None):
        lang = request_lang(request)
        found = wall.room(room)               # UserError (no such room) → a translated message
        if (name or "").strip():
            clean_name(name, wall.limits.name_chars)
        message = t("wall.joined", lang, room=found.code, n=found.entries)
        saved = {**(state or {}), "room": found.code, "name": (name or "").strip()}
        return [found.code, message, saved, gr.Timer(active=True)] + render(wall, store, found.code, key, lang)

    return join_room


def open_room_for(wall, store):
    @guard
    def open_room(title: str, state: dict | None, request: gr.Request = None):
        lang = request_lang(request)
        code, token = wall.open_room(title, client_keys(request)[1])
        saved = {**(state or {}), "room": code, "teacher": token, "teacher_room": code}
        opened = t("wall.opened", lang, room=code)
        # the panel that holds the secret folds itself: the projected wall shows the code, never the key
        return ([code, token, opened, saved, gr.Timer(active=True), gr.Accordion(open=False)]
                + render(wall, store, code, token, lang))

    return open_room


def toggle_hidden_for(wall, store):
    @guard
    def toggle_hidden(room: str, key: str, num, request: gr.Request = None):
        current = pick(wall, room, key, num)
        wall.set_hidden(room, key, current.num, not current.hidden)
        return render(wall, store, room, key, request_lang(request))

    return toggle_hidden


def toggle_pinned_for(wall, store):
    @guard
    def toggle_pinned(room: str, key: str, num, request: gr.Request = None):
        current = pick(wall, room, key, num)
        wall.set_pinned(room, key, current.num, not current.pinned)
        return render(wall, store, room, key, request_lang(request))

    return toggle_pinned


def close_room_for(wall, store):
    @guard
    def close_room(room: str, key: str, request: gr.Request = None):
        wall.close(room, key)
        return [gr.Row(visible=False)] + render(wall, store, room, key, request_lang(request))

    return close_room


def reopen_room_for(wall, store):
    @guard
    def reopen_room(room: str, key: str, request: gr.Request = None):
        wall.reopen(room, key)
        return render(wall, store, room, key, request_lang(request))

    return reopen_room


def compare_entries_for(wall, store):
    @guard
    def compare_entries(room: str, key: str, a, b, request: gr.Request = None) -> str:
        lang = request_lang(request)
        return compare_html(pick(wall, room, key, a), pick(wall, room, key, b), lang, store)

    return compare_entries


def wall_export_for(reg):
    wall = reg.sharing.wall

    @guard
    def wall_export(room: str, teacher_token: str, base_url: str = "", request: gr.Request = None) -> str:
        """The whole wall as a ZIP (wall.md, entries.csv, images/): teacher token required."""
        lang = request_lang(request)
        names = {s.tab: " · ".join(t(k, lang) for k in s.labels[:1]) for s in reg.specs.values()}
        labels = ExportLabels(title=lambda **f: t("wall.x_title", lang, **f),
                              exported=lambda **f: t("wall.x_exported", lang, **f), number=lambda v: fmt.number(v, lang),
                              prompt=t("wall.x_prompt", lang), link=t("wall.x_link", lang),
                              hidden=t("wall.x_hidden", lang), pinned=t("wall.x_pinned", lang),
                              columns=tuple(t("wall.x_columns", lang).split(",")))
        folder = tempfile.mkdtemp(prefix="wall-export-")
        return str(export_zip(wall, room, teacher_token, folder, names, lambda key: t(key, lang), labels, base_url))

    return wall_export


def on_tab_for(wall, store, tab: gr.Tab):
    def on_tab(room: str, key: str, evt: gr.SelectData, request: gr.Request):
        shown = (getattr(evt, "_data", None) or {}).get("id") == tab.id
        updates = render(wall, store, room, key, request_lang(request)) if shown else [gr.skip()] * len(SCREEN)
        return [gr.Timer(active=shown and bool((room or "").strip()))] + updates

    return on_tab


def wall_api_for(reg) -> list[tuple]:
    """``/wall_open_room``, ``/wall_post``, ``/wall``, ``/wall_hide``, ``/wall_pin``, ``/wall_close``,
    ``/wall_reopen``: (function, API name) pairs."""
    wall = reg.sharing.wall

    @guard
    def wall_open_room(title: str = "", request: gr.Request = None) -> dict:
        """Open a room: its code (for students) and the teacher token (keep it secret)."""
        code, token = wall.open_room(title, client_keys(request)[1])
        return {"room": code, "teacher_token": token}

    @guard
    def wall_post(room: str, name: str, experiment_id: str, request: gr.Request = None) -> dict:
        """Send a shared experiment (see /share_experiment) to a room's wall under ``name``."""
        exp = reg.sharing.store.get_experiment(experiment_id)
        spec = reg.specs.get(exp.kind) if exp else None
        if spec is None:
            raise UserError("share.err.not_found")
        return reg.post(spec, exp, room, name, request).as_dict()

    @guard
    def wall_read(room: str, teacher_token: str = "") -> dict:
        """A room and its entries (hidden ones too with the teacher token)."""
        r = wall.room(room)
        entries = wall.entries(r.code, include_hidden=wall.is_teacher(r.code, teacher_token))
        return {"room": r.code, "title": r.title, "closed": r.closed is not None, "version": r.version,
                "entries": [e.as_dict() for e in entries]}

    @guard
    def wall_hide(room: str, teacher_token: str, entry: int, hidden: bool = True) -> dict:
        """Hide (or show again with hidden=False) an entry: teacher token required."""
        return wall.set_hidden(room, teacher_token, entry, hidden).as_dict()

    @guard
    def wall_pin(room: str, teacher_token: str, entry: int, pinned: bool = True) -> dict:
        """Pin (or unpin) an entry at the top of the wall: teacher token required."""
        return wall.set_pinned(room, teacher_token, entry, pinned).as_dict()

    @guard
    def wall_close(room: str, teacher_token: str) -> dict:
        """Close the room: no more entries (it stays readable and exportable; /wall_reopen undoes it)."""
        r = wall.close(room, teacher_token)
        return {"room": r.code, "closed": True, "entries": r.entries}

    @guard
    def wall_reopen(room: str, teacher_token: str) -> dict:
        """Reopen a closed room: it takes entries again (teacher token required)."""
        r = wall.reopen(room, teacher_token)
        return {"room": r.code, "closed": False, "entries": r.entries}

    return [(wall_open_room, "wall_open_room"), (wall_post, "wall_post"), (wall_read, "wall"),
            (wall_hide, "wall_hide"), (wall_pin, "wall_pin"), (wall_close, "wall_close"),
            (wall_reopen, "wall_reopen")]


# =============================================================================== wiring
def wire(view: View, ctx: AppContext, tab: gr.Tab | None = None) -> None:
    reg = registry(ctx)
    wall, store = reg.sharing.wall, reg.sharing.store
    screen = view.screen
    reg.wall_hook = (restore_hook_for(wall, store), [view.key_box, view.timer] + screen)
    join_room, refresh = join_room_for(wall, store), refresh_for(wall, store)
    teacher_args = dict(api_name=False, concurrency_limit=None)
    room_key = [view.room_box, view.key_box]
    view.join.click(join_room, inputs=[view.room_box, view.name_box, view.key_box, reg.browser],
                    outputs=[view.room_box, view.join_status, reg.browser, view.timer] + screen, **teacher_args)
    view.room_box.submit(join_room, inputs=[view.room_box, view.name_box, view.key_box, reg.browser],
                         outputs=[view.room_box, view.join_status, reg.browser, view.timer] + screen, **teacher_args)
    view.open_btn.click(open_room_for(wall, store), inputs=[view.title_box, reg.browser],
                        outputs=[view.room_box, view.key_box, view.join_status, reg.browser, view.timer,
                                 view.teacher_panel] + screen, **teacher_args
                        ).success(None, inputs=room_key, outputs=[view.teacher_link, view.student_link],
                                  js=TEACHER_LINK_JS)
    view.key_box.change(None, inputs=room_key, outputs=[view.teacher_link, view.student_link], js=TEACHER_LINK_JS)
    view.show_link.click(None, js=SHOW_SECRET_JS)
    view.timer.tick(refresh, inputs=room_key + [view.seen], outputs=screen, api_name=False, concurrency_limit=None,
                    show_progress="hidden")
    view.key_box.change(refresh, inputs=room_key + [view.seen], outputs=screen, api_name=False,
                        concurrency_limit=None, show_progress="hidden")
    view.hide.click(toggle_hidden_for(wall, store), inputs=room_key + [view.entry], outputs=screen, **teacher_args)
    view.pin.click(toggle_pinned_for(wall, store), inputs=room_key + [view.entry], outputs=screen, **teacher_args)
    # closing asks first (a second button, beside a question); the teacher can reopen
    view.close.click(lambda: gr.Row(visible=True), outputs=view.confirm, api_name=False, queue=False)
    view.close_no.click(lambda: gr.Row(visible=False), outputs=view.confirm, api_name=False, queue=False)
    view.close_yes.click(close_room_for(wall, store), inputs=room_key, outputs=[view.confirm] + screen, **teacher_args)
    view.reopen.click(reopen_room_for(wall, store), inputs=room_key, outputs=screen, **teacher_args)
    view.export.click(wall_export_for(reg), inputs=room_key + [view.base_url], outputs=view.export_file,
                      js=BASE_URL_JS, api_name="wall_export", concurrency_limit=None
                      ).success(lambda: gr.File(visible=True), outputs=view.export_file, api_name=False, queue=False)
    view.compare_btn.click(compare_entries_for(wall, store), inputs=room_key + [view.left, view.right],
                           outputs=view.compare_out, **teacher_args)
    view.fullscreen.click(None, js=FULLSCREEN_JS)
    if tab is not None and isinstance(tab.parent, gr.Tabs):
        tab.parent.select(on_tab_for(wall, store, tab), inputs=room_key, outputs=[view.timer] + screen, api_name=False,
                          concurrency_limit=None, show_progress="hidden")
    for fn, name in wall_api_for(reg):
        gr.api(fn, api_name=name)


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    registry(ctx).shared_fields()
    wire(layout(ctx), ctx, tab)
