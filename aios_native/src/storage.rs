//! Bindings of ArrowStorage's search kernels: NumPy arrays in (borrowed, no copy), top-k out.
//!
//! The matrix is usually a view of a memory-mapped Arrow segment; it is borrowed read-only for
//! the duration of the call, with the GIL released while the kernel runs on rayon's threads.

use aios_native_core::storage::{self, Element, Rows, ScanError, ScanMetric};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1,
    PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type TopKArrays<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

fn value_error(error: ScanError) -> PyErr {
    PyValueError::new_err(error.to_string())
}

fn contiguous<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    array: &'a numpy::PyReadonlyArray<'_, T, D>,
    what: &str,
) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a C-contiguous array (np.ascontiguousarray)"
        ))
    })
}

#[allow(clippy::too_many_arguments)]
fn run<'py, T: Element>(
    py: Python<'py>,
    data: &[T],
    dim: usize,
    queries: &[T],
    k: usize,
    metric: &str,
    mask: Option<&[bool]>,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    threshold: Option<f32>,
) -> PyResult<TopKArrays<'py>> {
    let metric = ScanMetric::parse(metric).map_err(value_error)?;
    let rows = Rows {
        data,
        dim,
        mask,
        scale,
        bias,
    };
    let found = py
        .detach(|| storage::top_k(&rows, queries, k, metric, threshold))
        .map_err(value_error)?;
    let nq = found.len();
    let mut indices = Array2::<i64>::from_elem((nq, k), -1);
    let mut scores = Array2::<f32>::from_elem((nq, k), f32::NEG_INFINITY);
    for (q, hits) in found.iter().enumerate() {
        for (j, (row, score)) in hits.iter().enumerate() {
            indices[[q, j]] = *row as i64;
            scores[[q, j]] = *score;
        }
    }
    Ok((indices.into_pyarray(py), scores.into_pyarray(py)))
}

macro_rules! top_k_binding {
    ($name:ident, $element:ty, $view:ty, $doc:literal) => {
        #[doc = $doc]
        #[pyfunction]
        #[pyo3(signature = (matrix, queries, k, metric, mask=None, scale=None, bias=None, threshold=None))]
        #[allow(clippy::too_many_arguments)]
        fn $name<'py>(
            py: Python<'py>,
            matrix: PyReadonlyArray2<'py, $view>,
            queries: PyReadonlyArray2<'py, $view>,
            k: usize,
            metric: &str,
            mask: Option<PyReadonlyArray1<'py, bool>>,
            scale: Option<PyReadonlyArray1<'py, f32>>,
            bias: Option<PyReadonlyArray1<'py, f32>>,
            threshold: Option<f32>,
        ) -> PyResult<TopKArrays<'py>> {
            let dim = matrix.shape()[1];
            if queries.shape()[1] != dim {
                return Err(PyValueError::new_err(format!(
                    "queries have {} dimensions but the matrix has {dim}",
                    queries.shape()[1]
                )));
            }
            let data = contiguous(&matrix, "matrix")?;
            let query_data = contiguous(&queries, "queries")?;
            let mask = mask.as_ref().map(|m| contiguous(m, "mask")).transpose()?;
            let scale = scale.as_ref().map(|s| contiguous(s, "scale")).transpose()?;
            let bias = bias.as_ref().map(|b| contiguous(b, "bias")).transpose()?;
            let cast = |values: &[$view]| -> &[$element] {
                // SAFETY: the element type is the view type or a #[repr(transparent)] wrapper of it.
                unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<$element>(), values.len()) }
            };
            run(py, cast(data), dim, cast(query_data), k, metric, mask, scale, bias, threshold)
        }
    };
}

top_k_binding!(
    top_k_f32,
    f32,
    f32,
    "Best `k` rows per query of a float32 matrix (fused scan)."
);
top_k_binding!(
    top_k_f16,
    simsimd::f16,
    u16,
    "Best `k` rows per query of a float16 matrix, passed as its uint16 view."
);
top_k_binding!(
    top_k_i8,
    i8,
    i8,
    "Best `k` rows per query of an int8 matrix (scale/bias per row)."
);

/// Per-row symmetric int8 codes of a float32 matrix, written into `codes` and `scales`.
#[pyfunction]
fn quantize_i8(
    py: Python<'_>,
    matrix: PyReadonlyArray2<'_, f32>,
    mut codes: PyReadwriteArray2<'_, i8>,
    mut scales: PyReadwriteArray1<'_, f32>,
) -> PyResult<()> {
    let dim = matrix.shape()[1];
    let data = contiguous(&matrix, "matrix")?;
    let codes = codes
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("codes must be C-contiguous"))?;
    let scales = scales
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("scales must be C-contiguous"))?;
    py.detach(|| storage::quantize_i8(data, dim, codes, scales))
        .map_err(value_error)
}

/// Read every byte of `data` (any C-contiguous array, viewed as uint8) on all rayon threads and
/// return a checksum: timed, it is the bandwidth floor a scan of the same bytes is judged by.
#[pyfunction]
fn stream_checksum(py: Python<'_>, data: PyReadonlyArray1<'_, u8>) -> PyResult<u64> {
    let data = contiguous(&data, "data")?;
    Ok(py.detach(|| storage::stream_checksum(data)))
}

/// Add the storage functions to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(top_k_f32, m)?)?;
    m.add_function(wrap_pyfunction!(top_k_f16, m)?)?;
    m.add_function(wrap_pyfunction!(top_k_i8, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_i8, m)?)?;
    m.add_function(wrap_pyfunction!(stream_checksum, m)?)?;
    Ok(())
}
