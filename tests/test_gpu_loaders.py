"""The image loaders as the GPU profiles configure them, run on CPU from checkpoints written the way
``bench/gpu_check.py`` writes them (``bench/images.py``: as the Hub serves them).

diffusers quantizes with bitsandbytes on a GPU only ("No GPU found"), so the NF4 transformer of
FLUX is loaded for real by the GPU check; here the loader's request is checked (a 4-bit NF4
config with the profile's compute dtype, handed to ``FluxTransformer2DModel.from_pretrained``)
and the rest of the load runs for real.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import torch

from engine.images import imagegen
from engine.models.catalog import load_catalog
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import images  # noqa: E402  (bench/images.py)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-loaders")


@pytest.mark.parametrize("profile, dtype", [("gpu", torch.bfloat16), ("t4", torch.float16)])
def test_flux_loads_its_transformer_in_nf4_where_the_catalog_says_so(folder, monkeypatch, profile, dtype):
    from diffusers import FluxTransformer2DModel

    spec = load_catalog(profile, env={}).spec("flux_schnell")
    assert spec.transformer_precision == "nf4"
    target, _ = images.save_role("flux_schnell", "small", "cpu", folder, spec.precision)
    asked: list[dict] = []
    real = FluxTransformer2DModel.from_pretrained.__func__

    def from_pretrained(cls, source, **kwargs):
        asked.append(dict(kwargs, source=str(source)))
        kwargs.pop("quantization_config")  # bitsandbytes' diffusers loader needs a GPU: the rest loads for real
        return real(cls, source, **kwargs)

    monkeypatch.setattr(FluxTransformer2DModel, "from_pretrained", classmethod(from_pretrained))
    pipe = imagegen.load_pipeline(replace(spec, id=str(target)), "cpu")
    (call,) = asked
    quant = call["quantization_config"]
    assert call["source"] == str(target) and call["subfolder"] == "transformer"
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_compute_dtype == dtype
    assert pipe.transformer.dtype == dtype and pipe.text_encoder_2.dtype == dtype


def test_sdxl_loads_the_fp16_variant_with_its_vae_override(folder):
    spec = load_catalog("gpu", env={}).spec("sdxl_turbo")
    assert spec.precision == "fp16" and spec.vae  # the fp16-safe VAE, from its own repository
    target, vae = images.save_role("sdxl_turbo", "small", "cpu", folder, "fp16")
    assert list((target / "unet").glob("*.fp16.safetensors"))  # written as the Hub serves the fp16 variant
    pipe = imagegen.load_pipeline(replace(spec, id=str(target), vae=str(vae)), "cpu")
    assert pipe.unet.dtype == torch.float16 and pipe.vae.dtype == torch.float16
    assert pipe.vae.config._name_or_path == str(vae)
