"""Images, speech, embeddings and the memory: the endpoints that do not stream.

Images and audio run through their engines one generation at a time (their heads take one
time `t` per model call, so rows of requests at different steps cannot share one); they still
queue with a bound, honour the time limit and stop when the client leaves.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
import wave
from collections import OrderedDict
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aios.serve.batching import DeadlineExceeded
from aios.serve.catalog import ModelCatalog, ServedModel
from aios.serve.errors import ApiError
from aios.serve.generation import RequestHead, build_sampler, run_generation
from aios.serve.http import watch_disconnect
from aios.serve.schemas import (
    EmbeddingRequest,
    ImageRequest,
    MemoryAddRequest,
    MemorySearchRequest,
    SpeechRequest,
)
from aios.serve.settings import ServeSettings

__all__ = ["MediaApi", "png_bytes", "wav_bytes"]

#: Images kept for `response_format: url` (the oldest are forgotten first).
KEPT_IMAGES = 256


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 grey (H, W) or RGB (H, W, 3) image as PNG bytes (Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV bytes of float samples in [-1, 1]."""
    pcm = np.round(np.clip(np.asarray(samples, dtype=np.float32), -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


class MediaApi:
    def __init__(self, catalog: ModelCatalog, settings: ServeSettings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.images: OrderedDict[str, bytes] = OrderedDict()

    async def _run(self, request: Request, served: ServedModel, prompt: Any, *,
                   sampler: str | None, steps: int | None, seed: int | None) -> Any:
        engine_sampler = build_sampler(served.engine, sampler, None, None)
        deadline = time.monotonic() + self.settings.timeout_s
        guard = served.guard(deadline)  # a Guard: images and audio do not batch
        head = RequestHead(served.engine.head, guard, served.setup_lock)

        def work() -> Any:
            try:
                output, _ = run_generation(served.engine, head, engine_sampler, prompt,
                                           steps=steps, seed=seed, memory=None, options={})
                return output
            finally:
                guard.leave()

        async with served.admission.slot():
            watcher = watch_disconnect(request, guard.leave)
            try:
                return await asyncio.get_running_loop().run_in_executor(served.executor, work)
            except DeadlineExceeded:
                raise ApiError(504, f"the generation took longer than the server's limit of "
                                    f"{self.settings.timeout_s:g} s; ask for fewer steps",
                               code="timeout") from None
            finally:
                guard.leave()
                watcher.cancel()

    async def images_generate(self, request: Request, body: ImageRequest) -> Response:
        served = await asyncio.to_thread(self.catalog.get, body.model, "image")
        prompt = [body.prompt] * body.n
        images = await self._run(request, served, prompt, sampler=body.sampler,
                                 steps=body.steps, seed=body.seed)
        data = []
        for image in np.asarray(images).reshape(body.n, *np.shape(images)[-2:]):
            png = png_bytes(image)
            if body.response_format == "b64_json":
                data.append({"b64_json": base64.b64encode(png).decode()})
                continue
            name = uuid.uuid4().hex
            self.images[name] = png
            while len(self.images) > KEPT_IMAGES:
                self.images.popitem(last=False)
            data.append({"url": str(request.url_for("image_file", name=f"{name}.png"))})
        return JSONResponse({"created": int(time.time()), "data": data})

    async def image_file(self, request: Request) -> Response:
        name = request.path_params["name"].removesuffix(".png")
        png = self.images.get(name)
        if png is None:
            raise ApiError(404, "no such image (the server keeps the last "
                                f"{KEPT_IMAGES}); generate it again", code="image_not_found")
        return Response(png, media_type="image/png")

    async def speech(self, request: Request, body: SpeechRequest) -> Response:
        served = await asyncio.to_thread(self.catalog.get, body.model, "audio")
        audio = await self._run(request, served, body.input, sampler=body.sampler,
                                steps=body.steps, seed=body.seed)
        return Response(wav_bytes(audio.samples, audio.sample_rate), media_type="audio/wav")

    # -- embeddings and memory -----------------------------------------------------------------

    def _embedder(self, model: str | None) -> Any:
        embedder = self.catalog.embedder
        if model not in (None, embedder.name, self.catalog.config.memory.embedder):
            raise ApiError(404, f"the embedding model {model!r} does not exist; this server "
                                f"embeds with {embedder.name!r}", param="model",
                           code="model_not_found")
        return embedder

    async def embeddings(self, request: Request, body: EmbeddingRequest) -> Response:
        texts = [body.input] if isinstance(body.input, str) else body.input
        embedder = self._embedder(body.model)
        vectors = await asyncio.to_thread(embedder.embed, texts)
        vectors = np.asarray(vectors, dtype=np.float32)
        data = []
        for i, vector in enumerate(vectors):
            value: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                          if body.encoding_format == "base64" else vector.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse({"object": "list", "data": data, "model": embedder.name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _store(self, writing: bool) -> Any:
        store = self.catalog.storage
        if store is None:
            raise ApiError(404, "this server has no memory store; start it with "
                                "`aios serve --memory DIR`", code="no_memory")
        if writing and self.settings.read_only_memory:
            raise ApiError(403, "the memory is shared read-only by the server's workers; add "
                                "with `aios memory add --path DIR`, then restart the server",
                           code="memory_read_only")
        return store

    async def memory_add(self, request: Request, body: MemoryAddRequest) -> Response:
        store = self._store(writing=True)
        embedder = self.catalog.embedder

        def add() -> list[str]:
            vectors = embedder.embed(body.texts)
            return list(store.add(embeddings=vectors, contents=body.texts, modality="text",
                                  category="document", source=body.source,
                                  extra=[{"embedder": embedder.name}] * len(body.texts)))

        ids = await asyncio.to_thread(add)
        return JSONResponse({"object": "list", "ids": ids, "count": store.count()})

    async def memory_search(self, request: Request, body: MemorySearchRequest) -> Response:
        store = self._store(writing=False)
        embedder = self.catalog.embedder

        def search() -> Any:
            return store.search(embedder.embed([body.query])[0], body.k)

        found = await asyncio.to_thread(search)
        records = found.records.to_pylist()
        return JSONResponse({"object": "list", "data": [
            {"id": i, "score": float(s), "content": r.get("content"),
             "source": (r.get("metadata") or {}).get("source")}
            for i, s, r in zip(found.ids, found.scores, records, strict=True)]})
