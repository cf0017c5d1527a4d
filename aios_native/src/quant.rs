//! Bindings of the ArrowQuant kernels. Every array is borrowed from NumPy (a torch tensor's
//! `.numpy()` shares its memory), outputs are written in place, and the GIL is released while a
//! kernel runs, so other Python threads keep going.

use aios_native_core::quant::{self, DotIsa, Layout, QuantError, Quantized};
use numpy::{PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn value_error(err: QuantError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

fn contiguous<T>(result: Result<T, numpy::AsSliceError>, what: &str) -> PyResult<T> {
    result
        .map_err(|_| PyValueError::new_err(format!("{what} must be a C-contiguous, aligned array")))
}

/// The shape of a quantized matrix (rows, columns, group size, bits, symmetric or not).
#[pyclass(name = "QuantLayout", module = "aios_native._native", frozen)]
pub struct PyLayout(Layout);

#[pymethods]
impl PyLayout {
    #[new]
    fn new(
        rows: usize,
        cols: usize,
        group_size: usize,
        bits: u32,
        symmetric: bool,
    ) -> PyResult<Self> {
        Layout::new(rows, cols, group_size, bits, symmetric)
            .map(PyLayout)
            .map_err(value_error)
    }

    /// Packed bytes per row.
    #[getter]
    fn row_bytes(&self) -> usize {
        self.0.row_bytes()
    }

    /// Groups per row.
    #[getter]
    fn groups(&self) -> usize {
        self.0.groups()
    }
}

/// Quantize float32 `matrix` (rows x cols) into `packed`, `scales` (f16 bits as uint16) and
/// `zeros` (empty when symmetric), all preallocated by the caller.
#[pyfunction]
fn quantize(
    py: Python<'_>,
    layout: &PyLayout,
    matrix: PyReadonlyArrayDyn<'_, f32>,
    mut packed: PyReadwriteArrayDyn<'_, u8>,
    mut scales: PyReadwriteArrayDyn<'_, u16>,
    mut zeros: PyReadwriteArrayDyn<'_, u8>,
) -> PyResult<()> {
    let layout = layout.0;
    let matrix = contiguous(matrix.as_slice(), "weights")?;
    let packed = contiguous(packed.as_slice_mut(), "packed")?;
    let scales = contiguous(scales.as_slice_mut(), "scales")?;
    let zeros = contiguous(zeros.as_slice_mut(), "zero_points")?;
    py.detach(|| quant::quantize(matrix, &layout, packed, scales, zeros))
        .map_err(value_error)
}

/// Borrow a quantized matrix's three arrays as slices.
fn borrowed<'a>(
    packed: &'a PyReadonlyArrayDyn<'_, u8>,
    scales: &'a PyReadonlyArrayDyn<'_, u16>,
    zeros: &'a PyReadonlyArrayDyn<'_, u8>,
) -> PyResult<Quantized<'a>> {
    Ok(Quantized {
        packed: contiguous(packed.as_slice(), "packed")?,
        scales: contiguous(scales.as_slice(), "scales")?,
        zeros: contiguous(zeros.as_slice(), "zero_points")?,
    })
}

/// Dequantize into the caller's float32 buffer `out` of rows x cols values.
#[pyfunction]
fn dequantize(
    py: Python<'_>,
    layout: &PyLayout,
    packed: PyReadonlyArrayDyn<'_, u8>,
    scales: PyReadonlyArrayDyn<'_, u16>,
    zeros: PyReadonlyArrayDyn<'_, u8>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
) -> PyResult<()> {
    let layout = layout.0;
    let q = borrowed(&packed, &scales, &zeros)?;
    let out = contiguous(out.as_slice_mut(), "out")?;
    py.detach(|| quant::dequantize(q, &layout, out))
        .map_err(value_error)
}

/// `out = x @ W.T` for float32 `x` (batch x cols) and the quantized `W`, fused (no float `W`).
#[pyfunction]
fn matmul(
    py: Python<'_>,
    layout: &PyLayout,
    x: PyReadonlyArrayDyn<'_, f32>,
    packed: PyReadonlyArrayDyn<'_, u8>,
    scales: PyReadonlyArrayDyn<'_, u16>,
    zeros: PyReadonlyArrayDyn<'_, u8>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
) -> PyResult<()> {
    let layout = layout.0;
    let x = contiguous(x.as_slice(), "inputs")?;
    let batch = x.len() / layout.cols.max(1);
    let q = borrowed(&packed, &scales, &zeros)?;
    let out = contiguous(out.as_slice_mut(), "out")?;
    py.detach(|| quant::matmul(x, batch, q, &layout, out))
        .map_err(value_error)
}

/// `out = x @ W.T` with `x` quantized to int8 per row and group and integer dot products
/// (AVX-512 VNNI, AVX2 or portable; `isa` forces one, by name, for tests and benchmarks).
/// `helper`: on two cores, share the rows with the helper thread that stays awake between calls
/// (false: rayon's pool, for callers whose other threads spin between calls).
#[pyfunction]
#[pyo3(signature = (layout, x, packed, scales, zeros, out, isa=None, helper=true))]
#[allow(clippy::too_many_arguments)]
fn matmul_q8(
    py: Python<'_>,
    layout: &PyLayout,
    x: PyReadonlyArrayDyn<'_, f32>,
    packed: PyReadonlyArrayDyn<'_, u8>,
    scales: PyReadonlyArrayDyn<'_, u16>,
    zeros: PyReadonlyArrayDyn<'_, u8>,
    mut out: PyReadwriteArrayDyn<'_, f32>,
    isa: Option<&str>,
    helper: bool,
) -> PyResult<()> {
    let layout = layout.0;
    let isa = match isa {
        None => DotIsa::detect(),
        Some(name) => DotIsa::parse(name).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown instruction set {name:?}; use \"vnni\", \"avx2\" or \"portable\""
            ))
        })?,
    };
    let x = contiguous(x.as_slice(), "inputs")?;
    let batch = x.len() / layout.cols.max(1);
    let q = borrowed(&packed, &scales, &zeros)?;
    let out = contiguous(out.as_slice_mut(), "out")?;
    py.detach(|| quant::matmul_q8_threads(isa, x, batch, q, &layout, out, helper))
        .map_err(value_error)
}

/// The instruction set `matmul_q8` uses on this CPU: "vnni", "avx2" or "portable".
#[pyfunction]
fn dot_isa() -> &'static str {
    DotIsa::detect().name()
}

/// Pack uint8 `codes` into `out`, `8 / bits` codes per byte.
#[pyfunction]
fn pack(
    codes: PyReadonlyArrayDyn<'_, u8>,
    bits: u32,
    mut out: PyReadwriteArrayDyn<'_, u8>,
) -> PyResult<()> {
    let codes = contiguous(codes.as_slice(), "codes")?;
    quant::pack(codes, bits, contiguous(out.as_slice_mut(), "out")?).map_err(value_error)
}

/// Unpack `packed` bytes into uint8 codes in `out`.
#[pyfunction]
fn unpack(
    packed: PyReadonlyArrayDyn<'_, u8>,
    bits: u32,
    mut out: PyReadwriteArrayDyn<'_, u8>,
) -> PyResult<()> {
    let packed = contiguous(packed.as_slice(), "packed")?;
    quant::unpack(packed, bits, contiguous(out.as_slice_mut(), "out")?).map_err(value_error)
}

/// Add the quantization kernels to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLayout>()?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_function(wrap_pyfunction!(matmul_q8, m)?)?;
    m.add_function(wrap_pyfunction!(dot_isa, m)?)?;
    m.add_function(wrap_pyfunction!(pack, m)?)?;
    m.add_function(wrap_pyfunction!(unpack, m)?)?;
    Ok(())
}
