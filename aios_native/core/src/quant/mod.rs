//! ArrowQuant kernels: group-wise affine quantization of weight matrices to 8, 4 or 2 bits.
//!
//! The layout and arithmetic are the contract of `aios.quant.affine` (the NumPy reference):
//! a matrix of `rows x cols` is quantized in groups of `group_size` consecutive values of a row;
//! a row is padded to a whole number of groups by repeating its last value; each group has an
//! f16 scale and (asymmetric) a zero point; codes are packed little-end first, `8 / bits` per
//! byte. Every step is float32 with round-half-to-even, so the bytes match the reference exactly.

mod affine;
mod matmul;
mod pack;
mod qgemm;

pub use affine::{dequantize, quantize};
pub use matmul::matmul;
pub use pack::{pack, unpack};
pub use qgemm::{matmul_q8, matmul_q8_threads, DotIsa, MAX_GROUP_SIZE};

use thiserror::Error;

/// Why a quantization kernel refused its input.
#[derive(Debug, Error, PartialEq)]
pub enum QuantError {
    #[error("{0} bits is not supported; choose 2, 4 or 8")]
    UnsupportedBits(u32),
    #[error("group size {0} is not a positive multiple of 4; use 32, 64 or 128")]
    BadGroupSize(usize),
    #[error("{what} holds {found} values but the layout needs {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("the weights hold NaN or an infinite value at row {row}, column {col}")]
    NonFinite { row: usize, col: usize },
    #[error("group {group} of row {row} needs a scale above the float16 maximum (65504)")]
    ScaleOverflow { row: usize, group: usize },
    #[error("this CPU cannot run the {0} kernels; use \"auto\" or \"portable\"")]
    IsaUnavailable(&'static str),
}

/// The shape of a quantized matrix: what every kernel needs to find a row, group and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub rows: usize,
    pub cols: usize,
    pub group_size: usize,
    pub bits: u32,
    pub symmetric: bool,
}

impl Layout {
    /// A validated layout: bits in {2, 4, 8}, group size a positive multiple of 4.
    pub fn new(
        rows: usize,
        cols: usize,
        group_size: usize,
        bits: u32,
        symmetric: bool,
    ) -> Result<Self, QuantError> {
        if !matches!(bits, 2 | 4 | 8) {
            return Err(QuantError::UnsupportedBits(bits));
        }
        if group_size == 0 || !group_size.is_multiple_of(4) {
            return Err(QuantError::BadGroupSize(group_size));
        }
        Ok(Self {
            rows,
            cols,
            group_size,
            bits,
            symmetric,
        })
    }

    /// Columns after padding the row to a whole number of groups.
    pub fn padded_cols(&self) -> usize {
        self.cols.div_ceil(self.group_size) * self.group_size
    }

    /// Groups per row.
    pub fn groups(&self) -> usize {
        self.padded_cols() / self.group_size
    }

    /// Packed bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.padded_cols() * self.bits as usize / 8
    }

    /// The largest code.
    pub fn qmax(&self) -> u32 {
        (1 << self.bits) - 1
    }

    /// The code of 0 in a symmetric layout.
    pub fn symmetric_zero(&self) -> u8 {
        1 << (self.bits - 1)
    }

    /// Check the lengths of packed codes, scales and zero points (empty when symmetric).
    pub fn check_quantized(
        &self,
        packed: usize,
        scales: usize,
        zeros: usize,
    ) -> Result<(), QuantError> {
        expect_len("packed", self.rows * self.row_bytes(), packed)?;
        expect_len("scales", self.rows * self.groups(), scales)?;
        let expected_zeros = if self.symmetric {
            0
        } else {
            self.rows * self.groups()
        };
        expect_len("zero_points", expected_zeros, zeros)
    }
}

/// A quantized matrix as borrowed slices: packed codes, f16 scales (as their bit patterns) and
/// zero points (empty for a symmetric layout).
#[derive(Debug, Clone, Copy)]
pub struct Quantized<'a> {
    pub packed: &'a [u8],
    pub scales: &'a [u16],
    pub zeros: &'a [u8],
}

impl Quantized<'_> {
    /// Check the slices' lengths against `layout`.
    pub fn check(&self, layout: &Layout) -> Result<(), QuantError> {
        layout.check_quantized(self.packed.len(), self.scales.len(), self.zeros.len())
    }
}

/// `Ok` when a buffer holds the expected number of values, else a `LengthMismatch` naming it.
pub(crate) fn expect_len(
    what: &'static str,
    expected: usize,
    found: usize,
) -> Result<(), QuantError> {
    if expected == found {
        Ok(())
    } else {
        Err(QuantError::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    /// Deterministic pseudo-random normal-ish values (sum of uniforms), for tests.
    pub fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        (0..n).map(|_| uniform() + uniform() + uniform()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_pads_rows_to_whole_groups() {
        let layout = Layout::new(3, 100, 32, 4, false).unwrap();
        assert_eq!(layout.padded_cols(), 128);
        assert_eq!(layout.groups(), 4);
        assert_eq!(layout.row_bytes(), 64);
    }

    #[test]
    fn unsupported_bits_and_group_sizes_are_refused() {
        assert_eq!(
            Layout::new(1, 8, 32, 3, false),
            Err(QuantError::UnsupportedBits(3))
        );
        assert_eq!(
            Layout::new(1, 8, 30, 4, false),
            Err(QuantError::BadGroupSize(30))
        );
        assert_eq!(
            Layout::new(1, 8, 0, 4, false),
            Err(QuantError::BadGroupSize(0))
        );
    }
}
