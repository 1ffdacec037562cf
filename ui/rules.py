"""The rules an argument is checked with at the boundary (see ``ui/validation.py``).

A rule's :meth:`Rule.check` returns ``None`` (valid) or a problem: a string key of
``ui/strings/safety.py`` (or another strings module) and its parameters. Bounds may be numbers
or functions of the profile's :class:`~engine.limits.Limits`; ``bind`` completes a rule with
what its input component says (a slider's range, a radio's choices).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import gradio as gr

from engine.images import grid as image_grid
from engine.errors import UserError
from engine.limits import SEED_MAX, Limits
from engine.models.policy import check_model_id

Problem = tuple[str, dict]
Bound = float | Callable[[Limits], float] | None
SHOWN = 40  # characters of a refused value echoed in the message


# =============================================================================== what a rule sees
@dataclass
class Env:
    """Context of one check: the profile's limits, the app, the event's other arguments."""

    limits: Limits
    ctx: Any  # ui.context.AppContext
    args: dict[str, Any]


def _echo(value: Any) -> Any:
    """The refused value as shown in the message: a finite number stays a number (written the
    language's way by the validator), anything else its shortened repr."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    text = " ".join(repr(value).split()) if not isinstance(value, str) else " ".join(value.split())
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def _bound(value: Bound, limits: Limits) -> float | None:
    return value(limits) if callable(value) else value


def _num(value: float) -> float:
    return int(value) if math.isfinite(value) and float(value).is_integer() else value


class Rule:
    def check(self, value: Any, env: Env) -> Problem | None:  # pragma: no cover - interface
        raise NotImplementedError

    def bind(self, component: Any) -> "Rule":
        """This rule completed with what its input component says (bounds, choices)."""
        return self


# =============================================================================== rules
@dataclass
class Num(Rule):
    """A finite number in [lo, hi]; ``None`` lo/hi/integer: the slider's or number box's own."""

    lo: Bound = None
    hi: Bound = None
    integer: bool | None = None
    optional: bool = True

    def bind(self, component: Any) -> "Num":
        lo, hi, integer = self.lo, self.hi, self.integer
        c_lo, c_hi = getattr(component, "minimum", None), getattr(component, "maximum", None)
        if isinstance(component, gr.Number) and c_hi is None and getattr(component, "precision", None) == 0:
            c_hi = SEED_MAX
        if integer is None:
            step = getattr(component, "step", None)
            integer = getattr(component, "precision", None) == 0 or (
                isinstance(component, gr.Slider) and float(step or 0).is_integer() and float(c_lo or 0).is_integer())
        return Num(lo if lo is not None else c_lo, hi if hi is not None else c_hi, bool(integer), self.optional)

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None:
            return None if self.optional else ("safety.err.type", {"kind": "number"})
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "safety.err.not_number", {"value": _echo(value)}
        if isinstance(value, float) and not math.isfinite(value):
            return "safety.err.not_finite", {"value": str(value)}
        lo, hi = _bound(self.lo, env.limits), _bound(self.hi, env.limits)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return "safety.err.range", {"min": _num(lo if lo is not None else -math.inf),
                                        "max": _num(hi if hi is not None else math.inf), "value": _echo(value)}
        if self.integer and not float(value).is_integer():
            return "safety.err.not_integer", {"value": _echo(value)}
        return None


@dataclass
class Text(Rule):
    max_chars: Bound = lambda L: L.text_chars  # noqa: E731

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None:
            return None
        if not isinstance(value, str):
            return "safety.err.type", {"kind": "text"}
        limit = int(_bound(self.max_chars, env.limits))
        if len(value) > limit:
            return "safety.err.too_long", {"n": len(value), "limit": limit}
        return None


@dataclass
class Source(Text):
    """A source given to the model: bounded like any text, and not empty when the mode named by
    argument ``mode_arg`` uses it."""

    mode_arg: str = "source_mode"

    def check(self, value: Any, env: Env) -> Problem | None:
        problem = super().check(value, env)
        if problem is not None:
            return problem
        if env.args.get(self.mode_arg) not in (None, "", "off") and not (value or "").strip():
            return "src.err.empty", {}
        return None


@dataclass
class Payload(Rule):
    """Structured data checked by its handler (a shared result, a browser state): only its size is
    bounded here, as JSON, and its kind when ``kinds`` is given."""

    max_bytes: int
    kinds: tuple[type, ...] = ()

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None:
            return None
        if self.kinds and not isinstance(value, self.kinds):
            return "safety.err.type", {"kind": " / ".join(k.__name__ for k in self.kinds)}
        import json

        size = len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8"))
        if size > self.max_bytes:
            return "safety.err.payload", {"mb": f"{size / 1e6:.1f}", "limit": f"{self.max_bytes / 1e6:g}"}
        return None


@dataclass
class Bool(Rule):
    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None or isinstance(value, bool):
            return None
        return "safety.err.type", {"kind": "true / false"}


@dataclass
class Choice(Rule):
    """One of ``values`` (a list, or a function of the :class:`Env`); None: the component's choices."""

    values: Iterable | Callable[[Env], Iterable] | None = None
    optional: bool = True

    def bind(self, component: Any) -> "Choice":
        if self.values is None:
            return Choice([v for _, v in getattr(component, "choices", [])], self.optional)
        return self

    def allowed(self, env: Env) -> list:
        return list(self.values(env) if callable(self.values) else self.values)

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None and self.optional:
            return None
        allowed = self.allowed(env)
        if isinstance(value, (list, dict)) or value not in allowed:
            shown = ", ".join(map(str, allowed[:12])) + (" …" if len(allowed) > 12 else "")
            return "safety.err.choice", {"value": _echo(value), "choices": shown}
        return None


@dataclass
class Choices(Choice):
    """A list of choices, at most ``max_count`` of them."""

    max_count: Bound = None

    def bind(self, component: Any) -> "Choices":
        values = self.values if self.values is not None else [v for _, v in getattr(component, "choices", [])]
        return Choices(values, self.optional, self.max_count)

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            return "safety.err.type", {"kind": "list"}
        limit = _bound(self.max_count, env.limits)
        if limit is not None and len(value) > limit:
            return "safety.err.too_many", {"n": len(value), "limit": int(limit)}
        one = Choice(self.values)
        for item in value:
            problem = one.check(item, env)
            if problem is not None:
                return problem
        return None


@dataclass
class Model(Rule):
    """A model id: the ones ``offered`` (the catalog's, a tab's presets), others only when the
    teacher enabled custom models (``engine.models.policy``)."""

    offered: Callable[[Env], Iterable[str]]

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # the handler uses the role's model
        if not isinstance(value, str):
            return "safety.err.type", {"kind": "text"}
        if len(value) > 300:
            return "safety.err.too_long", {"n": len(value), "limit": 300}
        try:
            check_model_id(value, self.offered(env))
        except UserError as err:
            return err.key, err.params
        return None


@dataclass
class ModelList(Rule):
    """Comma- or line-separated model ids (the tokenizer tab's Hub ids)."""

    offered: Callable[[Env], Iterable[str]]
    max_count: Bound = lambda L: L.tokenizers  # noqa: E731

    def check(self, value: Any, env: Env) -> Problem | None:
        problem = Text(1_000).check(value, env)
        if problem is not None or not value:
            return problem
        ids = [v.strip() for v in re.split(r"[,\n]", value) if v.strip()]
        limit = int(_bound(self.max_count, env.limits))
        if len(ids) > limit:
            return "safety.err.too_many", {"n": len(ids), "limit": limit}
        model = Model(self.offered)
        for one in ids:
            problem = model.check(one, env)
            if problem is not None:
                return problem
        return None


@dataclass
class Upload(Rule):
    """An uploaded file no larger than the profile's ``upload_bytes``."""

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None:
            return None
        if not isinstance(value, str):
            return "safety.err.type", {"kind": "file"}
        try:
            size = os.path.getsize(value)
        except OSError:
            return "safety.err.type", {"kind": "file"}
        if size > env.limits.upload_bytes:
            return "safety.err.file_too_big", {"size": f"{size / 1e6:.1f}",
                                               "limit": f"{env.limits.upload_bytes / 1e6:.0f}"}
        return None


@dataclass
class CardResult(Rule):
    """The Base vs Instruct JSON a comparison card is made from: a dict, every text bounded."""

    def check(self, value: Any, env: Env) -> Problem | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            return "safety.err.not_result", {}
        limit = env.limits.card_chars
        stack: list[Any] = [value]
        seen = 0
        while stack:
            item = stack.pop()
            seen += 1
            if seen > 10_000:
                return "safety.err.not_result", {}
            if isinstance(item, dict):
                stack += list(item.keys()) + list(item.values())
            elif isinstance(item, list):
                stack += item
            elif isinstance(item, str) and len(item) > limit:
                return "safety.err.too_long", {"n": len(item), "limit": limit}
            elif isinstance(item, float) and not math.isfinite(item):
                return "safety.err.not_finite", {"value": str(item)}
        for side in ("base", "instruct"):
            pane = value.get(side)
            if pane is not None and not isinstance(pane, dict):
                return "safety.err.not_result", {}
        return None


@dataclass
class Conversation(Rule):
    """A Base vs Instruct history: earlier turns, bounded by ``engine.chat.conversation.parse_history``."""

    def check(self, value: Any, env: Env) -> Problem | None:
        from engine.chat.conversation import parse_history

        try:
            parse_history(value, env.limits)
        except UserError as err:
            return err.key, dict(err.params)
        return None


@dataclass
class Grid(Rule):
    """A whole number in [lo, hi] that, times the number of argument ``other``, makes at most ``limit``
    cells (the rows of an experiment); ``key`` names the message, given n, the two factors and the limit."""

    lo: Bound
    hi: Bound
    other: str
    limit: Bound
    key: str

    def check(self, value: Any, env: Env) -> Problem | None:
        problem = Num(self.lo, self.hi, True).check(value, env)
        other = env.args.get(self.other)
        if problem is not None or value is None or Num(integer=True).check(other, env) is not None or other is None:
            return problem  # a bad other argument is reported by its own rule
        limit = int(_bound(self.limit, env.limits))
        n = int(value) * int(other)
        return (self.key, {"n": n, "variants": int(value), "problems": int(other), "limit": limit}) if n > limit else None


SWEEP_RANGES: dict[str, tuple[Bound, Bound]] = {
    "guidance": (0.0, 30.0),
    "steps": (1, lambda L: L.image_steps),
    "seed": (0, SEED_MAX),
}


@dataclass
class SweepAxis(Rule):
    """The values of one sweep axis, for the setting named by argument ``param_arg``; the
    second axis (``other``) also checks the grid's size."""

    param_arg: str
    other: str | None = None
    other_param_arg: str | None = None

    def values(self, raw: Any, param: str, env: Env) -> tuple[list | None, Problem | None]:
        problem = Text().check(raw, env)
        if problem is not None:
            return None, problem
        try:
            values = image_grid.parse_values(param, raw or "")
        except UserError as err:
            return None, (err.key, err.params)
        if len(values) > env.limits.sweep_values:
            return None, ("safety.err.too_many", {"n": len(values), "limit": env.limits.sweep_values})
        for v in values:
            if param == "style":
                if len(v) > env.limits.label_chars:
                    return None, ("safety.err.too_long", {"n": len(v), "limit": env.limits.label_chars})
                continue
            lo, hi = (_bound(b, env.limits) for b in SWEEP_RANGES[param])
            if not math.isfinite(v) or not lo <= v <= hi:
                return None, ("safety.err.sweep_value", {"value": _echo(v), "min": _num(lo), "max": _num(hi)})
        return values, None

    def check(self, value: Any, env: Env) -> Problem | None:
        param = env.args.get(self.param_arg)
        if param not in image_grid.SWEEP_PARAMS:
            return None  # the axis' own rule reports it
        values, problem = self.values(value, param, env)
        if problem is not None or self.other is None:
            return problem
        if env.args.get(self.other_param_arg) == param:
            return "safety.err.same_axis", {}
        other_param = env.args.get(self.other_param_arg)
        if other_param not in image_grid.SWEEP_PARAMS:
            return None
        others, problem = self.values(env.args.get(self.other), other_param, env)
        if problem is not None:
            return None  # reported on the other axis
        cells = len(values) * len(others)
        if cells > env.limits.sweep_cells:
            return "safety.err.sweep_cells", {"n": cells, "x": len(others), "y": len(values),
                                              "limit": env.limits.sweep_cells}
        return None


@dataclass
class IdList(Rule):
    """Token ids typed as text: bounded in characters and in count."""

    def check(self, value: Any, env: Env) -> Problem | None:
        problem = Text(lambda L: L.decode_ids * 12).check(value, env)
        if problem is not None or not value:
            return problem
        n = len([x for x in re.split(r"[\s,;\[\]()]+", value) if x])
        if n > env.limits.decode_ids:
            return "safety.err.too_many", {"n": n, "limit": env.limits.decode_ids}
        return None
