"""“Give the model a source” without the server: passages, BM25 retrieval on the example sources (the
right passage first for their questions, French and English), the prompts it makes, and the
comparison engine with a source (both models, or one model without then with it, in one batch)."""
from __future__ import annotations

import pytest

from engine.errors import UserError
from engine.generation import SamplingParams
from engine.retrieval import (MAX_CHARS, Passage, augment, chunk, detect_lang, index_for, load_presets, make_plan,
                              preset, title_of)

PRESET_QUESTIONS = [(p.id, lang, q, expect) for p in load_presets() for lang in ("en", "fr")
                    for q, expect in p.questions[lang]]
GREEDY = SamplingParams(max_new_tokens=8, greedy=True)


# ------------------------------------------------------------------ passages
def test_passages_are_paragraphs_and_long_ones_are_cut_between_sentences():
    sentence = "La phrase numéro {} parle d'un sujet précis et se termine ici. "
    long_paragraph = "".join(sentence.format(i) for i in range(40)).strip()  # ≈ 2,500 characters
    text = f"# Titre du document\n\nPremier paragraphe court.\n\n\n{long_paragraph}\n\nDernier paragraphe."
    parts = chunk(text)
    assert parts[0].text == "Titre du document\nPremier paragraphe court."  # a heading opens the next passage
    assert parts[-1].text == "Dernier paragraphe."
    assert [p.index for p in parts] == list(range(1, len(parts) + 1))
    middle = parts[1:-1]
    assert len(middle) >= 4 and all(len(p.text) <= MAX_CHARS for p in parts)
    assert all(p.text.endswith("ici.") for p in middle)  # cut between sentences, never inside one
    assert " ".join(p.text for p in middle).split() == long_paragraph.split()  # nothing lost, nothing added
    assert title_of(text) == "Titre du document" and title_of("Pas de titre\n\nTexte") == ""


def test_text_without_paragraphs_or_spaces_is_still_cut_to_size():
    lines = "\n".join(f"Ligne {i} d'un texte collé depuis une page web sans paragraphes vides." for i in range(100))
    parts = chunk(lines)
    assert len(parts) > 5 and all(len(p.text) <= MAX_CHARS for p in parts)
    assert "\n".join(p.text for p in parts).split() == lines.split()
    word = chunk("x" * 2_000)
    assert [len(p.text) for p in word] == [600, 600, 600, 200]
    assert chunk("") == [] and chunk(" \n\n \n") == []


# ------------------------------------------------------------------ retrieval
@pytest.mark.parametrize("preset_id,lang,question,expect", PRESET_QUESTIONS)
def test_the_right_passage_comes_first_for_each_example_question(preset_id, lang, question, expect):
    index = index_for(preset(preset_id).text(lang), lang)
    assert index.lang == lang
    found = index.search(question, 3)
    assert found and expect in found[0].text, [(p.index, p.score, p.text[:60]) for p in found]
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True) and found[-1].score > 0


def test_questions_typed_without_accents_or_in_capitals_find_the_same_passage():
    index = index_for(preset("offices").text("fr"), "fr")
    best = index.search("Qui est l'actuel président de la République française ?", 1)[0]
    assert index.search("QUI EST L'ACTUEL PRESIDENT DE LA REPUBLIQUE FRANCAISE", 1)[0] == best
    assert "Emmanuel Macron" in best.text


def test_a_question_that_shares_no_word_with_the_source_gets_no_passage():
    text = preset("offices").text("en")
    assert index_for(text, "en").search("How do I bake an apple pie?", 3) == []
    plan = make_plan(text, "How do I bake an apple pie?", "with_without", "instruct", 3, "en")
    assert plan.passages == () and not plan.matched
    assert plan.chat("How do I bake an apple pie?") == "How do I bake an apple pie?"  # the question alone
    # a source made only of stop-words indexes nothing, and answers nothing
    assert make_plan("Le la les des et ou.", "le la", "both", "instruct", 3, "fr").passages == ()


def test_the_source_language_is_read_from_its_words():
    assert detect_lang(preset("course").text("fr")) == "fr" and detect_lang(preset("course").text("en"), "fr") == "en"
    assert detect_lang("2025 · 2026", "fr") == "fr" and detect_lang("", "de") == "en"


def test_an_index_is_built_once_per_source():
    text = preset("project").text("en")
    assert index_for(text, "en") is index_for(text, "en")


# ------------------------------------------------------------------ prompts
def test_augmented_prompts_in_both_languages():
    passages = [Passage(3, "Prime Minister: François Bayrou.", 2.1), Passage(1, "Sheet dated 1 January 2025.", 0.6)]
    chat = augment("Who is the Prime Minister?", passages, "en", title="Fact sheet")
    assert chat.startswith("Answer the question using only the extracts below.")
    assert ('Extracts from the source "Fact sheet":\n[1] Prime Minister: François Bayrou.\n'
            "[2] Sheet dated 1 January 2025.\n\nQuestion: Who is the Prime Minister?") in chat
    document = augment("Who is the Prime Minister?", passages, "en", chat=False)
    assert document.startswith("Extracts from the source:\n[1] Prime Minister")
    assert document.endswith("\n\nWho is the Prime Minister?")  # the prompt as typed, after the document
    french = augment("Qui est Premier ministre ?", passages, "fr", title="Fiche")
    assert french.startswith("Réponds à la question en t'appuyant uniquement sur les extraits ci-dessous.")
    assert "Extraits de la source « Fiche » :\n[1]" in french
    assert french.endswith("Question : Qui est Premier ministre ?")
    assert augment("{braces} stay", [Passage(1, "a {x} b", 1.0)], "en").endswith("Question: {braces} stay")
    assert augment("Question", [], "fr") == "Question"


def test_a_plan_refuses_an_empty_or_oversized_source(monkeypatch):
    assert make_plan("", "q", "off") is None and make_plan("x" * 10_000_000, "q", "off") is None  # off: not read
    for empty in ("", "  \n "):
        with pytest.raises(UserError) as err:
            make_plan(empty, "Who?", "both")
        assert err.value.key == "src.err.empty"
    with pytest.raises(UserError) as err:
        make_plan("x" * 10_000_000, "Who?", "with_without")
    assert err.value.key == "src.err.too_long"
    assert err.value.params == {"chars": 10_000_000, "limit": 100_000}
    from ui.i18n import t

    assert t(err.value.key, "fr", **err.value.params).startswith("La source fait 10\u202f000\u202f000 caractères ; "
                                                                 "la limite est de 100\u202f000.")
    plan = make_plan(preset("offices").text("en"), "Who is the president?", "both", None, 99, "en")
    assert plan.k == 8 and plan.role == "instruct" and len(plan.passages) <= 8


# ------------------------------------------------------------------ the comparison with a source
@pytest.fixture(scope="module")
def specs(manager):
    return manager.catalog.spec("base_llm"), manager.catalog.spec("instruct_llm")


def _last(manager, specs, prompt, plan, **kw):
    from engine.chat.compare import compare_stream

    return list(compare_stream(manager, *specs, prompt, GREEDY, source=plan, **kw))[-1]


def test_both_models_get_the_passages_each_in_its_own_way(manager, specs):
    question = "Qui est le Premier ministre ?"
    plan = make_plan(preset("offices").text("fr"), question, "both", "instruct", 2, "fr")
    base, instruct = _last(manager, specs, question, plan)
    bayrou = "Premier ministre : François Bayrou"
    # the instruct model: the passages inside its real chat template's user turn
    assert instruct.prompt.text.startswith("<s>[INST] Réponds à la question") and bayrou in instruct.prompt.text
    assert instruct.prompt.text.rstrip().endswith("Question : Qui est le Premier ministre ? [/INST]")
    # the base model: no template, the passages as a document, then the prompt as typed
    assert "[INST]" not in base.prompt.text and bayrou in base.prompt.text
    assert base.prompt.text.endswith("\n\nQui est le Premier ministre ?")
    assert base.passages == instruct.passages == plan.passages and plan.passages[0].index == 3
    assert base.update.n_tokens == instruct.update.n_tokens == 8
    assert instruct.as_dict()["passages"][0] == {"index": 3, "text": plan.passages[0].text,
                                                 "score": plan.passages[0].score}


def test_one_model_without_then_with_the_source_in_one_batch(manager, specs, monkeypatch):
    import engine.chat.compare

    question = "Who is the Prime Minister of France?"
    plan = make_plan(preset("offices").text("en"), question, "with_without", "instruct", 3, "en")
    used, streams = [], []
    real_using, real_stream = manager.using, engine.chat.compare.stream_many
    monkeypatch.setattr(manager, "using", lambda spec, *a, **kw: used.append(spec.id) or real_using(spec, *a, **kw))
    monkeypatch.setattr(engine.chat.compare, "stream_many",
                        lambda jobs, *a, **kw: streams.append(jobs) or real_stream(jobs, *a, **kw))
    without, given = _last(manager, specs, question, plan)
    assert used == [specs[1].id]  # the instruct model only, never the base
    # both rows in one call of the engine: submitted together, advanced by the same loop
    assert len(streams) == 1 and [(h.spec.id, p) for h, p in streams[0]] == [(specs[1].id, without.prompt),
                                                                               (specs[1].id, given.prompt)]
    assert without.model == given.model == specs[1].id and without.role == given.role == "instruct"
    assert without.passages is None and "passages" not in without.as_dict()
    assert without.prompt.text == "<s>[INST] Who is the Prime Minister of France? [/INST]"
    assert "François Bayrou" in given.prompt.text and given.prompt.text.startswith("<s>[INST] Answer the question")
    assert without.update.stop_reason == given.update.stop_reason == "length"
    # the pane without the source says exactly what the model says to the question alone
    monkeypatch.undo()
    alone = _last(manager, specs, question, None)[1]
    assert without.update.text == alone.update.text and without.prompt.input_ids == alone.prompt.input_ids


def test_the_base_model_without_then_with_gets_plain_text(manager, specs):
    question = "When is the project report due?"
    plan = make_plan(preset("project").text("en"), question, "with_without", "base", 1, "en")
    without, given = _last(manager, specs, question, plan, template_on_base=True)  # the tiny base has no template
    assert without.model == given.model == specs[0].id
    assert without.prompt.text == "<s> When is the project report due?"
    assert given.prompt.text.startswith("<s> Extracts from the source") and "28 May 2027" in given.prompt.text
    assert given.prompt.text.endswith("\n\nWhen is the project report due?")


def test_a_gpu_call_asks_for_one_model_when_it_runs_without_then_with(manager, specs):
    from engine.gpu_tasks import CompareJob, durations

    plan = make_plan(preset("offices").text("en"), "Who is the mayor of Paris?", "with_without", "instruct")
    both = make_plan(preset("offices").text("en"), "Who is the mayor of Paris?", "both", "instruct")
    cold = lambda spec: False  # noqa: E731 - neither model loaded yet
    job = CompareJob(*specs, "Who is the mayor of Paris?", SamplingParams(max_new_tokens=256))
    one, two = (durations.compare(CompareJob(*specs, job.prompt, job.params, source=p), cold) for p in (plan, both))
    # one model to load, not two, and two rows of one model in a batch rather than two models stepped
    assert one == durations._cap(durations.OVERHEAD_S + durations.LOAD_LLM_S + durations.llm_rounds(1, 256, rows=2))
    assert two == durations.compare(job, cold) and one < two - durations.LOAD_LLM_S


# ------------------------------------------------------------------ what the panes and the wall show
def _pane(passages):
    from types import SimpleNamespace

    return SimpleNamespace(passages=passages)


def test_panes_show_each_passage_with_its_score_in_the_page_language():
    from ui.source_panel import pane_html

    plan = make_plan("<b>Source</b>\n\nLe <script>alert(1)</script> ministre.\n\nAutre chose.", "ministre", "both",
                     "instruct", 3, "fr")
    shown = pane_html(_pane(plan.passages), plan, "fr")
    assert "Source donnée : 1 passage sur 3" in shown and "[1] passage 2 · score " in shown
    assert "<script>" not in shown and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert f"score {plan.passages[0].score:.2f}".replace(".", ",") in shown  # French decimals
    assert "No source" in pane_html(_pane(None), plan, "en") and pane_html(_pane(None), None, "en") == ""
    assert "Aucun passage de la source ne correspond" in pane_html(_pane(()), plan, "fr")


def test_cards_and_wall_cards_name_the_panes_by_what_they_were_given():
    from engine.share.cards import render_markdown
    from tabs.base_vs_instruct import card_content
    from ui.source_panel import wall_card

    pane = {"model": "tiny/mistral-instruct", "output": "x", "tokens": 1, "tokens_per_s": 1.0, "stop_reason": "eos"}
    result = {"prompt": "Qui ?", "base": pane, "instruct": pane, "source": {"mode": "with_without"}}
    md = render_markdown(card_content(result, "fr"))
    assert "Sans la source" in md and "Avec la source" in md and "Modèle de base" not in md
    assert "Modèle de base" in render_markdown(card_content({**result, "source": {"mode": "both"}}, "fr"))
    assert wall_card({"source_mode": "with_without"}) == {"src.card.without": "base_output",
                                                          "src.card.with": "instruct_output",
                                                          "src.card.passages": "instruct_passages"}
    assert wall_card({}) == {"share.card.base": "base_output", "share.card.instruct": "instruct_output"}
    assert "src.card.passages" in wall_card({"source_mode": "both"})


def test_the_source_rule_refuses_an_oversized_or_missing_source_before_queueing():
    from engine.limits import limits_for
    from ui.rules import Env, Source
    from ui.validation import RULES, message

    rule = RULES["compare"]["source"]
    assert isinstance(rule, Source)
    env = lambda mode: Env(limits_for("tiny"), None, {"source_mode": mode})  # noqa: E731
    problem = rule.check("x" * 10_000_000, env("off"))  # bounded whatever the mode
    assert message(problem, "Source", "en") == "Source has 10,000,000 characters; the limit is 100,000. Shorten it."
    assert message(problem, "Source", "fr").startswith("Source fait 10\u202f000\u202f000 caractères ; la limite est "
                                                       "de 100\u202f000.")
    assert rule.check("", env("both"))[0] == rule.check(" ", env("with_without"))[0] == "src.err.empty"
    assert rule.check("", env("off")) is None and rule.check("Un texte.", env("both")) is None
