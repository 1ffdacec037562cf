"""Previews while an image denoises: the step's latents as a picture, for the cost of a matrix
product (see :func:`latent_preview` for why not a VAE decode)."""
from __future__ import annotations

from PIL import Image

MAX_PREVIEWS = 8  # per image: enough to watch it form, few enough to cost nothing


def preview_steps(steps: int) -> set[int]:
    """The steps that get a preview: about ``MAX_PREVIEWS`` of them, never the last (the image
    itself comes then); none for a one-step model (SDXL Turbo)."""
    every = max(1, -(-steps // MAX_PREVIEWS))
    return {s for s in range(every, steps, every)}


def latent_preview(pipe, latents, width: int, height: int) -> Image.Image:
    """The latents as a picture, cheaply: a linear map from latent channels to RGB fitted once per
    pipeline on its own VAE (:func:`latent_rgb_map`), at latent resolution, resized to the image.

    A VAE decode every few steps would be exact but costs a full decode each time (and moves the
    VAE onto the GPU under CPU offload); this costs a matrix product per preview. Colours are
    approximate (it is a preview); the picture is what the model holds at this step."""
    import numpy as np

    weights, bias = latent_rgb_map(pipe)
    lat = latents.detach()
    if lat.ndim == 3:  # FLUX packs 2×2 latent patches into tokens
        lat = pipe._unpack_latents(lat, height, width, pipe.vae_scale_factor)
    lat = lat[0].float().cpu().numpy()  # (C, h, w)
    rgb = np.tensordot(weights, lat, axes=([0], [0])) + bias[:, None, None]  # (3, h, w) in [-1, 1]
    pixels = ((np.clip(rgb, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(pixels, "RGB").resize((width, height), Image.BILINEAR)


def latent_rgb_map(pipe):
    """(weights (C, 3), bias (3,)) mapping the pipeline's normalised latents to RGB in [-1, 1].

    Fitted by least squares on this pipeline's own VAE: a few smooth colour fields are encoded,
    normalised the way the pipeline's latents are (``scaling_factor``, ``shift_factor`` or
    ``latents_mean``/``latents_std``), and matched to the fields' colours averaged over each
    latent pixel. No constants copied from elsewhere: it fits SDXL, FLUX and the tiny test
    pipelines alike. Cached on the pipeline (a failure too: no preview rather than a retry per image)."""
    cached = getattr(pipe, "_genai_latent_rgb", None)
    if isinstance(cached, Exception):
        raise cached
    if cached is not None:
        return cached
    try:
        fitted = _fit(pipe.vae)
    except Exception as exc:  # noqa: BLE001 - e.g. a VAE left on the CPU in half precision
        pipe._genai_latent_rgb = exc
        raise
    pipe._genai_latent_rgb = fitted
    return fitted


def _fit(vae):
    import numpy as np
    import torch
    import torch.nn.functional as F

    param = next(vae.parameters())
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.uniform(-1, 1, size=(4, 3, 4, 4)).astype(np.float32))
    # 64 px fields: 4 × 8 × 8 latent pixels for SDXL/FLUX, plenty for 4 or 16 channels + a bias
    fields = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False).clamp(-1, 1)
    with torch.inference_mode():
        raw = vae.encode(fields.to(param.device, param.dtype)).latent_dist.mean.float().cpu()
    cfg = vae.config
    mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        norm = (raw - torch.tensor(mean).view(shape)) * cfg.scaling_factor / torch.tensor(std).view(shape)
    else:
        norm = (raw - (getattr(cfg, "shift_factor", None) or 0.0)) * cfg.scaling_factor
    target = F.adaptive_avg_pool2d(fields, norm.shape[-2:])
    x = norm.permute(0, 2, 3, 1).reshape(-1, norm.shape[1]).numpy()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    solution, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)
