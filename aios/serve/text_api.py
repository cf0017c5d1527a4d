"""`/v1/completions` and `/v1/chat/completions`: text, whole or streamed.

Two streaming formats (`stream_format`, an aios extra):

- `openai` (default): OpenAI's chunks, each carrying new text to append. A diffusion model does
  not write left to right, so a chunk carries the text that has become final at the front: the
  generated positions before the first still-masked one (tokens are never re-masked by the
  default samplers, so what was sent stays true).
- `steps`: one event per denoising step with the *whole* partial completion, still-masked
  positions shown as the head's placeholder (░), plus `aios: {step, steps, masked}`: what a
  client draws to show the text forming.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from aios.serve.batching import Cancelled, DeadlineExceeded, Overloaded
from aios.serve.catalog import ModelCatalog, ServedModel
from aios.serve.errors import ApiError
from aios.serve.generation import RequestHead, TextOutcome, build_sampler, run_generation
from aios.serve.http import sse, watch_disconnect
from aios.serve.metrics import ServerMetrics
from aios.serve.schemas import ChatRequest, CompletionRequest
from aios.serve.settings import ServeSettings

__all__ = ["TextApi"]

log = logging.getLogger("aios.serve")


@dataclass
class TextJob:
    """One text request, validated, with the model that serves it."""

    served: ServedModel
    body: CompletionRequest | ChatRequest
    prompt: str
    max_tokens: int | None
    chat: bool
    id: str
    created: int


def cut_at_stop(text: str, stops: list[str] | None) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    if not stops:
        return text, False
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


class TextApi:
    def __init__(self, catalog: ModelCatalog, settings: ServeSettings,
                 metrics: ServerMetrics) -> None:
        self.catalog = catalog
        self.settings = settings
        self.metrics = metrics

    # -- building the job ----------------------------------------------------------------------

    def job(self, body: CompletionRequest | ChatRequest, served: ServedModel) -> TextJob:
        if body.memory and self.catalog.storage is None:
            raise ApiError(400, "memory was asked for but this server has no memory store; "
                                "start it with `aios serve --memory DIR`", param="memory",
                           code="no_memory")
        chat = isinstance(body, ChatRequest)
        if chat:
            messages = [(m.role, m.text()) for m in body.messages if m.text()]
            template = getattr(served.engine.head, "chat_prompt", None)
            prompt = (template(messages) if callable(template)
                      else "\n".join(text for _, text in messages))
            max_tokens = body.max_completion_tokens or body.max_tokens
            param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        else:
            prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
            max_tokens, param = body.max_tokens, "max_tokens"
        limit = served.max_tokens()
        if max_tokens is not None and limit is not None and max_tokens >= limit:
            raise ApiError(400, f"{param} is {max_tokens} but the model {served.id!r} holds "
                                f"{limit} tokens in all (prompt included); ask for fewer",
                           param=param, code="max_tokens_too_large")
        kind = "chatcmpl" if chat else "cmpl"
        return TextJob(served, body, prompt, max_tokens, chat, f"{kind}-{uuid.uuid4().hex[:24]}",
                       int(time.time()))

    # -- endpoints -----------------------------------------------------------------------------

    async def respond(self, request: Request, body: CompletionRequest | ChatRequest) -> Any:
        # A model not built yet loads now, off the event loop (other requests go on).
        served = await asyncio.to_thread(self.catalog.get, body.model, "text")
        job = self.job(body, served)
        # Refuse at once when full, before a stream's 200 is sent.
        admission = job.served.admission
        if admission.active >= admission.max_active and admission.waiting >= admission.max_queue:
            raise Overloaded(admission.retry_after())
        if body.stream:
            return StreamingResponse(self._stream(request, job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})
        outcome = await self._generate(request, job, None)
        return JSONResponse(self._whole(job, outcome))

    async def _generate(self, request: Request, job: TextJob,
                        events: asyncio.Queue[Any] | None) -> TextOutcome:
        """Run the generation in a worker thread; `events` gets each step (when streaming)."""
        served, body = job.served, job.body
        sampler = build_sampler(served.engine, body.sampler, body.temperature, body.top_p)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.settings.timeout_s
        stable = body.stream_format == "openai"
        guard: Any = None
        head: Any = None

        def on_step(step: int, num_steps: int, state: Any) -> None:
            if events is None:
                return
            texts = head.completions(state, head.request, stable=stable)
            masked = int((np.asarray(state.tokens) == state.mask_id).sum())
            loop.call_soon_threadsafe(events.put_nowait, ("step", step, num_steps, texts, masked))

        options: dict[str, Any] = {}
        if job.max_tokens is not None:
            options["length"] = job.max_tokens
        if body.suffix:
            options["suffix"] = body.suffix
        prompt: Any = job.prompt if body.n == 1 else [job.prompt] * body.n

        def work() -> TextOutcome:
            try:
                _output, engine = run_generation(
                    served.engine, head, sampler, prompt, steps=body.steps, seed=body.seed,
                    memory=body.memory, options=options, on_step=on_step)
            finally:
                guard.leave()
            final = head.final
            texts = head.completions(final, head.request)
            prompt_tokens, generated, ended = head.token_counts(final)
            retrieved = [{"text": c.text, "score": float(c.score),
                          "source": getattr(c, "source", None)}
                         for c in (engine.last_request.context if engine.last_request else ())
                         if hasattr(c, "score")]
            return TextOutcome(texts, int(prompt_tokens[0]), generated, ended, retrieved)

        started = time.monotonic()
        self.metrics.queue_depth.labels(served.id).set(served.admission.depth + 1)
        async with served.admission.slot():
            # The seat in the batch is taken only now: a queued request must not hold it.
            guard = served.guard(deadline)
            head = RequestHead(served.engine.head, guard, served.setup_lock)
            self.metrics.queue_depth.labels(served.id).set(served.admission.depth)
            self.metrics.active.labels(served.id).inc()
            watcher = watch_disconnect(request, guard.leave)
            try:
                outcome = await loop.run_in_executor(served.executor, work)
            except Cancelled:
                self.metrics.failures.labels(served.id, "disconnected").inc()
                raise
            except DeadlineExceeded:
                self.metrics.failures.labels(served.id, "timeout").inc()
                raise ApiError(504, f"the generation took longer than the server's limit of "
                                    f"{self.settings.timeout_s:g} s; ask for fewer steps or "
                                    "tokens", code="timeout") from None
            finally:  # also when the stream's client went away and this task was cancelled
                guard.leave()
                watcher.cancel()
                self.metrics.active.labels(served.id).dec()
        tokens = sum(outcome.completion_tokens)
        self.metrics.tokens.labels(served.id).inc(tokens)
        self.metrics.tokens_per_second.labels(served.id).observe(
            tokens / max(time.monotonic() - started, 1e-9))
        return outcome

    # -- answers -------------------------------------------------------------------------------

    def _choices(self, job: TextJob, outcome: TextOutcome) -> list[tuple[str, str]]:
        """(text, finish_reason) per choice, stop strings applied."""
        choices = []
        for text, ended in zip(outcome.texts, outcome.ended, strict=True):
            cut, stopped = cut_at_stop(text, job.body.stop)  # type: ignore[arg-type]
            choices.append((cut, "stop" if stopped or ended else "length"))
        return choices

    def _whole(self, job: TextJob, outcome: TextOutcome) -> dict[str, Any]:
        choices = self._choices(job, outcome)
        completion_tokens = sum(outcome.completion_tokens)
        answer: dict[str, Any] = {
            "id": job.id, "object": "chat.completion" if job.chat else "text_completion",
            "created": job.created, "model": job.served.id,
            "choices": [
                ({"index": i, "message": {"role": "assistant", "content": text},
                  "finish_reason": reason, "logprobs": None} if job.chat else
                 {"index": i, "text": text, "finish_reason": reason, "logprobs": None})
                for i, (text, reason) in enumerate(choices)],
            "usage": {"prompt_tokens": outcome.prompt_tokens,
                      "completion_tokens": completion_tokens,
                      "total_tokens": outcome.prompt_tokens + completion_tokens},
        }
        if outcome.retrieved:
            answer["aios"] = {"retrieved": outcome.retrieved}
        return answer

    def _chunk(self, job: TextJob, index: int, text: str | None, reason: str | None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        if job.chat:
            delta: dict[str, Any] = {} if text is None else {"content": text}
            choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": reason,
                                      "logprobs": None}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": reason,
                      "logprobs": None}
        chunk = {"id": job.id,
                 "object": "chat.completion.chunk" if job.chat else "text_completion",
                 "created": job.created, "model": job.served.id, "choices": [choice]}
        if extra:
            chunk["aios"] = extra
        return chunk

    async def _stream(self, request: Request, job: TextJob) -> AsyncIterator[bytes]:
        events: asyncio.Queue[Any] = asyncio.Queue()
        started = time.monotonic()
        first = True
        task = asyncio.create_task(self._generate(request, job, events))
        task.add_done_callback(lambda _: events.put_nowait(("done",)))
        body = job.body
        steps_mode = body.stream_format == "steps"
        n = body.n
        sent = [""] * n
        held = max((len(s) for s in body.stop or []), default=1) - 1  # a stop may be forming
        try:
            if job.chat:  # OpenAI opens a chat stream with the role
                for i in range(n):
                    chunk = self._chunk(job, i, None, None)
                    chunk["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                    yield sse(chunk)
            while True:
                event = await events.get()
                if event[0] == "done":
                    break
                _, step, num_steps, texts, masked = event
                if first:
                    self.metrics.first_token.labels(
                        "chat" if job.chat else "completions").observe(time.monotonic() - started)
                    first = False
                for i, text in enumerate(texts):
                    if steps_mode:
                        yield sse(self._chunk(job, i, text, None,
                                              {"step": step, "steps": num_steps,
                                               "masked": masked, "final": False}))
                        continue
                    cut, _ = cut_at_stop(text, body.stop)
                    ready = cut[:len(cut) - held] if held else cut
                    if len(ready) > len(sent[i]) and ready.startswith(sent[i]):
                        yield sse(self._chunk(job, i, ready[len(sent[i]):], None))
                        sent[i] = ready
            outcome = task.result()  # raises what the generation raised
            for i, (text, reason) in enumerate(self._choices(job, outcome)):
                if steps_mode:
                    yield sse(self._chunk(job, i, text, reason,
                                          {"final": True, "masked": 0,
                                           "completion_tokens": outcome.completion_tokens[i]}))
                    continue
                rest = text[len(sent[i]):] if text.startswith(sent[i]) else ""
                yield sse(self._chunk(job, i, rest or None if job.chat else rest, reason))
            if body.stream_options is not None and body.stream_options.include_usage:
                usage = self._whole(job, outcome)["usage"]
                yield sse({**self._chunk(job, 0, None, None), "choices": [], "usage": usage})
            yield sse("[DONE]")
        except ApiError as exc:
            yield sse(exc.body())
        except Overloaded as exc:
            yield sse(ApiError(429, str(exc), code="rate_limit_exceeded").body())
        except Cancelled:
            return
        except Exception as exc:  # never a traceback to the client; the log gets it
            log.exception("generation failed")
            yield sse(ApiError(500, f"the generation failed: {type(exc).__name__}: {exc}",
                               code="generation_failed").body())
        finally:
            task.cancel()
