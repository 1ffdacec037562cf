"""Issue #19, the pieces: limits, rules, model ids, redaction, PNG reading, grids, fair turns,
temp files, session stores (no app needed; the app-level tests are in test_safety.py)."""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from engine import limits
from engine.images import grid as image_grid
from engine.images import png as image_png
from engine.images import imagegen
from engine.runtime import tempfiles
from engine.errors import UserError
from engine.runtime.fairness import Cancelled, FairGate, TimeLimit
from engine.models.policy import check_model_id
from engine.runtime.redact import install_log_redaction, redact, redact_url, remote_text
from ui.rules import Choices, Env, Num, SweepAxis, Text

SECRET = "sk-test-0123456789abcdef"


def env(**args) -> Env:
    return Env(limits.limits_for("tiny"), None, args)


def message(problem, lang="en", param="p") -> str:
    from ui.validation import message as shown

    assert problem is not None
    return shown(problem, param, lang)


# ------------------------------------------------------------------ limits and rules
def test_every_profile_has_limits_and_env_overrides_them(monkeypatch):
    from engine.models.catalog import PROFILES

    assert set(PROFILES) <= set(limits.PROFILE_LIMITS)
    assert limits.PROFILE_LIMITS["cpu"].sweep_cells < limits.PROFILE_LIMITS["gpu"].sweep_cells
    monkeypatch.setenv("GENAI_LIMIT_SWEEP_CELLS", "3")
    limits.limits_for.cache_clear()
    try:
        assert limits.limits_for("gpu").sweep_cells == 3
    finally:
        monkeypatch.delenv("GENAI_LIMIT_SWEEP_CELLS")
        limits.limits_for.cache_clear()
    table = limits.markdown_table()
    doc = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text(encoding="utf-8")
    assert all(row in doc for row in table.splitlines()[2:]), "docs/security.md's Limits table is out of date"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_numbers_must_be_finite(value):
    problem = Num(0.0, 2.0).check(value, env())
    assert problem[0] == "safety.err.not_finite"
    assert "n'est pas un nombre fini" in message(problem, "fr")


def test_numbers_ranges_types_and_whole_numbers():
    rule = Num(1, lambda L: L.max_new_tokens, True)
    assert rule.check(12, env()) is None and rule.check(None, env()) is None
    assert message(rule.check(0, env())) == "p must be between 1 and 2,048 (got 0)."
    assert rule.check(2.5, env())[0] == "safety.err.not_integer"
    assert rule.check("12", env())[0] == "safety.err.not_number"
    assert rule.check(True, env())[0] == "safety.err.not_number"


def test_text_and_choice_lists():
    assert message(Text(10).check("x" * 11, env())) == "p has 11 characters; the limit is 10. Shorten it."
    # in French: French numbers, and the input named by its label as the page shows it
    from ui.i18n import I18N

    too_long = Text(100_000).check("x" * 100_001, env())
    assert message(too_long, "fr", I18N("tok.text")) == \
        "Texte fait 100\u202f001 caractères ; la limite est de 100\u202f000. Raccourcissez-le."
    assert message(Num(0, 0.05).check(0.5, env()), "fr", "Top-p (noyau)") == "Top-p doit être entre 0 et 0,05 (reçu : 0,5)."
    assert Text(10).check(["x"], env())[0] == "safety.err.type"
    rule = Choices(["a", "b"], max_count=lambda L: 2)
    assert rule.check(["a", "b"], env()) is None
    assert rule.check(["a", "b", "a"], env())[0] == "safety.err.too_many"
    assert "<img" in message(rule.check(["<img src=x>"], env()))  # shown as text by Gradio (escaped there)


def test_sweeps_are_capped_in_cells_values_and_label_length():
    x = SweepAxis("x_param")
    y = SweepAxis("y_param", other="x_values", other_param_arg="x_param")
    args = dict(x_param="seed", x_values="1, 2, 3, 4", y_param="guidance", y_values="1, 2, 3, 4, 5")
    assert message(y.check(args["y_values"], env(**args))).startswith("This sweep would make 20 images (4 × 5)")
    assert x.check("W" * 100_000, env(x_param="style"))[0] == "safety.err.too_long"
    assert x.check("W" * 61, env(x_param="style"))[0] == "safety.err.too_long"  # one label: 60 characters
    assert x.check("nan", env(x_param="guidance"))[0] == "safety.err.sweep_value"
    assert x.check("10**9", env(x_param="steps"))[0] == "img.err.sweep_values"
    assert y.check("5", env(x_param="guidance", x_values="1", y_param="guidance"))[0] == "safety.err.same_axis"


# ------------------------------------------------------------------ model ids
def test_only_catalog_models_unless_the_teacher_allows_custom_ones(tiny_dir):
    offered = ["tiny/mistral-base", "mistral-7b"]
    assert check_model_id(" tiny/mistral-base ", offered, allow_custom=False) == "tiny/mistral-base"
    for value in ("/etc", str(tiny_dir / "mistral-base"), "~/.cache", "../x", "gpt2", "/no/such/folder"):
        with pytest.raises(UserError) as err:
            check_model_id(value, offered, allow_custom=False)
        assert err.value.key == "safety.err.model_not_offered"  # the same answer whether it exists or not
    assert check_model_id("openai-community/gpt2", offered, allow_custom=True) == "openai-community/gpt2"
    assert check_model_id(str(tiny_dir / "mistral-base"), offered, allow_custom=True).endswith("mistral-base")
    for value in ("/etc", "/etc/../etc/passwd", "assets", "a/../../b"):
        with pytest.raises(UserError) as err:
            check_model_id(value, offered, allow_custom=True)
        assert err.value.key in {"safety.err.model_path", "safety.err.model_id"}
        assert "/etc/passwd" not in str(err.value.params) or value.startswith("/etc")


# ------------------------------------------------------------------ secrets
def test_redaction_of_keys_tokens_and_url_credentials(monkeypatch):
    monkeypatch.setenv("GENAI_ENDPOINT_API_KEY", "plain-env-secret-value")
    text = (f'http://student:{SECRET}@gpu-box:8000/v1 "Authorization": "Bearer {SECRET}" x-api-key: abc123def '
            "hf_abcdefghijklmnopqrstuv ?api_key=zzz plain-env-secret-value")
    out = redact(text)
    for secret in (SECRET, "student:", "abc123def", "hf_abcdefghij", "zzz", "plain-env-secret-value"):
        assert secret not in out
    assert redact_url(f"http://u:{SECRET}@host:1/v1") == "http://host:1/v1"
    page = "<html><script>alert(1)</script><h1>502 Bad Gateway</h1><img src=http://x/y.png></html>"
    assert remote_text(page) == "502 Bad Gateway"
    assert len(remote_text("é" * 10_000, 200)) == 200


def test_log_records_are_redacted_whatever_the_handler(caplog):
    install_log_redaction()
    log = logging.getLogger("httpx")
    with caplog.at_level(logging.INFO):
        log.info("HTTP Request: POST %s", f"http://u:{SECRET}@h/v1/chat/completions")
        try:
            raise ConnectionError(f"refused Bearer {SECRET}")
        except ConnectionError:
            log.exception("failed")
    assert SECRET not in caplog.text and "***" in caplog.text


def test_toasts_escape_what_they_quote():
    from ui.feedback import to_gr_error

    err = to_gr_error(UserError("err.unknown_model", model='<a href="http://evil">Session expired</a>'))
    assert "<a " not in err.message and "&lt;a href" in err.message
    err = to_gr_error(OSError(f"Unrecognized model in /etc/secret-place. key {SECRET}"))
    assert "/etc" not in err.message and SECRET not in err.message and "OSError" in err.message


def test_a_remote_error_page_shows_as_text_in_a_pane():
    from engine.chat.compare import PaneState
    from engine.generation import StreamUpdate
    from engine.models.llm import PreparedPrompt
    from tabs.base_vs_instruct import pane_stats

    page = remote_text("<html><h1>Maintenance</h1><a href='http://evil'>Session expired</a> [log in](http://evil) "
                       "<img src=http://evil/x.png></html>")
    error = UserError("err.endpoint_status", url="http://gpu-box/v1", status=503, detail=page)
    shown = pane_stats(PaneState("base", "m", PreparedPrompt("", []), StreamUpdate(error=error)), "en")
    assert "<a" not in shown and "<img" not in shown and "](http" not in shown and "Session expired" in shown


# ------------------------------------------------------------------ PNGs and grids
def test_png_settings_are_read_without_decoding_pixels(tmp_path, manager, monkeypatch):
    spec = manager.catalog.spec("sdxl_base")
    settings = imagegen.settings_for(spec, "a lighthouse", seed=11, tiny=True)
    path = image_png.save_png(imagegen.ImageResult(Image.new("RGB", (64, 64)), settings, 0.5), tmp_path, "x")

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_png.read_png_settings(path) == settings


def test_png_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(path)
    assert path.stat().st_size < 1_000_000
    started = time.perf_counter()
    with pytest.raises(UserError) as err:
        image_png.read_png_settings(path)
    assert err.value.key == "safety.err.png_too_large" and err.value.params["width"] == 13_000
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("field,value", [("steps", '<a href="http://evil">Session expired</a>'),
                                         ("guidance", "NaN"), ("seed", -1), ("width", 10**9), ("prompt", ["x"])])
def test_png_metadata_is_checked_field_by_field(tmp_path, field, value):
    from PIL.PngImagePlugin import PngInfo

    data = {"role": "sdxl_base", "model": "m", "prompt": "p", "negative_prompt": "", "steps": 2, "guidance": 1.0,
            "width": 64, "height": 64, "seed": 1, "max_sequence_length": None, field: value}
    info = PngInfo()
    info.add_text(image_png.METADATA_KEY, json.dumps(data).replace('"NaN"', "NaN"))
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png", pnginfo=info)
    with pytest.raises(UserError) as err:
        image_png.read_png_settings(tmp_path / "x.png")
    assert err.value.key == "safety.err.png_settings" and err.value.params["field"] == field


def test_a_label_never_makes_the_canvas_wider_than_its_grid():
    images = [Image.new("RGB", (32, 32))] * 2
    out = image_grid.grid(images, ["a", "b"], columns=1, cell=256, row_labels=["style = " + "W" * 100_000] * 2,
                        column_labels=["W" * 100_000])
    assert out.width < 2 * 256  # the label column is at most half the grid (and a margin)


# ------------------------------------------------------------------ turns, time limits, temp files, sessions
def test_turns_alternate_between_a_sweep_and_a_newcomer():
    gate, order = FairGate(1), []
    first_turn, newcomer_waiting = threading.Event(), threading.Event()

    def sweep():
        for i in range(4):
            with gate.turn("sweep"):
                order.append(f"sweep{i}")
                first_turn.set()
                if i == 0:
                    newcomer_waiting.wait(5)

    def newcomer():
        first_turn.wait(5)
        with gate.turn("student", on_wait=lambda ahead: newcomer_waiting.set()):
            order.append("student")

    threads = [threading.Thread(target=sweep), threading.Thread(target=newcomer)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert order[:2] == ["sweep0", "student"] and len(order) == 5


def test_a_stopped_waiter_leaves_the_line_and_time_limits_stop_work():
    gate, stop = FairGate(1), threading.Event()
    with gate.turn("a"):
        stop.set()
        with pytest.raises(Cancelled):
            with gate.turn("b", stop):
                pass
    assert gate.waiting() == 0
    event = threading.Event()
    with TimeLimit(event, 0.05) as limit:
        assert event.wait(2)
    assert limit.expired


def test_temp_folders_are_cleaned_by_age_then_by_size(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_TEMP_DIR", str(tmp_path))
    old, big, young = (tempfiles.new_dir(p) for p in ("card", "images", "quant"))
    (big / "x.bin").write_bytes(b"0" * 50_000)
    now = time.time()
    os.utime(old, (now - 7200, now - 7200))
    os.utime(big, (now - 600, now - 600))
    assert tempfiles.sweep(max_age_s=3600, max_bytes=10**9, now=now) == 1 and not old.exists()
    assert tempfiles.sweep(max_age_s=3600, max_bytes=10_000, now=now) == 1 and not big.exists()
    assert young.exists()  # younger than MIN_AGE_S: its event may still be serving it


def test_a_too_large_answer_budget_says_how_many_tokens_fit(manager):
    from engine.models.llm import PreparedPrompt

    handle = manager.llm(manager.catalog.spec("base_llm"))
    with pytest.raises(UserError) as err:
        handle.check_length(PreparedPrompt(text="", input_ids=[1, 2, 3]), handle.context_length)
    assert err.value.key == "safety.err.new_tokens"
    assert err.value.params["limit"] == handle.context_length - 3          # a number: written the reader's way
    from ui.i18n import t

    shown = t(err.value.key, "fr", **err.value.params)
    assert f"{handle.context_length:,}".replace(",", "\u202f") in shown and "2,0" not in shown


def test_sessions_gradio_keeps_are_dropped_when_idle_or_closed():
    import datetime as dt
    from types import SimpleNamespace

    from ui.sessions import expire_gradio_sessions

    now = dt.datetime.now()
    holder = SimpleNamespace(lock=threading.Lock(), session_data={}, time_last_used={})
    for name, idle_s, closed in (("fresh", 5, False), ("idle", 4000, False), ("closed", 300, True),
                                 ("busy", 4000, False)):
        holder.session_data[name] = SimpleNamespace(is_closed=closed)
        holder.time_last_used[name] = now - dt.timedelta(seconds=idle_s)
    demo = SimpleNamespace(state_holder=holder, _queue=SimpleNamespace(pending_event_ids_session={"busy": {"e1"}}))
    assert expire_gradio_sessions(demo, idle_s=3600) == 2
    assert set(holder.session_data) == {"fresh", "busy"}


def test_a_list_filled_later_needs_a_declared_rule():
    """A dropdown built empty (the wall's entries) would refuse every value with the default rule
    (its build-time choices): the app refuses to start until a rule is declared."""
    import gradio as gr

    from engine.limits import Limits
    from ui.validation import check_call, rules_for

    def pick_entry(entry):
        return entry

    with gr.Blocks():
        filled_later = gr.Dropdown([], value=None)
    with pytest.raises(RuntimeError, match="declare one"):
        rules_for("pick_entry", pick_entry, [filled_later])

    def toggle_hidden(room, key, num):
        return num

    with gr.Blocks():
        inputs = [gr.Textbox(), gr.Textbox(), gr.Dropdown([], value=None)]
    assert check_call("toggle_hidden", toggle_hidden, inputs, ["GENAI-1234", "secret", 2], Limits(), None) == []
    assert check_call("toggle_hidden", toggle_hidden, inputs, ["GENAI-1234", "secret", -1], Limits(), None)
