"""What the prompt-fragility experiment shows: the status and the spread, the accuracy per variant
(chart and table), each variant's exact prompt, and the raw result (per language)."""
from __future__ import annotations

import html
import re

import gradio as gr
import pandas as pd

from engine.techniques.fragility import FIELDS, FragilityResult, Variant, example_indices
from engine.techniques.tasks import Task
from ui import fmt
from ui.i18n import t

KIND_COLORS = {"reference": "#4e79a7", "order": "#f28e2b", "whitespace": "#59a14f", "labels": "#b07aa1",
               "choice": "#e15759"}
TABLE_COLUMNS = ("tech.frag_col_variant", "tech.frag_col_kind", "tech.frag_col_change", "tech.col_tasks",
                 "tech.col_correct", "tech.col_accuracy", "tech.frag_col_changed")
TABLE_WIDTHS = ["7%", "14%", "43%", "9%", "7%", "10%", "10%"]
_TRAILING = re.compile(r"( +)(?=\n|$)")


def kind_name(kind: str, lang: str) -> str:
    return t(f"tech.frag_kind.{kind}", lang)


def variant_label(variant: Variant, lang: str) -> str:
    return f"{variant.name} · {kind_name(variant.kind, lang)}"


def describe(variant: Variant, task: Task, result: FragilityResult, lang: str) -> str:
    """What the variant changes, as its prompt for ``task`` shows it (field names in the task's language)."""
    fields = FIELDS["fr" if task.lang == "fr" else "en"]
    examples = ", ".join(f"#{i + 1}" for i in example_indices(task, variant, result.settings))
    if variant.kind == "whitespace":
        return t(f"tech.frag_desc.whitespace.{variant.level}", lang)
    q, a = fields[variant.level] if variant.kind == "labels" else fields[0]
    return t(f"tech.frag_desc.{variant.kind}", lang, examples=examples, q=q, a=a)


def status_markdown(result: FragilityResult, lang: str) -> str:
    done, total = len(result.rows), result.total
    sizes = {"variants": len(result.variants), "problems": len(result.tasks)}
    if result.done and result.stopped:
        lines = [t("tech.frag_stopped", lang, done=done, total=total)]
    elif result.done:
        lines = [t("tech.frag_done", lang, total=total, seconds=result.seconds, **sizes)]
    else:
        lines = [t("tech.frag_status", lang, done=done, total=total, **sizes)]
    spread = result.spread()
    if spread is None:
        lines.append(t("tech.frag_spread_none", lang))
    elif spread.points == 0:
        lines.append(t("tech.frag_spread_same", lang, accuracy=fmt.percent(spread.low, lang)))
    else:
        reference = "—" if spread.reference is None else fmt.percent(spread.reference, lang)
        lines.append(t("tech.frag_spread", lang, low=fmt.percent(spread.low, lang), high=fmt.percent(spread.high, lang),
                       points=fmt.number(round(100 * spread.points), lang), worst=variant_label(spread.worst, lang),
                       best=variant_label(spread.best, lang), reference=reference))
    return "\n\n".join(lines)


def chart_frame(result: FragilityResult, lang: str) -> pd.DataFrame:
    stats = [s for s in result.stats() if s.runs]
    return pd.DataFrame({"variant": [variant_label(s.variant, lang) for s in stats],
                         "accuracy": [round(100 * s.accuracy, 1) for s in stats],
                         "perturbation": [kind_name(s.variant.kind, lang) for s in stats]})


def empty_table(lang: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[t(key, lang) for key in TABLE_COLUMNS])


def table_frame(result: FragilityResult, lang: str):
    task = result.tasks[0]
    rows = [{t("tech.frag_col_variant", lang): s.variant.name,
             t("tech.frag_col_kind", lang): kind_name(s.variant.kind, lang),
             t("tech.frag_col_change", lang): describe(s.variant, task, result, lang),
             t("tech.col_tasks", lang): s.runs, t("tech.col_correct", lang): s.correct,
             t("tech.col_accuracy", lang): round(100 * s.accuracy, 1),
             t("tech.frag_col_changed", lang): round(100 * s.changed_share, 1)} for s in result.stats()]
    return fmt.table(pd.DataFrame(rows, columns=[t(key, lang) for key in TABLE_COLUMNS]), lang,
                     {t("tech.col_accuracy", lang): 1, t("tech.frag_col_changed", lang): 1})


def marked(prompt: str) -> str:
    """The exact prompt as HTML: tabs and spaces at the end of a line highlighted (the characters kept,
    so copying gives the exact text)."""
    text = html.escape(prompt or "", quote=False)
    text = _TRAILING.sub(lambda m: f'<mark class="tech-ws">{m.group(1)}</mark>', text)
    return text.replace("\t", '<mark class="tech-ws">\t</mark>')


def prompts_html(result: FragilityResult, lang: str) -> str:
    task = result.tasks[0]
    items = []
    for s in result.stats():
        prompt = result.example_prompt(s.variant)
        if prompt is None:
            continue
        meta = t("tech.frag_prompt_meta", lang, correct=s.correct, problems=s.runs,
                 accuracy=fmt.percent(s.accuracy, lang))
        summary = (f"<b>{html.escape(variant_label(s.variant, lang))}</b> · "
                   f"{html.escape(describe(s.variant, task, result, lang))} · <span class=\"tech-meta\">{html.escape(meta)}</span>")
        items.append(f'<details class="tech-call frag-prompt" data-variant="{s.variant.name}">'
                     f'<summary>{summary}</summary><pre class="tech-prompt">{marked(prompt)}</pre></details>')
    if not items:
        return ""
    head = f'<div class="tech-label">{html.escape(t("tech.frag_prompts", lang))}</div>'
    return head + '<div class="tech-calls">' + "".join(items) + "</div>"


def raw_result(result: FragilityResult) -> dict:
    """For scripts (and the link): the variants with their figures and exact prompt, the spread."""
    spread = result.spread()
    s = result.settings
    return {"done": result.done, "stopped": result.stopped, "rows": len(result.rows), "total": result.total,
            "seconds": round(result.seconds, 3), "tasks": [task.id for task in result.tasks],
            "settings": {"k_examples": s.k_examples, "variants": s.variants, "perturbations": list(s.perturbations),
                         "seed": s.seed, "max_new_tokens": s.params.max_new_tokens},
            "variants": [{**st.as_dict(), "prompt": result.example_prompt(st.variant)} for st in result.stats()],
            "spread": None if spread is None else {"low": round(spread.low, 4), "high": round(spread.high, 4),
                                                   "worst": spread.worst.name, "best": spread.best.name,
                                                   "reference": None if spread.reference is None else round(spread.reference, 4)}}


def fragility_outputs(result: FragilityResult, lang: str, files: list[str] | None) -> tuple:
    frame = chart_frame(result, lang)
    kinds = {kind_name(k, lang): color for k, color in KIND_COLORS.items()}
    chart = gr.BarPlot(value=frame, x="variant", y="accuracy", color="perturbation", sort=list(frame["variant"]) or None,
                       y_lim=[0, 100], color_map=kinds, colors_in_legend=list(dict.fromkeys(frame["perturbation"])),
                       x_title=t("tech.frag_col_variant", lang), y_title=t("tech.col_accuracy", lang),
                       color_title=t("tech.frag_col_kind", lang))
    return (status_markdown(result, lang), chart, table_frame(result, lang), prompts_html(result, lang),
            raw_result(result), files)
