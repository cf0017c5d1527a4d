import numpy as np
import numpy.typing as npt

__version__: str

def simd_capabilities() -> dict[str, bool]: ...
def simd_dynamic_dispatch() -> bool: ...
def thread_count() -> int: ...

def top_k_f32(matrix: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int,
              metric: str, mask: npt.NDArray[np.bool_] | None = None,
              scale: npt.NDArray[np.float32] | None = None,
              bias: npt.NDArray[np.float32] | None = None,
              threshold: float | None = None,
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def top_k_f16(matrix: npt.NDArray[np.uint16], queries: npt.NDArray[np.uint16], k: int,
              metric: str, mask: npt.NDArray[np.bool_] | None = None,
              scale: npt.NDArray[np.float32] | None = None,
              bias: npt.NDArray[np.float32] | None = None,
              threshold: float | None = None,
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def top_k_i8(matrix: npt.NDArray[np.int8], queries: npt.NDArray[np.int8], k: int,
             metric: str, mask: npt.NDArray[np.bool_] | None = None,
             scale: npt.NDArray[np.float32] | None = None,
             bias: npt.NDArray[np.float32] | None = None,
             threshold: float | None = None,
             ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def quantize_i8(matrix: npt.NDArray[np.float32], codes: npt.NDArray[np.int8],
                scales: npt.NDArray[np.float32]) -> None: ...

def stream_checksum(data: npt.NDArray[np.uint8]) -> int: ...

class QuantLayout:
    def __init__(
        self, rows: int, cols: int, group_size: int, bits: int, symmetric: bool
    ) -> None: ...
    @property
    def row_bytes(self) -> int: ...
    @property
    def groups(self) -> int: ...

def quantize(
    layout: QuantLayout, matrix: np.ndarray, packed: np.ndarray, scales: np.ndarray,
    zeros: np.ndarray,
) -> None: ...
def dequantize(
    layout: QuantLayout, packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray,
    out: np.ndarray,
) -> None: ...
def matmul(
    layout: QuantLayout, x: np.ndarray, packed: np.ndarray, scales: np.ndarray,
    zeros: np.ndarray, out: np.ndarray,
) -> None: ...
def matmul_q8(
    layout: QuantLayout, x: np.ndarray, packed: np.ndarray, scales: np.ndarray,
    zeros: np.ndarray, out: np.ndarray, isa: str | None = None, helper: bool = True,
) -> None: ...
def dot_isa() -> str: ...
def pack(codes: np.ndarray, bits: int, out: np.ndarray) -> None: ...
def unpack(packed: np.ndarray, bits: int, out: np.ndarray) -> None: ...
