"""The text head's adapted networks: adapters merged into the NumPy model, and which to use.

An adapter is applied to a copy of the backbone's weights once, the first time a request asks
for it (`aios.evolve.apply_adapter`: LoRA merged into the projections, a side network's
branches added beside its blocks), so generating with a LoRA adapter costs what generating
without it costs, and with a side network a little more. `resolve` turns what a request asks
for (`none`, `auto`, names, `name:weight`) into adapter weights; `auto` asks the router
(`aios.evolve`), which embeds the prompt with the memory's best embedder, the one `aios evolve`
recorded the centroids with (the router checks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aios.errors import AiosError
from aios.evolve import AdapterRouter, AdapterStore, RouterChoice, apply_adapter
from aios.models import ArrayBackbone
from aios_text.inference import ArrayTextModel
from aios_text.tokenizer import TextTokenizer


class AdaptedModels:
    """The base NumPy model and, on demand, its adapted copies by adapter name."""

    def __init__(self, base: ArrayTextModel, tokenizer: TextTokenizer,
                 model_dir: str | os.PathLike[str],
                 adapters_dir: str | os.PathLike[str] | None = None) -> None:
        self.base = base
        self.tokenizer = tokenizer
        self.model_dir = Path(model_dir)
        self.store = AdapterStore(adapters_dir)
        self._models: dict[str, ArrayTextModel] = {}
        self._router: AdapterRouter | None = None
        self._estimators: dict[str, Any] = {}

    def model(self, name: str) -> ArrayTextModel:
        if name not in self._models:
            adapter = self.store.load(name)
            weights = apply_adapter(self.base.backbone.w, adapter)
            backbone = ArrayBackbone(self.base.backbone.config, weights)
            self._models[name] = ArrayTextModel(backbone, self.base.embedding,
                                                self.base.projection, self.base.mask_id,
                                                self.base.copy)
        return self._models[name]

    @property
    def router(self) -> AdapterRouter:
        if self._router is None:
            from aios.memory import build_embedder

            self._router = AdapterRouter(self.store.directory, build_embedder("auto"))
        return self._router

    def resolve(self, wanted: str | Sequence[str] | None, text: str) -> RouterChoice:
        """Adapter weights for a request: `none`/empty, `auto` (the router), or names, each
        optionally `name:weight` (weights are normalised to sum to 1)."""
        items = [wanted] if isinstance(wanted, str) or wanted is None else list(wanted)
        items = [i for item in items if item for i in str(item).split(",") if i]
        if not items or items == ["none"]:
            return RouterChoice({})
        if items == ["auto"]:
            names = self.store.names()
            return self.router.choose(text, allowed=names) if names else RouterChoice({})
        weights: dict[str, float] = {}
        for item in items:
            name, _, weight = item.partition(":")
            try:
                weights[name] = float(weight) if weight else 1.0
            except ValueError:
                raise AiosError(f"adapter weight {weight!r} of {name!r} is not a number; write "
                                "NAME or NAME:WEIGHT") from None
            if not weights[name] > 0:
                raise AiosError(f"adapter weight of {name!r} must be positive, got {weight}")
            self.store.path(name)  # a clear error for a bad name
            if name not in self.store.names():
                self.store.info(name)  # raises: no such adapter, with the list
        total = sum(weights.values())
        return RouterChoice({n: w / total for n, w in weights.items()})

    def uncertainty(self, text: str, name: str | None = None) -> float | None:
        """The uncertainty of the base model (or of the adapted model `name`) about `text`,
        against the base model's calibration (None without one or with fewer than 2 tokens):
        an adapter that taught the model a domain makes it less unsure there."""
        from aios_text.uncertainty import CALIBRATION_FILE, Calibration, UncertaintyEstimator

        if not (self.model_dir / CALIBRATION_FILE).exists():
            return None
        key = name or ""
        if key not in self._estimators:
            net = self.model(name) if name else self.base
            self._estimators[key] = UncertaintyEstimator(net, self.tokenizer,
                                                         Calibration.load(self.model_dir))
        ids = self.tokenizer.encode(text)
        return round(self._estimators[key].score_ids(ids), 3) if len(ids) >= 2 else None
