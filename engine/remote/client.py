"""LLM roles served by an OpenAI-compatible server (vLLM, TGI, llama.cpp, `transformers serve`…).

The server does the decoding; this module streams its answers into the same
:class:`~engine.generation.StreamUpdate` objects as local models, detects what the server
supports (token log-probabilities, ``n`` > 1, raw ``/v1/completions`` for base models) and
says so instead of degrading silently. The API key comes from the environment and is never
put in a spec, a message or a log line; messages name the URL without its credentials.

Every request is bounded (``engine/limits.py``): an overall deadline, Stop effective within a
fraction of a second even while the server sends nothing, a cap per streamed line and per
answer (``engine/remote/transport.py``).
"""
from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Sequence

import httpx

from engine.models.catalog import ModelSpec
from engine.errors import UserError
from engine.generation.types import Completion, SamplingParams, StreamState, StreamUpdate, TokenInfo
from engine.limits import current as current_limits
from engine.models.llm import PreparedPrompt
from engine.runtime.redact import redact_url, remote_text
from engine.remote.transport import Deadline, error_detail, iter_lines, parse_json, read_capped

# read: the longest silence tolerated between two bytes; the whole request has its own deadline
TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)
CHECK_TIMEOUT = httpx.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
WATCH_INTERVAL_S = 0.1  # how often a running request looks at its Stop event and deadline


def api_key(role: str) -> str | None:
    return (os.environ.get(f"GENAI_{role.upper()}_API_KEY") or os.environ.get("GENAI_ENDPOINT_API_KEY")
            or os.environ.get("OPENAI_API_KEY") or None)


@dataclass
class Capabilities:
    """What the server was seen to do (None: not tried yet)."""

    logprobs: bool | None = None
    n: bool | None = None
    completions: bool | None = None
    extensions: bool | None = None  # top_k / repetition_penalty (vLLM, TGI, llama.cpp accept them)

    def as_dict(self) -> dict:
        return {"logprobs": self.logprobs, "n": self.n, "completions": self.completions,
                "top_k_and_repetition_penalty": self.extensions}


EXTENSION_FIELDS = ("top_k", "repetition_penalty")


def _rejects_extensions(status: int, text: str) -> bool:
    return status in (400, 422) and any(f in text.lower() for f in EXTENSION_FIELDS)


@dataclass
class RemoteLLM:
    spec: ModelSpec
    tokenizer: object | None = None  # local tokenizer to render "what the model sees", if cached
    caps: Capabilities = field(default_factory=Capabilities)
    device: str = "remote"
    load_seconds: float = 0.0
    footprint_bytes: int = 0
    remote: bool = True

    @property
    def url(self) -> str:
        return self.spec.endpoint or ""

    @property
    def shown_url(self) -> str:
        """The URL as messages show it: without ``user:password@`` or secret query values."""
        return redact_url(self.url)

    @property
    def model_name(self) -> str:
        return self.spec.served_name

    @property
    def context_length(self) -> int:
        return 32768

    def check_length(self, prompt: PreparedPrompt, max_new_tokens: int) -> None:
        """The server checks the context length itself (its error is reported as a message)."""

    # ------------------------------------------------------------------ prompts
    def prepare_chat(self, messages: list[dict], system: str | None = None) -> PreparedPrompt:
        msgs = [dict(m) for m in messages]
        if system and system.strip():
            msgs = [{"role": "system", "content": system.strip()}] + msgs
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            try:
                text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                note = "server_template_local_render"
            except Exception:  # noqa: BLE001 - e.g. no system role: show the turns instead
                text, note = _plain_turns(msgs), "server_template"
        else:
            text, note = _plain_turns(msgs), "server_template"
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if self.tokenizer is not None else []
        return PreparedPrompt(text=text, input_ids=ids, templated=True, note=note, messages=msgs)

    def prepare_raw(self, text: str) -> PreparedPrompt:
        ids = list(self.tokenizer(text)["input_ids"]) if self.tokenizer is not None else []
        return PreparedPrompt(text=text, input_ids=ids, templated=False, note="server_raw")

    # ------------------------------------------------------------------- calls
    def _headers(self) -> dict:
        key = api_key(self.spec.role)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def check_reachable(self) -> None:
        """Fail early, with a clear message, if the server is down or refuses the key."""
        try:
            with httpx.stream("GET", f"{self.url}/models", headers=self._headers(), timeout=CHECK_TIMEOUT) as resp:
                status = resp.status_code
                body = read_capped(resp, 256 * 1024, Deadline(15.0)) if status == 200 else b""
        except httpx.HTTPError as exc:
            raise map_http_error(exc, self) from exc
        if status in (401, 403):
            raise UserError("err.endpoint_auth", url=self.shown_url, status=status)
        if status == 200:
            try:
                names = [str(m.get("id"))[:80] for m in json.loads(body).get("data", [])]
            except (ValueError, AttributeError, TypeError):
                names = []
            if names and self.model_name not in names and not any(self.model_name in n for n in names):
                raise UserError("err.endpoint_model", url=self.shown_url, model=self.model_name,
                                served=remote_text(", ".join(names[:5]), 300))

    def _payload(self, prompt: PreparedPrompt, params: SamplingParams, top_probs: int, chat: bool, n: int = 1,
                 stream: bool = True) -> dict:
        body: dict = {"model": self.model_name, "max_tokens": params.max_new_tokens, "stream": stream,
                      "temperature": 0.0 if params.is_greedy else params.temperature,
                      "top_p": 1.0 if params.is_greedy else params.top_p, "seed": params.seed}
        if self.caps.extensions is not False:
            if params.repetition_penalty != 1.0:
                body["repetition_penalty"] = params.repetition_penalty  # vLLM / TGI extension
            if not params.is_greedy and params.top_k:
                body["top_k"] = params.top_k  # vLLM / llama.cpp extension
        if n > 1:
            body["n"] = n
        if chat:
            body["messages"] = prompt.messages or [{"role": "user", "content": prompt.text}]
            if top_probs:
                body["logprobs"], body["top_logprobs"] = True, top_probs
        else:
            body["prompt"] = prompt.text
            if top_probs:
                body["logprobs"] = top_probs
        return body

    def start_request(self, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int = 0,
                      stop: threading.Event | None = None,
                      notify: threading.Condition | None = None) -> "RemoteRequest":
        """A streamed generation on the server, read like a local engine request."""
        return RemoteRequest(self, prompt, params, top_probs=top_probs, stop=stop, notify=notify)

    def use_chat(self, prompt: PreparedPrompt) -> bool:
        return prompt.messages is not None or self.caps.completions is False

    def stream(self, prompt: PreparedPrompt, params: SamplingParams, top_probs: int,
               stop: threading.Event, update: "RemoteRequest") -> None:
        chat = self.use_chat(prompt)
        path = "/chat/completions" if chat else "/completions"
        body = self._payload(prompt, params, top_probs, chat)
        limits = current_limits()
        with httpx.Client(timeout=TIMEOUT, headers=self._headers()) as client:
            with client.stream("POST", self.url + path, json=body) as resp:
                update.attach(resp)  # Stop and the deadline close it from the watcher thread
                if resp.status_code == 404 and not chat:
                    self.caps.completions = False
                    update.note = "no_raw_completions"
                    resp.close()
                    raw = PreparedPrompt(text=prompt.text, input_ids=prompt.input_ids,
                                         messages=[{"role": "user", "content": prompt.text}])
                    return self.stream(raw, params, top_probs, stop, update)
                if resp.status_code >= 400:
                    detail = error_detail(resp)
                    if _rejects_extensions(resp.status_code, detail) and self.caps.extensions is not False:
                        self.caps.extensions = False
                        update.note = "no_extensions"
                        return self.stream(prompt, params, top_probs, stop, update)
                    raise http_status_error(resp.status_code, detail, self)
                if not chat:
                    self.caps.completions = True
                saw_finish = False
                for line in iter_lines(resp, limits.remote_chunk_bytes, self.shown_url):
                    if update.done:  # stopped, or past its deadline (the watcher finished it)
                        return
                    if not line.startswith("data:"):
                        continue  # keep-alive comments and blank lines: the deadline still runs
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = parse_json(data, self.shown_url)
                    if not isinstance(chunk, dict):
                        raise UserError("safety.err.endpoint_not_json", url=self.shown_url,
                                        detail=remote_text(data, 120))
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                        if piece:
                            update.add_piece(piece, _top_from_chunk(choice, chat) if top_probs else None)
                        if top_probs and piece:
                            self.caps.logprobs = bool(choice.get("logprobs"))
                        if choice.get("finish_reason"):
                            saw_finish = True
                            update.finish("eos" if choice["finish_reason"] == "stop" else "length")
                    usage = chunk.get("usage") or {}
                    if usage.get("completion_tokens"):
                        update.n_tokens = int(usage["completion_tokens"])
                    if update.chars > limits.remote_answer_chars:
                        update.note = "answer_capped"
                        update.finish("length")
                        return
                if not saw_finish and not update.done:
                    raise UserError("err.endpoint_broken", url=self.shown_url)

    def _post(self, path: str, body: dict, deadline: Deadline) -> dict:
        """One non-streamed request: the JSON answer, read within the caps and the deadline."""
        limits = current_limits()
        with httpx.Client(timeout=TIMEOUT, headers=self._headers()) as client:
            with client.stream("POST", self.url + path, json=body) as resp:
                if resp.status_code >= 400:
                    detail = error_detail(resp)
                    if _rejects_extensions(resp.status_code, detail) and any(f in body for f in EXTENSION_FIELDS):
                        self.caps.extensions = False
                        retry = {k: v for k, v in body.items() if k not in EXTENSION_FIELDS}
                        return self._post(path, retry, deadline)
                    raise http_status_error(resp.status_code, detail, self)
                data = read_capped(resp, 4 * limits.remote_answer_chars + 65_536, deadline)
        if deadline.passed:
            raise UserError("safety.err.endpoint_deadline", url=self.shown_url, seconds=deadline.seconds)
        answer = parse_json(data, self.shown_url)
        if not isinstance(answer, dict):
            raise UserError("safety.err.endpoint_not_json", url=self.shown_url, detail=remote_text(data, 120))
        return answer

    def generate_many(self, prompts: Sequence[PreparedPrompt], params: SamplingParams, n_per_prompt: int,
                      stop: threading.Event | None) -> list[Completion]:
        """One request per prompt with ``n`` samples if the server honours ``n``; otherwise the
        missing samples are sent as separate concurrent requests (with their own seeds).

        Bounded like a stream: one deadline for the whole call, Stop effective within
        ``WATCH_INTERVAL_S`` (samples not received then come back empty, ``"stopped"``)."""
        deadline = Deadline(current_limits().remote_deadline_s, stop)
        limit = current_limits().remote_answer_chars

        def one(pi: int, sj: int, n: int) -> list[tuple[int, int, str, int, str, float]]:
            started = time.perf_counter()
            p = params if sj == 0 else SamplingParams(**{**params.__dict__, "seed": params.seed + sj})
            chat = self.use_chat(prompts[pi])
            body = self._payload(prompts[pi], p, 0, chat, n=n, stream=False)
            try:
                answer = self._post("/chat/completions" if chat else "/completions", body, deadline)
            except httpx.HTTPError as exc:
                raise map_http_error(exc, self) from exc
            choices = [c for c in (answer.get("choices") or []) if isinstance(c, dict)]
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
            toks = int(usage.get("completion_tokens") or 0) // max(1, len(choices))
            out = []
            for k, choice in enumerate(choices[:n]):
                text = (choice.get("message") or {}).get("content", "") if chat else choice.get("text", "")
                reason = "eos" if choice.get("finish_reason") == "stop" else "length"
                out.append((pi, sj + k, str(text or "")[:limit], toks, reason, time.perf_counter() - started))
            return out

        pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="remote-batch")
        rows: list[tuple] = []
        try:
            rows += self._collect([pool.submit(one, pi, 0, n_per_prompt) for pi in range(len(prompts))], deadline)
            if n_per_prompt > 1 and not deadline.over:
                got = {pi: sum(1 for r in rows if r[0] == pi) for pi in range(len(prompts))}
                self.caps.n = all(v >= n_per_prompt for v in got.values())
                extra = [pool.submit(one, pi, sj, 1) for pi in range(len(prompts))
                         for sj in range(got[pi], n_per_prompt)]
                rows += self._collect(extra, deadline)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a stalled request must not hold the caller
        done = {(r[0], r[1]) for r in rows}
        rows += [(pi, sj, "", 0, "stopped", 0.0) for pi in range(len(prompts)) for sj in range(n_per_prompt)
                 if (pi, sj) not in done]
        return [Completion(text=text, n_tokens=toks, seconds=secs, stop_reason=reason, prompt=prompts[pi],
                           prompt_index=pi, sample_index=sj)
                for pi, sj, text, toks, reason, secs in sorted(rows, key=lambda r: (r[0], r[1]))]

    def _collect(self, futures: list, deadline: Deadline) -> list[tuple]:
        """The rows of the futures that finish before Stop or the deadline (errors re-raised)."""
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=WATCH_INTERVAL_S, return_when=FIRST_EXCEPTION)
            for f in finished:
                if f.exception() is not None:
                    raise f.exception()
            if deadline.stop.is_set():
                break
            if deadline.passed and pending:
                raise UserError("safety.err.endpoint_deadline", url=self.shown_url, seconds=deadline.seconds)
        return [r for f in futures if f.done() and not f.cancelled() and f.exception() is None for r in f.result()]


class RemoteRequest(StreamState):
    """A server-side generation read in a thread; same reading interface as a local Request.

    A second, tiny thread watches the Stop event and the deadline: either ends the request at
    once (the reader may still be blocked on a silent server; its late data is ignored) and
    closes the response."""

    def __init__(self, llm: RemoteLLM, prompt: PreparedPrompt, params: SamplingParams, *, top_probs: int,
                 stop: threading.Event | None, notify: threading.Condition | None) -> None:
        super().__init__(stop, notify)
        self.llm = llm
        self.pieces: list[str] = []
        self.chars = 0
        self.infos: list[TokenInfo] = []
        self.n_tokens = 0
        self.note: str | None = None
        self.top_probs = top_probs
        self._response: httpx.Response | None = None
        self._deadline = Deadline(current_limits().remote_deadline_s, self.stop)
        self._thread = threading.Thread(target=self._run, args=(prompt, params, top_probs), daemon=True,
                                        name="remote-stream")
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="remote-watch")
        self._thread.start()
        self._watcher.start()

    def attach(self, response: httpx.Response) -> None:
        self._response = response
        if self.done:
            self._close()

    def _close(self) -> None:
        resp = self._response
        if resp is not None:
            try:
                resp.close()
            except Exception:  # noqa: BLE001 - closing from another thread may race the reader
                pass

    def _watch(self) -> None:
        while not self.done:
            if self.stop.wait(WATCH_INTERVAL_S):
                self.finish("stopped")
            elif self._deadline.passed:
                self.finish("error", UserError("safety.err.endpoint_deadline", url=self.llm.shown_url,
                                               seconds=f"{self._deadline.seconds:g}"))
            else:
                continue
            self._publish()
            self._close()
            return

    def _run(self, prompt: PreparedPrompt, params: SamplingParams, top_probs: int) -> None:
        try:
            self.llm.stream(prompt, params, top_probs, self.stop, self)
            if self.reason is None:
                self.finish("length")
        except UserError as exc:
            self.finish("error", exc)
        except httpx.HTTPError as exc:
            self.finish("error", map_http_error(exc, self.llm))
        except Exception as exc:  # noqa: BLE001 - a malformed stream, or the watcher closed it
            self.finish("error", UserError("err.endpoint_broken", url=self.llm.shown_url))
            if self.error is not None and self.error.__cause__ is None:
                self.error.__cause__ = exc
        self._publish()

    def add_piece(self, piece: str, top: list[tuple[str, float]] | None) -> None:
        if self.done:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.pieces.append(piece)
        self.chars += len(piece)
        self.n_tokens += 1
        if top is not None:
            prob = next((p for t, p in top if t == piece), top[0][1] if top else 0.0)
            self.infos.append(TokenInfo(id=-1, text=piece, prob=prob, top=top))
        self._publish()

    def update(self) -> StreamUpdate:
        end = self.finished_at or time.perf_counter()
        return StreamUpdate(text="".join(self.pieces), n_tokens=self.n_tokens,
                            ttft_s=(self.first_token_at - self.submitted) if self.first_token_at else None,
                            elapsed_s=end - self.submitted, finished=self.done, stop_reason=self.reason,
                            tokens=list(self.infos), error=self.error)


def _plain_turns(msgs: list[dict]) -> str:
    return "\n".join(f"[{m['role']}] {m['content']}" for m in msgs)


def _top_from_chunk(choice: dict, chat: bool) -> list[tuple[str, float]] | None:
    import math

    lp = choice.get("logprobs")
    if not lp:
        return None
    if chat:
        content = lp.get("content") or []
        if not content:
            return None
        return [(alt["token"], math.exp(alt["logprob"])) for alt in content[-1].get("top_logprobs", [])]
    tops = lp.get("top_logprobs") or []
    if not tops:
        return None
    return sorted(((tok, math.exp(v)) for tok, v in tops[-1].items()), key=lambda x: -x[1])


def map_http_error(exc: BaseException, llm: RemoteLLM) -> UserError:
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return UserError("err.endpoint_unreachable", url=llm.shown_url)
    if isinstance(exc, httpx.TimeoutException):
        return UserError("err.endpoint_timeout", url=llm.shown_url)
    return UserError("err.endpoint_broken", url=llm.shown_url)


def http_status_error(status: int, detail: str, llm: RemoteLLM) -> UserError:
    """``detail``: the error body as short redacted text (``remote_io.error_detail``)."""
    if status in (401, 403):
        return UserError("err.endpoint_auth", url=llm.shown_url, status=status)
    if status == 404 or "model" in detail.lower():
        return UserError("err.endpoint_model", url=llm.shown_url, model=llm.model_name, served=detail)
    return UserError("err.endpoint_status", url=llm.shown_url, status=status, detail=detail)


def load_remote(spec: ModelSpec) -> RemoteLLM:
    """A handle on the server, with a local tokenizer when one is cached (to render templates)."""
    tokenizer = None
    try:
        from transformers import AutoTokenizer

        from engine.models.llm import model_source

        tokenizer = AutoTokenizer.from_pretrained(model_source(spec), local_files_only=not spec.is_tiny)
    except Exception:  # noqa: BLE001 - no local tokenizer: the server's template is described instead
        tokenizer = None
    llm = RemoteLLM(spec=spec, tokenizer=tokenizer)
    llm.check_reachable()
    return llm
