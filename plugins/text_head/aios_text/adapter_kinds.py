"""The text head's adapter kinds as the registry sees them (imports torch only when training)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aios.errors import ConfigError, NothingToAdaptError


class TextAdapterKind:
    """What every text adapter kind shares: the training knobs, gathering the text, the
    uncertainty filter and calibration. A kind adds its `kind`, `level` and `method()`.

    Shared options (`evolve` config keys beside `adapter`): training `steps`, `lr`,
    `batch_size`, the `replay` share of steps on the base domain's own text, `eval_windows` for
    the before/after perplexities, and `seed`.
    """

    kind = ""
    level = 0

    def __init__(self, steps: int = 120, lr: float = 2e-3, batch_size: int = 16,
                 replay: float = 0.25, eval_windows: int = 64, seed: int = 0) -> None:
        if steps < 1 or batch_size < 1 or eval_windows < 1:
            raise ValueError("steps, batch_size and eval_windows must be positive")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"replay is a share of the steps in [0, 1), got {replay}")
        self.settings = dict(steps=steps, lr=lr, batch_size=batch_size, replay=replay,
                             eval_windows=eval_windows, seed=seed)

    def method(self) -> Any:
        """The `aios_text.evolve.AdapterMethod` this kind trains."""
        raise NotImplementedError

    def evolve(self, model: str | os.PathLike[str] | None, name: str, *,
               sources: Sequence[str] = (), texts: Sequence[str] = (),
               threshold: float | None = None, store: Any, min_gain: float,
               max_base_loss: float, held_out: float, progress: bool = True,
               shuffle_tokens: bool = False) -> Any:
        """Adapt to the text of `sources` (corpus names or paths) or to `texts` (remembered
        requests; with `threshold`, only those the model is that uncertain about)."""
        from aios_text.corpus import Document, load_corpus
        from aios_text.evaluate import corpus_cache
        from aios_text.evolve import EvolveOptions, evolve

        path = self._model(model)
        documents: list[Any] = []
        if sources:
            try:
                documents = load_corpus(sources, corpus_cache())
            except ValueError as exc:
                raise ConfigError("command line", "PATH", str(exc),
                                  "give a folder of .txt files or a corpus name") from exc
        if texts:
            if threshold is not None:
                texts = self.uncertain(path, texts, threshold)
            documents += [Document("memory", f"record {i}", t) for i, t in enumerate(texts)]
        if not documents:
            raise NothingToAdaptError("nothing to adapt to: no text given, or no remembered "
                                      f"request above the uncertainty threshold {threshold}")
        options = EvolveOptions(**self.settings, min_gain=min_gain,
                                max_base_loss=max_base_loss, held_out=held_out)
        domain = ", ".join(sources) or f"{len(texts)} remembered requests"
        return evolve(path, documents, name, method=self.method(), options=options,
                      store=store, domain=domain, shuffle_tokens=shuffle_tokens,
                      progress=progress)

    @staticmethod
    def uncertain(model: Path, texts: Sequence[str], threshold: float) -> list[str]:
        """The texts whose uncertainty is above `threshold`."""
        from aios_text.inference import load_array_text_model
        from aios_text.uncertainty import Calibration, UncertaintyEstimator

        net, tokenizer, _ = load_array_text_model(model)
        estimator = UncertaintyEstimator(net, tokenizer, Calibration.load(model))
        return [t for t in texts
                if len(tokenizer.encode(t)) >= 2 and estimator.score(t) > threshold]

    def calibrate(self, model: str | os.PathLike[str] | None, progress: bool = True) -> Path:
        """Measure the model's typical masked loss on its training text (uncertainty 1.0)."""
        from aios_text.evolve import calibrate_model

        return calibrate_model(self._model(model), progress=progress)

    @staticmethod
    def _model(model: str | os.PathLike[str] | None) -> Path:
        from aios_text.inference import model_path

        return model_path(model or "")


class SideNetKind(TextAdapterKind):
    """L1 of the ladder: ControlNet-style zero-initialised side branches (`aios.models`) of
    `hidden` units beside the last `blocks` blocks (2 x 384 on the shipped model: 6% of it)."""

    kind = "sidenet"
    level = 1

    def __init__(self, blocks: int = 2, hidden: int = 384, steps: int = 120, lr: float = 2e-3,
                 batch_size: int = 16, replay: float = 0.25, eval_windows: int = 64,
                 seed: int = 0) -> None:
        super().__init__(steps, lr, batch_size, replay, eval_windows, seed)
        if blocks < 1 or hidden < 1:
            raise ValueError("blocks and hidden must be positive")
        self.blocks, self.hidden = blocks, hidden

    def method(self) -> Any:
        from aios_text.evolve import side_method

        return side_method(self.blocks, self.hidden)


class LoRAKind(TextAdapterKind):
    """L2 of the ladder: LoRA factors of `rank` (scaled by `alpha / rank`) on every attention
    and feed-forward projection (rank 4 on the shipped model: 1.5% of it)."""

    kind = "lora"
    level = 2

    def __init__(self, rank: int = 4, alpha: float = 8.0, steps: int = 120, lr: float = 2e-3,
                 batch_size: int = 16, replay: float = 0.25, eval_windows: int = 64,
                 seed: int = 0) -> None:
        super().__init__(steps, lr, batch_size, replay, eval_windows, seed)
        if rank < 1:
            raise ValueError(f"rank must be positive, got {rank}")
        self.rank, self.alpha = rank, alpha

    def method(self) -> Any:
        from aios_text.evolve import lora_method

        return lora_method(self.rank, self.alpha)
