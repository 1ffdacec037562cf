"""Tokenizer tab: real Mistral and CLIP vocabularies, spans and byte groups, limits, escaping, API."""
from __future__ import annotations

import base64
import gzip
import html
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

from engine.tokenization import tokenizers as tk
from engine.models.clip_bpe import VOCAB_GZ
from engine.errors import UserError
from engine.tokenization.backends import HubTokenizer, TiktokenTokenizer, Tokenizer
from ui.i18n import t
from ui.token_view import DEFAULT_LABELS as LABELS
from ui.token_view import clip_window_html, render_pieces, render_views

SAMPLES = [
    "Bonjour, je m'appelle Marie et j'habite à Besançon.",  # French, accents
    "The quick brown fox jumps over the lazy dog.",  # English
    "Fête 🎉 réussie ! 👨‍👩‍👧 🇫🇷 ☯︎ ǅ",  # emoji, ZWJ sequence, flag, rare characters
    "Il y a 1234567 habitants ; π ≈ 3.14159 ; 2025-11-24",  # digits
    "def f(x):\n    return x ** 2  # carré\n\tprint(f(3))\n",  # code, indentation, tab
]
MISTRAL_FILES = {"mistral-v1": "tokenizer.model.v1", "mistral-v3": "mistral_instruct_tokenizer_240323.model.v3",
                 "tekken": "tekken_240911.json"}


@lru_cache(maxsize=None)
def mistral_reference(key: str):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from engine.models.tiny import mistral_data_file

    return MistralTokenizer.from_file(str(mistral_data_file(MISTRAL_FILES[key])))


@pytest.mark.parametrize("key", list(MISTRAL_FILES))
def test_ids_equal_mistral_common(key):
    reference = mistral_reference(key).instruct_tokenizer.tokenizer
    tok = tk.get(key)
    for text in SAMPLES:
        assert tok.encode(text) == reference.encode(text, bos=False, eos=False), text
        assert tok.encoding(text).ids == tok.encode(text)
        assert tok.decode(tok.encode(text)) == text  # exact round trip
    assert tok.vocab_size == {"mistral-v1": 32000, "mistral-v3": 32768, "tekken": 131072}[key]


def test_known_ids_and_counts():
    v1 = tk.get("mistral-v1")
    assert v1.encode("Bonjour") == [8500, 18777]  # ▁Bon + jour
    enc = v1.encoding("2025")  # SentencePiece splits numbers digit by digit
    assert [p.text for p in enc.pieces] == [" ", "2", "0", "2", "5"]
    assert (enc.n_tokens, enc.n_chars, enc.n_bytes) == (5, 4, 4)
    assert enc.chars_per_token == pytest.approx(4 / 5)
    enc = tk.get("tekken").encoding("été 🎉")
    assert (enc.n_chars, enc.n_bytes) == (5, len("été 🎉".encode()))


def _span_problems(tok: Tokenizer, text: str, parse_special: bool = False) -> list:
    enc = tok.encoding(text, parse_special)
    problems, last_start = [], 0
    for i, p in enumerate(enc.pieces):
        if p.raw is None:
            continue
        if p.start < 0:
            if not (i <= 1 and p.raw.strip() == b""):  # only SentencePiece's dummy "▁" may have no span
                problems.append(("no span", i, p.raw))
            continue
        if p.start < last_start:
            problems.append(("backwards", i, p.raw))
        last_start = p.start
        if p.group is None:
            source = text[p.start:p.end]
            if tok.key == "clip":
                source = source.lower()
            if source.strip() != p.text.strip():
                problems.append(("text", i, source, p.text))
    return problems


@pytest.mark.parametrize("key", tk.DEFAULT_SET)
def test_every_piece_knows_its_characters(key):
    tok = tk.get(key)
    texts = SAMPLES + [s["text"] for s in tk.language_sentences()] + ["  deux  espaces\n\n\nlignes\r\nfin  "]
    for text in texts:
        assert _span_problems(tok, text) == [], text


def test_chat_preset_spans_with_special_tokens():
    text = tk.chat_preset_text()
    for key in tk.DEFAULT_SET:
        assert _span_problems(tk.get(key), text, parse_special=True) == [], key


def reference_bytes_to_unicode() -> dict[int, str]:
    """open_clip's byte → printable character map, written again here (not engine.models.clip_bpe's)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {b: chars[b] for b in keep + [b for b in range(256) if b not in keep]}


@lru_cache(maxsize=1)
def open_clip_reference():
    """open_clip's SimpleTokenizer logic, rebuilt here from the same vocabulary file (its ftfy and
    HTML-entity clean-up left out: the test strings need neither)."""
    import regex

    merges = gzip.open(VOCAB_GZ).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    byte_encoder = reference_bytes_to_unicode()
    vocab = list(byte_encoder.values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    encoder = dict(zip(vocab, range(len(vocab))))
    ranks = dict(zip(merges, range(len(merges))))
    pattern = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
                            r"|[^\s\p{L}\p{N}]+", regex.IGNORECASE)

    def bpe(token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    def encode(text):
        ids = [encoder["<|startoftext|>"]]
        for w in pattern.findall(" ".join(text.split()).lower()):
            ids += [encoder[piece] for piece in bpe("".join(byte_encoder[b] for b in w.encode("utf-8")))]
        return ids + [encoder["<|endoftext|>"]]

    return encode


def test_clip_matches_published_ids_and_open_clip_logic():
    clip = tk.get("clip")
    assert clip.encode("a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip.vocab_size == 49408
    reference = open_clip_reference()
    for text in ["A watercolor painting of a red fox", "photo of an astronaut riding a horse, 8k, highly detailed",
                 "Un chat qui tient une pancarte « Bonjour » !", "it's a DOG's life, isn't it? 1999 🐕",
                 "cinématique, éclairage doux,   grand-angle\n35mm f/1.8"]:
        assert clip.encode(text) == reference(text), text


def test_clip_window_cut_position():
    long_prompt = ", ".join(["a cinematic photo of a lighthouse at dawn"] * 12)
    enc = tk.get("clip").encoding(long_prompt)
    assert enc.n_tokens > 77
    out = clip_window_html(long_prompt)
    classes = re.findall(r'<span class="(tk [^"]*)"', out)
    cut = [i for i, c in enumerate(classes) if " cut" in c]
    assert cut[0] == 76 and cut[-1] == enc.n_tokens - 2  # the start token and 75 more reach the encoder
    assert " cut" not in classes[-1]  # the end token is always kept
    assert "✂ 77" in out and f"77 / 77 tokens used ({enc.n_tokens}" in out
    short = clip_window_html("a photo of a cat")
    assert " cut" not in short and "✂" not in short and "7 / 77 tokens used" in short


def test_clip_cut_inside_a_byte_group():
    enc = tk.get("clip").encoding("a " * 74 + "ǅ")  # ǅ is two byte tokens: indices 75 and 76
    assert [p.group for p in enc.pieces[75:77]] == [0, 0] and enc.n_tokens == 78
    out = render_pieces(enc, window=77)
    assert out.count("✂ 77") == 1
    classes = re.findall(r'<span class="(tk [^"]*)"', out)
    assert " cut" not in classes[75] and " cut" in classes[76]


@pytest.mark.parametrize("key,text,char", [("tekken", "Top 😀!", "😀"), ("mistral-v1", "Puzzle 🧩 ok", "🧩"),
                                           ("clip", "sign ǅ here", "ǅ")])
def test_byte_fallback_is_grouped_under_its_character(key, text, char):
    enc = tk.get(key).encoding(text)
    group = [p for p in enc.pieces if p.group is not None]
    assert len(group) >= 2 and any(p.partial for p in group)
    assert (char.lower() if key == "clip" else char).encode() in b"".join(p.raw for p in group)
    where = text.index(char)
    assert all(p.start <= where < p.end for p in group)  # every byte token points at the character
    out = render_views([enc], LABELS)
    assert 'class="tkg"' in out and f'<span class="tkg-c">{char}</span>' in out  # the text's own character
    assert "byte" in out  # shown as bytes (hex), not as a replacement character
    assert "\ufffd" not in out


def test_decode_out_of_range_and_bad_input():
    for key in ("mistral-v1", "tekken"):
        tok = tk.get(key)
        (decoded,) = tk.decode_ids(" ".join(map(str, tok.encode(SAMPLES[0]))), [key])
        assert decoded.text == SAMPLES[0] and decoded.bad_ids == []
    (clip,) = tk.decode_ids(str(tk.get("clip").encode(SAMPLES[0])), ["clip"])  # "[49406, …]" is accepted
    assert clip.text.replace(" ", "") == SAMPLES[0].lower().replace(" ", "")
    v1, v3 = tk.decode_ids("1, 32767, 99999999", ["mistral-v1", "mistral-v3"])
    assert v1.text is None and v1.bad_ids == [32767, 99999999] and v1.vocab_size == 32000
    assert v3.text is None and v3.bad_ids == [99999999]
    message = t("tok.decode_bad", "en", ids="32767", size=32000, last=31999)
    assert "32,000 entries" in message and "0 to 31,999" in message
    for bad in ("un deux", "", "1.5", "12 -"):
        with pytest.raises(UserError) as err:
            tk.decode_ids(bad, ["mistral-v1"])
        assert err.value.key == "tok.err.bad_ids"
    assert tk.parse_ids("[1, 2]\n3;4") == [1, 2, 3, 4]


def test_empty_text_and_the_limit():
    assert tk.get("mistral-v1").encoding("").n_tokens == 0
    assert tk.get("clip").encoding("").n_tokens == 2  # CLIP's start and end tokens only
    tk.check_text("a" * tk.MAX_CHARS)
    assert tk.get("tekken").encoding("a" * tk.MAX_CHARS).n_tokens > 0
    with pytest.raises(UserError) as err:
        tk.check_text("a" * (tk.MAX_CHARS + 1))
    assert err.value.key == "tok.err.too_long"
    message = t(err.value.key, "en", **err.value.params)
    assert message == "The text has 100,001 characters; the limit is 100,000. Shorten it."
    assert "100\u202f001 caractères" in t(err.value.key, "fr", **err.value.params)


def visible_text(out: str) -> str:
    """What a reader sees in a view, markers turned back into the whitespace they stand for."""
    pieces = re.search(r'<div class="tokpieces">(.*)</div></div>', out, re.S).group(1)
    pieces = pieces.replace('<i class="ws">·</i>', " ").replace('<i class="ws">↵</i>', "\n").replace("<br>", "")
    pieces = pieces.replace('<i class="ws">→</i>', "\t")
    return html.unescape(re.sub(r"<[^>]+>", "", pieces))


def test_user_text_is_escaped_and_shown_as_text():
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes"\n\t<b>gras</b>'
    for key in tk.DEFAULT_SET:
        out = render_views([tk.get(key).encoding(evil)], LABELS)
        pieces = re.sub(r'<div class="tokstats"[^>]*>.*?</div>', "", out)
        assert "<script" not in pieces and "<img" not in pieces and "<b>" not in pieces
        if key != "clip":  # CLIP lower-cases and drops whitespace: its pieces are not the text
            assert visible_text(out).lstrip(" ") == evil, key
    ids_view = render_views([tk.get("tekken").encoding('"><img src=x>')], LABELS, show_ids=True)  # titles inline
    titles = re.findall(r'title="([^"]*)"', ids_view)
    assert titles and all("<" not in x and '"' not in x for x in titles)


def test_ids_view_and_markers():
    enc = tk.get("mistral-v1").encoding("a b\nc")
    out = render_views([enc], LABELS, show_ids=True)
    shown = re.findall(r'<span class="tk[^"]*"[^>]*>([^<]*)</span>', out)
    assert shown == [str(i) for i in enc.ids]
    out = render_views([enc], LABELS)
    assert '<i class="ws">·</i>' in out and '<i class="ws">↵</i></span><br>' in out  # the line break follows
    assert re.findall(r'class="tk (c\d)', out)[:3] == ["c0", "c1", "c2"]  # alternating colours


def test_display_truncation_keeps_exact_counts():
    from ui.token_view import render_view

    enc = tk.get("tekken").encoding("mot " * 3000)
    out = render_view(enc, LABELS, max_shown=1000)
    assert out.count('class="tk ') == 1000 and f"+{enc.n_tokens - 1000:,} tokens" in out
    assert f"<b>{enc.n_tokens:,}</b> tokens" in out and "Showing the first 1,000 tokens" in out


def test_language_cost_ratios():
    rows = tk.language_cost(["mistral-v1", "tekken", "clip"])
    assert {"fr", "en", "de", "es", "it", "zh", "ar", "hi"} <= {r["lang"] for r in rows}
    en = {r["key"]: r for r in rows if r["lang"] == "en"}
    assert all(r["ratio_to_english"] == 1.0 for r in en.values())
    for r in rows:
        assert r["ratio_to_english"] == round(r["tokens"] / en[r["key"]]["tokens"], 2)
    sentence = next(s["text"] for s in tk.language_sentences() if s["lang"] == "en")
    assert en["clip"]["tokens"] == len(tk.get("clip").encode(sentence)) - 2  # start/end tokens left out
    fr = {r["key"]: r for r in rows if r["lang"] == "fr"}
    hi = {r["key"]: r for r in rows if r["lang"] == "hi"}
    assert fr["mistral-v1"]["ratio_to_english"] > 1 and hi["mistral-v1"]["ratio_to_english"] > 3


def test_language_table_and_chart_data():
    from tabs.tokenizers import language_tables

    rows = tk.language_cost(["mistral-v1", "tekken"])
    shown, chart = language_tables(rows, "fr")
    assert list(shown.columns) == ["Langue", "Mistral v1", "Tekken"]
    assert len(shown) == len(tk.language_sentences()) and shown.iloc[0, 1].endswith("(×1,00)")
    assert list(chart.columns) == ["bar", "tokens", "tokenizer", "ratio_to_english"]
    assert chart["bar"].is_unique and chart["bar"].iloc[0] == "anglais · Mistral v1"


def test_chat_preset_through_the_template():
    text, parse_special = tk.preset_text("chat")
    assert parse_special and text.startswith("<s>[INST] ") and text.endswith(" [/INST]") and "</s> [INST]" in text  # v0.1's Hub template
    v1 = tk.get("mistral-v1").encoding(text, parse_special=True)
    assert [p.special for p in v1.pieces if p.special] == ["<s>", "</s>"]  # v1: [INST] is ordinary text
    for key in ("mistral-v3", "tekken"):
        enc = tk.get(key).encoding(text, parse_special=True)
        assert [p.id for p in enc.pieces if p.special] == [1, 3, 4, 2, 3, 4]  # <s> [INST] [/INST] </s> …
        assert not any(p.special for p in tk.get(key).encoding(text).pieces)
    with pytest.raises(UserError):
        tk.preset_text("nope")


@pytest.mark.parametrize("key", list(MISTRAL_FILES))
def test_one_turn_matches_mistral_common_chat_encoding(key):
    from mistral_common.protocol.instruct.messages import UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    reference = mistral_reference(key).encode_chat_completion(
        ChatCompletionRequest(messages=[UserMessage(content="Combien font 12 × 7 ?")])).tokens
    # v1's [INST] is text, spaced as its template does; v3 and Tekken's are control tokens
    spaced = "<s>[INST] Combien font 12 × 7 ? [/INST]" if key == "mistral-v1" else "<s>[INST]Combien font 12 × 7 ?[/INST]"
    assert tk.get(key).encode(spaced, parse_special=True) == reference


def test_hub_style_tokenizer_from_a_local_folder(tmp_path):
    """The Hub path (AutoTokenizer) on a byte-level BPE built here: offsets, bytes, byte groups."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(SAMPLES * 20, trainer)
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>").save_pretrained(tmp_path)
    tok = HubTokenizer(str(tmp_path))
    text = "Fête 🦊 <|endoftext|> ok"  # the fox is not in this small vocabulary: byte tokens
    enc = tok.encoding(text)
    assert tok.decode(enc.ids) == text and b"".join(p.raw for p in enc.pieces) == text.encode()
    assert _span_problems(tok, text) == []
    emoji = [p for p in enc.pieces if p.group is not None]
    where = text.index("🦊")
    assert len(emoji) >= 3 and all(p.start <= where < p.end for p in emoji)
    special = tok.encoding(text, parse_special=True)
    assert [p.special for p in special.pieces if p.special] == ["<|endoftext|>"]


def test_hub_ids_fail_with_user_errors():
    with pytest.raises(UserError) as err:
        tk.get("no-such-owner/no-such-tokenizer")  # tests run with HF_HUB_OFFLINE=1
    assert err.value.key in {"err.not_cached", "err.unknown_model"}
    with pytest.raises(UserError) as err:
        tk.get("../etc/passwd")
    assert err.value.key == "err.unknown_model"


def test_loaded_tokenizers_are_bounded(monkeypatch):
    tk.get("mistral-v1")  # offline tokenizers are never dropped
    built = []
    monkeypatch.setattr(tk, "_build", lambda key: built.append(key) or Tokenizer())
    monkeypatch.setattr(tk, "MAX_LOADED", 2)
    for key in ("owner/a", "owner/b", "owner/a", "owner/c"):  # "a" used again: "b" is the oldest
        tk.get(key)
    assert built == ["owner/a", "owner/b", "owner/c"]
    assert "owner/b" not in tk._cache and {"owner/a", "owner/c", "mistral-v1"} <= set(tk._cache)
    for key in ("owner/a", "owner/c"):
        del tk._cache[key]


def test_concurrent_requests_load_a_tokenizer_once(monkeypatch):
    import threading
    import time

    built = []

    def slow_build(key):
        built.append(key)
        time.sleep(0.2)
        return Tokenizer()

    monkeypatch.setattr(tk, "_build", slow_build)
    got = []
    threads = [threading.Thread(target=lambda: got.append(tk.get("owner/slow"))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert built == ["owner/slow"] and len({id(x) for x in got}) == 1 and not tk._key_locks
    del tk._cache["owner/slow"]


def test_tiktoken_encodings(monkeypatch):
    import tiktoken

    from engine.models.tiny import mistral_data_file

    with pytest.raises(UserError) as err:
        TiktokenTokenizer("no_such_encoding")
    assert err.value.key == "tok.err.tiktoken_offline"
    # An encoding made from Tekken's byte-level ranks stands in for a downloaded one.
    data = json.loads(Path(mistral_data_file("tekken_240911.json")).read_text())
    ranks = {base64.b64decode(v["token_bytes"]): v["rank"] for v in data["vocab"][:8000]}
    local = tiktoken.Encoding("local", pat_str=data["config"]["pattern"], mergeable_ranks=ranks,
                              special_tokens={"<|endoftext|>": 8000})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: local)
    tok = TiktokenTokenizer("local")
    text = "Fête 🎉 <|endoftext|> 2025"
    enc = tok.encoding(text)
    assert enc.ids == local.encode(text, disallowed_special=()) and tok.decode(enc.ids) == text
    assert _span_problems(tok, text) == [] and any(p.group is not None for p in enc.pieces)
    assert [p.special for p in tok.encoding(text, parse_special=True).pieces if p.special] == ["<|endoftext|>"]


def test_tab_handler_builds_views_and_table():
    from tabs.tokenizers import decoded_markdown, selected_keys, tokenize_views

    assert selected_keys(None, "gpt2, gpt2,\nt5-small") == [*tk.DEFAULT_SET, "gpt2", "t5-small"]
    out, table = tokenize_views("Bonjour 😀", ["mistral-v1", "clip"], show_ids=False, parse_special=False, lang="fr")
    assert out.count('class="tokview"') == 2 and "caractères par token" in out
    assert list(table.data["Tokens"]) == [len(tk.get(k).encode("Bonjour 😀")) for k in ("mistral-v1", "clip")]
    with pytest.raises(UserError):
        tokenize_views("x" * (tk.MAX_CHARS + 1), ["tekken"], False, False, "en")
    md = decoded_markdown([tk.Decoded("T", "a ``` b", [], 10)], "en")
    assert "````text\na ``` b\n````" in md  # a fence longer than any backtick run in the text


def test_api_through_gradio_client(client):
    from gradio_client.exceptions import ValidationError

    text = "Bonjour 😀 <b>gras</b>"
    out, table = client.predict(text, ["mistral-v1", "clip"], "", False, False, api_name="/tokenize")
    pieces = re.sub(r'<div class="tokstats"[^>]*>.*?</div>', "", out)
    assert out.count('class="tokview"') == 2 and "<b>" not in pieces and "&lt;" in pieces
    assert [r[1] for r in table["data"]] == [len(tk.get("mistral-v1").encode(text)), len(tk.get("clip").encode(text))]
    out, _ = client.predict("", ["tekken"], "", False, False, api_name="/tokenize")
    assert out == ""
    with pytest.raises(ValidationError, match="limit is 100,000"):  # refused before it is queued
        client.predict("a" * (tk.MAX_CHARS + 1), ["tekken"], "", False, False, api_name="/tokenize")
    ids = tk.get("tekken").encode("Aujourd'hui, les élèves apprennent la tokenisation.")
    too_big = [i for i in ids if i >= 32000]
    assert too_big  # Tekken ids beyond Mistral v1's 32,000 entries
    decoded = client.predict(", ".join(map(str, ids)), ["tekken", "mistral-v1"], "", api_name="/decode_ids")
    assert "les élèves apprennent" in decoded and f"out of range: {', '.join(map(str, too_big))}" in decoded
    table, _ = client.predict(["mistral-v1"], "", api_name="/language_cost")
    assert len(table["data"]) == len(tk.language_sentences())
    window = client.predict(", ".join(["a red fox in the snow"] * 20), api_name="/clip_window")
    assert "✂ 77" in window


@pytest.fixture(scope="module")
def chromium_page(browser, app_url):
    from tests.browser import DESKTOP

    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("#bvi-run", timeout=120_000)  # the first tab is up: the app is ready
    yield page
    context.close()


def test_browser_escapes_text_and_highlights_across_views(chromium_page):
    from tests.browser import open_tab

    page = chromium_page
    open_tab(page, "tokenizers")
    page.wait_for_selector("#tok-views .tokview", timeout=30_000)  # selecting the tab tokenizes the default text
    evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> Fête 🎉 ok'
    page.fill("#tok-text textarea", evil)
    page.click("#tok-run")
    page.wait_for_function("document.querySelector('#tok-views') && "
                           "document.querySelector('#tok-views').innerText.includes('onerror')", timeout=30_000)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#tok-views img, #tok-views script").count() == 0
    assert page.locator("#tok-views .tokview").count() == 4
    text = "Les élèves découvrent la tokenisation 🧩 : 1234 jetons !"
    joins: list[str] = []
    page.on("request", lambda r: joins.append(r.url) if r.method == "POST" and "queue/join" in r.url else None)
    page.fill("#tok-text textarea", text)
    page.click("#tok-run")  # before the typing pause ends: this click is the only request
    page.wait_for_function("document.querySelector('#tok-views')?.innerText?.includes('jetons')", timeout=30_000)
    page.wait_for_timeout(600)  # past the typing pause
    assert len(joins) == 1, joins
    piece = next(p for p in tk.get("mistral-v1").encoding(text).pieces if p.start > 10 and p.group is None)
    view = page.locator('#tok-views .tokview[data-tok="mistral-v1"]')
    target = view.locator(f'.tk[data-s="{piece.start}"][data-e="{piece.end}"]')
    page.locator("#tok-views").scroll_into_view_if_needed()
    target.hover()
    for key in ("mistral-v3", "tekken", "clip"):
        assert page.locator(f'#tok-views .tokview[data-tok="{key}"] .tk.hl').count() >= 1, key
    assert "id " in target.get_attribute("title") and "bytes" in target.get_attribute("title")
    # (the README's tokenizer screenshot is the French one, taken by tests/test_languages.py)
