"""Image generation for the image-prompting exercise: SDXL Turbo, SDXL base, FLUX schnell/dev.

Each model runs with the defaults of its model card; controls that have no effect on a model
are reported with the reason. Every image carries its prompt and settings in its PNG metadata,
so uploading it restores them.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from engine import leases
from engine.catalog import IMAGE_ROLES, ModelSpec
from engine.errors import UserError, as_user_error
from engine.limits import current as current_limits
from engine.image_preview import MAX_PREVIEWS, latent_preview, latent_rgb_map, preview_steps  # noqa: F401
from engine.stopping import LinkedStop

log = logging.getLogger(__name__)

METADATA_KEY = "genai-class-demo"
TINY_SIZE, TINY_MAX_STEPS = 64, 2


@dataclass(frozen=True)
class ModelDefaults:
    role: str
    title: str
    steps: int
    steps_range: tuple[int, int]
    guidance: float
    size: int
    max_sequence_length: int | None  # T5 tokens (FLUX); None: CLIP only
    negative_prompt: bool
    guidance_active: bool
    notes: dict[str, str] = field(default_factory=dict)  # control → why it is disabled (string keys)


DEFAULTS: dict[str, ModelDefaults] = {
    "sdxl_turbo": ModelDefaults("sdxl_turbo", "SDXL Turbo", 1, (1, 4), 0.0, 512, None, False, False,
                                {"guidance": "img.why.turbo_guidance", "negative": "img.why.no_cfg_negative"}),
    "sdxl_base": ModelDefaults("sdxl_base", "SDXL base 1.0", 30, (20, 50), 6.0, 1024, None, True, True),
    "flux_schnell": ModelDefaults("flux_schnell", "FLUX.1 schnell", 4, (1, 4), 0.0, 1024, 256, False, False,
                                  {"guidance": "img.why.schnell_guidance", "negative": "img.why.flux_negative"}),
    "flux_dev": ModelDefaults("flux_dev", "FLUX.1 dev", 28, (28, 50), 3.5, 1024, 512, False, True,
                              {"negative": "img.why.flux_negative"}),
}


@dataclass
class ImageSettings:
    """Everything needed to make one image again (stored in its PNG)."""

    role: str
    model: str
    prompt: str
    negative_prompt: str = ""
    steps: int = 1
    guidance: float = 0.0
    width: int = 512
    height: int = 512
    seed: int = 0
    max_sequence_length: int | None = None

    def label(self, seconds: float | None = None) -> str:
        steps = f"{self.steps} step" + ("s" if self.steps != 1 else "")
        text = f"{DEFAULTS[self.role].title} · {steps} · guidance {self.guidance:g} · seed {self.seed}"
        return text + (f" · {seconds:.1f} s" if seconds is not None else "")


@dataclass
class ImageResult:
    image: Image.Image
    settings: ImageSettings
    seconds: float
    path: Path | None = None
    note: str | None = None


def settings_for(spec: ModelSpec, prompt: str, *, negative_prompt: str = "", seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, size: int | None = None, tiny: bool = False) -> ImageSettings:
    """The model card's defaults, with the user's values where that control applies."""
    d = DEFAULTS[spec.role]
    s = ImageSettings(role=spec.role, model=spec.id, prompt=prompt, seed=int(seed),
                      negative_prompt=negative_prompt if d.negative_prompt else "",
                      steps=int(steps) if steps else d.steps,
                      guidance=float(guidance) if (guidance is not None and d.guidance_active) else d.guidance,
                      width=int(size or d.size), height=int(size or d.size), max_sequence_length=d.max_sequence_length)
    if tiny:  # random tiny pipelines: keep the UI instant
        s = replace(s, width=TINY_SIZE, height=TINY_SIZE, steps=min(s.steps, TINY_MAX_STEPS))
    return s


# Parameters per component, in billions, counted on the meta device from the published configs
# (bench/configs/: stabilityai/stable-diffusion-xl-base-1.0, black-forest-labs/FLUX.1-*). A spec's
# ``params_b`` is split between its components in these proportions.
COMPONENTS_B: dict[str, dict[str, float]] = {
    "sdxl": {"unet": 2.567, "text_encoder_2": 0.695, "text_encoder": 0.123, "vae": 0.084},
    "flux": {"transformer": 11.901, "text_encoder_2": 4.762, "text_encoder": 0.123, "vae": 0.084},
}
DENOISER = {"sdxl": "unet", "flux": "transformer"}
BYTES_4BIT = 0.53  # NF4/FP4 weights plus their per-block scales


def component_bytes(spec: ModelSpec) -> dict[str, int]:
    """Bytes of each component's weights at the spec's precision (a 4-bit FLUX transformer at 4 bits)."""
    table = COMPONENTS_B[spec.kind]
    params = (spec.params_b or 1.0) * 1e9
    per = 4 if spec.precision == "fp32" else 2
    out = {}
    for name, billions in table.items():
        bytes_per = per
        if name == DENOISER[spec.kind] and spec.transformer_precision in ("nf4", "fp4"):
            bytes_per = BYTES_4BIT
        out[name] = int(params * billions / sum(table.values()) * bytes_per)
    return out


def estimate_pipeline_bytes(spec: ModelSpec) -> int:
    """Accelerator memory for the pipeline's weights at its precision.

    With model CPU offload the components wait in CPU memory and one at a time is moved to the
    GPU, so only the largest one counts (for FLUX with a 4-bit transformer that is the T5 encoder,
    not the transformer)."""
    sizes = component_bytes(spec).values()
    return max(sizes) if spec.offload else sum(sizes)


def gpu_resident_bytes(pipe) -> int:
    """Bytes of a loaded pipeline's weights that occupy the accelerator.

    Every component counts, except those under model CPU offload (accelerate's ``CpuOffload``
    hook, set by ``enable_model_cpu_offload``): they live in CPU memory and are moved to the GPU
    one at a time, so only the largest of them counts."""
    resident, offloaded = 0, [0]
    for component in getattr(pipe, "components", {}).values():
        if not hasattr(component, "parameters"):
            continue  # tokenizers, schedulers
        size = sum(t.numel() * t.element_size() for t in (*component.parameters(), *component.buffers()))
        if _cpu_offloaded(component):
            offloaded.append(size)
        else:
            resident += size
    return resident + max(offloaded)


def _cpu_offloaded(module) -> bool:
    try:
        from accelerate.hooks import CpuOffload, SequentialHook
    except ImportError:  # no accelerate: nothing can be offloaded
        return False
    hook = getattr(module, "_hf_hook", None)
    hooks = hook.hooks if isinstance(hook, SequentialHook) else [hook]
    return any(isinstance(h, CpuOffload) for h in hooks)


def _dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float16)


def load_pipeline(spec: ModelSpec, device: str, progress: Callable[[float, str], None] | None = None):
    """``from_pretrained`` for the role's pipeline (Hub id or a tiny local one)."""
    from diffusers import AutoencoderKL, DiffusionPipeline

    from engine.llm import model_source

    source = model_source(spec)
    dtype = _dtype(spec.precision)
    kwargs: dict = {"torch_dtype": dtype}
    if progress:
        progress(0.1, "components")
    if spec.vae and not spec.is_tiny:
        kwargs["vae"] = AutoencoderKL.from_pretrained(spec.vae, torch_dtype=dtype)
    if spec.kind == "sdxl" and spec.precision == "fp16" and not spec.is_tiny:
        kwargs["variant"] = "fp16"
    if spec.kind == "flux" and spec.transformer_precision in ("nf4", "fp4") and not spec.is_tiny:
        from diffusers import BitsAndBytesConfig, FluxTransformer2DModel

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.transformer_precision,
                                   bnb_4bit_compute_dtype=dtype)
        kwargs["transformer"] = FluxTransformer2DModel.from_pretrained(source, subfolder="transformer",
                                                                       quantization_config=quant, torch_dtype=dtype)
    if progress:
        progress(0.4, "pipeline")
    pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
    if spec.offload and device == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if progress:
        progress(1.0, "ready")
    return pipe


def generate(pipe, settings: ImageSettings, *, on_step: Callable[[int, int], None] | None = None,
             stop: threading.Event | None = None,
             on_latents: Callable[[int, object], None] | None = None) -> ImageResult:
    """One image. ``on_step(step, steps)`` after each denoising step, ``on_latents(step, latents)``
    with the step's latents (for previews); ``stop`` interrupts at the next step."""
    import torch

    kwargs = dict(prompt=settings.prompt, num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                  width=settings.width, height=settings.height,
                  generator=torch.Generator("cpu").manual_seed(settings.seed))
    if settings.negative_prompt and DEFAULTS[settings.role].negative_prompt:
        kwargs["negative_prompt"] = settings.negative_prompt
    if settings.max_sequence_length:
        kwargs["max_sequence_length"] = settings.max_sequence_length

    def callback(pipeline, step, timestep, tensors):
        if on_latents and "latents" in tensors:
            on_latents(step + 1, tensors["latents"])
        if on_step:
            on_step(step + 1, settings.steps)
        if stop is not None and stop.is_set():
            pipeline._interrupt = True
        return tensors

    started = time.perf_counter()
    try:
        with leases.holding(pipe):  # the model cache does not evict a pipeline while it draws
            image = pipe(**kwargs, callback_on_step_end=callback).images[0]
    except Exception as exc:  # noqa: BLE001 - CUDA/MPS out-of-memory comes in several types
        err = as_user_error(exc, settings.model)
        if err is not None and err.key == "err.oom":
            free_accelerator_memory()
            raise err from exc
        raise
    return ImageResult(image=image, settings=settings, seconds=time.perf_counter() - started)


# ------------------------------------------------------------------ streaming with previews
@dataclass
class ImageUpdate:
    """One step of one image, as plain data (picklable: it can cross a ZeroGPU worker's pipe).
    ``preview``: an approximate picture of the latents at this step, or None; ``result``: the
    finished image (last update only)."""

    step: int
    total: int
    preview: Image.Image | None = None
    result: ImageResult | None = None


def generate_stream(pipe, settings: ImageSettings, *, stop: threading.Event | None = None,
                    previews: bool = True) -> Iterator[ImageUpdate]:
    """:func:`generate` as a generator: an update after every denoising step (with a preview at
    :func:`preview_steps`), then one with the finished image. The pipeline runs in a worker
    thread; closing the generator (the page went away) interrupts it at the next step."""
    updates: queue.Queue = queue.Queue()
    halt = threading.Event()
    wanted = preview_steps(settings.steps) if previews else set()

    def on_latents(step: int, latents) -> None:
        picture = None
        if step in wanted:
            try:
                picture = latent_preview(pipe, latents, settings.width, settings.height)
            except Exception as exc:  # noqa: BLE001 - a preview never costs the image
                log.warning("no preview for %s: %s", settings.model, exc)
                wanted.clear()
        updates.put(ImageUpdate(step, settings.steps, picture))

    def work() -> None:
        try:
            updates.put(generate(pipe, settings, stop=LinkedStop(stop, halt), on_latents=on_latents))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            updates.put(exc)

    threading.Thread(target=work, name="image-generate", daemon=True).start()
    try:
        while True:
            item = updates.get()
            if isinstance(item, ImageUpdate):
                yield item
            elif isinstance(item, ImageResult):
                yield ImageUpdate(settings.steps, settings.steps, None, item)
                return
            else:
                raise item
    finally:
        halt.set()


def free_accelerator_memory() -> None:
    """Give back what a failed (out-of-memory) call left in the CUDA cache."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ PNG metadata
def save_png(result: ImageResult, folder: Path, name: str) -> Path:
    info = PngInfo()
    info.add_text(METADATA_KEY, json.dumps(asdict(result.settings), ensure_ascii=False))
    s = result.settings
    info.add_text("parameters", f"{s.prompt}\nNegative prompt: {s.negative_prompt}\nSteps: {s.steps}, "
                                f"CFG scale: {s.guidance}, Seed: {s.seed}, Size: {s.width}x{s.height}, Model: {s.model}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    result.image.save(path, format="PNG", pnginfo=info)
    result.path = path
    return path


def read_png_settings(path: str | Path) -> ImageSettings:
    """The settings stored in a PNG made here, read from its text chunks without decoding a
    pixel: the file's size and the image's dimensions are checked first."""
    raw = read_png_text(path, METADATA_KEY)
    if not raw:
        raise UserError("img.err.no_metadata")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UserError("img.err.no_metadata") from exc
    if not isinstance(data, dict) or data.get("role") not in IMAGE_ROLES:
        raise UserError("img.err.no_metadata")
    return checked_settings(data)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SETTINGS_RANGES = {"steps": (1, 1000), "width": (16, 8192), "height": (16, 8192), "seed": (0, 2**63 - 1),
                   "max_sequence_length": (1, 4096)}


def png_dimensions(path: str | Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR), before Pillow reads anything else."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise UserError("img.err.no_metadata")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def read_png_text(path: str | Path, key: str) -> str | None:
    """One text chunk of a PNG (those before the image data, where :func:`save_png` writes
    them). The pixels are never decoded (no ``load()``): a 13000×13000 PNG costs nothing."""
    limits = current_limits()
    size = Path(path).stat().st_size
    if size > limits.upload_bytes:
        raise UserError("safety.err.file_too_big", size=f"{size / 1e6:.1f}", limit=f"{limits.upload_bytes / 1e6:.0f}")
    width, height = png_dimensions(path)
    if width * height > limits.upload_pixels:
        raise UserError("safety.err.png_too_large", width=width, height=height,
                        limit=f"{limits.upload_pixels / 1e6:g}")
    try:
        with Image.open(path, formats=["PNG"]) as img:
            value = img.info.get(key)  # .text would load() the whole image to find late chunks
    except Exception as exc:  # noqa: BLE001 - truncated or not a PNG (Pillow raises several types)
        raise UserError("img.err.no_metadata") from exc
    return value if isinstance(value, str) else None


def checked_settings(data: dict) -> ImageSettings:
    """:class:`ImageSettings` from untrusted metadata: every field of the right type and range."""
    known = {k: v for k, v in data.items() if k in ImageSettings.__dataclass_fields__}
    for name in ("role", "model", "prompt", "negative_prompt"):
        value = known.get(name, "")
        if not isinstance(value, str) or len(value) > max(300, current_limits().image_prompt_chars):
            raise UserError("safety.err.png_settings", field=name)
    for name, (lo, hi) in SETTINGS_RANGES.items():
        value = known.get(name)
        if value is None and name == "max_sequence_length":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise UserError("safety.err.png_settings", field=name)
    guidance = known.get("guidance", 0.0)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0 <= guidance <= 100:
        raise UserError("safety.err.png_settings", field="guidance")
    return ImageSettings(**known)


# ------------------------------------------------------------------ grids
def _font(size: int):
    for name in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if Path(name).exists():
            return ImageFont.truetype(name, size)
    return ImageFont.load_default(size=size)


def grid(images: list[Image.Image], labels: list[str], columns: int, cell: int = 384,
         row_labels: list[str] | None = None, column_labels: list[str] | None = None,
         legend: list[str] | None = None) -> Image.Image:
    """Images in a labelled grid: a caption under each, optional row and column headers, and an
    optional legend under the grid (long texts, such as whole prompts, written out wrapped).

    Type sizes follow the cell size (readable once the grid is scaled down to fit a page); row
    headers wrap inside a left margin of their own and column headers above their column, so
    neither covers the other."""
    font = _font(max(12, cell // 20))
    head_font = _font(max(13, cell // 15))
    pad = max(6, cell // 40)

    def line_h(f) -> int:
        return f.size + max(2, f.size // 4)

    rows = (len(images) + columns - 1) // columns
    # whatever their length, headers stay inside their margin (a few wrapped lines, then "…")
    row_lines = [_wrap(text, head_font, cell // 2, HEADER_LINES) for text in row_labels or []]
    widest = max((head_font.getlength(x) for lines in row_lines for x in lines), default=0)
    left = int(widest) + 2 * pad if row_labels else 0
    col_lines = [_wrap(text, head_font, cell - 2 * pad, HEADER_LINES) for text in column_labels or []]
    top = max((len(lines) for lines in col_lines), default=0) * line_h(head_font) + 2 * pad if column_labels else 0
    caption_h = 2 * line_h(font) + pad
    width = left + columns * cell
    legend_lines = [line for text in legend or [] for line in _wrap(text, font, width - 2 * pad, LEGEND_LINES) or [""]]
    legend_h = len(legend_lines) * line_h(font) + 2 * pad if legend_lines else 0
    canvas = Image.new("RGB", (width, top + rows * (cell + caption_h) + legend_h), "white")
    draw = ImageDraw.Draw(canvas)
    for c, lines in enumerate(col_lines):
        for k, text in enumerate(lines):
            draw.text((left + c * cell + cell // 2, pad + k * line_h(head_font)), text, font=head_font, fill="#111",
                      anchor="ma")
    for r, lines in enumerate(row_lines[:rows]):
        y0 = top + r * (cell + caption_h) + cell // 2 - len(lines) * line_h(head_font) // 2
        for k, text in enumerate(lines):
            draw.text((pad, y0 + k * line_h(head_font)), text, font=head_font, fill="#111")
    for i, (img, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        x, y = left + c * cell, top + r * (cell + caption_h)
        canvas.paste(img.convert("RGB").resize((cell, cell)), (x, y))
        for k, text in enumerate(_wrap(label, font, cell - 8, 2)):
            draw.text((x + 4, y + cell + 3 + k * line_h(font)), text, font=font, fill="#222")
    y = top + rows * (cell + caption_h) + pad
    for k, text in enumerate(legend_lines):
        draw.text((pad, y + k * line_h(font)), text, font=font, fill="#111")
    return canvas


HEADER_LINES, LEGEND_LINES = 4, 40  # wrapped lines at most per row/column header and per legend entry


def _wrap(text: str, font, width: int, max_lines: int | None = None) -> list[str]:
    """``text`` in lines of at most ``width`` pixels (a word longer than that is cut across lines);
    past ``max_lines`` the last line ends with "…". Bounded work whatever the text's length."""
    cap = (max_lines or 10_000) * max(1, width // max(1, int(font.getlength("i")))) + 1  # characters that can show
    words, lines, line = str(text)[:cap].split(), [], ""
    for w in words:
        while font.getlength(w) > width and len(w) > 1:  # a long word: as much as fits, the rest on
            cut = _longest_prefix(w, font, width)
            if line:
                lines.append(line)
                line = ""
            lines.append(w[:cut])
            w = w[cut:]
        candidate = f"{line} {w}".strip()
        if font.getlength(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = w
    lines += [line] if line else []
    if max_lines is not None and len(lines) > max_lines:
        last = lines[max_lines - 1]
        lines = lines[:max_lines - 1] + [last[:_longest_prefix(last + "…", font, width) - 1] + "…"]
    return lines


def _longest_prefix(text: str, font, width: int) -> int:
    """How many characters of ``text`` fit in ``width`` pixels (at least 1)."""
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


# ------------------------------------------------------------------ sweeps
SWEEP_PARAMS = ("guidance", "steps", "seed", "style")


def parse_values(param: str, raw: str) -> list:
    values = [v.strip() for v in (raw or "").split(",") if v.strip()]
    if not values:
        raise UserError("img.err.sweep_values", param=param)
    try:
        if param == "guidance":
            return [float(v) for v in values]
        if param in ("steps", "seed"):
            return [int(v) for v in values]
    except ValueError as exc:
        raise UserError("img.err.sweep_values", param=param) from exc
    return values


def apply_sweep(settings: ImageSettings, param: str, value) -> ImageSettings:
    if param == "style":
        return replace(settings, prompt=f"{settings.prompt}, {value}")
    return replace(settings, **{param: value})
