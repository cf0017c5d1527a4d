//! The quantized linear layer's product `y = x W^T` for a small batch, fused with dequantization.
//!
//! At batch 1 a linear layer is bound by memory: every weight is read once for two flops. So the
//! kernel reads the packed codes (4-8x fewer bytes than float32) and never builds the float
//! matrix. Per group, `sum_j (c_j - z) s x_j = s (sum_j c_j x_j - z sum_j x_j)`: the inner loop
//! multiplies raw codes with the inputs and the zero point is applied once per group. The inputs
//! are first split into `8 / bits` planes matching the codes' positions inside a byte (plane `i`
//! holds the inputs of every byte's `i`-th code), so the inner loop is a plain, vectorisable
//! loop over bytes: shift, mask, convert, multiply-add. Rows of `W` (output features) are split
//! across rayon's threads. On x86 with AVX2 the loop is compiled a second time with AVX2 and FMA
//! enabled and chosen at run time, so the portable wheel still gets wide vectors.

use half::f16;
use rayon::prelude::*;

use super::{expect_len, Layout, QuantError, Quantized};

/// `out[b, r] = sum_c x[b, c] * W[r, c]` for `x` of `batch x cols`, `out` of `batch x rows`,
/// `W` given by its packed codes, f16 scales (bit patterns) and zero points.
pub fn matmul(
    x: &[f32],
    batch: usize,
    q: Quantized<'_>,
    layout: &Layout,
    out: &mut [f32],
) -> Result<(), QuantError> {
    q.check(layout)?;
    let (rows, cols) = (layout.rows, layout.cols);
    expect_len("inputs", batch * cols, x.len())?;
    expect_len("output", batch * rows, out.len())?;
    if batch == 0 || rows == 0 {
        return Ok(());
    }
    let (packed, scales, zeros) = (q.packed, q.scales, q.zeros);
    let inputs = Planes::new(x, batch, layout);
    let mut by_row = vec![0.0f32; rows * batch];
    let run = |by_row: &mut [f32]| match layout.bits {
        8 => rows_dispatch::<8>(&inputs, packed, scales, zeros, layout, by_row),
        4 => rows_dispatch::<4>(&inputs, packed, scales, zeros, layout, by_row),
        _ => rows_dispatch::<2>(&inputs, packed, scales, zeros, layout, by_row),
    };
    run(&mut by_row);
    for r in 0..rows {
        for b in 0..batch {
            out[b * rows + r] = by_row[r * batch + b];
        }
    }
    Ok(())
}

/// The inputs rearranged to match packed bytes, zero-padded to whole groups, with group sums.
struct Planes {
    /// `batch x per x row_bytes`: `planes[b][i][k]` is the input of code `i` of byte `k`.
    planes: Vec<f32>,
    /// `batch x groups`: the sum of each group's inputs (for the zero point term).
    sums: Vec<f32>,
    row_bytes: usize,
    per: usize,
}

impl Planes {
    fn new(x: &[f32], batch: usize, layout: &Layout) -> Self {
        let (cols, groups, gs) = (layout.cols, layout.groups(), layout.group_size);
        let per = 8 / layout.bits as usize;
        let row_bytes = layout.row_bytes();
        let mut planes = vec![0.0f32; batch * per * row_bytes];
        let mut sums = vec![0.0f32; batch * groups];
        for b in 0..batch {
            let xb = &x[b * cols..(b + 1) * cols];
            let pb = &mut planes[b * per * row_bytes..(b + 1) * per * row_bytes];
            for (c, &v) in xb.iter().enumerate() {
                pb[(c % per) * row_bytes + c / per] = v;
                sums[b * groups + c / gs] += v;
            }
        }
        Self {
            planes,
            sums,
            row_bytes,
            per,
        }
    }

    fn plane(&self, b: usize, i: usize) -> &[f32] {
        let start = (b * self.per + i) * self.row_bytes;
        &self.planes[start..start + self.row_bytes]
    }

    /// Every plane of input row `b`, one after the other.
    #[cfg(target_arch = "x86_64")]
    fn row_planes(&self, b: usize) -> &[f32] {
        let len = self.per * self.row_bytes;
        &self.planes[b * len..(b + 1) * len]
    }
}

fn rows_dispatch<const BITS: u32>(
    inputs: &Planes,
    packed: &[u8],
    scales: &[u16],
    zeros: &[u8],
    layout: &Layout,
    by_row: &mut [f32],
) {
    let batch = by_row.len() / layout.rows;
    let (groups, rb) = (layout.groups(), layout.row_bytes());
    let wide = has_avx2_fma();
    // Rows per task: enough work to amortise scheduling, small enough to balance across cores.
    let chunk = 16;
    by_row
        .par_chunks_mut(batch * chunk)
        .enumerate()
        .for_each(|(c, out_chunk)| {
            for (i, out_row) in out_chunk.chunks_mut(batch).enumerate() {
                let r = c * chunk + i;
                let row = Row {
                    codes: &packed[r * rb..(r + 1) * rb],
                    scales: &scales[r * groups..(r + 1) * groups],
                    zeros: (!layout.symmetric).then(|| &zeros[r * groups..(r + 1) * groups]),
                };
                #[cfg(target_arch = "x86_64")]
                if wide {
                    // Ask for the next row's codes while this row is computed: the loop is too
                    // short per row for the hardware prefetcher to run far enough ahead.
                    if let Some(next) = packed.get((r + 1) * rb..(r + 2) * rb) {
                        for line in next.chunks(64) {
                            // SAFETY: a prefetch of a valid address has no other effect.
                            unsafe {
                                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                                    line.as_ptr() as *const i8,
                                )
                            };
                        }
                    }
                    // SAFETY: the CPU supports AVX2 and FMA (`has_avx2_fma`).
                    unsafe { avx2::row_dot::<BITS>(&row, inputs, layout, out_row) };
                    continue;
                }
                row_dot::<BITS>(&row, inputs, layout, out_row);
            }
        });
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One row of the quantized matrix.
struct Row<'a> {
    codes: &'a [u8],
    scales: &'a [u16],
    zeros: Option<&'a [u8]>,
}

/// `out[b] = sum_c x[b, c] * W[r, c]` for one row `r` and every input row `b`.
#[inline(always)]
fn row_dot<const BITS: u32>(row: &Row<'_>, inputs: &Planes, layout: &Layout, out: &mut [f32]) {
    let groups = row.scales.len();
    let group_bytes = layout.group_size * BITS as usize / 8;
    let sym_zero = layout.symmetric_zero() as f32;
    out.fill(0.0);
    for g in 0..groups {
        let s = f16::from_bits(row.scales[g]).to_f32();
        let z = row.zeros.map_or(sym_zero, |z| z[g] as f32);
        let span = g * group_bytes..(g + 1) * group_bytes;
        let bytes = &row.codes[span.clone()];
        for (b, o) in out.iter_mut().enumerate() {
            let mut acc = [0.0f32; LANES];
            for i in 0..8 / BITS as usize {
                code_dot::<BITS>(
                    bytes,
                    &inputs.plane(b, i)[span.clone()],
                    i as u32 * BITS,
                    &mut acc,
                );
            }
            *o += s * (acc.iter().sum::<f32>() - z * inputs.sums[b * groups + g]);
        }
    }
}

const LANES: usize = 16;

/// `acc += code(bytes[k]) * plane[k]` lane-wise, with `LANES` independent accumulators so that
/// the compiler keeps them in vector registers (floats are not reassociated on their own).
#[inline(always)]
fn code_dot<const BITS: u32>(bytes: &[u8], plane: &[f32], shift: u32, acc: &mut [f32; LANES]) {
    let mask = ((1u16 << BITS) - 1) as u8;
    let mut chunks = bytes.chunks_exact(LANES);
    let mut planes = plane.chunks_exact(LANES);
    for (cb, cp) in (&mut chunks).zip(&mut planes) {
        let cb: &[u8; LANES] = cb.try_into().expect("chunk of LANES");
        let cp: &[f32; LANES] = cp.try_into().expect("chunk of LANES");
        for l in 0..LANES {
            acc[l] += ((cb[l] >> shift) & mask) as f32 * cp[l];
        }
    }
    for (l, (&byte, &p)) in chunks
        .remainder()
        .iter()
        .zip(planes.remainder())
        .enumerate()
    {
        acc[l] += ((byte >> shift) & mask) as f32 * p;
    }
}

/// The same row product with AVX2/FMA intrinsics: 8 codes widened to 8 floats per step, each
/// widened vector multiplied with up to 4 input rows, so codes are unpacked once per block.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{f16, Layout, Planes, Row};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_dot<const BITS: u32>(
        row: &Row<'_>,
        inputs: &Planes,
        layout: &Layout,
        out: &mut [f32],
    ) {
        out.fill(0.0);
        let mut b0 = 0;
        while b0 < out.len() {
            let left = out.len() - b0;
            // SAFETY: the caller guarantees AVX2 and FMA.
            unsafe {
                // Blocks of at most 4 rows: 8 accumulators stay in the 16 vector registers.
                if left >= 4 {
                    block::<BITS, 4>(row, inputs, layout, b0, out);
                    b0 += 4;
                } else if left >= 2 {
                    block::<BITS, 2>(row, inputs, layout, b0, out);
                    b0 += 2;
                } else {
                    block::<BITS, 1>(row, inputs, layout, b0, out);
                    b0 += 1;
                }
            }
        }
    }

    /// Input rows `b0 .. b0 + NB` against one row of codes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<const BITS: u32, const NB: usize>(
        row: &Row<'_>,
        inputs: &Planes,
        layout: &Layout,
        b0: usize,
        out: &mut [f32],
    ) {
        let groups = row.scales.len();
        let group_bytes = layout.group_size * BITS as usize / 8;
        let sym_zero = layout.symmetric_zero() as f32;
        let mask = _mm256_set1_epi32((1 << BITS) - 1);
        let m = ((1u16 << BITS) - 1) as u8;
        // Per input row: scaled partial sums kept in a vector across groups (one horizontal sum
        // per row, not per group), and the scalar terms (zero points, tails) beside them.
        let mut total = [_mm256_setzero_ps(); NB];
        let mut scalar = [0.0f32; NB];
        for g in 0..groups {
            let s = f16::from_bits(row.scales[g]).to_f32();
            let z = row.zeros.map_or(sym_zero, |z| z[g] as f32);
            let start = g * group_bytes;
            let bytes = &row.codes[start..start + group_bytes];
            let mut acc0 = [_mm256_setzero_ps(); NB];
            let mut acc1 = [_mm256_setzero_ps(); NB];
            let mut tail = [0.0f32; NB];
            let per = 8 / BITS as usize;
            let rb = inputs.row_bytes;
            let shifts: [__m128i; 4] =
                std::array::from_fn(|i| _mm_cvtsi32_si128((i as u32 * BITS) as i32));
            // Input row j's plane i starts at bases[j] + i * rb (planes of a row are adjacent).
            let bases: [&[f32]; NB] = std::array::from_fn(|j| inputs.row_planes(b0 + j));
            let mut k = 0;
            while k + 16 <= group_bytes {
                // Each 16 bytes are loaded and widened once, then every code position in them
                // (plane i) is shifted out and multiplied with every input row.
                // SAFETY: start + k + 16 <= start + group_bytes <= rb, so every access lies in
                // bytes (group_bytes long) and in bases[j] (per * rb long).
                unsafe {
                    let lo = _mm_loadl_epi64(bytes.as_ptr().add(k) as *const __m128i);
                    let hi = _mm_loadl_epi64(bytes.as_ptr().add(k + 8) as *const __m128i);
                    let (w0, w1) = (_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(hi));
                    for (i, &shift) in shifts.iter().enumerate().take(per) {
                        let c0 = _mm256_and_si256(_mm256_srl_epi32(w0, shift), mask);
                        let c1 = _mm256_and_si256(_mm256_srl_epi32(w1, shift), mask);
                        let (f0, f1) = (_mm256_cvtepi32_ps(c0), _mm256_cvtepi32_ps(c1));
                        for j in 0..NB {
                            let p = bases[j].as_ptr().add(i * rb + start + k);
                            acc0[j] = _mm256_fmadd_ps(f0, _mm256_loadu_ps(p), acc0[j]);
                            acc1[j] = _mm256_fmadd_ps(f1, _mm256_loadu_ps(p.add(8)), acc1[j]);
                        }
                    }
                }
                k += 16;
            }
            for i in 0..per {
                for (kk, &byte) in bytes.iter().enumerate().skip(k) {
                    let c = ((byte >> (i as u32 * BITS)) & m) as f32;
                    for (j, t) in tail.iter_mut().enumerate() {
                        *t += c * inputs.plane(b0 + j, i)[start + kk];
                    }
                }
            }
            let sv = _mm256_set1_ps(s);
            for j in 0..NB {
                total[j] = _mm256_fmadd_ps(_mm256_add_ps(acc0[j], acc1[j]), sv, total[j]);
                scalar[j] += s * (tail[j] - z * inputs.sums[(b0 + j) * groups + g]);
            }
        }
        for j in 0..NB {
            let acc = total[j];
            let quad = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            let one = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1));
            out[b0 + j] = _mm_cvtss_f32(one) + scalar[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::values;
    use super::super::{dequantize, quantize};
    use super::*;

    #[test]
    fn the_fused_product_equals_a_product_with_the_dequantized_matrix() {
        for (bits, symmetric) in [(8u32, false), (4, true), (4, false), (2, false)] {
            let layout = Layout::new(37, 150, 32, bits, symmetric).unwrap();
            let matrix = values(37 * 150, 5);
            let mut packed = vec![0u8; 37 * layout.row_bytes()];
            let mut scales = vec![0u16; 37 * layout.groups()];
            let mut zeros = vec![0u8; if symmetric { 0 } else { scales.len() }];
            quantize(&matrix, &layout, &mut packed, &mut scales, &mut zeros).unwrap();
            let mut w = vec![0.0f32; 37 * 150];
            let q = Quantized {
                packed: &packed,
                scales: &scales,
                zeros: &zeros,
            };
            dequantize(q, &layout, &mut w).unwrap();
            let batch = 11;
            let x = values(batch * 150, 9);
            let mut out = vec![0.0f32; batch * 37];
            matmul(&x, batch, q, &layout, &mut out).unwrap();
            for b in 0..batch {
                for r in 0..37 {
                    let expected: f64 = (0..150)
                        .map(|c| x[b * 150 + c] as f64 * w[r * 150 + c] as f64)
                        .sum();
                    let got = out[b * 37 + r] as f64;
                    assert!(
                        (got - expected).abs() < 1e-3 * (1.0 + expected.abs()),
                        "{bits} {b} {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn inputs_of_the_wrong_width_are_refused() {
        let layout = Layout::new(2, 8, 4, 8, true).unwrap();
        let mut out = vec![0.0; 2];
        assert_eq!(
            matmul(
                &[0.0; 7],
                1,
                Quantized {
                    packed: &[0; 16],
                    scales: &[0; 4],
                    zeros: &[],
                },
                &layout,
                &mut out
            ),
            Err(QuantError::LengthMismatch {
                what: "inputs",
                expected: 8,
                found: 7
            })
        );
    }
}
