"""One model built at a time in this process.

diffusers builds each of its models inside accelerate's ``init_empty_weights``, which replaces
``nn.Module.register_parameter`` for the whole process and, on exit, puts back what it found on
entry. Two builds overlapping in two threads (two students loading two pipelines, or a pipeline
and an LLM) can put the replacement back for good: from then on every model built anywhere in the
process gets its parameters on the meta device ("Cannot copy out of meta tensor"), or is built
half on meta while another thread's build is running. Every model construction of the app holds
:data:`BUILD_LOCK` (loads of different models wait for each other; they share the disk and the
GPU's copy bandwidth anyway).
"""
from __future__ import annotations

import threading

from engine.runtime import forksafe

BUILD_LOCK = forksafe.RenewedLock(threading.RLock)  # made again in a forked ZeroGPU worker
