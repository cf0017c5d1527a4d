"""The default text model: a pretrained AR model (SmolLM2-135M) adapted into block diffusion.

- `model`: the adapted network (mask embedding, LoRA) and its training attention;
- `objective`: the masked-token loss over a clean and two complementary noisy copies;
- `teacher`: the base model's own continuations as training text;
- `memory`: retrieval examples and the answer-only loss that teach it to read memory;
- `recipe`: `aios train text --recipe adapt-smollm2.yaml`;
- `decode`: blocks over a causal KV cache, confidence-threshold unmasking;
- `shipping`: the adapter file in the pack, merged and converted once on a user's machine.

Modules import torch; this face names them without importing any.
"""

__all__ = ["base", "decode", "memory", "model", "objective", "recipe", "shipping", "teacher"]


def __getattr__(name: str) -> object:
    if name in __all__:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
