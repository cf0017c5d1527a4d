//! The pure-Rust kernels behind the `aios_native` Python package.
//!
//! Kept apart from the PyO3 bindings so that `cargo test` exercises them without a Python
//! interpreter, and so that other Rust programs can use them directly.

pub mod pair;
pub mod quant;
pub mod scoring;
pub mod simd;
pub mod storage;
#[cfg(test)]
mod testing;

pub use scoring::{scores, KernelError, Metric};
pub use simd::Capabilities;

/// How many worker threads rayon's global pool uses (what parallel kernels split across).
pub fn threads() -> usize {
    rayon::current_num_threads()
}
