//! Group-wise quantize and dequantize, one row per rayon task.

use half::f16;
use rayon::prelude::*;

use super::{expect_len, pack, Layout, QuantError, Quantized};

const F16_MAX: f32 = 65504.0;

/// Whether every value is finite: `x * 0` is NaN exactly for NaN and infinities, and a sum in
/// eight lanes vectorises where a search with an early exit would not.
#[inline(always)]
fn all_finite(values: &[f32]) -> bool {
    let mut acc = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for l in 0..8 {
            acc[l] += chunk[l] * 0.0;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * 0.0).sum();
    (acc.iter().sum::<f32>() + tail).is_finite()
}

/// The smallest and largest value of a group, including 0 (the range is widened to hold it).
/// Eight independent lanes let the compiler use vector min/max; the result is exact either way.
#[inline(always)]
fn range_with_zero(values: &[f32]) -> (f32, f32) {
    let mut lo = [0.0f32; 8];
    let mut hi = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for l in 0..8 {
            lo[l] = if chunk[l] < lo[l] { chunk[l] } else { lo[l] };
            hi[l] = if chunk[l] > hi[l] { chunk[l] } else { hi[l] };
        }
    }
    for &v in chunks.remainder() {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
    }
    let lo = lo.iter().fold(0.0f32, |a, &b| if b < a { b } else { a });
    let hi = hi.iter().fold(0.0f32, |a, &b| if b > a { b } else { a });
    (lo, hi)
}

/// The f16 scale (as bits), its float32 value and the zero point of one group, exactly as the
/// reference computes them.
fn group_params(values: &[f32], layout: &Layout) -> Option<(u16, f32, f32)> {
    let (lo, hi) = range_with_zero(values);
    let scale = if layout.symmetric {
        (-lo).max(hi) / ((1u32 << (layout.bits - 1)) - 1) as f32
    } else {
        (hi - lo) / layout.qmax() as f32
    };
    if scale > F16_MAX {
        return None;
    }
    let mut s16 = f16::from_f32(scale);
    // Round up, never down (as the reference): a smaller scale would clip the extremes.
    if s16.to_f32() < scale {
        s16 = f16::from_bits(s16.to_bits() + 1);
    }
    if s16.to_f32() == 0.0 {
        s16 = f16::ONE;
    }
    let s = s16.to_f32();
    let zero = if layout.symmetric {
        layout.symmetric_zero() as f32
    } else {
        rint(-lo / s).clamp(0.0, layout.qmax() as f32)
    };
    Some((s16.to_bits(), s, zero))
}

/// Round half to even, like `np.rint`. `f32::round_ties_even` is a library call on baseline
/// x86-64 (no SSE4.1), so values in range use the classic trick: adding 1.5 * 2^23 leaves no
/// fraction bits and the FPU's default rounding (to nearest, ties to even) does the rest.
#[inline(always)]
pub(crate) fn rint(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    if v.abs() < 4_194_304.0 {
        (v + MAGIC) - MAGIC
    } else {
        v.round_ties_even()
    }
}

/// The code of `x`. Clamping `x / s` to +-2^22 first keeps the rounding trick exact without a
/// branch (so the loop vectorises) and changes no result: the code is clamped to `qmax` anyway.
#[inline(always)]
fn code(x: f32, s: f32, zero: f32, qmax: f32) -> u8 {
    const MAGIC: f32 = 12_582_912.0;
    let v = (x / s).clamp(-4_194_304.0, 4_194_304.0);
    let c = (((v + MAGIC) - MAGIC) + zero).clamp(0.0, qmax);
    // SAFETY: `c` is an integer in 0..=255, so the conversion is exact.
    unsafe { c.to_int_unchecked::<i32>() as u8 }
}

/// Quantize a row-major `rows x cols` float matrix into packed codes, f16 scales (as their bit
/// patterns) and zero points (`zeros` is empty for a symmetric layout).
pub fn quantize(
    matrix: &[f32],
    layout: &Layout,
    packed: &mut [u8],
    scales: &mut [u16],
    zeros: &mut [u8],
) -> Result<(), QuantError> {
    let (rows, cols, groups) = (layout.rows, layout.cols, layout.groups());
    expect_len("weights", rows * cols, matrix.len())?;
    layout.check_quantized(packed.len(), scales.len(), zeros.len())?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let mut scratch_zeros;
    let zeros: &mut [u8] = if layout.symmetric {
        scratch_zeros = vec![0u8; rows * groups];
        &mut scratch_zeros
    } else {
        zeros
    };
    packed
        .par_chunks_mut(layout.row_bytes())
        .zip(scales.par_chunks_mut(groups))
        .zip(zeros.par_chunks_mut(groups))
        .enumerate()
        .try_for_each(|(r, ((packed_row, scale_row), zero_row))| {
            quantize_row(
                &matrix[r * cols..(r + 1) * cols],
                r,
                layout,
                packed_row,
                scale_row,
                zero_row,
            )
        })
}

fn quantize_row(
    row: &[f32],
    r: usize,
    layout: &Layout,
    packed: &mut [u8],
    scales: &mut [u16],
    zeros: &mut [u8],
) -> Result<(), QuantError> {
    if !all_finite(row) {
        let col = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(QuantError::NonFinite { row: r, col });
    }
    let gs = layout.group_size;
    let qmax = layout.qmax() as f32;
    let last = row[row.len() - 1];
    let mut codes = vec![0u8; layout.padded_cols()];
    for (g, group_codes) in codes.chunks_exact_mut(gs).enumerate() {
        let start = g * gs;
        let real = &row[start.min(row.len())..(start + gs).min(row.len())];
        // Padding repeats `last`, which already lies in the last group: the range is unchanged.
        let (s16, s, zero) =
            group_params(real, layout).ok_or(QuantError::ScaleOverflow { row: r, group: g })?;
        scales[g] = s16;
        zeros[g] = zero as u8;
        let (head, pad) = group_codes.split_at_mut(real.len());
        for (c, &x) in head.iter_mut().zip(real) {
            *c = code(x, s, zero, qmax);
        }
        pad.fill(code(last, s, zero, qmax));
    }
    pack(&codes, layout.bits, packed)
}

/// Write the float32 values of one packed row (its first `out.len()` columns) into `out`.
#[inline(always)]
pub(crate) fn dequantize_row(
    packed: &[u8],
    scales: &[u16],
    zeros: Option<&[u8]>,
    layout: &Layout,
    out: &mut [f32],
) {
    let gs = layout.group_size;
    let group_bytes = gs * layout.bits as usize / 8;
    let sym_zero = layout.symmetric_zero() as f32;
    for (g, out_group) in out.chunks_mut(gs).enumerate() {
        let s = f16::from_bits(scales[g]).to_f32();
        let z = zeros.map_or(sym_zero, |z| z[g] as f32);
        let bytes = &packed[g * group_bytes..(g + 1) * group_bytes];
        match layout.bits {
            8 => expand::<8>(bytes, s, z, out_group),
            4 => expand::<4>(bytes, s, z, out_group),
            _ => expand::<2>(bytes, s, z, out_group),
        }
    }
}

#[inline(always)]
fn expand<const BITS: u32>(bytes: &[u8], s: f32, z: f32, out: &mut [f32]) {
    let per = 8 / BITS as usize;
    let mask = ((1u16 << BITS) - 1) as u8;
    if out.len() == bytes.len() * per {
        for (chunk, &byte) in out.chunks_exact_mut(per).zip(bytes) {
            for (i, o) in chunk.iter_mut().enumerate() {
                *o = (((byte >> (i as u32 * BITS)) & mask) as f32 - z) * s;
            }
        }
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            let c = (bytes[j / per] >> ((j % per) as u32 * BITS)) & mask;
            *o = (c as f32 - z) * s;
        }
    }
}

/// Dequantize into a caller's row-major `rows x cols` float32 buffer, rows split across cores.
pub fn dequantize(q: Quantized<'_>, layout: &Layout, out: &mut [f32]) -> Result<(), QuantError> {
    q.check(layout)?;
    let (rows, cols, groups, rb) = (
        layout.rows,
        layout.cols,
        layout.groups(),
        layout.row_bytes(),
    );
    expect_len("output", rows * cols, out.len())?;
    if cols == 0 {
        return Ok(());
    }
    out.par_chunks_mut(cols)
        .enumerate()
        .for_each(|(r, out_row)| {
            let z = (!layout.symmetric).then(|| &q.zeros[r * groups..(r + 1) * groups]);
            dequantize_row(
                &q.packed[r * rb..(r + 1) * rb],
                &q.scales[r * groups..(r + 1) * groups],
                z,
                layout,
                out_row,
            );
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::values;
    use super::*;

    type Outputs = (Vec<u8>, Vec<u16>, Vec<u8>);

    fn try_run(matrix: &[f32], layout: &Layout) -> Result<Outputs, QuantError> {
        let mut packed = vec![0u8; layout.rows * layout.row_bytes()];
        let mut scales = vec![0u16; layout.rows * layout.groups()];
        let nz = if layout.symmetric { 0 } else { scales.len() };
        let mut zeros = vec![0u8; nz];
        quantize(matrix, layout, &mut packed, &mut scales, &mut zeros)?;
        Ok((packed, scales, zeros))
    }

    fn run(matrix: &[f32], layout: &Layout) -> Outputs {
        try_run(matrix, layout).unwrap()
    }

    fn round_trip(layout: &Layout, matrix: &[f32]) -> Vec<f32> {
        let (p, s, z) = run(matrix, layout);
        let mut out = vec![0.0; matrix.len()];
        let q = Quantized {
            packed: &p,
            scales: &s,
            zeros: &z,
        };
        dequantize(q, layout, &mut out).unwrap();
        out
    }

    #[test]
    fn the_error_of_every_value_is_within_one_step() {
        for bits in [2u32, 4, 8] {
            for symmetric in [false, true] {
                let layout = Layout::new(5, 100, 32, bits, symmetric).unwrap();
                let matrix = values(500, bits as u64);
                let (_, scales, _) = run(&matrix, &layout);
                let out = round_trip(&layout, &matrix);
                for (i, (a, b)) in matrix.iter().zip(&out).enumerate() {
                    let (r, c) = (i / 100, i % 100);
                    let s = f16::from_bits(scales[r * 4 + c / 32]).to_f32();
                    // Half a step inside the range; at its ends the rounded zero point and the
                    // f16 rounding of the scale can add up to (a little over) half a step more.
                    assert!(
                        (a - b).abs() <= 1.2 * s,
                        "{bits} bits, {symmetric}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_is_exact_in_asymmetric_groups() {
        let layout = Layout::new(1, 32, 32, 4, false).unwrap();
        let mut matrix = values(32, 3);
        matrix[5] = 0.0;
        assert_eq!(round_trip(&layout, &matrix)[5], 0.0);
    }

    #[test]
    fn rint_rounds_half_to_even_like_numpy() {
        let cases = [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, -0.0),
            (-1.5, -2.0),
            (3.49, 3.0),
        ];
        for (v, expected) in cases {
            assert_eq!(rint(v), expected, "{v}");
        }
        assert_eq!(rint(1e9), 1e9);
        assert_eq!(rint(8_388_609.5), 8_388_609.5f32.round_ties_even());
    }

    #[test]
    fn an_all_zero_group_gets_scale_one() {
        let layout = Layout::new(1, 32, 32, 4, false).unwrap();
        let (_, scales, _) = run(&[0.0; 32], &layout);
        assert_eq!(scales, vec![f16::ONE.to_bits()]);
    }

    #[test]
    fn padding_repeats_the_last_value() {
        let layout = Layout::new(1, 6, 8, 8, false).unwrap();
        let (packed, _, _) = run(&[1.0, -2.0, 3.0, 0.5, 0.25, -1.0], &layout);
        assert_eq!(packed[5], packed[6]);
        assert_eq!(packed[5], packed[7]);
    }

    #[test]
    fn non_finite_weights_are_refused_with_their_position() {
        let layout = Layout::new(2, 4, 4, 8, false).unwrap();
        let matrix = [0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0, 7.0];
        assert_eq!(
            try_run(&matrix, &layout),
            Err(QuantError::NonFinite { row: 1, col: 1 })
        );
    }

    #[test]
    fn a_range_beyond_f16_is_refused() {
        let layout = Layout::new(1, 4, 4, 2, false).unwrap();
        assert_eq!(
            try_run(&[1e6, -1e6, 0.0, 1.0], &layout),
            Err(QuantError::ScaleOverflow { row: 0, group: 0 })
        );
    }

    #[test]
    fn parallel_and_single_threaded_runs_write_the_same_bytes() {
        let layout = Layout::new(64, 300, 64, 4, false).unwrap();
        let matrix = values(64 * 300, 11);
        let parallel = run(&matrix, &layout);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| run(&matrix, &layout)), parallel);
    }
}
