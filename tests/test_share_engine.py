"""Experiment links and the class wall below the UI: storage, rules, sanitizing, export, backup."""
from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest
from markdown_it import MarkdownIt
from PIL import Image

from engine.errors import UserError
from engine.share import Experiment, Limits, Sharing, StoreLimits
from engine.share.backup import PATTERNS, start_hub_backup
from engine.share.export import ExportLabels, csv_cell, export_zip
from engine.share.store import SCHEMA
from engine.share.sanitize import html_to_text, sanitize_html
from engine.share.wall import CODE_RE, RateLimiter, normalize_code

XSS_NAME = '<img src=x onerror="alert(1)">'
XSS_PROMPT = "<script>alert('p')</script> then =HYPERLINK(\"http://evil\") ```"


def elements(html: str) -> list[tuple[str, dict]]:
    """Every element of an HTML string as (tag, attributes): what a browser would build."""
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


@pytest.fixture()
def sharing(tmp_path) -> Sharing:
    return Sharing(tmp_path / "data")


def experiment(prompt: str = "Bonjour", images: int = 0) -> Experiment:
    outputs = {"answer": {"type": "text", "value": "Réponse"}}
    if images:
        pictures = [Image.new("RGB", (96, 64), (200, 30, 30 + i)) for i in range(images)]
        outputs["grid"] = {"type": "image", "images": pictures}
    return Experiment("compare", "base_vs_instruct", {"prompt": prompt, "seed": 7}, outputs)


def test_experiments_live_in_sqlite_wal_with_images_beside_it(sharing):
    assert sharing.store.journal_mode() == "wal"
    exp = sharing.share(experiment(images=2))
    assert re.fullmatch(r"[A-Za-z0-9_-]{12}", exp.id)
    got = sharing.store.get_experiment(exp.id)
    assert got.inputs == {"prompt": "Bonjour", "seed": 7} and got.outputs["answer"]["value"] == "Réponse"
    files = got.outputs["grid"]["files"]
    assert len(files) == 2 and all(sharing.store.image_path(f).read_bytes()[:4] == b"\x89PNG" for f in files)
    with Image.open(sharing.store.image_path(got.outputs["grid"]["thumbs"][0])) as thumb:
        assert thumb.format == "JPEG"
    assert len({sharing.store.put_experiment(experiment()).id for _ in range(20)}) == 20  # never reused
    assert sharing.store.get_experiment("does-not-exist") is None
    with pytest.raises(UserError):
        sharing.store.image_path("../genai.db")


def test_size_limits_give_a_clear_error(tmp_path):
    small = Sharing(tmp_path / "small", store_limits=StoreLimits(experiment_mb=1, images=2))
    with pytest.raises(UserError) as err:
        small.share(experiment(prompt="x" * 1_200_000))
    assert err.value.key == "share.err.too_large" and err.value.params["limit"] == 1
    with pytest.raises(UserError) as err:
        small.share(experiment(images=3))
    assert err.value.key == "share.err.too_many_images"
    assert not any((tmp_path / "small" / "images").iterdir())    # nothing half-written


def test_rooms_codes_and_teacher_rights(sharing):
    wall = sharing.wall
    code, token = wall.open_room("Cours 1")
    other_code, other_token = wall.open_room()
    assert CODE_RE.match(code) and code != other_code and len(token) >= 32
    assert normalize_code(" genai-" + code[-6:].lower()) == code == normalize_code(code[-6:])
    exp = sharing.share(experiment())
    room, name = wall.check_post(code, "  Alice\u200b  ", session="s1")
    entry = wall.add_entry(room.code, name, exp.id, exp.tab, "Bonjour", {"parts": []})
    assert (entry.num, entry.name) == (1, "Alice")
    for bad in ("", None, other_token, token[:-1] + ("A" if token[-1] != "A" else "B")):
        for action in (lambda k: wall.set_hidden(code, k, 1), lambda k: wall.set_pinned(code, k, 1),
                       lambda k: wall.close(code, k),
                       lambda k: export_zip(wall, code, k, sharing.folder / "x", {}, str)):
            with pytest.raises(UserError) as err:
                action(bad)
            assert err.value.key == "wall.err.not_teacher"
    assert wall.entries(code)[0].hidden is False
    assert wall.set_hidden(code, token, 1).hidden and wall.entries(code) == []
    assert len(wall.entries(code, include_hidden=True)) == 1
    wall.close(code, token)
    with pytest.raises(UserError) as err:
        wall.check_post(code, "Bob", session="s2")
    assert err.value.key == "wall.err.closed"
    with pytest.raises(UserError) as err:
        wall.room("GENAI-AAAAAA")
    assert err.value.key == "wall.err.no_room"


def test_closing_can_be_undone_and_the_same_result_is_one_card(sharing, tmp_path):
    wall = sharing.wall
    code, token = wall.open_room()
    exp = sharing.share(experiment())
    first = wall.add_entry(code, "Zoé", exp.id, exp.tab, "Bonjour", {"parts": []}, fingerprint="f1")
    again = wall.add_entry(code, " zoé ", exp.id, exp.tab, "Bonjour", {"parts": []}, fingerprint="f1")
    assert (again.num, again.duplicate, first.duplicate) == (first.num, True, False)
    assert wall.find_duplicate(code, "ZOÉ", "f1").num == first.num and wall.find_duplicate(code, "Ben", "f1") is None
    other = wall.add_entry(code, "Ben", exp.id, exp.tab, "Bonjour", {"parts": []}, fingerprint="f1")  # another student
    assert other.num == 2 and len(wall.entries(code)) == 2
    with pytest.raises(UserError) as err:
        wall.reopen(code, "not the token")
    assert err.value.key == "wall.err.not_teacher"
    wall.close(code, token)
    assert wall.room(code).closed is not None
    version = wall.version(code)
    assert wall.reopen(code, token).closed is None and wall.version(code) == version + 1   # the walls refresh
    room, name = wall.check_post(code, "Chloé", session="s3")                              # it takes entries again
    assert room.code == code
    # a database made before fingerprints existed gets the column, its entries kept
    import sqlite3
    old = tmp_path / "old"
    old.mkdir()
    db = sqlite3.connect(old / "genai.db")
    db.executescript(SCHEMA)                   # the tables as the first release made them
    assert "fingerprint" not in SCHEMA
    db.execute("INSERT INTO rooms (code, token_hash, title, created) VALUES ('GENAI-ABCDEF', 'x', '', 0)")
    db.commit()
    db.close()
    assert Sharing(old).wall.entries("GENAI-ABCDEF") == []


def test_room_limits_and_rate_limit(tmp_path):
    sharing = Sharing(tmp_path / "d", limits=Limits(entries_per_room=2, post_burst=2, post_refill_s=60))
    wall = sharing.wall
    code, _ = wall.open_room()
    for session in ("a", "b"):
        room, name = wall.check_post(code, session, session=session)
        wall.add_entry(room.code, name, sharing.share(experiment()).id, "tokenizers", "t", {"parts": []})
    with pytest.raises(UserError) as err:
        wall.check_post(code, "c", session="c")
    assert err.value.key == "wall.err.room_full" and err.value.params["limit"] == 2
    limiter = RateLimiter(burst=2, refill_s=10)
    assert limiter.take("k", now=0) == 0 and limiter.take("k", now=0) == 0
    assert limiter.take("k", now=1) == pytest.approx(9.0)
    assert limiter.take("k", now=10) == 0 and limiter.take("other", now=10) == 0
    with pytest.raises(UserError) as err:
        wall.check_post(code, "x" * 41)
    assert err.value.key == "wall.err.name_too_long"


def test_rooms_opened_per_address_are_limited_and_the_limit_is_configurable(tmp_path):
    limits = Limits.from_env({"GENAI_WALL_ROOMS_BURST": "2", "GENAI_WALL_ROOMS_EVERY_S": "600"})
    wall = Sharing(tmp_path / "d", limits=limits).wall
    wall.open_room(address="10.0.0.1")
    wall.open_room(address="10.0.0.1")
    with pytest.raises(UserError) as err:
        wall.open_room(address="10.0.0.1")
    assert err.value.key == "wall.err.slow_down" and err.value.params["seconds"] > 500
    wall.open_room(address="10.0.0.2")  # another school's address has its own rooms
    assert Limits.from_env({}).rooms_burst == 5


def test_sanitizer_drops_script_and_keeps_the_apps_own_html():
    from engine.generation import TokenInfo
    from ui.token_probs import render_output

    for attack in ('<img src=x onerror="alert(1)">', "<script>alert(1)</script>",
                   '<svg onload="alert(1)"><script>1</script></svg>',
                   '<a href="javascript:alert(1)">x</a>', '<div style="background:url(javascript:alert(1))">x</div>',
                   '<iframe srcdoc="<script>alert(1)</script>"></iframe>', '<div onclick="alert(1)">x</div>',
                   '<<script>script>alert(1)<</script>/script>', '<details open ontoggle="alert(1)">x</details>'):
        clean = sanitize_html(attack)
        for tag, attrs in elements(clean):
            assert tag in ("div", "details") and not any(a.startswith("on") for a in attrs), (attack, clean)
            assert "url(" not in attrs.get("style", "") and "javascript" not in str(attrs), (attack, clean)
    tokens = [TokenInfo(id=5, text=" chat <b>", prob=0.4, top=[(" chat <b>", 0.4), (" chien", 0.3)])]
    html = render_output(" chat <b>", tokens, show_probs=True)
    clean = sanitize_html(html)
    assert html_to_text(clean) == html_to_text(html) == "chat <b>"
    assert clean == html  # the app's own view (colours, data, keyboard access) comes back unchanged
    assert 'class="tok-p"' in clean and "background:#" in clean and 'tabindex="0"' in clean and "aria-label=" in clean


def test_export_keeps_student_text_as_text_and_defuses_csv_formulas(sharing, tmp_path):
    wall = sharing.wall
    code, token = wall.open_room()
    exp = sharing.share(experiment(prompt=XSS_PROMPT, images=1))
    card = {"labels": ["tab.bvi"], "parts": [
        {"kind": "text", "label": "share.card.base", "text": "<img src=x onerror=alert(2)>"},
        {"kind": "images", "label": "share.card.images", "files": exp.outputs["grid"]["files"],
         "thumbs": exp.outputs["grid"]["thumbs"]}]}
    room, name = wall.check_post(code, XSS_NAME)
    wall.add_entry(room.code, name, exp.id, exp.tab, XSS_PROMPT, card)
    path = export_zip(wall, code, token, tmp_path / "out", {"base_vs_instruct": "Base vs Instruct"}, lambda k: k,
                      base_url="https://class.example/app/")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        md = zf.read("wall.md").decode()
        rows = list(csv.reader(io.StringIO(zf.read("entries.csv").decode("utf-8-sig"))))
    assert {"wall.md", "entries.csv", "images/001-1.png"} <= names
    rendered = MarkdownIt("commonmark", {"html": True}).render(md)      # the most permissive renderer
    tags = elements(rendered)
    assert not [t for t in tags if t[0] in ("script", "iframe", "svg") or any(a.startswith("on") for a in t[1])]
    assert [t[1]["src"] for t in tags if t[0] == "img"] == ["images/001-1.png"]           # our image only
    assert "&lt;img src=x onerror" in rendered and "&lt;script&gt;alert" in rendered   # shown, as text
    assert f"https://class.example/app/?x={exp.id}" in md
    header, row = rows
    assert row[header.index("name")] == XSS_NAME and row[header.index("prompt")] == XSS_PROMPT
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("-2") == "'-2"
    assert csv_cell("Alice") == "Alice"


def test_export_in_french_writes_french_numbers_and_the_csv_stays_machine_readable(sharing, tmp_path):
    from ui import fmt
    from ui.i18n import t

    wall = sharing.wall
    code, token = wall.open_room()
    exp = sharing.share(experiment())
    card = {"labels": ["tab.tok"], "parts": [{"kind": "table", "label": "share.card.counts",
                                               "headers": ["tokenizer", "chars/token", "vocabulary"],
                                               "rows": [["Tekken", 2.56, 131072], ["v1", "2.65", "32000"]]}]}
    for name in ("Zoé", "Ben"):
        wall.add_entry(code, name, exp.id, exp.tab, "Bonjour", card, fingerprint=name)
    labels = ExportLabels(title=lambda **f: t("wall.x_title", "fr", **f), exported=lambda **f: t("wall.x_exported", "fr", **f),
                          link=t("wall.x_link", "fr"), number=lambda v: fmt.number(v, "fr"),
                          columns=tuple(t("wall.x_columns", "fr").split(",")))
    path = export_zip(wall, code, token, tmp_path / "fr", {}, lambda k: t(k, "fr"), labels)
    with zipfile.ZipFile(path) as zf:
        md = zf.read("wall.md").decode()
        rows = list(csv.reader(io.StringIO(zf.read("entries.csv").decode("utf-8-sig"))))
    assert "| Tekken | 2,56 | 131\u202f072 |" in md and "| v1 | 2,65 | 32\u202f000 |" in md
    assert "2\\.56" not in md and "2.56" not in md and "Lien\u00a0: <?x=" in md and "Lien:" not in md
    assert "2 entrées" in md and "Mur de la classe" in md
    assert rows[0][0] == "entrée" and [r[0] for r in rows[1:]] == ["1", "2"]           # plain integers in the CSV


def test_hub_backup_is_configured_and_survives_an_unreachable_hub(sharing, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert start_hub_backup(sharing.store, env={}) is None                 # off unless asked
    backup = start_hub_backup(sharing.store, env={"GENAI_HUB_BACKUP_REPO": "teacher/genai-wall",
                                                  "GENAI_HUB_BACKUP_EVERY": "5"})
    settings = backup.settings()
    assert settings["folder_path"] == sharing.folder and settings["repo_type"] == "dataset"
    assert settings["repo_id"] == "teacher/genai-wall" and settings["private"] and settings["every"] == 5
    assert settings["allow_patterns"] == PATTERNS == ["snapshot/genai.db", "images/**"]
    assert backup.started.wait(60)
    assert backup.scheduler is None and backup.error                     # the Hub is unreachable: logged, off
    assert (sharing.folder / "snapshot" / "genai.db").exists()            # the snapshot it would have pushed
    assert sharing.share(experiment()).id                                 # and the app goes on
