//! PyO3 bindings of aios-native-core: the `aios_native._native` extension module.

mod quant;

use aios_native_core::{threads, Capabilities};
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod storage;

/// Map of every SIMD family simsimd knows to whether this CPU can use it.
#[pyfunction]
fn simd_capabilities(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    for (name, on) in Capabilities::detect().flags() {
        dict.set_item(*name, *on)?;
    }
    Ok(dict)
}

/// Whether simsimd chooses its kernels at run time for the CPU it runs on.
#[pyfunction]
fn simd_dynamic_dispatch() -> bool {
    Capabilities::detect().dynamic_dispatch
}

/// Number of threads the native kernels split work across.
#[pyfunction]
fn thread_count() -> usize {
    threads()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(simd_capabilities, m)?)?;
    m.add_function(wrap_pyfunction!(simd_dynamic_dispatch, m)?)?;
    m.add_function(wrap_pyfunction!(thread_count, m)?)?;
    storage::register(m)?;
    quant::register(m)?;
    Ok(())
}
