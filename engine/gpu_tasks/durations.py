"""How many seconds of GPU each call asks ZeroGPU for, from what the request contains.

ZeroGPU schedules a call for the ``duration`` it requests: a short request gets priority in the
queue and is checked against the visitor's daily quota, a call that runs past it may be aborted.
So each request is sized from its contents (tokens, rounds of calls, steps, images, models that
must be loaded first), capped at :data:`MAX_S`; the call itself stops :data:`MARGIN_S` before the
end (its partial results are kept) rather than being killed.

The per-unit figures below are estimates for the ``zerogpu`` profile (half an H200: the
3g.71gb MIG slice), derived from the H100 measurements in this project's notes (plain eager
bf16 decoding of Mistral-7B at 24–48 tok/s; FLUX 176 ms and SDXL 123 ms per 1024² step at full
H100 compute), taken at half the compute and rounded up. They were not measured on ZeroGPU;
``python bench/gpu_check.py`` on a GPU prints the per-step and per-load figures it measured in
this module's form (names and units as below), to replace these once scaled to the slice.
"""
from __future__ import annotations

import math

from typing import Callable

from engine.models.catalog import PRECISIONS, ModelSpec
from engine.gpu_tasks.jobs import BenchmarkJob, CompareJob, FragilityJob, ImagesJob, QuantizeJob, TechniqueJob

Resident = Callable[[ModelSpec], bool]  # is this model already loaded (on ZeroGPU: placed on CUDA at start-up)?

OVERHEAD_S = 10.0  # a fresh worker: fork, CUDA set-up, resident weights copied to the GPU; prefill
MARGIN_S = 3.0  # the call stops itself this long before its duration ends (OVERHEAD_S in a fresh worker)
MAX_S = 300.0  # the longest call the app requests
LLM_STEP_S = 0.04  # one decode step of one 7B bf16 model (25 tok/s)
BATCH_ROW = 0.2  # each extra row in a batch adds this share of a step (memory-bound decoding)
MAX_ROWS = 32  # rows decoded together (engine.generation.MAX_BATCH); more wait for the next batch
LOAD_LLM_S = 30.0  # a 7B model that is not resident: read from the local cache onto the GPU

# Quantization tab, per precision: (load and quantize s, decode step s) for a 7B model.
QUANT_VARIANT_S: dict[str, tuple[float, float]] = {
    "fp32": (45.0, 0.08), "bf16": (LOAD_LLM_S, LLM_STEP_S), "fp16": (LOAD_LLM_S, LLM_STEP_S),
    "int8": (40.0, 0.13), "nf4": (40.0, 0.05), "nf4-dq": (40.0, 0.05), "fp4": (40.0, 0.05),
    "quanto-int4": (50.0, 0.2), "quanto-int2": (50.0, 0.2),
    "hqq-4": (60.0, 0.1), "hqq-3": (60.0, 0.1), "hqq-2": (60.0, 0.1),
}
PERPLEXITY_S = 2.0  # two short passages, one forward each

# Images: seconds per denoising step at 1024² without classifier-free guidance (×2 with it),
# load time when the pipeline is not resident, and per image (text encoders, VAE decode).
IMAGE_STEP_S = {"sdxl": 0.15, "flux": 0.5}
IMAGE_LOAD_S = {"sdxl": 20.0, "flux": 60.0}
IMAGE_FIXED_S = 2.0


def _cap(seconds: float) -> float:
    return float(min(MAX_S, math.ceil(seconds)))


def llm_rounds(rounds: float, max_new_tokens: int, rows: int = 1, models: int = 1) -> float:
    """Seconds for ``rounds`` sequential generations of ``rows`` rows each, per model stepped."""
    batches = math.ceil(max(1, rows) / MAX_ROWS)
    per_batch = 1 + BATCH_ROW * (min(rows, MAX_ROWS) - 1)
    return rounds * max_new_tokens * LLM_STEP_S * per_batch * batches * models


def compare(job: CompareJob, resident: Resident) -> float:
    source = job.source
    if source is not None and source.mode == "with_without":  # one model, two rows (without / with the source)
        spec = job.instruct if source.role == "instruct" else job.base
        return _cap(OVERHEAD_S + _load(spec, resident) + llm_rounds(1, job.params.max_new_tokens, rows=2))
    loads = _load(job.base, resident) + _load(job.instruct, resident)
    return _cap(OVERHEAD_S + loads + llm_rounds(1, job.params.max_new_tokens, models=2))


def technique_rounds(technique: str, settings, task=None) -> tuple[float, int]:
    """(sequential generations, rows per generation) of one run of a technique (``task``: the
    problem, where the technique's rows depend on it)."""
    if technique == "ask_me_anything":  # all reformulations in one batch, then all answers
        from engine.techniques.ama import rows_per_round

        return 2, rows_per_round(task, settings) if task is not None else settings.n_chains
    if technique == "self_consistency":
        return 1, settings.n_samples
    if technique == "least_to_most":
        return 2 + settings.max_subquestions, 1
    if technique == "self_refine":
        return 1 + 2 * settings.rounds, 1
    if technique == "tree_of_thoughts":  # propose (k samples) then score (a few tokens) per level
        score = min(1.0, settings.score_tokens / max(1, settings.params.max_new_tokens))
        return settings.depth * (1 + score) + 1, settings.k_thoughts
    return 1, 1


def _load(spec, resident: Resident) -> float:
    return 0.0 if spec.endpoint or resident(spec) else LOAD_LLM_S


def technique(job: TechniqueJob, resident: Resident) -> float:
    rounds, rows = technique_rounds(job.technique, job.settings, job.task)
    return _cap(OVERHEAD_S + _load(job.model, resident)
                + llm_rounds(rounds, job.settings.params.max_new_tokens, rows))


def benchmark(job: BenchmarkJob, resident: Resident) -> float:
    seconds = OVERHEAD_S + _load(job.model, resident)
    for name in job.techniques:  # each technique runs on all the problems at once
        rounds, _ = technique_rounds(name, job.settings)
        rows = sum(technique_rounds(name, job.settings, task)[1] for task in job.tasks)
        seconds += llm_rounds(rounds, job.settings.params.max_new_tokens, rows)
    return _cap(seconds)


def fragility(job: FragilityJob, resident: Resident) -> float:
    """Every (variant, problem) row once, in batches of whole problems (one generation each)."""
    rows = len(job.variants) * len(job.tasks)
    return _cap(OVERHEAD_S + _load(job.model, resident) + llm_rounds(1, job.settings.params.max_new_tokens, rows))


def quantize(job: QuantizeJob, resident: Resident) -> float:
    seconds = OVERHEAD_S
    for variant in job.variants:
        load, step = QUANT_VARIANT_S.get(variant, (60.0, 0.2))
        if variant in PRECISIONS and resident(job.model.with_precision(variant)):
            load = 0.0
        seconds += load + step * (job.max_new_tokens + 3) + PERPLEXITY_S  # + the 3-token warm-up
    return _cap(seconds)


def images(job: ImagesJob, resident: Resident) -> float:
    seconds, loaded = OVERHEAD_S, set()
    for item in job.items:
        s, kind = item.settings, item.spec.kind
        if item.spec.key not in loaded and not resident(item.spec):
            seconds += IMAGE_LOAD_S.get(kind, 60.0)
        loaded.add(item.spec.key)
        cfg = 2 if (kind == "sdxl" and s.guidance > 1) else 1
        seconds += IMAGE_FIXED_S + s.steps * IMAGE_STEP_S.get(kind, 0.5) * cfg * (s.width * s.height) / 1024**2
    return _cap(seconds)
