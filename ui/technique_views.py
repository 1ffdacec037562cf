"""What the prompt techniques tab shows: every model call, the answer, self-consistency's vote, and the
benchmark's status line, table, charts and legend (HTML, Markdown, data frames and plots, per language)."""
from __future__ import annotations

import html
from collections.abc import Callable

import gradio as gr
import pandas as pd

from engine import gpu_tasks
from engine.runtime import tempfiles
from engine.techniques.benchmark import BenchmarkResult
from engine.techniques.extraction import format_number
from engine.techniques.records import Call, Run, Settings
from engine.techniques.techniques import SETTINGS_USED, TECHNIQUES, VOTING
from ui import zerogpu
from ui.i18n import t
from ui.queue_status import QUEUE_KEY, queue_text
from ui.widgets import sampling_summary
from ui.wording import stop_reason

STATUS_COLORS = ("#2e7d32", "#f9a825", "#90a4ae")  # winner, tied (lost the tie-break), other
# one colour per technique (Tableau 10), fixed so the chart and its legend agree
TECHNIQUE_COLORS = dict(zip(TECHNIQUES, ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                                         "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#17becf")))


def waiting_text(lang: str) -> Callable[[gpu_tasks.Progress], str | None]:
    """Progress text for a run waiting in the engine's queue ("3 requests ahead of you")."""
    def render(event: gpu_tasks.Progress) -> str | None:
        return queue_text(event.params.get("ahead"), lang) if event.key == QUEUE_KEY else None
    return render


def stream_experiment(task: Callable, job, key, lang: str, progress, progress_text: Callable,
                      render: Callable, folder: str):
    """A batch experiment (the benchmark, the fragility experiment) through ``engine.gpu_tasks``: its
    partial results as they come, then the final one with its CSV files (written into a new ``folder``)."""
    outcome = None
    for outcome in gpu_tasks.call(task, job, key, on_progress=zerogpu.progress_to(progress, lang, progress_text),
                                  on_notice=zerogpu.warn_notice(lang)):
        if not outcome.done:
            yield render(outcome, lang, None)
    if outcome is None:
        return
    files = [str(p) for p in outcome.write_csv(tempfiles.new_dir(folder))]
    yield render(outcome, lang, files)


def esc(text: str) -> str:
    return html.escape(text or "", quote=False)


def ama_format(fmt: str, label: str, lang: str) -> str:
    """An AMA chain's format, in words ("yes/no question “positive”" for one label of a yes/no chain)."""
    name = t(f"tech.ama_format.{fmt}", lang)
    return t("tech.ama_label", lang, format=name, label=label) if label else name


def step_label(call: Call, lang: str) -> str:
    info = dict(call.info)
    if "format" in info:
        info["format"] = ama_format(info["format"], info.get("label", ""), lang)
    return t(f"tech.step.{call.step}", lang, **info)


def call_html(call: Call, lang: str, open_: bool) -> str:
    meta = t("tech.call_meta", lang, prompt_tokens=call.prompt_tokens, tokens=call.n_tokens, seconds=call.seconds,
             stop=stop_reason(call.stop_reason, lang), batch=call.batch)
    badge = ""
    extra = ""
    if call.answer is not None:
        shown = call.answer.display(lang)
        badge = f' <span class="tech-badge">→ {esc(shown)}</span>'
        extra = '<div class="tech-extract">' + t("tech.extracted", lang, answer=esc(shown),
                                                 rule=esc(t(f"tech.rule.{call.answer.rule}", lang))) + "</div>"
    if call.step == "score":
        score = call.info.get("score")
        best = t("tech.best_mark", lang) if call.info.get("best") else ""
        badge = f' <span class="tech-badge">{esc(format_number(score)) if score is not None else "—"}</span>'
        extra = '<div class="tech-extract">' + t("tech.score_is", lang, score="—" if score is None else format_number(score),
                                                 best=best) + "</div>"
    note = ""
    if call.note in ("system_merged", "no_template"):
        note = f'<div class="tech-note">{esc(t("tech." + call.note, lang))}</div>'
    return (f'<details class="tech-call"{" open" if open_ else ""}><summary><b>#{call.index}</b> · '
            f'{esc(step_label(call, lang))} · <span class="tech-meta">{esc(meta)}</span>{badge}</summary>'
            f'<div class="tech-label">{esc(t("tech.prompt_label", lang))}</div>'
            f'<pre class="tech-prompt">{esc(call.prompt)}</pre>{note}'
            f'<div class="tech-label">{esc(t("tech.output_label", lang))}</div>'
            f'<pre class="tech-output">{esc(call.output)}</pre>{extra}</details>')


def calls_html(run: Run, lang: str) -> str:
    last = len(run.calls)
    return '<div class="tech-calls">' + "".join(call_html(c, lang, c.index == last) for c in run.calls) + "</div>"


def _md(text: str) -> str:
    """User or model text shown inside Markdown: one line, no markup."""
    flat = " ".join((text or "").split())
    return esc(flat).replace("*", "\\*").replace("_", "\\_").replace("`", "\\`").replace("|", "\\|")


def result_markdown(run: Run, lang: str) -> str:
    task = run.task
    lines = []
    if run.finished:
        ans = run.answer
        lines.append(t("tech.final_answer", lang, answer=_md(ans.display(lang))) if ans.ok else t("tech.no_answer", lang))
        grade = {True: t("tech.correct", lang), False: t("tech.wrong", lang), None: t("tech.ungraded", lang)}[run.correct]
        expected = t("tech.expected_is", lang, expected=_md(task.expected_display())) + " · " if task.answer is not None else ""
        lines.append(expected + grade)
        if ans.ok:
            lines.append(t("tech.found_by", lang, rule=t(f"tech.rule.{ans.rule}", lang), found=_md(ans.found[:160])))
    elif run.stopped:
        lines.append(t("tech.stopped", lang))
    else:
        lines.append(t("tech.running", lang, calls=len(run.calls)))
    sampled = True if run.technique == "self_consistency" else None
    lines.append(t("tech.totals", lang, technique=t(f"tech.name.{run.technique}", lang), calls=len(run.calls),
                   batches=run.batches, prompt_tokens=run.prompt_tokens, tokens=run.generated_tokens,
                   seconds=run.wall_seconds) + " · " + sampling_summary(run.settings.params, lang, sampled))
    lines += _details_lines(run, lang)
    return "\n\n".join(lines)


def _details_lines(run: Run, lang: str) -> list[str]:
    d = run.details
    out = []
    if "examples" in d and d["examples"]:
        out.append(t("tech.examples_used", lang, examples=", ".join(f"#{i + 1}" for i in d["examples"])))
    if "subquestions" in d:
        subs = " · ".join(f"{i + 1}. {_md(s)}" for i, s in enumerate(d["subquestions"]))
        out.append(t("tech.ltm_subs", lang, subs=subs))
        if d.get("fallback"):
            out.append(t("tech.ltm_fallback", lang))
    if "answers_by_round" in d:
        out.append(t("tech.refine_history", lang, history=" → ".join(_md(a) if a else "—" for a in d["answers_by_round"])))
    for level in d.get("levels", []):
        scores = ", ".join("—" if s is None else format_number(s) for s in level["scores"])
        out.append(t("tech.tot_level", lang, depth=level["depth"], scores=scores, best=level["best"] + 1,
                     thought=_md(level["thoughts"][level["best"]][:200])))
    return out


def _path_rows(run: Run, lang: str) -> tuple[list[str], dict[str, str]]:
    """Self-consistency: one row per sampled path; the answers' display by key."""
    paths = [c for c in run.calls if c.step == "sample"]
    rows = [t("tech.vote_paths", lang)]
    for c in paths:
        shown = c.answer.display(lang) if c.answer else "—"
        rule = t(f"tech.rule.{c.answer.rule}", lang) if c.answer else ""
        rows.append(f"| {c.sample_index + 1} | {_md(shown)} | {rule} |")
    return rows, {c.answer.key: c.answer.display(lang) for c in paths if c.answer and c.answer.ok}


def _chain_wrote(chain: dict, lang: str) -> str:
    """What a chain's reformulation step wrote (a yes/no chain: each label and the reply it got)."""
    if chain["format"] == "yes_no":
        replies = chain["replies"] or [None] * len(chain["candidates"])
        return " · ".join(f"{_md(label)} → {_md(reply_word(reply, lang))}" for label, reply in zip(chain["candidates"], replies))
    wrote = _md(chain["reformulations"][0][:240]) if chain["reformulations"] else "—"
    return wrote + (" (" + t("tech.ama_fallback", lang) + ")" if chain["fallback"] else "")


def reply_word(reply: bool | None, lang: str) -> str:
    return "—" if reply is None else t("tech.ama_reply_yes" if reply else "tech.ama_reply_no", lang)


def _chain_rows(run: Run, lang: str) -> tuple[list[str], dict[str, str]]:
    """Ask-me-anything: one row per chain (its format, what it wrote, what it voted for)."""
    rows, display = [t("tech.ama_chains_table", lang)], {}
    for chain in run.details.get("chains", []):
        key = chain["answer"]["key"]
        if key is not None:
            display.setdefault(key, chain["answer_display"])
        shown = _md(chain["answer_display"]) if key is not None else t("tech.ama_abstained", lang)
        fmt = t(f"tech.ama_format.{chain['format']}", lang)
        rows.append(f"| {chain['chain']} | {fmt} | {_chain_wrote(chain, lang)} | {shown} |")
    return rows, display


def vote_outputs(run: Run, lang: str) -> tuple[str, pd.DataFrame]:
    """The vote's Markdown (summary, tie, every path's or chain's answer) and the bar chart's data."""
    ama = run.technique == "ask_me_anything"
    rows, display = _chain_rows(run, lang) if ama else _path_rows(run, lang)
    key = "tech.ama_vote" if ama else "tech.vote"
    vote = run.vote
    if vote is None or vote.winner is None:
        head = t(f"{key}_none", lang) if vote is not None else ""
        return "\n\n".join([head, "\n".join(rows)]), pd.DataFrame(columns=["answer", "votes", "status"])
    head = [t(f"{key}_summary", lang, winner=_md(display[vote.winner]), votes=vote.winner_votes, cast=vote.votes,
              share=vote.share, abstain=vote.abstentions)]
    if vote.tie:
        head.append(t(f"{key}_tie", lang, tied=", ".join(_md(display[k]) for k in vote.tied), votes=vote.winner_votes,
                      winner=_md(display[vote.winner]), path=vote.first_path[vote.winner] + 1))
    status = {k: ("winner" if k == vote.winner else "tied" if k in vote.tied else "other") for k, _ in vote.counts}
    frame = pd.DataFrame({"answer": [display[k] for k, _ in vote.counts], "votes": [n for _, n in vote.counts],
                          "status": [t(f"tech.vote_status_{status[k]}", lang) for k, _ in vote.counts]})
    return "\n\n".join(head + ["\n".join(rows)]), frame


def vote_plot(frame: pd.DataFrame, lang: str) -> gr.BarPlot:
    colors = {t(f"tech.vote_status_{s}", lang): c for s, c in zip(("winner", "tied", "other"), STATUS_COLORS)}
    return gr.BarPlot(value=frame, x="answer", y="votes", color="status", color_map=colors,
                      colors_in_legend=list(dict.fromkeys(frame["status"])),
                      sort=list(frame["answer"]) if len(frame) else None,
                      x_title=t("tech.vote_col_answer", lang), y_title=t("tech.vote_col_votes", lang))


def run_outputs(run: Run, lang: str) -> tuple:
    is_vote = run.technique in VOTING
    vote_md, frame = vote_outputs(run, lang) if is_vote else ("", pd.DataFrame(columns=["answer", "votes", "status"]))
    return (result_markdown(run, lang), gr.Column(visible=is_vote), vote_md, vote_plot(frame, lang),
            calls_html(run, lang), run.as_dict())


SUMMARY_COLUMNS = ("tech.col_technique", "tech.col_tasks", "tech.col_correct", "tech.col_accuracy", "tech.col_no_answer",
                   "tech.col_calls", "tech.col_prompt_tokens", "tech.col_generated_tokens", "tech.col_tokens_per_task",
                   "tech.col_seconds", "tech.col_seconds_per_task")


def summary_frame(result: BenchmarkResult | None, lang: str) -> pd.DataFrame:
    """One row per technique; with no result, the headers only (an empty table shows them)."""
    if result is None:
        return pd.DataFrame(columns=[t(key, lang) for key in SUMMARY_COLUMNS])
    rows = []
    for s in result.stats():
        rows.append({
            t("tech.col_technique", lang): t(f"tech.name.{s.technique}", lang),
            t("tech.col_tasks", lang): s.runs,
            t("tech.col_correct", lang): s.correct,
            t("tech.col_accuracy", lang): round(100 * s.accuracy, 1),
            t("tech.col_no_answer", lang): s.no_answer,
            t("tech.col_calls", lang): s.calls,
            t("tech.col_prompt_tokens", lang): s.prompt_tokens,
            t("tech.col_generated_tokens", lang): s.generated_tokens,
            t("tech.col_tokens_per_task", lang): round(s.per_task(s.tokens), 1),
            t("tech.col_seconds", lang): round(s.seconds, 2),
            t("tech.col_seconds_per_task", lang): round(s.per_task(s.seconds), 3),
        })
    return pd.DataFrame(rows)


def chart_frame(result: BenchmarkResult, lang: str) -> pd.DataFrame:
    stats = [s for s in result.stats() if s.runs]
    return pd.DataFrame({"technique": [t(f"tech.name.{s.technique}", lang) for s in stats],
                         "accuracy": [round(100 * s.accuracy, 1) for s in stats],
                         "tokens_per_task": [round(s.per_task(s.tokens), 1) for s in stats],
                         "seconds_per_task": [round(s.per_task(s.seconds), 3) for s in stats]})


def bench_status(result: BenchmarkResult, lang: str) -> str:
    done = len(result.runs)
    if result.done and result.stopped:
        text = t("tech.bench_stopped", lang, done=done, total=result.total)
    elif result.done:
        text = t("tech.bench_done", lang, total=result.total, seconds=sum(result.seconds.values()))
    else:
        text = t("tech.bench_status", lang, done=done, total=result.total)
    used = settings_line(result.techniques, result.runs[0].settings if result.runs else None, lang)
    return text + ("\n\n" + used if used else "")


def settings_line(techniques: list[str], settings: Settings | None, lang: str) -> str:
    """The technique settings a benchmark used, for the techniques that read them."""
    if settings is None:
        return ""
    used = {name for tech in techniques for name in SETTINGS_USED.get(tech, ())}
    parts = []
    if "k_examples" in used:
        parts.append(t("ux.tech.used_k", lang, k=settings.k_examples) +
                     (" " + t("ux.tech.used_shuffled", lang, seed=settings.shuffle_seed) if settings.shuffle else ""))
    if "n_samples" in used:
        parts.append(t("ux.tech.used_n", lang, n=settings.n_samples))
    if "sample_temperature" in used:
        parts.append(t("ux.tech.used_t", lang, temperature=settings.sample_temperature))
    if "rounds" in used:
        parts.append(t("ux.tech.used_rounds", lang, rounds=settings.rounds))
    if "k_thoughts" in used:
        parts.append(t("ux.tech.used_tree", lang, k=settings.k_thoughts, depth=settings.depth))
    if "n_chains" in used:
        parts.append(t("tech.used_chains", lang, n=settings.n_chains))
    return t("ux.tech.used", lang, settings=" · ".join(parts)) if parts else ""


def legend_html(names: list[str]) -> str:
    """The cost chart's legend, every technique shown (the chart's own legend is one clipped row)."""
    keys = {t(f"tech.name.{k}", lang): k for lang in ("en", "fr") for k in TECHNIQUES}
    items = []
    for name in names:
        color = TECHNIQUE_COLORS.get(keys.get(name, ""), "#888")
        items.append(f'<span class="tech-legend-item"><span class="tech-legend-dot" style="border-color:{color}"></span>'
                     f"{esc(name)}</span>")
    return f'<div class="tech-legend">{"".join(items)}</div>' if items else ""


def bench_legend(table: pd.DataFrame | None) -> str:
    if table is None or not len(table.columns) or not len(table):
        return ""
    return legend_html([str(v) for v in table.iloc[:, 0] if str(v)])


def bench_outputs(result: BenchmarkResult, lang: str, files: list[str] | None) -> tuple:
    frame = chart_frame(result, lang)
    order = list(frame["technique"])
    acc = gr.BarPlot(value=frame, x="technique", y="accuracy", sort=order or None, y_lim=[0, 100],
                     x_title=t("tech.col_technique", lang), y_title=t("tech.col_accuracy", lang))
    # the chart's own legend (one row, clipped past ~5 names) is replaced by bench_legend's, same colours
    names = {t(f"tech.name.{k}", lang): k for k in TECHNIQUES}
    cost = gr.ScatterPlot(value=frame, x="tokens_per_task", y="accuracy", color="technique", y_lim=[0, 100],
                          color_map={n: TECHNIQUE_COLORS[names[n]] for n in order}, colors_in_legend=[],
                          x_title=t("tech.col_tokens_per_task", lang), y_title=t("tech.col_accuracy", lang))
    return bench_status(result, lang), summary_frame(result, lang), acc, cost, files
