"""Image generation for the image-prompting exercise: SDXL Turbo, SDXL base, FLUX schnell/dev.

Each model runs with the defaults of its model card; controls that have no effect on a model
are reported with the reason. An image's settings travel in its PNG metadata
(:mod:`engine.images.png`); grids and parameter sweeps are in :mod:`engine.images.grid`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from engine.models import leases
from engine.runtime.build_lock import BUILD_LOCK
from engine.models.catalog import ModelSpec
from engine.errors import as_user_error
from engine.images.preview import latent_preview, preview_steps
from engine.runtime.stopping import LinkedStop

log = logging.getLogger(__name__)

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
    from engine.models.llm import model_source

    source = model_source(spec)
    dtype = _dtype(spec.precision)
    kwargs: dict = {"torch_dtype": dtype}
    if progress:
        progress(0.1, "components")
    with BUILD_LOCK:  # diffusers' lazy first import is not thread-safe either
        from diffusers import AutoencoderKL, DiffusionPipeline

        if spec.vae and not spec.is_tiny:
            kwargs["vae"] = AutoencoderKL.from_pretrained(spec.vae, torch_dtype=dtype)
        if spec.kind == "sdxl" and spec.precision == "fp16" and not spec.is_tiny:
            kwargs["variant"] = "fp16"
        if spec.kind == "flux" and spec.transformer_precision in ("nf4", "fp4") and not spec.is_tiny:
            from diffusers import BitsAndBytesConfig, FluxTransformer2DModel

            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.transformer_precision,
                                       bnb_4bit_compute_dtype=dtype)
            kwargs["transformer"] = FluxTransformer2DModel.from_pretrained(
                source, subfolder="transformer", quantization_config=quant, torch_dtype=dtype)
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
