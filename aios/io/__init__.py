"""Files on disk: the aios weight format, conversion to and from safetensors and Parquet, and
atomic writes (a reader never sees half a file).
"""

from aios._lazy import lazy_face

_EXPORTS = {
    "files": (
        "TEMPORARY_GLOB",
        "fsync_dir",
        "write_atomic",
    ),
    "weights": (
        "FORMAT_VERSION",
        "WeightFile",
        "load_weights",
        "save_weights",
    ),
    "weight_formats": (
        "export_parquet",
        "export_safetensors",
        "import_parquet",
        "import_safetensors",
        "read_model",
    ),
}

__all__ = [
    "FORMAT_VERSION",
    "TEMPORARY_GLOB",
    "WeightFile",
    "export_parquet",
    "export_safetensors",
    "fsync_dir",
    "import_parquet",
    "import_safetensors",
    "load_weights",
    "read_model",
    "save_weights",
    "write_atomic",
]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
