"""Streaming costs the same per update at the 2,000th token as at the 50th (issue #23): the text
grows by one short decode per new token, ids and token infos are handed out without copies, and
the final text is exactly the tokenizer's decode of the whole answer."""
from __future__ import annotations

import pickle
import random

import pytest

from engine.generation import DecodeEngine, SamplingParams, Request
from engine.generation.detok import IncrementalText, Prefix
from engine.models.llm import token_piece

TEXT = ("Bonjour à tous ! Voici l'été : 12 € — 😀 naïve « citation » 漢字, x = 1\n\n"
        "def f(a, b):\n    return a + b  # fin")


@pytest.fixture(scope="module")
def handle(manager):
    return manager.llm(manager.catalog.spec("instruct_llm"))


class CountingTokenizer:
    """The handle's tokenizer, counting the ids every ``decode`` is given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids_decoded = 0

    def decode(self, ids, **kwargs):
        self.ids_decoded += len(ids)
        return self.tokenizer.decode(ids, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def id_sequences(tok, n: int = 200, seed: int = 0):
    """Real text, random ids (byte pieces, special tokens, odd joins), and both mixed."""
    rng = random.Random(seed)
    text_ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    yield text_ids
    for i in range(n):
        noise = [rng.randrange(len(tok)) for _ in range(rng.randrange(1, 40))]
        yield noise if i % 2 else text_ids[: rng.randrange(1, len(text_ids))] + noise + text_ids[:5]


def test_incremental_text_is_the_decode_of_the_whole_answer(handle):
    tok = handle.tokenizer
    for ids in id_sequences(tok):
        inc = IncrementalText(tok)
        pieces = [inc.push(t) for t in ids]
        whole = tok.decode(ids, skip_special_tokens=True)
        assert "".join(pieces) == inc.text
        assert whole.startswith(inc.text) and len(whole) - len(inc.text) <= 1, (whole, inc.text)  # only an unfinished character is held back
        assert inc.text == whole or whole.endswith("\ufffd")


def test_token_pieces_keep_their_spaces_and_special_tokens(handle):
    tok = handle.tokenizer
    ids = tok(TEXT, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    req = Request(handle, [1, 2, 3], SamplingParams(max_new_tokens=len(ids)), seed=0, top_probs=1)
    pieces = []
    for t in ids:
        req.generated.append(t)
        pieces.append(req.piece_text())
    whole = tok.decode(ids, skip_special_tokens=False)
    assert pieces[0] == token_piece(tok, ids[0])  # the first one keeps its leading space too
    assert "".join(pieces[1:]) == whole[len(tok.decode(ids[:1], skip_special_tokens=False)):]
    assert pieces[-1] == tok.eos_token


def test_an_update_decodes_only_the_new_tokens_and_copies_no_list(handle):
    """2,000 tokens, an update after each: the ids decoded in all stay linear in the answer (the
    whole answer at every update was 2 million), and the final text is exact."""
    counting = CountingTokenizer(handle.tokenizer)
    fake = type("Handle", (), {"tokenizer": counting, "eos_ids": set(), "spec": handle.spec})()
    ids = (counting.tokenizer(TEXT * 40, add_special_tokens=False)["input_ids"])[:2000]
    req = Request(fake, [1, 2, 3], SamplingParams(max_new_tokens=len(ids)), seed=0)
    updates = []
    for t in ids:
        req.generated.append(t)
        updates.append(req.update())
    assert counting.ids_decoded < 12 * len(ids), counting.ids_decoded
    u = updates[-1]
    assert u.token_ids == ids and isinstance(u.token_ids, Prefix) and u.n_tokens == len(ids)
    assert updates[49].token_ids == ids[:50] and len(updates[49].token_ids) == 50  # a snapshot: it kept its size
    req.finish("length")
    final = req.update()
    assert final.text == counting.tokenizer.decode(ids, skip_special_tokens=True)
    assert pickle.loads(pickle.dumps(final)).token_ids == ids  # crosses a ZeroGPU worker as a plain list
    assert type(pickle.loads(pickle.dumps(final.token_ids))) is list


def test_streamed_text_matches_the_final_text_through_the_engine(handle):
    eng = DecodeEngine(background=False)
    req = eng.submit(handle, handle.prepare_raw("Il était une fois"), SamplingParams(max_new_tokens=64, greedy=True),
                     top_probs=3)
    texts = []
    for _ in eng.wait([req]):
        texts.append(req.update().text)
    final = req.update()
    assert final.text == handle.tokenizer.decode(req.generated, skip_special_tokens=True)
    assert all(final.text.startswith(t) for t in texts[:-1])  # it only ever grew
    assert len(final.tokens) == final.n_tokens == 64 and final.tokens[0].text == token_piece(handle.tokenizer,
                                                                                              req.generated[0])


def test_prefix_is_a_snapshot_of_a_growing_list():
    items = [1, 2, 3]
    view = Prefix(items)
    items += [4, 5]
    assert list(view) == [1, 2, 3] and len(view) == 3 and view[-1] == 3 and view[:2] == [1, 2]
    assert view == [1, 2, 3] and view != [1, 2, 3, 4] and Prefix(items) == (1, 2, 3, 4, 5)
    with pytest.raises(IndexError):
        view[3]


def test_a_pane_rendered_update_by_update_is_the_pane_rendered_at_once(handle):
    """The tab renders only what is new at each update (``Rendered``): the HTML is the same as a
    rendering from scratch, with or without probabilities, when the final text differs from the
    streamed one, and when the last token (end of sequence) is dropped."""
    from ui.token_probs import Rendered, render_output

    eng = DecodeEngine(background=False)
    req = eng.submit(handle, handle.prepare_raw("Il était une fois"), SamplingParams(max_new_tokens=40, greedy=True),
                     top_probs=3)
    text_cache, probs_cache = Rendered(), Rendered()
    for _ in eng.wait([req]):
        u = req.update()
        for probs, cache in ((False, text_cache), (True, probs_cache)):
            assert render_output(u.text, u.tokens, probs, lang="fr", rendered=cache) == \
                render_output(u.text, u.tokens, probs, lang="fr")
    u = req.update()
    for probs, cache in ((False, text_cache), (True, probs_cache)):
        assert render_output("<b>" + u.text, u.tokens, probs, drop_last=True, rendered=cache) == \
            render_output("<b>" + u.text, u.tokens, probs, drop_last=True)
