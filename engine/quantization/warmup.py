"""First-call work of the quantization libraries, done in the background, not on a student's click.

The first comparison of a fresh process used to spend most of its time here: importing
bitsandbytes, optimum-quanto and HQQ, and above all optimum-quanto building its C++ extension
with ninja the first time a packed 4-bit weight is unpacked on CPU (its CUDA kernels likewise on
a GPU); measured 45–110 s on this project's 2-core machine, inside "quanto int4: generate".
:func:`start` runs one tiny quantized layer per method in a daemon thread at start-up (the tab
calls it when it is built); :func:`wait` lets a comparison wait for one method, reporting the
seconds spent, and stops waiting at once when the student presses Stop. A method that cannot be
prepared (no compiler, a read-only install) gets its error once, and the comparison skips it
with that reason instead of failing on every click.

torch builds an extension under a lock file in its build folder and waits for that file to go
away, forever: a process stopped while building (Ctrl-C, SIGTERM, an out-of-memory kill, a Space
restart, a test's app server) leaves it behind, and every later comparison would wait on
"kernels" for good. So the warm-up builds while holding an ``flock`` on a file of its own in that
folder: the kernel releases it when its process dies, whatever the death. Whoever gets the
``flock`` knows no process of this app is building, so a torch lock still there is stale and is
removed (:func:`build_guard`).
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from engine.runtime import forksafe

try:
    import fcntl
except ImportError:  # Windows: torch's own lock only
    fcntl = None

log = logging.getLogger(__name__)
METHODS = ("bitsandbytes", "optimum-quanto", "hqq")  # methods of engine.quantization.variants.VARIANTS with a package
# what each step does, for the progress line (keys of ui/strings/tabsux.py)
WHAT = {"bitsandbytes": "ux.quant.kernels_bnb", "optimum-quanto": "ux.quant.kernels_quanto", "hqq": "ux.quant.kernels_hqq"}
GUARD_NAME = "genai-build.flock"  # our own lock beside torch's


@dataclass
class Step:
    method: str
    device: str
    state: str = "pending"  # pending | running | done | failed
    started: float = 0.0
    seconds: float = 0.0
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)


_steps: dict[tuple[str, str], Step] = {}
_lock = threading.Lock()


@forksafe.at_fork
def _after_fork() -> None:
    """A forked child (a ZeroGPU worker) has a fresh lock and none of the parent's unfinished
    steps: their threads are not there, and waiting for them would never end."""
    global _lock, _steps
    _lock = threading.Lock()
    _steps = {key: step for key, step in _steps.items() if step.done.is_set()}


def _layer(device: str):
    import torch

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    return torch.nn.Linear(256, 256, bias=False).to(device=device, dtype=dtype), torch.randn(2, 256, device=device,
                                                                                          dtype=dtype)


def _bitsandbytes(device: str) -> None:
    import bitsandbytes.functional as F
    import torch

    w, _ = _layer(device)
    with torch.inference_mode():
        packed, state = F.quantize_4bit(w.weight.data, quant_type="nf4")
        F.dequantize_4bit(packed, state)


@contextmanager
def build_guard(build_dirs: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Hold an ``flock`` in each build folder (waiting while another process of the app builds
    there); inside, a torch build lock left in a folder has no living builder and is removed.
    Yields the stale locks removed."""
    handles, removed = [], []
    try:
        for folder in build_dirs:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / GUARD_NAME, "a")  # noqa: SIM115 - held until the build is done
            handles.append(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
            lock = folder / "lock"
            try:
                lock.unlink()
                removed.append(lock)
                log.warning("removed an extension build lock left by a stopped process: %s", lock)
            except FileNotFoundError:
                pass
        yield removed
    finally:
        for handle in handles:
            handle.close()  # releases the flock


def _quanto_build_dirs() -> list[str]:
    import optimum.quanto.library.extensions  # noqa: F401 - registers the extensions
    from optimum.quanto.library.extensions.extension import _extensions

    return [ext.build_directory for ext in _extensions.values()]


def _quanto(device: str) -> None:
    """qint4 and qint2 layers, frozen and run: on CPU the first unpack builds quanto's C++ extension."""
    import torch
    from optimum.quanto import freeze, qint2, qint4, quantize

    with build_guard(_quanto_build_dirs()) if fcntl is not None else nullcontext():
        for qtype in (qint4, qint2):
            layer, x = _layer(device)
            model = torch.nn.Sequential(layer)
            with torch.inference_mode():  # as in variants._quantize_in_place
                quantize(model, weights=qtype)
                freeze(model)
                model(x)


def _hqq(device: str) -> None:
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    for bits in (4, 3, 2):
        layer, x = _layer(device)
        q = HQQLinear(layer, BaseQuantizeConfig(nbits=bits, group_size=64), compute_dtype=layer.weight.dtype,
                      device=device, del_orig=True)
        with torch.inference_mode():
            q(x)


RUNNERS: dict[str, Callable[[str], None]] = {"bitsandbytes": _bitsandbytes, "optimum-quanto": _quanto, "hqq": _hqq}


def _run(step: Step) -> None:
    step.state, step.started = "running", time.perf_counter()
    try:
        RUNNERS[step.method](step.device)
        step.state = "done"
    except Exception as exc:  # noqa: BLE001 - a missing package, no compiler, a read-only install
        step.state, step.error = "failed", f"{type(exc).__name__}: {exc}"[:300]
        log.warning("could not prepare %s on %s: %s", step.method, step.device, step.error)
    finally:
        step.seconds = time.perf_counter() - step.started
        step.done.set()
        log.info("%s kernels on %s: %s in %.1f s", step.method, step.device, step.state, step.seconds)


def ensure(method: str, device: str) -> Step:
    """The step of ``method`` on ``device``, started in a daemon thread if it was not yet."""
    with _lock:
        step = _steps.get((method, device))
        if step is None:
            step = _steps[(method, device)] = Step(method, device)
            if method in RUNNERS:
                threading.Thread(target=_run, args=(step,), name=f"warm-up {method}", daemon=True).start()
            else:  # plain dtypes: nothing to prepare
                step.state = "done"
                step.done.set()
    return step


def start(methods: Iterable[str], device: str) -> list[Step]:
    """Prepare ``methods`` in the background (at start-up); returns at once."""
    return [ensure(m, device) for m in dict.fromkeys(methods) if m in RUNNERS]


def ready(method: str, device: str) -> bool:
    return ensure(method, device).done.is_set()


def wait(method: str, device: str, stop: threading.Event | None = None,
         on_wait: Callable[[float], None] | None = None, poll_s: float = 0.5) -> Step:
    """Block until ``method`` is prepared (or failed); ``on_wait(seconds so far)`` every ``poll_s``.
    Returns early, with the step still running, when ``stop`` is set."""
    step = ensure(method, device)
    began = time.perf_counter()
    while not step.done.wait(poll_s):
        if stop is not None and stop.is_set():
            break
        if on_wait:
            on_wait(time.perf_counter() - began)
    return step


def status() -> list[dict]:
    """Every step so far (About panel, tests)."""
    with _lock:
        return [{"method": s.method, "device": s.device, "state": s.state, "seconds": round(s.seconds, 2),
                 "error": s.error} for s in _steps.values()]
