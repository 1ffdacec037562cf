"""Seconds per image in the image tab, and where they go: the pipeline vs its denoiser and VAE alone.

    python bench/images.py [--shape real|small] [--roles sdxl_turbo flux_schnell …] [--size PX] [--max-steps N]
                           [--profile gpu|t4|zerogpu] [--dir PATH]

Each pipeline is built with random weights from the published configs in ``bench/configs/``
(real SDXL and FLUX.1 shapes on a GPU, small shapes on CPU), written with ``save_pretrained`` as
the Hub serves it (SDXL as an ``fp16`` variant, with the fp16-safe VAE in a folder of its own,
FLUX in 16-bit), then loaded the way the app loads that role on ``--profile`` (default ``gpu``):
``engine.images.imagegen.load_pipeline`` with the catalog's spec, its id (and VAE) pointed at those
folders, so FLUX's transformer is quantized to NF4 at load time where the catalog says NF4.
The image runs through the image tab's own code (``engine.images.imagegen.settings_for`` and
``generate``) with its model card's settings (steps, guidance, size). Per model:

* load: seconds of the app's loader (``from_pretrained`` from the local folder, NF4 included);
* seconds per image: the whole ``generate`` call, after a one-step warm-up image;
* the denoiser alone, called once per step with the very inputs the pipeline gave it (the CFG
  batch of SDXL base included), and the VAE decode alone with the pipeline's latents: the ratio
  pipeline ÷ (denoiser + VAE) is what text encoding, the scheduler and image conversion add;
* peak GPU memory during the image, and what the app's model cache books for that model.

On CPU the pipelines load in fp32 and FLUX's transformer unquantized: diffusers quantizes with
bitsandbytes on a GPU only ("No GPU found"), so the NF4 load is exercised on a GPU.
Random weights change no timing (the images are noise). The T5 tokenizer of FLUX is stood in
for by Mistral's SentencePiece (no T5 vocabulary ships offline); CLIP's is the real one.
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch

from common import CONFIGS, device, device_name, peak_bytes, reset_peak, sync, timed

from engine.images import imagegen
from engine.models.catalog import IMAGE_ROLES, load_catalog

PROMPT = "a red panda holding a wooden sign that says OPEN LAB, sunny forest"
FILES = {  # role → (kind, {component: config file})
    "sdxl_turbo": ("sdxl", {"scheduler": "scheduler-turbo"}),
    "sdxl_base": ("sdxl", {"scheduler": "scheduler-base"}),
    "flux_schnell": ("flux", {"transformer": "transformer-schnell", "scheduler": "scheduler-schnell"}),
    "flux_dev": ("flux", {"transformer": "transformer-dev", "scheduler": "scheduler-dev"}),
}
COMPONENTS = {"sdxl": ("unet", "vae", "text_encoder", "text_encoder_2"),
              "flux": ("transformer", "vae", "text_encoder", "text_encoder_2")}
_CLIP_SMALL = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
               "projection_dim": 32}
SMALL = {  # the tiny test pipelines' shapes (engine/models/tiny_pipelines.py): seconds on CPU
    "sdxl": {
        "unet": {"block_out_channels": [32, 64], "layers_per_block": 1, "sample_size": 32,
                 "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                 "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "attention_head_dim": [2, 4],
                 "transformer_layers_per_block": [1, 1], "addition_time_embed_dim": 8,
                 "projection_class_embeddings_input_dim": 6 * 8 + 32, "cross_attention_dim": 64, "norm_num_groups": 1},
        "vae": {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2,
                "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "norm_num_groups": 1,
                "sample_size": 64},
        "text_encoder": _CLIP_SMALL, "text_encoder_2": _CLIP_SMALL,
    },
    "flux": {
        "transformer": {"in_channels": 4, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16,
                        "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 32,
                        "axes_dims_rope": [4, 4, 8]},
        "vae": {"block_out_channels": [4], "down_block_types": ["DownEncoderBlock2D"],
                "up_block_types": ["UpDecoderBlock2D"], "layers_per_block": 1, "latent_channels": 1,
                "norm_num_groups": 1, "sample_size": 32},
        "text_encoder": _CLIP_SMALL,
        "text_encoder_2": {"vocab_size": 32000, "d_model": 32, "d_ff": 37, "d_kv": 8, "num_layers": 2, "num_heads": 4},
    },
}


@dataclass
class ImageRun:
    role: str
    steps: int
    size: int
    load_s: float  # the app's loader, from the local folder
    seconds: float  # the whole pipeline call
    denoiser_s: float  # the denoiser alone, once per step
    vae_s: float  # the VAE decode alone
    peak_bytes: int | None
    booked_bytes: int | None  # what the app's model cache books for this model (None for small shapes)
    loaded_as: str = ""  # how the app's loader loaded it (precision, NF4 transformer, offload)

    @property
    def overhead_ratio(self) -> float:
        return self.seconds / (self.denoiser_s + self.vae_s)


def config(kind: str, name: str, shape: str) -> dict:
    values = json.loads((CONFIGS / kind / f"{name}.json").read_text())
    component = name.split("-")[0]
    if shape == "small":
        values.update(SMALL[kind].get(component, {}))
    return values


def build(role: str, shape: str, dev: str, dtype: torch.dtype):
    """The role's pipeline with random weights, built on ``dev`` directly (no CPU copy)."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from engine.models.clip_bpe import clip_tokenizer

    kind, files = FILES[role]
    names = {c: files.get(c, c) for c in (*COMPONENTS[kind], "scheduler")}
    cfg = {c: config(kind, name, shape) for c, name in names.items()}
    scheduler_cls = getattr(diffusers, cfg["scheduler"].pop("_class_name"))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(dev):
            parts = {"vae": diffusers.AutoencoderKL.from_config(cfg["vae"]),
                     "text_encoder": CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])),
                     "tokenizer": clip_tokenizer()}
            if kind == "sdxl":
                parts["unet"] = diffusers.UNet2DConditionModel.from_config(cfg["unet"])
                parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"]))
                parts["tokenizer_2"] = clip_tokenizer()
                pipe_cls = diffusers.StableDiffusionXLPipeline
            else:
                parts["transformer"] = diffusers.FluxTransformer2DModel.from_config(cfg["transformer"])
                parts["text_encoder_2"] = T5EncoderModel(T5Config(**cfg["text_encoder_2"]))
                parts["tokenizer_2"] = t5_stand_in_tokenizer()
                pipe_cls = diffusers.FluxPipeline
    finally:
        torch.set_default_dtype(previous)
    pipe = pipe_cls(scheduler=scheduler_cls.from_config(cfg["scheduler"]), **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@lru_cache(maxsize=1)
def t5_stand_in_tokenizer():
    import tempfile
    from pathlib import Path

    from transformers import AutoTokenizer

    from engine.models.tiny import write_mistral_v1_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-t5tok-"))
    write_mistral_v1_tokenizer(folder, None, max_length=512)
    values = json.loads((folder / "tokenizer_config.json").read_text())
    values["pad_token"] = "<unk>"
    (folder / "tokenizer_config.json").write_text(json.dumps(values))
    return AutoTokenizer.from_pretrained(folder)


def measure(pipe, spec, dev: str, size: int | None, max_steps: int | None, booked: int | None,
            load_s: float = 0.0) -> ImageRun:
    """One image with the model card's settings, then its denoiser and VAE alone on the same inputs."""
    settings = imagegen.settings_for(spec, PROMPT, size=size)
    if max_steps:
        settings = replace(settings, steps=min(settings.steps, max_steps))
    imagegen.generate(pipe, replace(settings, steps=1))  # warm-up: kernels, allocator, autotuning
    denoiser = getattr(pipe, imagegen.DENOISER[spec.kind])
    seen: dict = {}

    def keep_inputs(module, args, kwargs):
        seen.setdefault("denoiser", (args, kwargs))

    decode = pipe.vae.decode

    def keep_latents(*args, **kwargs):
        seen.setdefault("vae", (args, kwargs))
        return decode(*args, **kwargs)

    hook = denoiser.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    pipe.vae.decode = keep_latents
    try:
        reset_peak(dev)
        result = imagegen.generate(pipe, settings)
        peak = peak_bytes(dev)
    finally:
        hook.remove()
        del pipe.vae.decode  # back to the class's method
    with torch.inference_mode():
        args, kwargs = seen["denoiser"]
        denoiser_s = timed(lambda: [denoiser(*args, **kwargs) for _ in range(settings.steps)], dev)
        args, kwargs = seen["vae"]
        vae_s = timed(lambda: pipe.vae.decode(*args, **kwargs), dev)
    return ImageRun(spec.role, settings.steps, settings.width, load_s, result.seconds, denoiser_s, vae_s, peak, booked,
                    loaded_as(spec))


def loaded_as(spec) -> str:
    quant = f", transformer {spec.transformer_precision}" if spec.transformer_precision else ""
    return f"{spec.precision}{quant}{', CPU offload' if spec.offload else ''}"


def app_spec(role: str, profile: str, dev: str):
    """The role's spec as the app loads it on ``profile``; on CPU in fp32 with the transformer
    unquantized (diffusers' bitsandbytes loader needs a GPU)."""
    spec = load_catalog(profile, env={}).spec(role)
    if dev != "cuda":
        spec = replace(spec, precision="fp32", transformer_precision=None, offload=False)
    return spec


def save_role(role: str, shape: str, dev: str, folder: Path, precision: str) -> tuple[Path, Path | None]:
    """The role's random pipeline written as the Hub serves it, once: (pipeline folder, the folder
    of its VAE for the spec's ``vae`` override, SDXL only)."""
    kind = FILES[role][0]
    target = folder / f"{role}-{shape}-{precision}"
    vae = folder / f"{role}-{shape}-{precision}-vae" if kind == "sdxl" else None
    if (target / ".complete").exists():
        return target, vae
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    pipe = build(role, shape, dev, dtype)
    shutil.rmtree(target, ignore_errors=True)
    pipe.save_pretrained(target, variant="fp16" if precision == "fp16" and kind == "sdxl" else None)
    if vae is not None:
        pipe.vae.save_pretrained(vae)
    del pipe
    release()
    (target / ".complete").touch()
    return target, vae


def load_as_app(role: str, shape: str, dev: str, folder: Path, profile: str = "gpu"):
    """(pipeline, its spec, load seconds): ``engine.images.imagegen.load_pipeline`` on the role's spec for
    ``profile``, its id and VAE pointed at the random checkpoint written by :func:`save_role`."""
    spec = app_spec(role, profile, dev)
    target, vae = save_role(role, shape, dev, folder, spec.precision)
    local = replace(spec, id=str(target), vae=str(vae) if (spec.vae and vae) else None)
    started = time.perf_counter()
    pipe = imagegen.load_pipeline(local, dev)
    sync(dev)
    return pipe, local, time.perf_counter() - started


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_role(role: str, shape: str, dev: str, size: int | None = None, max_steps: int | None = None,
             profile: str = "gpu", folder: Path | None = None, keep: bool = True) -> ImageRun:
    """Write, load through the app's loader, measure and free one role's pipeline. ``keep=False``
    deletes its folder afterwards (a real-shape FLUX checkpoint takes 34 GB of disk)."""
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="bench-images-")) if own else folder
    booked = None
    if shape == "real":
        from engine.models.hardware import detect
        from engine.serving.manager import ModelManager

        catalog = load_catalog(profile, env={})
        booked = ModelManager(catalog, detect(env={})).estimate_bytes(catalog.spec(role))
    pipe, spec, load_s = load_as_app(role, shape, dev, folder, profile)
    try:
        return measure(pipe, spec, dev, size, max_steps, booked, load_s)
    finally:
        del pipe
        release()
        if own or not keep:
            shutil.rmtree(folder if own else Path(spec.id), ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("real", "small"), default=None, help="default: real on a GPU, small on CPU")
    parser.add_argument("--roles", nargs="+", choices=IMAGE_ROLES, default=list(IMAGE_ROLES))
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model card's)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap the model card's steps (quick runs)")
    parser.add_argument("--profile", choices=("gpu", "t4", "zerogpu"), default="gpu",
                        help="load each role as the app does on this profile (default gpu)")
    parser.add_argument("--dir", default=None, help="where the random checkpoints are written (default: a temporary "
                                                    "folder, deleted at the end)")
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("real" if dev == "cuda" else "small")
    size = args.size or (None if shape == "real" else 128)
    print(f"device {device_name(dev)} · {shape} shapes · random weights · loaded as on the {args.profile} profile")
    print(f"{'model':<16} {'loaded as':<28} {'load s':>7} {'size':>5} {'steps':>5} {'s/image':>8} {'denoiser s':>10} "
          f"{'VAE s':>7} {'÷ (den.+VAE)':>12} {'peak GB':>8} {'booked GB':>9}")
    folder = Path(args.dir) if args.dir else None
    for role in args.roles:
        r = run_role(role, shape, dev, size, args.max_steps, args.profile, folder)
        peak = f"{r.peak_bytes / 1e9:.2f}" if r.peak_bytes is not None else "—"
        booked = f"{r.booked_bytes / 1e9:.2f}" if r.booked_bytes is not None else "—"
        print(f"{imagegen.DEFAULTS[role].title:<16} {r.loaded_as:<28} {r.load_s:>7.2f} {r.size:>5} {r.steps:>5} "
              f"{r.seconds:>8.3f} {r.denoiser_s:>10.3f} {r.vae_s:>7.3f} {r.overhead_ratio:>12.2f} {peak:>8} {booked:>9}")
    print("÷ (den.+VAE): the pipeline's time over its denoiser's (all steps) and its VAE decode's, each run alone on "
          "the inputs the pipeline gave them; load: the app's loader (engine.images.imagegen.load_pipeline) reading the "
          "random checkpoint; booked: what the app's model cache counts for that model.")


if __name__ == "__main__":
    main()
