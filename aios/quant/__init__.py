"""ArrowQuant: group-wise low-bit weight quantization (reference NumPy backend and layout).

`QuantizedTensor` is the format every backend produces; `ReferenceQuantizer` is the plugin
registered as ``reference``; the native backend in `aios_native` subclasses it and replaces its
kernels only, which is how both write identical bytes.
"""

from aios.quant.affine import dequantize, quantize
from aios.quant.packing import BITS, pack, unpack
from aios.quant.quantizer import DEFAULT_KEEP, ReferenceQuantizer
from aios.quant.tensor import DEFAULT_GROUP_SIZE, GROUP_SIZES, QuantizedTensor

__all__ = [
    "BITS",
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_KEEP",
    "GROUP_SIZES",
    "QuantizedTensor",
    "ReferenceQuantizer",
    "dequantize",
    "pack",
    "quantize",
    "unpack",
]
