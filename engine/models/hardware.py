"""What machine we run on, and which catalog profile suits it."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import psutil

GB = 1024**3


@dataclass(frozen=True)
class Hardware:
    cpu_name: str
    cpu_cores: int
    ram_bytes: int
    gpu_name: str | None = None
    gpu_bytes: int = 0
    bf16: bool = False
    space_id: str | None = None
    zerogpu: bool = False

    @property
    def device(self) -> str:
        return "cuda" if self.gpu_name else "cpu"

    def memory_budget(self) -> int:
        """Bytes the model cache may use on the main device (GPU memory, else 70% of RAM)."""
        if self.gpu_name:
            return int(self.gpu_bytes * 0.92)
        return int(self.ram_bytes * 0.7)

    def summary(self) -> str:
        gpu = f"{self.gpu_name} ({self.gpu_bytes / GB:.0f} GB{', bf16' if self.bf16 else ', no bf16'})" if self.gpu_name else "none"
        space = f" · Space {self.space_id}{' (ZeroGPU)' if self.zerogpu else ''}" if self.space_id else ""
        return f"CPU {self.cpu_name} × {self.cpu_cores} · RAM {self.ram_bytes / GB:.0f} GB · GPU {gpu}{space}"


def _zerogpu_present(env: dict[str, str]) -> bool:
    if env.get("SPACES_ZERO_GPU", "").lower() in {"1", "true"}:
        return True
    try:
        from spaces.config import Config  # type: ignore

        return bool(getattr(Config, "zero_gpu", False))
    except Exception:  # noqa: BLE001 - the spaces package is optional off-Space
        return False


def cuda_bf16() -> bool:
    """Whether the CUDA GPU computes in bfloat16 in hardware (compute capability 8.0 and up).

    ``torch.cuda.is_bf16_supported()`` also counts emulation by default, so a T4 (7.5) answers
    True and would run its NF4 compute, embeddings and ``lm_head`` in emulated bf16."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))


def detect(env: dict[str, str] | None = None) -> Hardware:
    import torch

    env = dict(os.environ if env is None else env)
    gpu_name, gpu_bytes, bf16 = None, 0, False
    space_id = env.get("SPACE_ID") or None
    zerogpu = bool(space_id) and _zerogpu_present(env)
    if zerogpu and torch.cuda.is_available():
        # On ZeroGPU the GPU is attached only inside @spaces.GPU calls: a slice of an H200. The
        # package's patched torch answers True here; a CPU build (the wrapper test) stays on CPU.
        gpu_name, gpu_bytes, bf16 = "ZeroGPU (H200 slice)", 70 * GB, True
    elif torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu_name, gpu_bytes = props.name, props.total_memory
        bf16 = cuda_bf16()
    return Hardware(
        cpu_name=platform.processor() or platform.machine(),
        cpu_cores=os.cpu_count() or 1,
        ram_bytes=psutil.virtual_memory().total,
        gpu_name=gpu_name,
        gpu_bytes=gpu_bytes,
        bf16=bf16,
        space_id=space_id,
        zerogpu=zerogpu,
    )


def resolve_profile(requested: str, hw: Hardware) -> str:
    """``auto`` → a profile from the hardware; any other name is returned as is."""
    if requested != "auto":
        return requested
    if hw.zerogpu:
        return "zerogpu"
    if hw.gpu_name is None:
        return "cpu"
    if hw.gpu_bytes >= 22 * GB and hw.bf16:
        return "gpu"
    return "t4"
