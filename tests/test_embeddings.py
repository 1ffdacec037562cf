"""From ids to vectors: embedding rows read from checkpoints (single file, sharded through the Hub
cache) equal the loaded model's, nearest tokens, similarity, bad input, the API, a link, Chromium."""
from __future__ import annotations

import shutil

import pytest
import torch

from engine.tokenization import embeddings as emb
from engine.errors import UserError

MODEL = "tiny/mistral-base"


@pytest.fixture(scope="module")
def matrix(tiny_llms):
    """The input embedding matrix of the loaded model: the reference."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llms[MODEL]))
    return model.get_input_embeddings().weight.detach().clone()


def test_a_row_read_alone_equals_the_loaded_models(matrix):
    loc = emb.locate(MODEL)
    assert (loc.tensor, loc.rows, loc.dim) == ("model.embed_tokens.weight", 32000, 64)
    emb._matrices._items.clear()  # read from the file, not from a cached matrix
    for token_id in (0, 10706, 31999):
        assert torch.equal(emb.row(MODEL, token_id), matrix[token_id])
    with pytest.raises(UserError) as err:
        emb.row(MODEL, 32000)
    assert err.value.key == "emb.err_id_range" and err.value.params["last"] == 31999


def test_nearest_tokens_and_similarity_equal_brute_force(matrix):
    looked = emb.look_up(MODEL, "chat")
    assert looked.ids == [10706] and looked.pieces == [" chat"] and not looked.averaged
    found = emb.nearest(MODEL, looked.vector, k=8)
    reference = torch.nn.functional.cosine_similarity(matrix, matrix[10706][None], dim=1).topk(8)
    assert [i for i, _ in found] == reference.indices.tolist()
    assert [s for _, s in found] == pytest.approx(reference.values.tolist(), abs=1e-5)
    assert found[0] == (10706, pytest.approx(1.0))
    # a word of several tokens: the mean of its tokens' rows, and it says so
    word = emb.look_up(MODEL, "anticonstitutionnellement")
    assert word.averaged and len(word.ids) == 6 and "".join(word.pieces) == " anticonstitutionnellement"
    assert torch.allclose(word.vector, matrix[word.ids].mean(dim=0))
    cos = emb.cosine(looked.vector, word.vector)
    assert cos == pytest.approx(float(torch.nn.functional.cosine_similarity(matrix[10706], word.vector, dim=0)))
    # an id typed as a number, with or without "#"
    assert emb.look_up(MODEL, "#1913").ids == emb.look_up(MODEL, "1913").ids == [1913]


@pytest.mark.parametrize("query,key", [("", "emb.err_empty"), ("   ", "emb.err_empty"), ("-3", "emb.err_id_range"),
                                       ("40000", "emb.err_id_range"), ("x" * 101, "emb.err_long")])
def test_bad_input_is_refused_with_a_reason(tiny_llms, query, key):
    with pytest.raises(UserError) as err:
        emb.look_up(MODEL, query)
    assert err.value.key == key


def test_sharded_checkpoint_through_the_hub_cache(tiny_llms, matrix, tmp_path, monkeypatch):
    """A Hub id resolved like ``from_pretrained`` (offline, from the cache): the index names the shard
    that holds the embeddings, and only that shard is opened."""
    from huggingface_hub import constants
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    repo = "genai-test/tiny-sharded"
    snapshot = tmp_path / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots" / ("0" * 40)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llms[MODEL]))
    model.save_pretrained(snapshot, max_shard_size="2MB")
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (tiny_llms[MODEL] / name).exists():
            shutil.copy(tiny_llms[MODEL] / name, snapshot / name)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    shards = sorted(snapshot.glob("model-*.safetensors"))
    assert len(shards) > 1 and (snapshot / "model.safetensors.index.json").exists()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    opened = []
    real_open = safe_open
    monkeypatch.setattr("safetensors.safe_open", lambda path, **kw: opened.append(str(path)) or real_open(path, **kw))
    emb.locate.cache_clear()
    try:
        loc = emb.locate(repo)
        assert loc.file.startswith(str(snapshot)) and loc.tensor == "model.embed_tokens.weight"
        assert torch.equal(emb.row(repo, 10706), matrix[10706])
        assert set(opened) == {loc.file}  # the other shards are never opened
        assert emb.look_up(repo, "chat").ids == [10706]
        with pytest.raises(UserError) as err:
            emb.locate("genai-test/not-in-the-cache")
        assert err.value.key in ("err.not_cached", "err.unknown_model")
    finally:
        emb.locate.cache_clear()


def test_matrix_cache_stays_within_its_budget(tiny_llms):
    cache = emb.MatrixCache(budget_bytes=10_000_000)  # one 8 MB tiny matrix at a time
    cache.load("tiny/mistral-base")
    cache.load("tiny/mistral-instruct")
    assert cache.loaded() == ["tiny/mistral-instruct"] and cache.bytes() <= 10_000_000


# ------------------------------------------------------------------------------ through the running app
def test_embedding_view_api_and_bad_input(client):
    from gradio_client.exceptions import AppError, ValidationError

    banner, vector, table, similarity = client.predict(model=MODEL, query="chat", other="anticonstitutionnellement",
                                                       k=5, api_name="/embedding_view")
    assert banner["visible"] and "noise" in banner["value"]
    assert vector.count('class="emb-strip"') == 2 and vector.count("<i style=") == 2 * 64
    assert "64 dimensions" in vector and "norm " in vector and "256 bytes read per token" in vector
    assert [r[1] for r in table["data"]][0] == "10706" and len(table["data"]) == 5
    assert "cos(chat, anticonstitutionnellement)" in similarity and "takes 6 tokens" in similarity
    with pytest.raises(AppError, match="Token id 32,000 is outside"):
        client.predict(model=MODEL, query="32000", other="", k=5, api_name="/embedding_view")
    with pytest.raises(AppError, match="Type a word or a token id"):
        client.predict(model=MODEL, query="", other="", k=5, api_name="/embedding_view")
    with pytest.raises(ValidationError, match="limit is 200"):
        client.predict(model=MODEL, query="x" * 201, other="", k=5, api_name="/embedding_view")
    with pytest.raises(ValidationError):  # at most embedding_neighbours
        client.predict(model=MODEL, query="chat", other="", k=500, api_name="/embedding_view")
    with pytest.raises(ValidationError, match="org/other-model"):  # not a catalog model
        client.predict(model="org/other-model", query="chat", other="", k=5, api_name="/embedding_view")


def test_embedding_view_round_trips_through_a_link(client):
    inputs = {"model": MODEL, "query": "Paris", "other": "Londres", "k": 7}
    _, vector, table, similarity = client.predict(**inputs, api_name="/embedding_view")
    shared = client.predict("embedding_view", inputs, {"similarity": {"type": "markdown", "value": similarity},
                                                       "table": {"type": "table", "headers": table["headers"],
                                                                 "data": table["data"]}},
                            api_name="/share_experiment")
    opened = client.predict(shared["id"], api_name="/open_experiment")
    assert opened["api"] == "/embedding_view" and opened["inputs"] == inputs
    assert client.predict(**opened["inputs"], api_name=opened["api"])[3] == similarity
    # on the class wall: the card shows the nearest tokens
    room = client.predict("", api_name="/wall_open_room")["room"]
    client.predict(room, "Léa", shared["id"], api_name="/wall_post")
    card = client.predict(room, api_name="/wall")["entries"][0]
    assert card["title"] == "Paris · Londres · tiny/mistral-base" and card["tab"] == "tokenizers"
    assert card["card"]["parts"][0]["rows"][0][2] == table["data"][0][2]


def _wait_or_explain(page, condition: str) -> None:
    """Wait for ``condition``; on a timeout, fail with what the page shows instead (toasts, refusals)."""
    from tests.browser import LONG

    try:
        page.wait_for_function(condition, timeout=LONG)
    except Exception as exc:  # noqa: BLE001 - re-raised with the page's state
        shown = page.evaluate("[...document.querySelectorAll('.toast-body, .validation-error, #emb-vector')]"
                              ".map(e => e.innerText.slice(0, 300))")
        raise AssertionError(f"{condition} never held; the page shows {shown}") from exc


def test_embedding_view_in_french_and_screenshot(browser, app_url):
    from tests.browser import LONG, open_tab, screenshot
    from tests.lang_check import find_foreign, visible_text
    from tests.test_languages import open_page
    from ui.i18n import t

    page = open_page(browser, app_url, "fr")
    try:
        open_tab(page, "tokenizers")
        page.locator("#tok-embed summary, #tok-embed button").first.click()
        # the section's controls are mounted when it first opens, with their default values: type after that
        box = "(document.querySelector('#emb-other input, #emb-other textarea') || {}).value === %r"
        page.wait_for_function(box % "chien", timeout=LONG)
        # an update of the section's first open can still land after the defaults show and put them back:
        # type again until the value holds (each try waits for the page, not for a fixed delay)
        for attempt in range(5):
            page.locator("#emb-other input, #emb-other textarea").first.fill("anticonstitutionnellement")
            try:
                page.wait_for_function(box % "anticonstitutionnellement", timeout=LONG // 5)
                page.wait_for_timeout(300)  # a reset arriving now would show below
                if page.evaluate(box.replace("%r", "'anticonstitutionnellement'")):
                    break
            except Exception:  # noqa: BLE001 - reset by a late update: type again
                continue
        else:
            raise AssertionError("the second word never stayed in its box")
        page.click("#emb-run")
        _wait_or_explain(page, "document.querySelectorAll('#emb-vector .emb-strip').length === 2")
        page.wait_for_function("document.querySelector('#emb-similarity')?.innerText?.includes('6 tokens')",
                               timeout=LONG)
        assert "bruit" in page.inner_text("#emb-banner")  # random weights: the banner says so
        assert "norme" in page.inner_text("#emb-vector") and "cosinus" in page.inner_text("#emb-table")
        # the neighbours' token cells are vocabulary entries (content), not interface
        tokens = {c.strip() for c in page.locator("#emb-table").inner_text().splitlines() + page.evaluate(
            "[...document.querySelectorAll('#emb-table td')].map(e => e.textContent)")}
        texts = [(text, mode) for text, mode in visible_text(page) if text.strip() not in tokens]
        hits = find_foreign(texts, "fr")
        assert not hits, "\n".join(sorted(set(hits)))
        screenshot(page, "embeddings", focus="#tok-embed")
        # a token id outside the vocabulary: the reason, in French, and the view stays usable
        page.locator("#emb-query input, #emb-query textarea").first.fill("99999")
        page.click("#emb-run")
        page.wait_for_selector(".toast-body", timeout=LONG)
        assert t("emb.err_id_range", "fr", id=99999, model=MODEL, last=31999) in page.inner_text(".toast-body")
        page.locator("#emb-query input, #emb-query textarea").first.fill("Paris")
        page.click("#emb-run")
        page.wait_for_function("document.querySelector('#emb-vector')?.innerText?.includes('Paris')", timeout=LONG)
        # presentation mode: the words, the similarity and the strip readable from the back of the room
        page.locator("#presentation-toggle input").check()
        sizes = page.evaluate("[getComputedStyle(document.querySelector('.emb-head')).fontSize, "
                              "getComputedStyle(document.querySelector('.emb-strip i')).height]")
        assert sizes == ["28px", "22px"], sizes
        page.locator("#presentation-toggle input").uncheck()
        # a hand-written link opens the section with its inputs; "Run again" computes it
        page.goto(page.url.split("?")[0] + "?lang=en&tab=embedding_view&model=tiny/mistral-base&query=Paris&other=chat&k=3")
        page.wait_for_selector("#share-banner", state="visible", timeout=LONG)
        page.wait_for_function("(document.querySelector('#emb-query input, #emb-query textarea') || {}).value === 'Paris'",
                               timeout=LONG)
        assert page.locator("#emb-run").is_visible()  # the accordion is open
        page.click("#share-run-again")
        page.wait_for_function("document.querySelector('#emb-similarity')?.innerText?.includes('cos(Paris, chat)')",
                               timeout=LONG)
        assert "Paris" in page.inner_text("#emb-table")  # the nearest token to a word is its own
    finally:
        page.context.close()
