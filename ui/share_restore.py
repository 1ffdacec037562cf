"""Opening a link: what ``demo.load`` sets from ``?x=<id>``, ``?tab=…&<input>=…``, ``?room=`` and ``?teacher=``.

On load, :meth:`Restorer.restore_wall` (always: a few components) puts back the student's room and
name, a teacher's rights, and shows the wall. A link (``?x=`` or ``?tab=``) then takes two passes over
the tabs' components, which run only when the address has one (the page asks for them: on a plain
visit, 116 components waiting on two events cost the browser 0.2 s of status updates at start).
:meth:`Restorer.restore` selects the tab, sets every input and the saved result, shows the banner. Setting inputs fires the tabs' own ``.change`` events one
value at a time, so some of them compute with half-restored inputs (the technique tab puts back its
default problem, the weight explorer shows the default bit width) and may finish last.
:meth:`Restorer.settle` (chained after it) waits until the page's events are done, then sets the
link's inputs and saved result again; for a hand-written link to a tab that computes live, it asks
the page to press the tab's own button once, so what is shown matches what the link says.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

import gradio as gr

from ui import share_codec as codec
from ui.i18n import request_lang, t

if TYPE_CHECKING:
    from ui.share import Registry, ShareSpec

log = logging.getLogger(__name__)
RESERVED = {"x", "tab", "room", "teacher", "lang", "view", "present"}
SETTLE_FIRST_S, SETTLE_MAX_S = 0.4, 10.0


class Restorer:
    def __init__(self, registry: "Registry", demo: gr.Blocks) -> None:
        self.reg = registry
        self.demo = demo

    def _top_tabs(self) -> list:
        return list({spec.path[0][0]._id: spec.path[0][0] for spec in self.reg.specs.values() if spec.path}.values())

    def wall_outputs(self) -> list:
        reg = self.reg
        return _unique([reg.browser, reg.room_box, reg.name_box] + self._top_tabs()
                       + (reg.wall_hook[1] if reg.wall_hook else []))

    def outputs(self) -> list:
        """What a link restores: every shareable action's tabs, inputs and results, and the banner."""
        reg = self.reg
        comps: list = []
        for spec in reg.specs.values():
            comps += [tabs for tabs, _ in spec.path] + spec.components + (spec.on_restore[1] if spec.on_restore else [])
        comps += [reg.banner[k] for k in ("row", "text", "target", "run", "auto")]
        return _unique(comps)

    # ------------------------------------------------------------------ on load
    def restore_wall(self, request: gr.Request, state: dict | None, teacher_link: str = "") -> list:
        """The room and name this browser joined with, a teacher's rights, the wall (``?room=`` shows it).
        ``teacher_link``: the teacher token of the address the page was opened with, which the page
        took out of its address before anything ran (assets/boot.js), so the server never sees it there."""
        reg, lang = self.reg, request_lang(request)
        params = request.query_params if request is not None else {}
        updates: dict[int, Any] = {}
        state = dict(state or {})
        room = params.get("room") or state.get("room") or ""
        given = (teacher_link or "").strip()[:200] or params.get("teacher")
        teacher = given or (state.get("teacher") if state.get("teacher_room") == room else "")
        shown = params.get("tab") == "wall" or bool(params.get("room") and not (params.get("x") or params.get("tab")))
        if shown:
            self._select_top("wall", updates)
        updates[reg.room_box._id] = room
        updates[reg.name_box._id] = state.get("name", "")
        if given:
            updates[reg.browser._id] = {**state, "room": room, "teacher": teacher, "teacher_room": room}
        if reg.wall_hook:
            fn, comps = reg.wall_hook
            for comp, value in zip(comps, fn(room, teacher, lang, shown)):
                updates[comp._id] = value
        return [updates.get(c._id, gr.skip()) for c in self.wall_outputs()]

    # ------------------------------------------------------------------ a link's two passes
    def restore(self, request: gr.Request, state: dict | None = None, trigger: str = "") -> list:
        """The tab, every input and the saved result of ``?x=`` / ``?tab=``, and the banner."""
        lang = request_lang(request)
        params = request.query_params if request is not None else {}
        updates: dict[int, Any] = {}
        self._from_params(params, lang, updates)
        return [updates.get(c._id, gr.skip()) for c in self.outputs()]

    def settle(self, request: gr.Request, state: dict | None = None, trigger: str = "") -> list:
        params = request.query_params if request is not None else {}
        if not (params.get("x") or params.get("tab")) or not self._needs_settling(params):
            return [gr.skip()] * len(self.outputs())
        self._wait_until_idle(getattr(request, "session_hash", None))
        updates: dict[int, Any] = {}
        spec, _ = self._from_params(params, request_lang(request), updates)
        if spec is None:
            return [gr.skip()] * len(self.outputs())
        keep = {c._id for c in spec.components + (spec.on_restore[1] if spec.on_restore else [])}
        auto = spec.run_elem_id if not params.get("x") and spec.live and spec.run_elem_id else ""
        updates[self.reg.banner["auto"]._id] = auto
        keep.add(self.reg.banner["auto"]._id)
        return [updates[c._id] if c._id in keep and c._id in updates else gr.skip() for c in self.outputs()]

    def _needs_settling(self, params) -> bool:
        """Whether the link's action has events that restored values could undo (a tab whose restore
        pass is final skips the second pass: nothing the visitor starts at once is overwritten)."""
        if params.get("x"):
            exp = self.reg.sharing.store.get_experiment(params["x"])
            spec = self.reg.specs.get(exp.kind) if exp else None
        else:
            spec = self.reg.find(params.get("tab", ""))
        return spec is None or spec.settle

    def _wait_until_idle(self, session: str | None) -> None:
        """Until this page has no other event queued or running (bounded): Gradio's per-session
        pending set when it has one, else the first pause alone."""
        time.sleep(SETTLE_FIRST_S)               # the browser dispatches what the restored values trigger
        pending = getattr(getattr(self.demo, "_queue", None), "pending_event_ids_session", None)
        deadline = time.monotonic() + SETTLE_MAX_S
        while isinstance(pending, dict) and session and time.monotonic() < deadline:
            if len(pending.get(session, ())) <= 1:   # this event only
                return
            time.sleep(0.1)

    # ------------------------------------------------------------------ from the address
    def _from_params(self, params, lang: str, updates: dict) -> tuple["ShareSpec | None", str | None]:
        if params.get("x"):
            return self._link(params["x"], lang, updates)
        if params.get("tab"):
            return self._hand_written(params, lang, updates)
        return None, None

    def _link(self, exp_id: str, lang: str, updates: dict) -> tuple["ShareSpec | None", str | None]:
        reg = self.reg
        exp = reg.sharing.store.get_experiment(exp_id)
        spec = reg.specs.get(exp.kind) if exp else None
        if spec is None:
            self._banner(updates, t("share.err.link_not_found", lang), None)
            return None, None
        decoded, skipped = self._apply_inputs(spec, exp.inputs, updates)
        for name, comp in spec.outputs.items():
            if name in exp.outputs:
                try:
                    updates[comp._id] = codec.decode_output(comp, exp.outputs[name], reg.sharing.store, lang)
                except Exception:  # noqa: BLE001 - e.g. an image file removed by hand: show the rest
                    log.warning("could not restore output %s of %s", name, exp.id, exc_info=True)
                    skipped.append(name)
        self._after_restore(spec, {**_defaults(spec), **decoded}, lang, updates)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exp.created))
        text = t("share.restored", lang, tab=_tab_label(spec, lang), when=when)
        if skipped:
            text += "\n\n" + t("share.ignored", lang, names=", ".join(skipped))
        self._banner(updates, text, spec.run_elem_id)
        return spec, spec.tab

    def _hand_written(self, params, lang: str, updates: dict) -> tuple["ShareSpec | None", str | None]:
        name = params.get("tab", "")
        spec = self.reg.find(name)
        if spec is None:
            return None, self._select_top(name, updates)
        given = {}
        for key in params.keys():
            if key in spec.inputs:
                comp = spec.inputs[key]
                multi = isinstance(comp, gr.CheckboxGroup) or getattr(comp, "multiselect", False)
                given[key] = params.getlist(key) if multi and len(params.getlist(key)) > 1 else params.get(key)
        decoded, skipped = self._apply_inputs(spec, given, updates)
        skipped += [k for k in params.keys() if k not in spec.inputs and k not in RESERVED and not k.startswith("__")]
        self._after_restore(spec, {**_defaults(spec), **decoded}, lang, updates)
        text = t("share.from_params", lang, tab=_tab_label(spec, lang))
        if skipped:
            text += "\n\n" + t("share.ignored", lang, names=", ".join(sorted(set(skipped))))
        self._banner(updates, text, spec.run_elem_id)
        return spec, spec.tab

    def apply_inputs(self, spec: "ShareSpec", values: Mapping) -> tuple[dict, list[str]]:
        """Each value checked against its control: (decoded values, names that could not be set)."""
        return self._apply_inputs(spec, values, {})

    @staticmethod
    def _apply_inputs(spec: "ShareSpec", values: Mapping, updates: dict) -> tuple[dict, list[str]]:
        for tabs, tab_id in spec.path:
            updates[tabs._id] = gr.Tabs(selected=tab_id)
        decoded, skipped = {}, []
        for name, raw in values.items():
            comp = spec.inputs.get(name)
            try:
                if comp is None:
                    raise ValueError("unknown input")
                decoded[name] = updates[comp._id] = codec.decode_input(comp, raw)
            except Exception:  # noqa: BLE001 - one bad value never stops the others from being restored
                skipped.append(name)
        return decoded, skipped

    @staticmethod
    def _after_restore(spec: "ShareSpec", inputs: Mapping, lang: str, updates: dict) -> None:
        if spec.on_restore is None:
            return
        fn, comps = spec.on_restore
        try:
            values = fn(dict(inputs), lang)
        except Exception:  # noqa: BLE001 - a cosmetic follow-up must not lose the restored values
            log.exception("on_restore of %s failed", spec.kind)
            return
        for comp, value in zip(comps, values):
            updates[comp._id] = value

    def _select_top(self, tab_id: str, updates: dict) -> str | None:
        for spec in self.reg.specs.values():
            tabs = spec.path[0][0] if spec.path else None
            if tabs is not None and any(getattr(c, "id", None) == tab_id for c in tabs.children):
                updates[tabs._id] = gr.Tabs(selected=tab_id)
                return tab_id
        return None

    def _banner(self, updates: dict, text: str, target: str | None) -> None:
        banner = self.reg.banner
        updates[banner["row"]._id] = gr.Row(visible=True)
        updates[banner["text"]._id] = text
        updates[banner["target"]._id] = target or ""
        updates[banner["run"]._id] = gr.Button(visible=bool(target))


def _unique(comps: list) -> list:
    unique, seen = [], set()
    for c in comps:
        if c is not None and c._id not in seen:
            seen.add(c._id)
            unique.append(c)
    return unique


def _defaults(spec: "ShareSpec") -> dict:
    return {name: comp.value for name, comp in spec.inputs.items()}


def _tab_label(spec: "ShareSpec", lang: str) -> str:
    return " · ".join(t(key, lang) for key in spec.labels) or spec.tab
