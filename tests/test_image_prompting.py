"""Image prompting: tiny SDXL/FLUX pipelines, defaults per model, grids, PNG settings, errors, API."""
from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

from engine.images import grid as image_grid
from engine.images import png as image_png
from engine.images import imagegen
from engine.models.catalog import IMAGE_ROLES
from engine.errors import UserError
from engine.images.prompt_recipe import apply_preset, assemble


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_every_role_makes_an_image_of_the_requested_size(manager, role):
    spec = manager.catalog.spec(role)
    pipe = manager.pipeline(spec)
    settings = imagegen.settings_for(spec, "a red panda holding a sign that says OPEN", seed=3, tiny=True)
    steps = []
    result = imagegen.generate(pipe, settings, on_step=lambda s, n: steps.append((s, n)))
    assert result.image.size == (64, 64)
    assert steps[-1] == (settings.steps, settings.steps)
    again = imagegen.generate(pipe, settings)
    assert list(again.image.getdata()) == list(result.image.getdata())  # same seed, same image


def test_model_card_defaults_and_disabled_controls():
    d = imagegen.DEFAULTS
    assert (d["sdxl_turbo"].steps, d["sdxl_turbo"].guidance, d["sdxl_turbo"].size) == (1, 0.0, 512)
    assert d["sdxl_base"].size == 1024 and 5 <= d["sdxl_base"].guidance <= 7 and d["sdxl_base"].negative_prompt
    assert (d["flux_schnell"].steps, d["flux_schnell"].max_sequence_length) == (4, 256)
    assert (d["flux_dev"].guidance, d["flux_dev"].max_sequence_length) == (3.5, 512)
    assert set(d["sdxl_turbo"].notes) == {"guidance", "negative"}
    assert set(d["flux_schnell"].notes) == {"guidance", "negative"}
    assert set(d["flux_dev"].notes) == {"negative"} and not d["sdxl_base"].notes


def test_inactive_controls_are_ignored_and_shown_disabled(manager):
    spec = manager.catalog.spec("flux_schnell")
    s = imagegen.settings_for(spec, "x", negative_prompt="blurry", guidance=7.0, steps=3, size=768)
    assert s.guidance == 0.0 and s.negative_prompt == "" and s.steps == 3 and s.width == 768
    from tabs.image_prompting import focus_controls, negative_state

    steps, guidance, size = focus_controls("flux_schnell", "en")
    assert guidance["interactive"] is False and "schnell" in guidance["info"]
    assert steps["interactive"] is True and steps["value"] == 4 and size["value"] == 1024
    steps, guidance, size = focus_controls("sdxl_base", "en")
    assert guidance["interactive"] is True and guidance["value"] == 6.0
    steps, guidance, size = focus_controls("sdxl_base", "fr", use_defaults=True, tiny=True)
    assert not steps["interactive"] and not guidance["interactive"] and "fiche" in steps["info"]
    assert (steps["value"], size["value"]) == (imagegen.TINY_MAX_STEPS, imagegen.TINY_SIZE)
    assert negative_state(["sdxl_turbo", "flux_schnell", "flux_dev"])["interactive"] is False
    assert negative_state(["flux_dev", "sdxl_base"])["interactive"] is True


def test_out_of_memory_becomes_a_user_error():
    import torch

    def pipe(**kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    s = imagegen.ImageSettings(role="sdxl_base", model="stabilityai/stable-diffusion-xl-base-1.0", prompt="p")
    with pytest.raises(UserError) as err:
        imagegen.generate(pipe, s)
    assert err.value.key == "err.oom" and err.value.params["model"] == s.model


def test_grid_layout_and_labels():
    images = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue", "white")]
    out = image_grid.grid(images, ["a", "b", "c", "d"], columns=2, cell=100, row_labels=["row 1", "row 2"],
                        column_labels=["x = 1", "x = 2"])
    assert out.width > 200 and out.height > 200
    assert out.getpixel((out.width - 50, out.height // 2 - 60)) != (255, 255, 255)
    s = imagegen.ImageSettings(role="sdxl_base", model="m", prompt="p", steps=30, guidance=6.0, seed=7)
    assert s.label(1.23) == "SDXL base 1.0 · 30 steps · guidance 6 · seed 7 · 1.2 s"
    assert replace(s, steps=1).label().startswith("SDXL base 1.0 · 1 step · ")


def test_png_metadata_round_trip(tmp_path, manager):
    spec = manager.catalog.spec("sdxl_base")
    settings = imagegen.settings_for(spec, "a lighthouse at dusk", negative_prompt="fog", seed=11, tiny=True)
    result = imagegen.ImageResult(Image.new("RGB", (64, 64)), settings, 0.5)
    path = image_png.save_png(result, tmp_path, "x")
    assert image_png.read_png_settings(path) == settings
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(UserError) as err:
        image_png.read_png_settings(tmp_path / "plain.png")
    assert err.value.key == "img.err.no_metadata"


def test_sweep_values():
    assert image_grid.parse_values("guidance", "2, 5.5") == [2.0, 5.5]
    with pytest.raises(UserError):
        image_grid.parse_values("steps", "a, b")
    s = imagegen.ImageSettings(role="sdxl_base", model="m", prompt="teapot")
    assert image_grid.apply_sweep(s, "style", "watercolor").prompt == "teapot, watercolor"
    assert image_grid.apply_sweep(s, "seed", 5).seed == 5


def test_prompt_builder():
    parts = apply_preset({"subject": "a snail-shaped teapot", "setting": "on a kitchen table"}, "watercolor")
    prompt = assemble(parts)
    assert prompt.startswith("a snail-shaped teapot, on a kitchen table, loose watercolor")
    assert "soft pastel palette" in prompt


def test_gated_and_missing_models(manager, monkeypatch):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    dev = replace(manager.catalog.spec("flux_dev"), id="black-forest-labs/FLUX.1-dev", gated=True)
    with pytest.raises(UserError) as err:
        manager.pipeline(dev)
    assert err.value.key == "err.gated"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = replace(manager.catalog.spec("sdxl_turbo"), id="someone/not-cached-sdxl", params_b=0.001)
    with pytest.raises(UserError) as err:
        manager.pipeline(missing)
    assert err.value.key == "err.not_cached"


def test_estimate_counts_a_4bit_flux_transformer():
    from engine.models.catalog import load_catalog

    t4 = load_catalog("t4", env={}).spec("flux_schnell")
    full = replace(t4, transformer_precision=None, offload=False)
    assert imagegen.estimate_pipeline_bytes(full) == pytest.approx(t4.params_b * 1e9 * 2, rel=1e-6)
    parts = imagegen.component_bytes(t4)  # T5-XXL 4.8B in 16-bit outweighs the 11.9B transformer in 4-bit
    assert parts["text_encoder_2"] == pytest.approx(4.76e9 * 2, rel=0.02)
    assert parts["transformer"] == pytest.approx(11.9e9 * imagegen.BYTES_4BIT, rel=0.02)
    assert imagegen.estimate_pipeline_bytes(t4) == parts["text_encoder_2"]  # offload: the largest component only
    on_gpu = replace(t4, offload=False)
    assert imagegen.estimate_pipeline_bytes(on_gpu) == sum(parts.values())


def test_generate_images_through_gradio_client(client):
    grid, gallery = client.predict("a cat holding a sign that says HELLO", "", "", ["sdxl_turbo", "flux_schnell"], 42,
                                   True, "sdxl_turbo", 1, 0, 512, api_name="/generate_images")
    with Image.open(grid) as img:
        assert img.width > 2 * 64
    assert len(gallery) == 2
    from gradio_client import handle_file

    restored = client.predict(handle_file(gallery[1]["image"]), api_name="/read_png_settings")
    prompt, negative, models, seed, use_defaults, focus, steps, guidance, size, note = restored
    assert prompt == "a cat holding a sign that says HELLO" and models == ["flux_schnell"] and focus == "flux_schnell"
    assert (seed, use_defaults, steps, guidance, size) == (42, False, 2, 0.0, 64)
    assert "64×64" in note


def test_xy_sweep_through_gradio_client(client):
    grid, gallery = client.predict("a snail-shaped teapot", "flux_schnell", "seed", "1, 2", "style", "watercolor, neon",
                                   5, "", api_name="/image_grid_sweep")
    assert len(gallery) == 4
    assert [g["caption"].split(" · ")[3] for g in gallery] == ["seed 1", "seed 2", "seed 1", "seed 2"]
    with Image.open(grid) as img:
        assert img.width > 2 * 256 and img.height > 2 * 256  # two columns, two rows and their headers
