"""Seconds per image in the image tab, and where they go: the pipeline vs its denoiser and VAE alone.

    python bench/images.py [--shape real|small] [--roles sdxl_turbo flux_schnell …] [--size PX] [--max-steps N]

Each pipeline is built in place with random weights from the published configs in
``bench/configs/`` (real SDXL and FLUX.1 shapes; SDXL in fp16, FLUX in bf16) on a GPU, or in
small shapes on CPU, then run through the image tab's own code (``engine.imagegen.settings_for``
and ``generate``) with its model card's settings (steps, guidance, size). Per model:

* seconds per image: the whole ``generate`` call, after a one-step warm-up image;
* the denoiser alone, called once per step with the very inputs the pipeline gave it (the CFG
  batch of SDXL base included), and the VAE decode alone with the pipeline's latents: the ratio
  pipeline ÷ (denoiser + VAE) is what text encoding, the scheduler and image conversion add;
* peak GPU memory during the image, and what the app's model cache books for that model.

Random weights change no timing (the images are noise). The T5 tokenizer of FLUX is stood in
for by Mistral's SentencePiece (no T5 vocabulary ships offline); CLIP's is the real one.
"""
from __future__ import annotations

import argparse
import gc
import json
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from common import CONFIGS, device, device_name, peak_bytes, reset_peak, sync

from engine import imagegen
from engine.catalog import IMAGE_ROLES, load_catalog

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
SMALL = {  # the tiny test pipelines' shapes (engine/tiny_pipelines.py): seconds on CPU
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
    seconds: float  # the whole pipeline call
    denoiser_s: float  # the denoiser alone, once per step
    vae_s: float  # the VAE decode alone
    peak_bytes: int | None
    booked_bytes: int | None  # what the app's model cache books for this model (None for small shapes)

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

    from engine.clip_bpe import clip_tokenizer

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

    from engine.tiny import write_mistral_v1_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="bench-t5tok-"))
    write_mistral_v1_tokenizer(folder, None, max_length=512)
    values = json.loads((folder / "tokenizer_config.json").read_text())
    values["pad_token"] = "<unk>"
    (folder / "tokenizer_config.json").write_text(json.dumps(values))
    return AutoTokenizer.from_pretrained(folder)


def measure(pipe, spec, dev: str, size: int | None, max_steps: int | None, booked: int | None) -> ImageRun:
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
    return ImageRun(spec.role, settings.steps, settings.width, result.seconds, denoiser_s, vae_s, peak, booked)


def timed(fn, dev: str) -> float:
    import time

    sync(dev)
    start = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - start


def run_role(role: str, shape: str, dev: str, size: int | None = None, max_steps: int | None = None) -> ImageRun:
    """Build, measure and free one role's pipeline (real shapes: SDXL fp16, FLUX bf16, as on ZeroGPU)."""
    if shape == "real":
        from engine.hardware import detect
        from engine.models import ModelManager

        catalog = load_catalog("zerogpu", env={})
        spec = catalog.spec(role)
        booked = ModelManager(catalog, detect(env={})).estimate_bytes(spec)
        dtype = torch.float16 if spec.precision == "fp16" else torch.bfloat16
    else:
        spec, booked, dtype = load_catalog("tiny", env={}).spec(role), None, torch.float32
    pipe = build(role, shape, dev, dtype)
    try:
        return measure(pipe, spec, dev, size, max_steps, booked)
    finally:
        del pipe
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("real", "small"), default=None, help="default: real on a GPU, small on CPU")
    parser.add_argument("--roles", nargs="+", choices=IMAGE_ROLES, default=list(IMAGE_ROLES))
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model card's)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap the model card's steps (quick runs)")
    args = parser.parse_args()
    dev = device()
    shape = args.shape or ("real" if dev == "cuda" else "small")
    size = args.size or (None if shape == "real" else 128)
    print(f"device {device_name(dev)} · {shape} shapes · random weights")
    print(f"{'model':<16} {'size':>5} {'steps':>5} {'s/image':>8} {'denoiser s':>10} {'VAE s':>7} "
          f"{'÷ (den.+VAE)':>12} {'peak GB':>8} {'booked GB':>9}")
    for role in args.roles:
        r = run_role(role, shape, dev, size, args.max_steps)
        peak = f"{r.peak_bytes / 1e9:.2f}" if r.peak_bytes is not None else "—"
        booked = f"{r.booked_bytes / 1e9:.2f}" if r.booked_bytes is not None else "—"
        print(f"{imagegen.DEFAULTS[role].title:<16} {r.size:>5} {r.steps:>5} {r.seconds:>8.3f} {r.denoiser_s:>10.3f} "
              f"{r.vae_s:>7.3f} {r.overhead_ratio:>12.2f} {peak:>8} {booked:>9}")
    print("÷ (den.+VAE): the pipeline's time over its denoiser's (all steps) and its VAE decode's, each run alone on "
          "the inputs the pipeline gave them; booked: what the app's model cache counts for that model.")


if __name__ == "__main__":
    main()
