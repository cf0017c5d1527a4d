"""Self-evolution: adapters on disk, the router that picks one per request, the ladder of adapter
kinds (cheapest first) and the closed loop (ingest, serve, adapt where the model is unsure).
"""

from aios._lazy import lazy_face

_EXPORTS = {
    "adapters": (
        "LORA_TARGETS",
        "Adapter",
        "AdapterInfo",
        "AdapterStore",
        "apply_adapter",
    ),
    "router": (
        "BASE",
        "CENTROIDS",
        "AdapterRouter",
        "RouterChoice",
    ),
    "ladder": (
        "climb",
        "memory_texts",
    ),
    "loop": (
        "LoopReport",
        "run_loop",
    ),
}

__all__ = [
    "BASE",
    "CENTROIDS",
    "LORA_TARGETS",
    "Adapter",
    "AdapterInfo",
    "AdapterRouter",
    "AdapterStore",
    "LoopReport",
    "RouterChoice",
    "apply_adapter",
    "climb",
    "memory_texts",
    "run_loop",
]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
