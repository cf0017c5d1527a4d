"""The models a server offers, each an engine with its own queue, threads and batcher.

A model id is `HEAD[/MODEL][:ADAPTER]`: a registered head (`text`, `image`, `audio`), one of
the model directories its pack ships (`text/memory`), and an adapter of the text model
(`text:shakespeare`, selected per request as LoRAX does). Engines are built the first time
their id is asked for (the heads named in `preload` at start), then kept.

`build_engine` is the one place the server makes an engine: when `ArrowEngine` serves several
modalities from one object, it is the only function to change.
"""

from __future__ import annotations

import inspect
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios.config import load_config
from aios.engine import ArrowEngine
from aios.errors import AiosError
from aios.evolve.adapters import AdapterStore
from aios.registry import Registry
from aios.serve.batching import Admission, Guard, Member, StepBatcher, can_batch_rows
from aios.serve.errors import ApiError
from aios.serve.metrics import ServerMetrics
from aios.serve.settings import ServeSettings

__all__ = ["ModelCatalog", "ModelId", "ServedModel", "build_engine"]

log = logging.getLogger("aios.serve")

#: The most engines one server keeps (each adapter or model directory is one).
MAX_ENGINES = 16


@dataclass(frozen=True)
class ModelId:
    head: str
    model: str | None = None
    adapter: str | None = None

    def __str__(self) -> str:
        return (self.head + (f"/{self.model}" if self.model else "")
                + (f":{self.adapter}" if self.adapter else ""))

    @classmethod
    def parse(cls, text: str) -> ModelId:
        rest, _, adapter = text.partition(":")
        head, _, model = rest.partition("/")
        return cls(head, model or None, adapter or None)


def shipped_models(factory: Any) -> list[str]:
    """The model directories a pack ships: `models/NAME/model.yaml` beside its head module (the
    packs' convention), read from the file system so the server imports no pack."""
    try:
        folder = Path(inspect.getfile(factory)).parent / "models"
    except TypeError:
        return []
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "model.yaml").is_file())


def build_engine(settings: ServeSettings, registry: Registry, model: ModelId, *,
                 storage: Any = None, embedder: Any = None) -> ArrowEngine:
    """The engine that serves `model`: the configured head when it is that head (with the
    config's options), otherwise that head with its defaults. The memory store is opened once
    by the catalog and shared (`storage`), never once per engine."""
    configured = load_config(settings.config, settings.overrides, registry)
    same = configured.head.name == model.head
    config_file = settings.config if same else None
    overrides = [*settings.overrides] if same else ["sampler.name=auto"]
    overrides.append(f"head.name={model.head}")
    if model.model:
        overrides.append(f"head.model={model.model}")
    if model.adapter:
        overrides.append(f"head.adapters={model.adapter}")
        if configured.evolve.adapters_dir is not None:
            overrides.append(f"head.adapters_dir={configured.evolve.adapters_dir}")
    built = ArrowEngine.from_config(load_config(config_file, [*overrides, "memory.path=null"],
                                                registry), registry=registry)
    if getattr(built.head, "prefix_cache", False):
        # A prefix cache belongs to one generation; a batch mixes generations.
        built.head.prefix_cache = False
    if storage is None:
        return built
    served = load_config(config_file, [*overrides, f"memory.path={storage.path}"], registry)
    return ArrowEngine(served, built.head, built.sampler, built.conditioners, storage,
                       embedder=embedder, registry=registry)


class ServedModel:
    """One engine with its admission queue, worker threads and (text) step batcher."""

    def __init__(self, model_id: str, engine: ArrowEngine, settings: ServeSettings,
                 metrics: ServerMetrics) -> None:
        self.id = model_id
        self.engine = engine
        self.modality = engine.head.modality
        batches = can_batch_rows(engine.head)
        self.batcher = StepBatcher(
            engine.head, gather_s=settings.gather_s,
            on_batch=metrics.batch_rows.labels(model_id).observe) if batches else None
        if self.batcher is not None:
            batcher = self.batcher
            metrics.seated.labels(model_id).set_function(lambda: batcher.seated)
        slots = settings.max_active if batches else 1
        self.admission = Admission(slots, settings.max_queue)
        self.executor = ThreadPoolExecutor(max_workers=slots,
                                           thread_name_prefix=f"aios-{model_id}")
        self.setup_lock = threading.Lock()

    def guard(self, deadline: float | None) -> Member | Guard:
        return self.batcher.member(deadline) if self.batcher else Guard(deadline)

    def max_tokens(self) -> int | None:
        """The most tokens a text request may ask for (the model's context), if known."""
        model = getattr(self.engine.head, "model", None)
        backbone = getattr(model, "backbone", None)
        limit = getattr(getattr(backbone, "config", None), "max_len", None)
        if limit is None:  # a transformers network's context
            limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        return None if limit is None else int(limit)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


class ModelCatalog:
    """Every model the server can serve, built on first use and kept."""

    def __init__(self, settings: ServeSettings, registry: Registry,
                 metrics: ServerMetrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.config = load_config(settings.config, settings.overrides, registry)
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self._embedder: Any = None
        self.storage: Any = None
        memory = settings.memory or self.config.memory.path
        if memory:
            self.storage = self._open_memory(memory)

    # -- memory --------------------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        """The memory embedder (also what `/v1/embeddings` answers with), built once."""
        with self._lock:
            if self._embedder is None:
                from aios.memory.embedding import build_embedder

                self._embedder = build_embedder(self.config.memory.embedder, self.registry)
            return self._embedder

    def _open_memory(self, path: str) -> Any:
        from aios.memory import open_memory
        from aios.memory.manifest import NAME as MANIFEST

        exists = (Path(path).expanduser() / MANIFEST).is_file()
        if not exists and self.settings.read_only_memory:
            raise AiosError(f"no memory store at {path} to share read-only; fill one first: "
                            f"aios memory add --path {path} FILE_OR_DIR...")
        dim = None if exists else self.embedder.dim
        return open_memory(Path(path).expanduser(), dim, self.config.memory.backend,
                           read_only=self.settings.read_only_memory)

    # -- models --------------------------------------------------------------------------------

    def head_names(self) -> list[str]:
        return self.registry.names("head")

    def available(self) -> list[dict[str, Any]]:
        """What `/v1/models` lists: each head, its shipped models, the text adapters, and the
        memory embedder."""
        entries = []
        for head in self.head_names():
            factory = self.registry.get("head", head).factory
            modality = getattr(factory, "modality", head)
            entries.append({"id": head, "modality": modality, "kind": "head"})
            for name in shipped_models(factory):
                if name != "default":
                    entries.append({"id": f"{head}/{name}", "modality": modality,
                                    "kind": "shipped model"})
            if modality == "text":
                entries += [{"id": f"{head}:{name}", "modality": modality, "kind": "adapter"}
                            for name in self._adapters()]
        entries.append({"id": self.config.memory.embedder, "modality": "embedding",
                        "kind": "embedder"})
        return entries

    def _adapters(self) -> list[str]:
        try:
            return AdapterStore(self.config.evolve.adapters_dir).names()
        except (OSError, AiosError):
            return []

    def default_for(self, modality: str) -> str:
        """The model id a request without `model` gets for `modality`."""
        if self.config.head.name in self.registry.names("head", modality=modality):
            return self.config.head.name
        best = self.registry.best("head", modality=modality)
        if best is None:
            raise ApiError(404, f"no installed head generates {modality}; install its pack",
                           param="model", code="model_not_found")
        return best.name

    def get(self, model: str | None, modality: str) -> ServedModel:
        """The served model for a request's `model` field (built on first use)."""
        text = model or self.default_for(modality)
        model_id = ModelId.parse(text)
        if model_id.head not in self.head_names():
            # OpenAI clients name their own models ("gpt-4o"): the modality's default serves.
            raise ApiError(404, f"the model {text!r} does not exist; GET /v1/models lists them",
                           param="model", code="model_not_found")
        factory = self.registry.get("head", model_id.head).factory
        if getattr(factory, "modality", None) != modality:
            raise ApiError(400, f"the model {text!r} generates "
                                f"{getattr(factory, 'modality', '?')}, not {modality}",
                           param="model")
        if model_id.adapter and model_id.adapter not in self._adapters():
            raise ApiError(404, f"no adapter {model_id.adapter!r}; GET /v1/models lists them",
                           param="model", code="model_not_found")
        key = str(model_id)
        with self._lock:
            served = self._models.get(key)
        if served is not None:
            return served
        return self._build(key, model_id)

    def _build(self, key: str, model_id: ModelId) -> ServedModel:
        with self._lock:
            if key in self._models:
                return self._models[key]
            if len(self._models) >= MAX_ENGINES:
                raise ApiError(503, f"this server already holds {MAX_ENGINES} models; restart "
                                    "it to serve others")
        storage = self.storage if model_id.head in self.registry.names(
            "head", modality="text") else None
        try:
            engine = build_engine(self.settings, self.registry, model_id, storage=storage,
                                  embedder=self.embedder if storage is not None else None)
        except AiosError as exc:
            raise ApiError(404 if model_id.model else 500, f"the model {key!r} cannot be "
                           f"loaded: {exc}", param="model", code="model_not_found") from None
        served = ServedModel(key, engine, self.settings, self.metrics)
        with self._lock:
            self._models.setdefault(key, served)
            return self._models[key]

    def preload(self) -> list[str]:
        """Build the default model of each preloaded modality now (a missing pack is skipped),
        and the memory embedder when `embedding` is named."""
        loaded = []
        if "embedding" in self.settings.preload:
            loaded.append(self.embedder.name)
        for modality in self.settings.preload:
            if not self.registry.names("head", modality=modality):
                continue
            loaded.append(self.get(None, modality).id)
        return loaded

    def close(self) -> None:
        for served in self._models.values():
            served.close()
        if self.storage is not None:
            self.storage.close()
