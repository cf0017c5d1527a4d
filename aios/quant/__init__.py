"""ArrowQuant: group-wise low-bit weight quantization (reference NumPy backend and layout).

`QuantizedTensor` is the format every backend produces; `ReferenceQuantizer` is the plugin
registered as ``reference``; the native backend in `aios_native` subclasses it and replaces its
kernels only, which is how both write identical bytes.
"""

from aios._lazy import lazy_face
from aios.quant.affine import dequantize, quantize, to_numpy
from aios.quant.packing import BITS, pack, unpack
from aios.quant.quantizer import DEFAULT_KEEP, ReferenceQuantizer
from aios.quant.tensor import DEFAULT_GROUP_SIZE, GROUP_SIZES, QuantizedTensor, padding_for

# Loaded on first use: quantized torch layers need torch, the reference quantizer does not.
_EXPORTS = {"linear": ("QuantizedLinear", "best_quantizer", "dequantize_linears",
                       "load_quantized")}
__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)

__all__ = [
    "BITS",
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_KEEP",
    "GROUP_SIZES",
    "QuantizedLinear",
    "QuantizedTensor",
    "ReferenceQuantizer",
    "best_quantizer",
    "dequantize",
    "dequantize_linears",
    "load_quantized",
    "pack",
    "padding_for",
    "quantize",
    "to_numpy",
    "unpack",
]
