"""Tokenizer tab: real Mistral and CLIP vocabularies, spans and byte groups, limits, escaping, API."""
from __future__ import annotations

import gzip
import html
import re
from functools import lru_cache

import pytest

from engine import tokenizers as tk
from engine.clip_bpe import VOCAB_GZ, bytes_to_unicode
from engine.errors import UserError
from ui.token_view import clip_window_html, render_views
from ui.token_view import DEFAULT_LABELS as LABELS

SAMPLES = [
    "Bonjour, je m'appelle Marie et j'habite à Besançon.",
    "The quick brown fox jumps over the lazy dog.",
    "Fête 🎉 réussie ! 👨‍👩‍👧 🇫🇷",
    "Il y a 1234567 habitants ; π ≈ 3.14159 ; 2025-11-24",
    "def f(x):\n    return x ** 2  # carré\n\tprint(f(3))",
]
MISTRAL_FILES = {"mistral-v1": "tokenizer.model.v1", "mistral-v3": "mistral_instruct_tokenizer_240323.model.v3",
                 "tekken": "tekken_240911.json"}


@pytest.mark.parametrize("key", list(MISTRAL_FILES))
def test_ids_equal_mistral_common(key):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    from engine.tiny import mistral_data_file

    reference = MistralTokenizer.from_file(str(mistral_data_file(MISTRAL_FILES[key]))).instruct_tokenizer.tokenizer
    tok = tk.get(key)
    for text in SAMPLES:
        assert tok.encode(text) == reference.encode(text, bos=False, eos=False), text
    assert tok.vocab_size == {"mistral-v1": 32000, "mistral-v3": 32768, "tekken": 131072}[key]


def test_known_ids_and_counts():
    # "Bonjour" is ▁Bon + jour in Mistral v1; digits are split one by one
    assert tk.get("mistral-v1").encode("Bonjour") == [8500, 18777]
    enc = tk.get("mistral-v1").encoding("2025")
    assert [p.text for p in enc.pieces] == [" ", "2", "0", "2", "5"]
    assert enc.n_chars == 4 and enc.n_bytes == 4 and enc.chars_per_token == pytest.approx(4 / 5)


@lru_cache(maxsize=1)
def open_clip_reference():
    """open_clip's SimpleTokenizer logic, rebuilt from the same vocabulary file."""
    merges = gzip.open(VOCAB_GZ).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    encoder = dict(zip(vocab, range(len(vocab))))
    ranks = dict(zip(merges, range(len(merges))))
    byte_encoder = bytes_to_unicode()

    def bpe(token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            first, second = best
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    def encode(text):
        import regex

        words = regex.findall(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                              " ".join(text.lower().split()), regex.IGNORECASE)
        ids = [encoder["<|startoftext|>"]]
        for w in words:
            w = "".join(byte_encoder[b] for b in w.encode("utf-8"))
            ids += [encoder[t] for t in bpe(w)]
        return ids + [encoder["<|endoftext|>"]]

    return encode


def test_clip_matches_published_ids_and_open_clip_logic():
    clip = tk.get("clip")
    assert clip.encode("a photo of a cat") == [49406, 320, 1125, 539, 320, 2368, 49407]
    reference = open_clip_reference()
    for text in ["A watercolor painting of a red fox", "photo of an astronaut riding a horse, 8k, highly detailed",
                 "Un chat qui tient une pancarte « Bonjour » !"]:
        assert clip.encode(text) == reference(text), text


def test_clip_window_cut_position():
    long_prompt = ", ".join(["a cinematic photo of a lighthouse at dawn"] * 12)
    enc = tk.get("clip").encoding(long_prompt)
    assert enc.n_tokens > 77
    html_out = clip_window_html(long_prompt)
    shown = re.findall(r'<span class="tk[^"]*"', html_out)
    cut = [i for i, s in enumerate(shown) if "cut" in s]
    assert cut[0] == 76  # 76 tokens + the end token reach the text encoder
    assert "✂ 77" in html_out and f"77 / 77 tokens used ({enc.n_tokens}" in html_out


def test_emoji_byte_fallback_is_grouped_under_its_character():
    enc = tk.get("tekken").encoding("Top 😀!")
    group = [p for p in enc.pieces if p.group is not None]
    assert len(group) >= 2 and all(p.partial for p in group[1:])
    assert b"".join(p.raw for p in group).strip() == "😀".encode()
    assert {(p.start, p.end) for p in group[1:]} == {(4, 5)}  # every byte token maps to the emoji
    out = render_views([enc], LABELS)
    assert 'class="tkg"' in out and '<span class="tkg-c">😀</span>' in out


def test_decode_round_trip_and_out_of_range():
    for key in ("mistral-v1", "tekken", "clip"):
        tok = tk.get(key)
        ids = tok.encode(SAMPLES[0])
        label, text, bad = tk.decode_ids(" ".join(map(str, ids)), [key])[0]
        assert bad is None and text.lower().strip().replace(" ,", ",") .startswith("bonjour")
    (_, text, bad), = tk.decode_ids("1, 99999999", ["mistral-v1"])
    assert text is None and bad == "99999999|32000"
    with pytest.raises(UserError):
        tk.decode_ids("un deux", ["mistral-v1"])


def test_empty_and_limit():
    assert tk.encode_all("", ["mistral-v1"])[0].n_tokens == 0
    with pytest.raises(UserError) as err:
        tk.encode_all("a" * (tk.MAX_CHARS + 1), ["mistral-v1"])
    assert err.value.key == "tok.err.too_long" and err.value.params["limit"] == 100_000


def test_user_text_is_escaped():
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    out = render_views(tk.encode_all(evil, list(tk.DEFAULT_SET)), LABELS)
    assert "<script>" not in out and "<img" not in out
    assert "&lt;script&gt;" in out or "&lt;" in out


def test_language_cost_ratios():
    rows = tk.language_cost(["mistral-v1", "tekken"])
    en = [r for r in rows if r["lang"] == "en"]
    assert all(r["ratio_to_english"] == 1.0 for r in en)
    fr = next(r for r in rows if r["lang"] == "fr" and r["key"] == "mistral-v1")
    assert fr["ratio_to_english"] == round(fr["tokens"] / en[0]["tokens"], 2) and fr["ratio_to_english"] > 1
    assert len({r["lang"] for r in rows}) >= 8


def test_chat_preset_shows_special_tokens():
    text = tk.chat_preset_text()
    assert text.startswith("<s>[INST]")
    enc = tk.get("mistral-v3").encoding(text, parse_special=True)
    specials = [p.special for p in enc.pieces if p.special]
    assert specials[:2] == ["<s>", "[INST]"] and "[/INST]" in specials
    plain = tk.get("mistral-v3").encoding(text, parse_special=False)
    assert not any(p.special for p in plain.pieces)


def test_tokenize_through_gradio_client(client):
    html_out, table = client.predict("Bonjour 😀 <b>gras</b>", ["mistral-v1", "clip"], "", False, False,
                                     api_name="/tokenize")
    assert html_out.count('class="tokview"') == 2 and "&lt;b&gt;" in html_out
    rows = table["data"]
    assert [r[1] for r in rows] == [len(tk.get("mistral-v1").encode("Bonjour 😀 <b>gras</b>")),
                                    len(tk.get("clip").encode("Bonjour 😀 <b>gras</b>"))]
