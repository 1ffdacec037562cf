"""Seconds per image for the image tab's settings vs plain diffusers defaults, per model and size.

    python bench/images.py [--sizes 64 128]

On CPU the pipelines are the tiny random ones (the ``tiny`` profile); the tab's settings are
each model card's (SDXL Turbo 1 step, FLUX schnell 4 steps, …), diffusers' defaults are what a
plain ``pipe(prompt)`` does (50 steps for SDXL, 28 for FLUX, with classifier-free guidance).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import common  # noqa: F401 - puts the project on sys.path

from engine import imagegen
from engine.catalog import IMAGE_ROLES, load_catalog
from engine.hardware import detect
from engine.models import ModelManager

PROMPT = "a red panda holding a wooden sign that says OPEN LAB, sunny forest"


def seconds(pipe, **kwargs) -> float:
    import torch

    start = time.perf_counter()
    pipe(prompt=PROMPT, generator=torch.Generator("cpu").manual_seed(0), **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    os.environ.setdefault("GENAI_TINY_DIR", tempfile.mkdtemp(prefix="bench-tiny-"))
    hw = detect()
    manager = ModelManager(load_catalog("tiny" if hw.device == "cpu" else "gpu"), hw)
    print(f"{'model':<16} {'size':>5} {'tab steps':>9} {'tab s':>7} {'default steps':>13} {'default s':>9} {'ratio':>6}")
    for role in IMAGE_ROLES:
        spec = manager.catalog.spec(role)
        pipe = manager.pipeline(spec)
        d = imagegen.DEFAULTS[role]
        default_steps = 28 if spec.kind == "flux" else 50
        for size in args.sizes:
            s = replace(imagegen.settings_for(spec, PROMPT), width=size, height=size)
            seconds(pipe, num_inference_steps=1, width=size, height=size)  # warm-up
            tab = seconds(pipe, num_inference_steps=s.steps, guidance_scale=s.guidance, width=size, height=size,
                          **({"max_sequence_length": s.max_sequence_length} if s.max_sequence_length else {}))
            plain = seconds(pipe, width=size, height=size)
            print(f"{d.title:<16} {size:>5} {s.steps:>9} {tab:>7.2f} {default_steps:>13} {plain:>9.2f} {tab / plain:>6.2f}")


if __name__ == "__main__":
    main()
