"""Image prompting: the SDXL / FLUX guided exercise, prompt builder, comparison grids."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import pandas as pd

from engine import gpu_tasks
from engine.images import grid as image_grid
from engine.images import png as image_png
from engine.images import imagegen
from engine.runtime import tempfiles
from engine.models.catalog import IMAGE_ROLES
from engine.errors import UserError
from engine.images.prompt_recipe import FIELDS, STYLE_PRESETS, apply_preset, assemble
from engine.tokenization.tokenizers import t5_count
from ui import zerogpu
from ui.context import AppContext
from ui.feedback import guard, warn
from ui.i18n import I18N, forced_lang, request_lang, t
from ui.share import share_row
from ui.wording import image_label
from ui.widgets import on_run

EXERCISE = json.loads((Path(__file__).resolve().parent.parent / "assets" / "image_exercise.json").read_text("utf-8"))["steps"]


# =============================================================================== helpers
def exercise_step(step_id: str) -> dict:
    step = next((x for x in EXERCISE if x["id"] == step_id), None)
    if step is None:
        raise UserError("ux.img.err_no_target", step=step_id)
    return step


def exercise_choices(lang: str) -> list[tuple[str, str]]:
    """The guided exercise's steps, titled in the UI's language."""
    return [(s["title_fr" if lang == "fr" else "title_en"], s["id"]) for s in EXERCISE]


def model_choices() -> list[tuple[str, str]]:
    return [(imagegen.DEFAULTS[r].title, r) for r in IMAGE_ROLES]


def defaults_table(lang: str, tiny: bool) -> pd.DataFrame:
    rows = []
    for role in IMAGE_ROLES:
        d = imagegen.DEFAULTS[role]
        size = imagegen.TINY_SIZE if tiny else d.size
        rows.append({t("img.col_model", lang): d.title,
                     t("img.col_steps", lang): f"{d.steps} ({d.steps_range[0]}–{d.steps_range[1]})",
                     t("img.col_guidance", lang): d.guidance, t("img.col_size", lang): f"{size}×{size}",
                     t("img.col_t5", lang): d.max_sequence_length or "—",
                     t("img.col_negative", lang): "✓" if d.negative_prompt else "—",
                     t("img.col_notes", lang): "; ".join(t(v, lang) for v in d.notes.values())})
    return pd.DataFrame(rows)


def token_counter_html(prompt: str, lang: str) -> str:
    """CLIP's 77-token window (the tokenizer tab's view) and the T5 count for FLUX."""
    from html import escape

    from ui.token_view import clip_window_html, translated_labels

    n, exact = t5_count(prompt or "")
    t5 = t("img.t5_exact" if exact else "img.t5_estimate", lang, n=n, limit="256 (schnell) / 512 (dev)")
    return clip_window_html(prompt or "", translated_labels(lang)) + f'<div class="t5count">{escape(t5)}</div>'


def focus_controls(role: str, lang: str, use_defaults: bool = False, tiny: bool = False,
                   with_values: bool = True) -> tuple[dict, dict, dict]:
    """Steps, guidance and size sliders for ``role``: the model card's values (clamped on the tiny
    profile), disabled while the defaults are in use, guidance disabled where the model ignores it."""
    d = imagegen.DEFAULTS[role]
    defaults_note = t("img.why.defaults_on", lang) if use_defaults else ""
    guidance_note = t(d.notes["guidance"], lang) if "guidance" in d.notes else defaults_note
    steps_value = min(d.steps, imagegen.TINY_MAX_STEPS) if tiny else d.steps
    values = ({"value": steps_value}, {"value": d.guidance}, {"value": imagegen.TINY_SIZE if tiny else d.size}) \
        if with_values else ({}, {}, {})
    return (
        gr.update(**values[0], maximum=max(8, d.steps_range[1]), interactive=not use_defaults, info=defaults_note),
        gr.update(**values[1], interactive=d.guidance_active and not use_defaults, info=guidance_note),
        gr.update(**values[2], interactive=not use_defaults, info=defaults_note),
    )


def negative_state(models: list[str] | None) -> dict:
    """The negative prompt only acts on models with classifier-free guidance (SDXL base here)."""
    used = any(imagegen.DEFAULTS[r].negative_prompt for r in (models or []) if r in imagegen.DEFAULTS)
    return gr.update(interactive=used)


def grid_alt(inputs: dict, lang: str) -> str:
    """The comparison grid in words (its alt text, live and on the wall): models, prompt(s), seed."""
    roles = [r for r in IMAGE_ROLES if r in (inputs.get("models") or [])]
    prompts = [str(p).strip() for p in (inputs.get("prompt"), inputs.get("second_prompt")) if p and str(p).strip()]
    seed = inputs.get("seed")
    return t("img.grid_alt", lang, models=", ".join(imagegen.DEFAULTS[r].title for r in roles),
             prompt=" / ".join(prompts), seed=int(seed) if isinstance(seed, (int, float)) else 0)


def target_role(ctx: AppContext, roles: list[str]) -> str:
    """The first model of ``roles`` whose estimate fits this machine (the last one otherwise)."""
    for role in roles:
        try:
            ctx.manager.check_fits(ctx.catalog.spec(role))
            return role
        except UserError:
            continue
    return roles[-1]


def gallery_items(results, lang: str) -> list[tuple[str, str]]:
    return [(str(r.path), image_label(r.settings, lang, r.seconds)) for r in results]


def make_images(specs_settings, progress, lang, request, time_limit_s: float | None = None, on_time_limit=None):
    """One GPU call for every (spec, settings), as a generator of (finished results, gallery): the
    gallery grows as each image is done, and while one denoises its slot holds a preview. A model
    that cannot run is skipped with a warning. Requests take turns image by image (round-robin
    between students); ``time_limit_s`` ends a sweep early, keeping what it made
    (``on_time_limit(event)`` is told instead of a warning)."""
    results, folder = [], tempfiles.new_dir("images")

    def skipped(event: gpu_tasks.Skipped) -> str:
        return t("img.skipped", lang, model=imagegen.DEFAULTS[event.role].title,
                 reason=t(event.key, lang, **event.params))

    warn_notice = zerogpu.warn_notice(lang, skipped)

    def notice(event) -> None:
        if isinstance(event, gpu_tasks.TimeLimit) and on_time_limit is not None:
            on_time_limit(event)
        else:
            warn_notice(event)

    key = zerogpu.stop_key(request, "images")
    job = gpu_tasks.ImagesJob(tuple(gpu_tasks.ImageItem(spec, s) for spec, s in specs_settings),
                              owner=key[0], time_limit_s=time_limit_s)
    for event in gpu_tasks.call(gpu_tasks.images, job, key, on_progress=zerogpu.progress_to(progress, lang),
                                on_notice=notice):
        if isinstance(event, gpu_tasks.ImagePreview):
            caption = t("ux.img.preview_caption", lang, model=imagegen.DEFAULTS[event.role].title,
                        step=event.step, steps=event.total)
            yield results, gallery_items(results, lang) + [(event.image, caption)]
            continue
        result = imagegen.ImageResult(image=event.image, settings=event.settings, seconds=event.seconds)
        image_png.save_png(result, folder, f"{event.index:02d}-{event.settings.role}")
        results.append(result)
        yield results, gallery_items(results, lang)


# =============================================================================== layout
@dataclass
class View:
    td_pick: gr.Dropdown
    td_goal: gr.Markdown
    td_target_row: gr.Row
    td_make: gr.Button
    td_reveal: gr.Button
    td_hidden: gr.Markdown
    prompt: gr.Textbox
    second: gr.Textbox
    negative: gr.Textbox
    tokens: gr.HTML
    models: gr.CheckboxGroup
    seed: gr.Number
    use_defaults: gr.Checkbox
    focus: gr.Dropdown
    steps: gr.Slider
    guidance: gr.Slider
    size: gr.Slider
    run: gr.Button
    stop: gr.Button
    grid_out: gr.Image
    target: gr.Image
    gallery: gr.Gallery
    table: gr.Dataframe
    preset: gr.Dropdown
    parts: list[gr.Textbox]  # the prompt builder's fields, in the order of FIELDS
    assemble_btn: gr.Button
    sweep_model: gr.Dropdown
    x_param: gr.Dropdown
    x_values: gr.Textbox
    y_param: gr.Dropdown
    y_values: gr.Textbox
    sweep_run: gr.Button
    reuse_file: gr.File
    reuse_note: gr.Markdown


def layout(ctx: AppContext) -> View:
    tiny = ctx.catalog.profile == "tiny"
    gr.Markdown(I18N("img.intro"), elem_classes="tab-intro")
    if tiny:
        gr.Markdown(I18N("img.tiny_note"), elem_classes="tab-intro")
    parts = _layout_exercise()
    parts.update(_layout_prompt(ctx, tiny))
    parts.update(_layout_results(tiny))
    parts.update(_layout_builder())
    parts.update(_layout_sweep(tiny))
    with gr.Accordion(I18N("img.reuse"), open=False, elem_id="img-reuse"):
        parts["reuse_file"] = gr.File(label=I18N("img.reuse_file"), file_types=[".png"], elem_id="img-reuse-file")
        parts["reuse_note"] = gr.Markdown()
    return View(**parts)


def _layout_exercise() -> dict:
    """The guided exercise (TD): pick a step, read its goal; steps 2a–2c render their target here."""
    with gr.Accordion(I18N("img.td"), open=False, elem_id="img-td"):
        td_pick = gr.Dropdown(exercise_choices(forced_lang() or "en"), value=None,
                              label=I18N("img.td_pick"), elem_id="img-td-pick")
        td_goal = gr.Markdown(elem_id="img-td-goal")
        # steps 2a–2c: the target is rendered here from the step's hidden detailed prompt (a fixed seed)
        with gr.Row(visible=False) as td_target_row:
            td_make = gr.Button(I18N("ux.img.make_target"), variant="primary", elem_id="img-td-make", scale=2)
            td_reveal = gr.Button(I18N("ux.img.reveal"), elem_id="img-td-reveal", scale=1)
        td_hidden = gr.Markdown(visible=False, elem_id="img-td-hidden")
    return dict(td_pick=td_pick, td_goal=td_goal, td_target_row=td_target_row, td_make=td_make, td_reveal=td_reveal,
                td_hidden=td_hidden)


def _layout_prompt(ctx: AppContext, tiny: bool) -> dict:
    """The prompts and their token counts; the models, seed and the focus model's settings; Run, Stop."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            prompt = gr.Textbox(EXERCISE[0]["prompt_en"], lines=3, label=I18N("img.prompt"),
                                placeholder=I18N("img.prompt_placeholder"), elem_id="img-prompt")
            second = gr.Textbox("", lines=2, label=I18N("img.second_prompt"), elem_id="img-second")
            negative = gr.Textbox("blurry, low quality, watermark", lines=1, label=I18N("img.negative"),
                                  info=I18N("img.why.negative"), interactive=False, elem_id="img-negative")
            tokens = gr.HTML(token_counter_html(EXERCISE[0]["prompt_en"], "en"), label=I18N("img.tokens"),
                             elem_id="img-token-count")
        with gr.Column(scale=2, min_width=280):
            models = gr.CheckboxGroup(model_choices(), value=list(ctx.catalog.image_defaults), label=I18N("img.models"),
                                      elem_id="img-models")
            seed = gr.Number(42, precision=0, minimum=0, label=I18N("img.seed"), elem_id="img-seed")
            use_defaults = gr.Checkbox(True, label=I18N("img.use_defaults"), elem_id="img-use-defaults")
            focus = gr.Dropdown(model_choices(), value="sdxl_turbo", label=I18N("img.focus"), elem_id="img-focus")
            steps = gr.Slider(1, 8, value=1, step=1, label=I18N("img.steps"), interactive=False,
                              info=I18N("img.why.defaults_on"), elem_id="img-steps")
            guidance = gr.Slider(0, 12, value=0, step=0.5, label=I18N("img.guidance"), interactive=False,
                                 info=I18N("img.why.turbo_guidance"), elem_id="img-guidance")
            size = gr.Slider(imagegen.TINY_SIZE if tiny else 256, 1536, value=imagegen.TINY_SIZE if tiny else 512,
                             step=64, label=I18N("img.size"), interactive=False, info=I18N("img.why.defaults_on"),
                             elem_id="img-size")
            with gr.Row():
                run = gr.Button(I18N("img.run"), variant="primary", elem_id="img-run", scale=3)
                stop = gr.Button(I18N("img.stop"), variant="stop", elem_id="img-stop", scale=1, min_width=90)
    return dict(prompt=prompt, second=second, negative=negative, tokens=tokens, models=models, seed=seed,
                use_defaults=use_defaults, focus=focus, steps=steps, guidance=guidance, size=size, run=run, stop=stop)


def _layout_results(tiny: bool) -> dict:
    """The comparison grid (and a TD step's target beside it), the gallery, the models' defaults."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            # the heading outside the image: Gradio's floating label covered the grid's first column header
            gr.Markdown(I18N("ux.img.grid_heading"), elem_id="img-grid-heading")
            grid_out = gr.Image(show_label=False, type="pil", format="png", elem_id="img-grid")
        target = gr.Image(label=I18N("img.target"), type="pil", format="png", elem_id="img-target", scale=1)
    gallery = gr.Gallery(label=I18N("img.gallery"), columns=4, height="auto", elem_id="img-gallery", format="png")
    with gr.Accordion(I18N("img.defaults_table"), open=False):
        table = gr.Dataframe(defaults_table("en", tiny), interactive=False, wrap=True, elem_id="img-defaults")
    return dict(grid_out=grid_out, target=target, gallery=gallery, table=table)


def _layout_builder() -> dict:
    """The prompt builder: a style preset and one field per part of a prompt (FIELDS)."""
    with gr.Accordion(I18N("img.builder"), open=False, elem_id="img-builder"):
        preset = gr.Dropdown(list(STYLE_PRESETS), value=None, label=I18N("img.b_preset"))
        with gr.Row():
            parts = [gr.Textbox("", label=I18N(f"img.b_{name}"), min_width=180) for name in FIELDS[:4]]
        with gr.Row():
            parts += [gr.Textbox("", label=I18N(f"img.b_{name}"), min_width=180) for name in FIELDS[4:]]
        assemble_btn = gr.Button(I18N("img.b_assemble"))
    return dict(preset=preset, parts=parts, assemble_btn=assemble_btn)


def _layout_sweep(tiny: bool) -> dict:
    """The parameter sweep: one model, a setting per axis and its values."""
    with gr.Accordion(I18N("img.sweep"), open=False, elem_id="img-sweep"):
        with gr.Row():
            sweep_model = gr.Dropdown(model_choices(), value="sdxl_base", label=I18N("img.sweep_model"))
            x_param = gr.Dropdown(list(image_grid.SWEEP_PARAMS), value="guidance", label=I18N("img.sweep_x"))
            x_values = gr.Textbox("2, 5, 8", label=I18N("img.sweep_x_values"), elem_id="img-sweep-x-values")
            y_param = gr.Dropdown(list(image_grid.SWEEP_PARAMS), value="steps", label=I18N("img.sweep_y"))
            y_values = gr.Textbox("1, 2" if tiny else "15, 30", label=I18N("img.sweep_y_values"),
                                  elem_id="img-sweep-y-values")
        sweep_run = gr.Button(I18N("img.sweep_run"), elem_id="img-sweep-run")
    return dict(sweep_model=sweep_model, x_param=x_param, x_values=x_values, y_param=y_param, y_values=y_values,
                sweep_run=sweep_run)


# =============================================================================== handlers
def generate_images_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    @guard
    def generate_images(prompt: str, second_prompt: str = "", negative_prompt: str = "",
                        models: list[str] | None = None, seed: float = 42, use_defaults: bool = True,
                        focus_model: str = "sdxl_turbo", steps: float = 1, guidance: float = 0.0, size: float = 512,
                        request: gr.Request = None, progress=gr.Progress()):
        """One image per (prompt, model); the gallery streams them, then the labelled grid comes."""
        lang = request_lang(request)
        prompts = [p.strip() for p in (prompt, second_prompt) if p and p.strip()]
        if not prompts:
            warn("err.empty_prompt", request)
            yield gr.update(), gr.update()
            return
        roles = [r for r in IMAGE_ROLES if r in (models or [])]
        if not roles:
            warn("img.err.no_models", request)
            yield gr.update(), gr.update()
            return
        jobs = []
        for p in prompts:
            for role in roles:
                spec = ctx.catalog.spec(role)
                custom = (not use_defaults) and role == focus_model
                jobs.append((spec, imagegen.settings_for(spec, p, negative_prompt=negative_prompt or "", seed=int(seed or 0),
                                                         steps=int(steps) if custom else None,
                                                         guidance=float(guidance) if custom else None,
                                                         size=int(size) if custom else None, tiny=tiny)))
        results, items = [], []
        for results, items in make_images(jobs, progress, lang, request):
            yield gr.update(), items  # the previous grid stays until the new one is complete
        if not results:
            yield gr.update(), items
            return
        two = len(prompts) > 1
        columns = len(roles) if two else min(4, len(results))
        # two prompts (short vs detailed): short row labels, each prompt written out in full under the grid
        row_labels = [t("ux.img.prompt_n", lang, n=k + 1) for k in range(len(prompts))] if two else None
        legend = [f"{t('ux.img.prompt_n', lang, n=k + 1)}: {p}" for k, p in enumerate(prompts)] if two else None
        image = image_grid.grid([r.image for r in results], [image_label(r.settings, lang, r.seconds) for r in results],
                              columns=columns, cell=256 if tiny else 384, row_labels=row_labels, legend=legend)
        yield image, items

    return generate_images


def image_grid_sweep_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    @guard
    def image_grid_sweep(prompt: str, model: str = "sdxl_base", x_param: str = "guidance", x_values: str = "2, 5, 8",
                         y_param: str = "steps", y_values: str = "15, 30", seed: float = 42,
                         negative_prompt: str = "", request: gr.Request = None, progress=gr.Progress()):
        """The same prompt with one parameter per axis; a bad value gives a message and keeps the
        grid on screen."""
        lang = request_lang(request)
        if not (prompt or "").strip():
            warn("err.empty_prompt", request)
            yield gr.update(), gr.update()
            return
        try:
            if x_param == y_param:
                raise UserError("img.err.same_param")
            xs, ys = image_grid.parse_values(x_param, x_values), image_grid.parse_values(y_param, y_values)
        except UserError as err:  # a message, not an error state over the previous grid
            warn(err.key, request, **err.params)
            yield gr.update(), gr.update()
            return
        spec = ctx.catalog.spec(model)
        d = imagegen.DEFAULTS[model]
        if "guidance" in (x_param, y_param) and not d.guidance_active:  # still drawn: seeing no change is the lesson
            gr.Warning(t("img.sweep_no_effect", lang, model=d.title, reason=t(d.notes["guidance"], lang)))
        base = imagegen.settings_for(spec, prompt.strip(), negative_prompt=negative_prompt or "", seed=int(seed or 0),
                                     tiny=tiny)
        jobs = []
        for y in ys:
            for x in xs:
                s = image_grid.apply_sweep(image_grid.apply_sweep(base, x_param, x), y_param, y)
                if tiny:
                    s = replace(s, steps=min(s.steps, imagegen.TINY_MAX_STEPS))
                jobs.append((spec, s))
        expired = []
        results, items = [], []
        for results, items in make_images(jobs, progress, lang, request, time_limit_s=ctx.limits.sweep_seconds,
                                          on_time_limit=expired.append):
            yield gr.update(), items
        if expired:
            gr.Warning(t("safety.sweep_time_limit", lang, seconds=ctx.limits.sweep_seconds, done=len(results),
                         total=len(jobs)))
        if not results:
            yield gr.update(), items
            return
        image = image_grid.grid([r.image for r in results], [t("img.sweep_cell", lang, seconds=r.seconds) for r in results], columns=len(xs),
                              cell=256 if tiny else 320, row_labels=[f"{y_param} = {y}" for y in ys],
                              column_labels=[f"{x_param} = {x}" for x in xs])
        yield image, items

    return image_grid_sweep


@guard
def read_png_settings(png: str | None, request: gr.Request = None):
    """Prompt, negative prompt, model, seed, steps, guidance and size of a PNG made here."""
    lang = request_lang(request)
    if not png:
        return (gr.update(),) * 9 + ("",)
    s = image_png.read_png_settings(png)
    note = t("img.reuse_done", lang, model=imagegen.DEFAULTS[s.role].title, steps=s.steps, guidance=s.guidance,
             seed=s.seed, size=f"{s.width}×{s.height}")
    return s.prompt, s.negative_prompt, [s.role], s.seed, False, s.role, s.steps, s.guidance, s.width, note


def restored_controls_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    def restored_controls(role: str, request: gr.Request):
        """After a restore: the restored model's controls become editable (its values are kept)."""
        return focus_controls(role, request_lang(request), tiny=tiny, with_values=False) + (negative_state([role]),)

    return restored_controls


def stop_images(request: gr.Request):
    zerogpu.stop(request, "images")


def show_step(step_id: str | None, request: gr.Request):
    lang = request_lang(request)
    if not step_id:
        return (gr.update(),) * 6
    s = exercise_step(step_id)
    has_target = "target_prompt_en" in s
    return (f"### {s['title_' + lang]}\n\n{s['goal_' + lang]}", s["prompt_" + lang],
            s.get("second_prompt_" + lang, ""), s["models"], gr.Row(visible=has_target),
            gr.Markdown(visible=False, value=""))


def make_td_target_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    @guard
    def make_td_target(step: str = "step2a", request: gr.Request = None, progress=gr.Progress()):
        """Render a TD step's target from its hidden detailed prompt with a fixed seed, on the first
        of its models that fits here; then pick that model and seed for the students' attempts."""
        lang = request_lang(request)
        s = exercise_step(step)
        if "target_prompt_en" not in s:
            raise UserError("ux.img.err_no_target", step=step)
        role = target_role(ctx, s["target_models"])
        spec = ctx.catalog.spec(role)
        settings = imagegen.settings_for(spec, s["target_prompt_" + lang], seed=int(s["target_seed"]), tiny=tiny)
        results = []
        for results, items in make_images([(spec, settings)], progress, lang, request):
            if items and not results:  # a preview while it denoises
                yield items[-1][0], gr.update(), gr.update()
        if not results:
            yield gr.update(), gr.update(), gr.update()
            return
        label = t("ux.img.target_label", lang, model=imagegen.DEFAULTS[role].title, seed=settings.seed)
        yield gr.Image(value=str(results[0].path), label=label, alt_text=label), [role], settings.seed

    return make_td_target


def reveal_target(step_id: str | None, request: gr.Request):
    lang = request_lang(request)
    if not step_id or "target_prompt_en" not in exercise_step(step_id):
        return gr.Markdown(visible=False)
    text = exercise_step(step_id)["target_prompt_" + lang]
    return gr.Markdown(t("ux.img.hidden_prompt", lang, prompt=text), visible=True)


def on_focus_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    def on_focus(role: str, use_defaults: bool, request: gr.Request):
        return focus_controls(role, request_lang(request), use_defaults=use_defaults, tiny=tiny)

    return on_focus


def on_use_defaults_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    def on_use_defaults(role: str, use_defaults: bool, request: gr.Request):
        return focus_controls(role, request_lang(request), use_defaults=use_defaults, tiny=tiny, with_values=use_defaults)

    return on_use_defaults


def refresh_tokens(text: str, request: gr.Request):
    return token_counter_html(text, request_lang(request))


def localise_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    def localise(text: str, request: gr.Request):
        """Server-rendered parts (token counter, defaults table) in the visitor's language."""
        lang = request_lang(request)
        return token_counter_html(text, lang), defaults_table(lang, tiny)

    return localise


def build_prompt(*values):
    return assemble(dict(zip(FIELDS, values)))


def pick_style(name: str | None, *values):
    merged = apply_preset(dict(zip(FIELDS, values)), name or "")
    return tuple(merged.get(f, "") for f in FIELDS)


def describe_grid(prompt: str, second_prompt: str, models: list[str] | None, seed: float, request: gr.Request):
    """The grid's alt text (models, prompt, seed), set once it is drawn (the API still returns the image)."""
    values = {"prompt": prompt, "second_prompt": second_prompt, "models": models, "seed": seed}
    return gr.Image(alt_text=grid_alt(values, request_lang(request)))


def describe_sweep(prompt: str, model: str, x_param: str, y_param: str, seed: float, request: gr.Request):
    title = imagegen.DEFAULTS[model].title if model in imagegen.DEFAULTS else model
    return gr.Image(alt_text=t("img.sweep_alt", request_lang(request), model=title, x=x_param, y=y_param,
                               prompt=(prompt or "").strip(), seed=int(seed or 0)))


def restored_focus_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    def restored_focus(values: dict, lang: str) -> tuple:
        """A link opened: the focus model's controls as its values left them (the link restores the values)."""
        return focus_controls(values.get("focus_model", "sdxl_turbo"), lang,
                              use_defaults=bool(values.get("use_defaults")), tiny=tiny,
                              with_values=False) + (negative_state(values.get("models")),)

    return restored_focus


def in_language_for(ctx: AppContext):
    tiny = ctx.catalog.profile == "tiny"

    def in_language(lang: str, text: str) -> tuple:
        """After the language switch: the token counter, the defaults table and the exercise's steps."""
        return token_counter_html(text, lang), defaults_table(lang, tiny), gr.Dropdown(choices=exercise_choices(lang))

    return in_language


# =============================================================================== wiring
def wire(view: View, ctx: AppContext, tab: gr.Tab | None = None) -> None:
    inputs = [view.prompt, view.second, view.negative, view.models, view.seed, view.use_defaults, view.focus,
              view.steps, view.guidance, view.size]
    # the progress bar over the grid only: the gallery's previews and finished images stay visible
    # one run of either at a time (ui.widgets.on_run)
    images = dict(action="images", outputs=[view.grid_out, view.gallery], concurrency_id=ctx.concurrency_id("image"),
                  concurrency_limit=1, show_progress_on=[view.grid_out])
    on_run(view.run.click, generate_images_for(ctx), buttons=[(view.run, "img.run"), (view.sweep_run, None)],
           inputs=inputs, api_name="generate_images", **images).success(
        describe_grid, inputs=[view.prompt, view.second, view.models, view.seed], outputs=view.grid_out,
        api_name=False, queue=False)
    on_run(view.sweep_run.click, image_grid_sweep_for(ctx),
           buttons=[(view.run, None), (view.sweep_run, "img.sweep_run")],
           inputs=[view.prompt, view.sweep_model, view.x_param, view.x_values, view.y_param, view.y_values, view.seed,
                   view.negative],
           api_name="image_grid_sweep", **images).success(
        describe_sweep, inputs=[view.prompt, view.sweep_model, view.x_param, view.y_param, view.seed],
        outputs=view.grid_out, api_name=False, queue=False)
    view.stop.click(stop_images, api_name="stop_images", queue=False)
    view.reuse_file.upload(read_png_settings, inputs=view.reuse_file,
                           outputs=[view.prompt, view.negative, view.models, view.seed, view.use_defaults, view.focus,
                                    view.steps, view.guidance, view.size, view.reuse_note],
                           api_name="read_png_settings", concurrency_limit=None
                           ).success(restored_controls_for(ctx), inputs=view.focus,
                                     outputs=[view.steps, view.guidance, view.size, view.negative], api_name=False,
                                     concurrency_limit=None)
    view.td_pick.change(show_step, inputs=view.td_pick,
                        outputs=[view.td_goal, view.prompt, view.second, view.models, view.td_target_row,
                                 view.td_hidden], api_name=False, concurrency_limit=None)
    view.td_make.click(make_td_target_for(ctx), inputs=view.td_pick, outputs=[view.target, view.models, view.seed],
                       api_name="make_td_target", concurrency_id=ctx.concurrency_id("image"), concurrency_limit=1,
                       show_progress_on=[view.td_goal])
    view.td_reveal.click(reveal_target, inputs=view.td_pick, outputs=view.td_hidden, api_name=False, queue=False)
    # .input, not .change: restoring a PNG sets the focus model and must keep the PNG's values
    view.focus.input(on_focus_for(ctx), inputs=[view.focus, view.use_defaults], outputs=[view.steps, view.guidance, view.size],
                     api_name=False, concurrency_limit=None)
    view.use_defaults.input(on_use_defaults_for(ctx), inputs=[view.focus, view.use_defaults],
                            outputs=[view.steps, view.guidance, view.size], api_name=False, concurrency_limit=None)
    view.models.change(negative_state, inputs=view.models, outputs=view.negative, api_name=False, queue=False)
    view.prompt.change(refresh_tokens, inputs=view.prompt, outputs=view.tokens, api_name=False, concurrency_limit=None,
                       trigger_mode="always_last", show_progress="hidden")
    view.assemble_btn.click(build_prompt, inputs=view.parts, outputs=view.prompt, api_name=False,
                            concurrency_limit=None)
    view.preset.change(pick_style, inputs=[view.preset] + view.parts, outputs=view.parts, api_name=False,
                       concurrency_limit=None)
    if tab is not None:
        tab.select(localise_for(ctx), inputs=view.prompt, outputs=[view.tokens, view.table], api_name=False,
                   concurrency_limit=None, show_progress="hidden")
    share_row(ctx, "image_prompting", api="generate_images",
              outputs={"grid": view.grid_out, "gallery": view.gallery}, card={"share.card.images": "grid"}, title="prompt", describe=grid_alt,
              on_restore=(restored_focus_for(ctx), [view.steps, view.guidance, view.size, view.negative]))
    ctx.on_language(in_language_for(ctx), inputs=[view.prompt], outputs=[view.tokens, view.table, view.td_pick])


def build(ctx: AppContext, tab: gr.Tab | None = None) -> None:
    wire(layout(ctx), ctx, tab)
