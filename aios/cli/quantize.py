"""`aios quantize MODEL -o OUT`: quantize a model file into an aios weight file.

MODEL is any file `aios.io.weight_formats.read_model` reads (an aios weight file, safetensors,
Parquet weights, a torch state_dict). The quantizer is the config's ``quantizer`` (``auto``:
native over reference) unless ``--backend`` names one; its options come from the config and
the flags here override them. A progress bar runs while tensors are quantized and a table
shows, per tensor, what it became, its size before and after, and its reconstruction error.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aios.errors import ConfigError, UsageError

#: Flags that become quantizer options when given (flag dest -> factory keyword).
_OPTION_FLAGS = {"bits": "bits", "group_size": "group_size", "symmetric": "symmetric",
                 "keep": "keep", "error_correction": "error_correction"}


def add_quantize_command(commands: Any) -> None:
    """Add the `quantize` subcommand to the `aios` parser's subcommands."""
    p = commands.add_parser(
        "quantize", help="quantize a model's weights into an aios weight file",
        description="Quantize the weights of MODEL (aios .arrow, .safetensors, Parquet or a "
                    "torch state_dict .pt) group-wise to 8, 4 or 2 bits and write an aios "
                    "weight file.")
    p.add_argument("model", metavar="MODEL",
                   help="the model file to quantize, or a pretrained checkpoint (a Hugging "
                        "Face directory or a .gguf file), which becomes an ArrowQuant "
                        "directory (int8 unless --bits says otherwise)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the aios weight file to write (.arrow), or the directory for a "
                        "pretrained checkpoint")
    p.add_argument("--bits", type=int, choices=(2, 4, 8), help="bits per weight (default 4)")
    p.add_argument("--group-size", type=int, metavar="N",
                   help="weights per scale, a multiple of 4 (default 128)")
    p.add_argument("--symmetric", action="store_true", default=None,
                   help="symmetric groups (no zero points) instead of asymmetric")
    p.add_argument("--keep", metavar="PATTERNS",
                   help="comma-separated name globs kept in 16 bits (default: embeddings, "
                        "norms, output projection)")
    p.add_argument("--error-correction", action="store_true", default=None,
                   help="GPTQ-style error correction at 4 and 2 bits (needs --calibration)")
    p.add_argument("--calibration", metavar="FILE",
                   help=".npz or .safetensors mapping layer names to input activations "
                        "(batch, in_features) recorded from the model")
    p.add_argument("--backend", metavar="NAME",
                   help="quantizer plugin to use (default: the config's, `auto` = native "
                        "over reference)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aios.config import load_config
    from aios.io.weight_formats import read_model
    from aios.io.weights import save_weights
    from aios.registry import default_registry

    registry = default_registry()
    config = load_config(args.config, args.overrides, registry)
    name = args.backend or config.quantizer.name
    options = dict(config.quantizer.options)
    options.update({key: getattr(args, flag) for flag, key in _OPTION_FLAGS.items()
                    if getattr(args, flag) is not None})
    if options.get("error_correction") and not args.calibration:
        raise ConfigError("command line", "--error-correction",
                          "error correction needs calibration inputs",
                          "pass --calibration FILE with each layer's recorded inputs")
    if _is_pretrained(args.model) and args.bits is None:
        options["bits"] = 8  # a pretrained model keeps its quality at int8
    registration = registry.get("quantizer", name)
    try:
        quantizer = registration.factory(**options)
    except TypeError as exc:
        raise ConfigError("command line", "quantizer", str(exc),
                          "see `aios quantize --help` for the options") from exc
    if _is_pretrained(args.model):
        return _convert_pretrained(args, quantizer)
    if not Path(args.model).is_file():
        raise UsageError(f"{args.model}: no such file; give the model file to quantize (.arrow, "
                         ".safetensors, .parquet or a torch state_dict .pt), a GGUF file or a "
                         "Hugging Face checkpoint directory")
    tensors = read_model(args.model)
    calibration = _read_calibration(args.calibration) if args.calibration else None
    quantized = quantizer.quantize_model(tensors, calibration=calibration, progress=True)
    metadata = {"quantizer": name, "bits": str(quantizer.bits),
                "group_size": str(quantizer.group_size), "source": str(args.model)}
    save_weights(args.output, quantized, metadata=metadata)
    print(summary(tensors, quantized, quantizer))
    print(f"\nwrote {args.output} with the {name} quantizer")
    return 0


def _is_pretrained(model: str) -> bool:
    from pathlib import Path

    path = Path(model)
    return path.suffix.lower() == ".gguf" or (path / "config.json").exists()


def _convert_pretrained(args: argparse.Namespace, quantizer: Any) -> int:
    """A GGUF file or Hugging Face directory -> an ArrowQuant directory that memory-maps."""
    from aios.models.families import convert_pretrained, load_pretrained

    model = load_pretrained(args.model)
    out = convert_pretrained(model, args.output, quantizer=quantizer)
    params = sum(p.numel() for p in model.network.parameters())
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out}: {model.family.name}, {params / 1e6:.1f}M parameters, linear layers "
          f"int{quantizer.bits} (group {quantizer.group_size}), {_size(size)}; load it with "
          "aios.models.families.load_pretrained")
    return 0


def _read_calibration(path: str) -> Mapping[str, Any]:
    from aios.errors import WeightFileError
    from aios.io.weight_formats import read_model

    if path.endswith(".npz"):
        try:
            with np.load(path) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise WeightFileError(f"cannot read calibration file {path}: {exc}") from exc
    return read_model(path)


def summary(original: Mapping[str, Any], quantized: Mapping[str, Any], quantizer: Any) -> str:
    """A table: per tensor what it became, bytes before and after, relative MAE and cosine."""
    from aios.cli.tables import table as _table
    from aios.quant.affine import to_numpy
    from aios.quant.tensor import QuantizedTensor

    rows = [("TENSOR", "SHAPE", "STORED AS", "BEFORE", "AFTER", "REL MAE", "COSINE")]
    before_total = after_total = 0
    for name, q in quantized.items():
        source, _ = to_numpy(original[name])
        before = source.nbytes
        if isinstance(q, QuantizedTensor):
            stored, after = q.quant_type + f" g{q.group_size}", q.nbytes
            restored = quantizer.dequantize(q).astype(np.float64).reshape(-1)
            ref = source.astype(np.float64).reshape(-1)
            mae = np.abs(restored - ref).mean() / max(np.abs(ref).mean(), 1e-30)
            norms = np.linalg.norm(restored) * np.linalg.norm(ref)
            cosine = float(restored @ ref / norms) if norms else 1.0
            errors = (f"{mae:.4f}", f"{cosine:.5f}")
        else:
            stored, after, errors = str(q.dtype) + " (kept)", q.nbytes, ("-", "-")
        before_total += before
        after_total += after
        rows.append((name, "x".join(map(str, source.shape)) or "scalar", stored,
                     _size(before), _size(after), *errors))
    ratio = before_total / after_total if after_total else math.inf
    rows.append(("TOTAL", f"{len(quantized)} tensors", f"{ratio:.2f}x smaller",
                 _size(before_total), _size(after_total), "", ""))
    return _table(rows)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


__all__ = ["add_quantize_command", "run", "summary"]
