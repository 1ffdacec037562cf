"""The GPU check's T4 row: a class on a 16 GB T4, simulated on any bigger GPU (with ``--smoke``,
on CPU under a simulated budget).

The simulation is what the app would meet on a T4:

* the process may allocate no more than a T4 offers (``torch.cuda.set_per_process_memory_fraction``:
  an allocation past 14.75 GiB raises ``OutOfMemoryError``);
* bf16 is refused as on a T4: ``torch.cuda.is_bf16_supported`` answers as torch does there (True
  with emulation, False without), so the app computes in fp16; at the end no loaded model may
  hold a bf16 tensor;
* the hardware the app detects is a Tesla T4 (``engine.models.hardware.detect``: the ``t4`` profile and
  its 14.57 GB budget);
* the ``t4`` profile's default roles (both Mistral-7B in NF4, the quantization subject, SDXL
  Turbo) are random checkpoints in the real shapes, loaded by the model cache
  (``ModelManager``) through the app's loaders, with their fast paths;
* then at once, through ``engine.gpu_tasks`` as the tabs call it: 10 students on Base vs
  Instruct, one image and one live quantization run with the tab's default precisions.

Goals: every request completes, the peak stays within a T4's memory, no model in use is evicted
(the model cache is watched while it drops models), nothing runs in bf16.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

from common import peak_bytes, reset_peak, save_checkpoint
from gpu_report import Report, Row, Settings, fast_path_state, release_memory

NEEDS = ("bitsandbytes", "diffusers", "mistral_common")
GIB = 1024**3
T4_BYTES = int(14.75 * GIB)  # what torch reports for a T4 ("total capacity of 14.75 GiB")
T4_SLACK = 0.77 / 14.57  # what the t4 defaults leave free: both LLMs and the quantization row in 14.57 GB
PROMPT = "Explain in three sentences why the sky is blue."
IMAGE_PROMPT = "a red panda holding a wooden sign that says OPEN LAB"
QWEN_CONFIG = Path(__file__).resolve().parent / "configs" / "qwen2.5-0.5b-instruct.json"


def rows(s: Settings) -> list[Row]:
    n = s.t4_students
    return [Row("T4: simulated (memory cap, no bf16); profile and budget the app picks"),
            Row("T4: the t4 defaults loaded by the model cache (Base and Instruct, NF4)"),
            Row(f"T4: {n} students on Base vs Instruct + 1 image + 1 live quantization at once", "all complete",
                always=True),
            Row("T4: peak memory", "≤ a T4's 14.75 GiB and the budget", always=True),
            Row("T4: models in use evicted", "none", always=True),
            Row("T4: bf16 tensors in the loaded models", "none", always=True)]


@contextmanager
def simulated_t4(dev: str):
    """The hardware the app detects on a T4, and on CUDA the process capped at a T4's memory."""
    from engine.models.hardware import detect

    real_bf16 = torch.cuda.is_bf16_supported
    torch.cuda.is_bf16_supported = lambda including_emulation=True: bool(including_emulation)  # torch on sm_75
    try:
        if dev == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, T4_BYTES / total), 0)
            real_props = torch.cuda.get_device_properties
            props = SimpleNamespace(name="Tesla T4", total_memory=T4_BYTES, major=7, minor=5, multi_processor_count=40)
            torch.cuda.get_device_properties = lambda device=None: props
            try:
                hardware = detect(env={})
            finally:
                torch.cuda.get_device_properties = real_props
        else:
            hardware = detect(env={})
        yield hardware
    finally:
        torch.cuda.is_bf16_supported = real_bf16
        if dev == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, 0)


def qwen_checkpoint(s: Settings) -> Path:
    """Qwen2.5-0.5B-Instruct's shapes with random weights (Mistral's tokenizer stands in: no Qwen
    vocabulary ships offline), written once like its Hub checkpoint (bf16)."""
    import json

    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = s.folder / "qwen2.5-0.5b"
    if not (folder / ".complete").exists():
        values = json.loads(QWEN_CONFIG.read_text())
        values.pop("model_type", None)
        torch.manual_seed(0)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device(s.dev):
                model = Qwen2ForCausalLM(Qwen2Config(**values))
        finally:
            torch.set_default_dtype(previous)
        save_checkpoint(folder, model)
        del model
        release_memory()
    return folder


def t4_catalog(s: Settings):
    """The ``t4`` profile's catalog, its roles pointed at local random checkpoints in the real
    shapes (smoke: the tiny ones, the image in fp32 on CPU)."""
    import images
    from gpu_check import mistral_checkpoint

    from engine.models.catalog import load_catalog

    catalog = load_catalog("t4", env={})
    specs = catalog.specs
    if s.smoke:
        tiny = load_catalog("tiny", env={})
        for role in ("base_llm", "instruct_llm", "quant_subject", "sdxl_turbo"):
            cpu = s.dev != "cuda" and specs[role].precision == "fp16"
            specs[role] = replace(specs[role], id=tiny.spec(role).id, params_b=tiny.spec(role).params_b, vae=None,
                                  precision="fp32" if cpu else specs[role].precision)
        return catalog
    mistral = str(mistral_checkpoint(s))
    specs["base_llm"] = replace(specs["base_llm"], id=mistral)
    specs["instruct_llm"] = replace(specs["instruct_llm"], id=mistral)
    specs["quant_subject"] = replace(specs["quant_subject"], id=str(qwen_checkpoint(s)))
    target, vae = images.save_role("sdxl_turbo", s.image_shape, s.dev, s.folder / "images", "fp16")
    specs["sdxl_turbo"] = replace(specs["sdxl_turbo"], id=str(target), vae=str(vae))
    return catalog


def bf16_tensors(obj) -> int:
    """bf16 parameters, buffers and static caches of a loaded model or pipeline."""
    modules = [obj.model] if hasattr(obj, "model") else \
        [c for c in getattr(obj, "components", {}).values() if isinstance(c, torch.nn.Module)]
    count = sum(t.dtype == torch.bfloat16 for m in modules for t in (*m.parameters(), *m.buffers()))
    fast = (getattr(obj, "extra", None) or {}).get("fast_path")
    for dec in getattr(fast, "decoders", []):
        count += sum(getattr(layer, "keys", None) is not None and layer.keys.dtype == torch.bfloat16
                     for layer in dec.cache.layers)
    return count


class Watch:
    """Every model the cache drops, whether it was in use, and the bf16 tensors of each model seen."""

    def __init__(self, manager) -> None:
        from engine.models import leases

        self.dropped: list[str] = []
        self.in_use: list[str] = []
        self.bf16: dict[str, int] = {}
        real = manager._drop

        def drop(key: str) -> None:
            entry = manager._entries.get(key)
            if entry is not None:
                self.look(entry.spec.id, entry.obj)
                self.dropped.append(Path(entry.spec.id).name)
                if leases.in_use(entry.obj):
                    self.in_use.append(Path(entry.spec.id).name)
            real(key)

        manager._drop = drop

    def look(self, name: str, obj) -> None:
        self.bf16[Path(name).name] = max(self.bf16.get(Path(name).name, 0), bf16_tensors(obj))


def smoke_budget(manager, catalog, variants: list[str], s: Settings) -> int:
    """On CPU, a budget as tight as a T4's for these models: both LLMs, the quantization run's
    largest precision and the students' KV caches fit; the image only once the LLMs are free."""
    from engine.models import arch
    from engine.quantization.live_runs import peak_bytes as quant_peak

    base = catalog.spec("base_llm")
    llms = sum(manager.estimate_bytes(catalog.spec(r)) for r in ("base_llm", "instruct_llm"))
    quant = quant_peak(manager, catalog.spec("quant_subject"), variants)
    per_token = arch.kv_bytes_per_token(manager._config(base), 4)
    rows = 2 * s.t4_students * 2  # both panes of every student, room for the cache's geometric growth
    slack = (T4_SLACK * (llms + quant)) // (1 - T4_SLACK)  # the share a T4 keeps free beside them
    return llms + quant + rows * (s.prompt + s.tokens + 64) * per_token + int(slack)


def run(s: Settings, rows_: dict[str, Row], report: Report) -> None:
    from engine import gpu_tasks
    from engine.generation import api
    from engine.models.hardware import resolve_profile
    from engine.serving.manager import ModelManager
    from engine.quantization.variants import default_variants

    sim_row, load_row, class_row, peak_row, evict_row, bf16_row = rows_.values()
    catalog = t4_catalog(s)
    with simulated_t4(s.dev) as hardware:
        variants = default_variants(hardware.device, hardware.bf16) if not s.smoke else ["fp32", "nf4"]
        manager = ModelManager(catalog, hardware)
        if hardware.device != "cuda":
            manager = ModelManager(catalog, hardware, budget_bytes=smoke_budget(manager, catalog, variants, s))
        cap = f"capped at {T4_BYTES / GIB:.2f} GiB" if s.dev == "cuda" else "CPU: simulated budget"
        sim_row.measured = f"{hardware.gpu_name or 'no GPU'} ({cap}), bf16 {'yes' if hardware.bf16 else 'no'}; " \
                           f"profile {resolve_profile('auto', hardware)}; budget {manager.budget / 1e9:.2f} GB"
        watch = Watch(manager)
        if api._engine is not None:  # the app's process-wide engine, booking its caches with this manager
            api._engine.close()
            api._engine = None
        api.set_memory(manager)
        gpu_tasks.bind(manager)
        reset_peak(s.dev)
        try:
            started = time.perf_counter()
            handles = [manager.llm(catalog.spec(r)) for r in ("base_llm", "instruct_llm")]
            load_s = time.perf_counter() - started
            for h in handles:
                watch.look(h.spec.id, h)
            load_row.measured = f"{load_s:.1f} s for both; {manager.used_bytes() / 1e9:.2f} GB booked; fast path: " \
                                f"{fast_path_state(handles[0])}"
            del handles
            outcome = at_once(s, catalog, variants)
            for entry in list(manager._entries.values()):
                watch.look(entry.spec.id, entry.obj)
        finally:
            peak = peak_bytes(s.dev)
            if api._engine is not None:
                api._engine.close()
                api._engine = None
            api.set_memory(None)
            manager.clear()
    failures = outcome["failures"]
    class_row.measured = f"{outcome['done']} of {outcome['asked']} done in {outcome['seconds']:.1f} s" + \
                         (f"; {'; '.join(failures[:3])}" if failures else "") + \
                         (f"; quantization: {outcome['quant']}" if outcome["quant"] else "")
    class_row.ok = not failures and outcome["done"] == outcome["asked"]
    booked = f"{manager.peak_bytes / 1e9:.3f} GB booked at most of {manager.budget / 1e9:.3f} GB"
    if peak is not None:
        peak_row.measured = f"{peak / GIB:.2f} GiB allocated at most; {booked}"
        peak_row.ok = peak <= T4_BYTES and manager.peak_bytes <= manager.budget
    else:
        peak_row.measured = f"n/a (CPU); {booked}"
        peak_row.ok = manager.peak_bytes <= manager.budget
    evict_row.measured = ("none" if not watch.in_use else ", ".join(watch.in_use)) + \
        (f" (evicted when unused: {', '.join(dict.fromkeys(watch.dropped))})" if watch.dropped else "")
    evict_row.ok = not watch.in_use
    bf16 = {k: v for k, v in watch.bf16.items() if v}
    bf16_row.measured = "none" if not bf16 else ", ".join(f"{k}: {v}" for k, v in bf16.items())
    bf16_row.ok = not bf16
    for row in outcome["quant_rows"]:
        if row.status == "ok" and row.load_s is not None and row.tok_per_s:
            table = dict(report.figures.get("QUANT_VARIANT_S", ({}, ""))[0])
            table[row.precision] = (round(row.load_s, 1), round(1 / row.tok_per_s, 4))
            report.figure("QUANT_VARIANT_S", table, "(load and quantize s, decode step s) per precision, "
                                                    "measured in the T4 row (a GPU capped at a T4's memory)")


def at_once(s: Settings, catalog, variants: list[str]) -> dict:
    """The class's requests, each in its own thread as Gradio serves them, through ``engine.gpu_tasks``."""
    from engine import gpu_tasks
    from engine.images import imagegen
    from engine.generation import SamplingParams

    base, instr = catalog.spec("base_llm"), catalog.spec("instruct_llm")
    image = catalog.spec("sdxl_turbo")
    params = SamplingParams(max_new_tokens=s.tokens, greedy=True)
    failures: list[str] = []
    done: list[str] = []
    quant: dict = {"rows": [], "state": ""}
    lock = threading.Lock()

    def student(i: int) -> None:
        job = gpu_tasks.CompareJob(base, instr, f"{PROMPT} ({i + 1})", params)
        panes = list(gpu_tasks.call(gpu_tasks.compare, job, key=("t4-student", i)))[-1]
        bad = [p for p in panes if p.update.error is not None or p.update.stop_reason not in ("length", "eos")]
        if bad:
            raise RuntimeError(f"{bad[0].role}: {bad[0].update.error or bad[0].update.stop_reason}")

    def draw() -> None:
        settings = imagegen.settings_for(image, IMAGE_PROMPT, seed=1, tiny=image.is_tiny)
        job = gpu_tasks.ImagesJob((gpu_tasks.ImageItem(image, settings),), owner="t4-image")
        notices: list = []
        events = list(gpu_tasks.call(gpu_tasks.images, job, key=("t4-image",), on_notice=notices.append))
        if not any(isinstance(e, gpu_tasks.ImageDone) for e in events):
            raise RuntimeError(f"no image ({'; '.join(str(n) for n in notices) or 'nothing returned'})")

    def quantize() -> None:
        job = gpu_tasks.QuantizeJob(catalog.spec("quant_subject"), tuple(variants), PROMPT, 16 if s.smoke else 32)
        snap = list(gpu_tasks.call(gpu_tasks.quantize, job, key=("t4-quant",)))[-1]
        quant.update(rows=list(snap.rows), state=snap.state)
        failed = [r.precision for r in snap.rows if r.status == "failed"]
        if snap.state != "done" or failed:
            raise RuntimeError(f"quantization {snap.state}, failed: {', '.join(failed) or '—'}")

    def guarded(name: str, fn, *args) -> None:
        try:
            fn(*args)
            with lock:
                done.append(name)
        except Exception as exc:  # noqa: BLE001 - counted and shown in the row
            with lock:
                failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:80]}")

    work = [(f"student {i + 1}", student, i) for i in range(s.t4_students)] + \
        [("image", draw), ("quantization", quantize)]
    threads = [threading.Thread(target=guarded, args=item, name=item[0]) for item in work]
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    skipped = [f"{r.precision} skipped" for r in quant["rows"] if r.status == "skipped"]
    ok = [r.precision for r in quant["rows"] if r.status == "ok"]
    summary = f"{', '.join(ok)} measured" + (f", {', '.join(skipped)}" if skipped else "") if quant["rows"] else ""
    return {"asked": len(work), "done": len(done), "failures": failures, "seconds": time.perf_counter() - started,
            "quant": summary, "quant_rows": quant["rows"]}
