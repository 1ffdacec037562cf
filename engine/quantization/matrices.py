"""The weight matrices that part 1 quantizes: a synthetic one (Gaussian weights plus outliers) or
one layer read straight from a checkpoint's safetensors files, cropped to what is analysed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import UserError, as_user_error

MAX_WEIGHTS = 1 << 18  # weights analysed per matrix: enough for stable statistics, instant on CPU
ROW_ALIGN = 256  # the largest GGUF block (TQ2_0, Q6_K): every matrix is cropped to a multiple


@dataclass(frozen=True)
class Matrix:
    """A weight matrix (cropped to at most ``MAX_WEIGHTS``) and where it comes from."""

    values: np.ndarray  # 2-D float32, size a multiple of ROW_ALIGN
    source: str  # "synthetic" or a model id
    name: str
    full_shape: tuple[int, ...]
    stored_dtype: str
    synthetic: tuple[float, int] | None = None  # (σ, outliers) of a synthetic matrix, for the UI's wording

    @property
    def cropped(self) -> bool:
        return int(np.prod(self.full_shape)) != self.values.size

    @property
    def key(self) -> str:
        return f"{self.source}:{self.name}:{self.values.shape}"


@lru_cache(maxsize=16)
def synthetic_matrix(outliers: int = 8, rows: int = 256, cols: int = 1024, std: float = 0.02,
                     seed: int = 0) -> Matrix:
    """Gaussian weights like a trained layer's, plus ``outliers`` weights of 10–25 σ at random places."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, std, size=(rows, cols)).astype(np.float32)
    n = int(max(0, min(outliers, values.size)))
    if n:
        where = rng.choice(values.size, size=n, replace=False)
        magnitude = rng.uniform(10, 25, size=n) * std * rng.choice([-1.0, 1.0], size=n)
        values.reshape(-1)[where] = magnitude.astype(np.float32)
    values.setflags(write=False)
    return Matrix(values, "synthetic", f"gaussian σ={std:g}, {n} outliers", (rows, cols), "float32", (std, n))


def crop(values: np.ndarray, max_weights: int = MAX_WEIGHTS) -> np.ndarray:
    """The first rows of a matrix, at most ``max_weights`` weights, size a multiple of ``ROW_ALIGN``."""
    w = np.asarray(values, dtype=np.float32)
    if w.ndim == 1:
        w = w.reshape(1, -1)
    w = w.reshape(w.shape[0], -1)
    rows, cols = w.shape
    keep = max(1, min(rows, max_weights // max(cols, 1)))
    part = w[:keep]
    if part.size % ROW_ALIGN == 0:
        return np.ascontiguousarray(part)
    flat = w.reshape(-1)[: min(w.size, max(max_weights, ROW_ALIGN))]
    n = flat.size // ROW_ALIGN * ROW_ALIGN
    if n == 0:
        raise UserError("quant.err_matrix_too_small", size=w.size, align=ROW_ALIGN)
    return np.ascontiguousarray(flat[:n].reshape(-1, ROW_ALIGN))


def _checkpoint_dir(model_id: str) -> Path | None:
    if model_id.startswith("tiny/"):
        from engine.models.tiny import tiny_path

        return tiny_path(model_id)
    local = Path(model_id).expanduser()
    return local if local.is_dir() else None


def _weight_map(model_id: str) -> dict[str, Callable[[], Path]]:
    """Tensor name → a function returning the local safetensors file that holds it (downloaded lazily)."""
    folder = _checkpoint_dir(model_id)
    if folder is not None:
        index = folder / "model.safetensors.index.json"
        if index.exists():
            wm = json.loads(index.read_text())["weight_map"]
            return {k: (lambda f=f: folder / f) for k, f in wm.items()}
        from safetensors import safe_open

        out: dict[str, Callable[[], Path]] = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as fh:
                out.update({k: (lambda f=file: f) for k in fh.keys()})
        return out
    from huggingface_hub import hf_hub_download

    try:
        try:
            index = Path(hf_hub_download(model_id, "model.safetensors.index.json"))
            wm = json.loads(index.read_text())["weight_map"]
            return {k: (lambda f=f: Path(hf_hub_download(model_id, f))) for k, f in wm.items()}
        except Exception as exc:  # noqa: BLE001 - a single-file checkpoint has no index
            if type(exc).__name__ != "EntryNotFoundError":
                raise
        file = Path(hf_hub_download(model_id, "model.safetensors"))
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as fh:
            return {k: (lambda f=file: f) for k in fh.keys()}
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise (as_user_error(exc, model_id) or exc) from exc


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in name.replace(".", " . ").split()]


@lru_cache(maxsize=8)
def list_layers(model_id: str) -> tuple[str, ...]:
    """Names of a checkpoint's weight matrices (norms and biases left out)."""
    names = [n for n in _weight_map(model_id) if n.endswith(".weight") and "norm" not in n]
    if not names:
        raise UserError("quant.err_no_layers", model=model_id)
    return tuple(sorted(names, key=_natural_key))


def default_layer(names: tuple[str, ...]) -> str:
    """A feed-forward matrix of a middle block if there is one (what NF4 would quantize)."""
    mlp = [n for n in names if "mlp" in n and ("down" in n or "up" in n)]
    if mlp:
        return mlp[len(mlp) // 2]
    return names[len(names) // 2]


@lru_cache(maxsize=8)
def checkpoint_matrix(model_id: str, name: str, max_weights: int = MAX_WEIGHTS) -> Matrix:
    """One matrix read straight from the safetensors file (only the rows analysed are read)."""
    from safetensors import safe_open

    wm = _weight_map(model_id)
    if name not in wm:
        raise UserError("quant.err_unknown_layer", layer=name, model=model_id)
    file = wm[name]()
    with safe_open(str(file), framework="pt") as fh:
        sl = fh.get_slice(name)
        shape = tuple(sl.get_shape())
        dtype = str(sl.get_dtype())
        if len(shape) < 2:
            raise UserError("quant.err_not_matrix", layer=name, shape=str(shape))
        cols = int(np.prod(shape[1:]))
        rows = max(1, min(shape[0], -(-max_weights // max(cols, 1))))
        part = sl[:rows].float().numpy().reshape(rows, cols)
    values = crop(part, max_weights)
    values.setflags(write=False)
    return Matrix(values, model_id, name, shape, dtype)
