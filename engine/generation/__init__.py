"""The decode engine every LLM tab uses.

One loop (:class:`DecodeEngine`) owns every running generation. Requests for the same model
are decoded *together* as one batch that requests join (their prompt is prefilled, then copied
into a free row of the batch's preallocated KV cache) and leave (their row is freed) at step
boundaries; requests for different models are stepped in turn by the same loop. So:

* a lone student gets a batch of one (on the model's fast path where it has one);
* a class of students clicking together shares one batched forward per step;
* the two panes of Base vs Instruct advance in one loop, a step of each in turn;
* self-consistency samples and benchmark problems are simply several rows.

Requests are admitted by memory, round-robin between sessions (:mod:`.turns`): whoever does not
fit waits, knows how many are ahead (``StreamUpdate.queue_position``) and waits at most the
profile's ``queue_wait_s``. A failure fails only the requests it touches; nothing that raises
while admitting loses a request. Each row keeps its own sampling settings, seed, token
probabilities and stop event, so batching never changes what a request gets: greedy rows give
the same tokens as when run alone. On ZeroGPU,
where the GPU exists only inside the request's ``@spaces.GPU`` call, the engine runs *inline*:
the request's thread drives the loop.

The package, one concern per module: :mod:`.types` (what callers send and read),
:mod:`.sampling`, :mod:`.kv` (the batch's KV cache), :mod:`.batch` (one model's rows),
:mod:`.admission` (memory budget), :mod:`.turns` (round-robin between sessions), :mod:`.detok`
(text streamed in linear time), :mod:`.loop` (the engine), :mod:`.api` (what tabs call).

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``.
"""
from engine.generation.api import engine, generate_many, set_inline, set_memory, stream, stream_many, submit_any
from engine.generation.batch import ModelBatch
from engine.generation.loop import MAX_BATCH, DecodeEngine
from engine.generation.turns import asking, current_owner, set_owner
from engine.generation.types import Completion, Request, SamplingParams, StreamState, StreamUpdate, TokenInfo

__all__ = ["MAX_BATCH", "Completion", "DecodeEngine", "ModelBatch", "Request", "SamplingParams", "StreamState",
           "StreamUpdate", "TokenInfo", "asking", "current_owner", "engine", "generate_many", "set_inline",
           "set_memory", "set_owner", "stream", "stream_many", "submit_any"]
