//! The quantized linear layer's product with int8 activations: `y = x W^T` in integer arithmetic.
//!
//! The float fused path (`matmul`) widens every code to a float and spends one FMA per weight,
//! so it cannot beat float32 BLAS once the weights sit in cache. Here the inputs are quantized
//! too, per row and per weight group, to symmetric int8 (`x ≈ s_x q`, `s_x = max|x| / 127`),
//! and each group's products are summed exactly in 32-bit integers by the CPU's byte dot-product
//! instructions: AVX-512 VNNI `vpdpbusd` (32 unsigned-by-signed byte products per 256-bit
//! instruction) or AVX2 `vpmaddubsw` + `vpmaddwd`, chosen at run time, with a portable loop
//! elsewhere. With `w = s_w (c - z)` per group, a group contributes
//!
//! `s_w s_x (Σ c_j q_j - z Σ q_j)`
//!
//! so the scales and zero point are applied once per group, not once per weight. The only error
//! beyond the weights' own is the rounding of `x` to int8: at most `s_x / 2` per input, so a
//! group's contribution is off by at most `s_x / 2 · Σ |w_j|` (tests check this bound).
//!
//! Register tiling: a tile of `R` weight rows times `B` input rows keeps `R·B` integer and `R·B`
//! float accumulators in registers, so every 32 bytes of codes loaded serve `B` inputs and every
//! input vector serves `R` rows. Rows are split across rayon's threads.

use half::f16;
use rayon::prelude::*;

use super::{expect_len, Layout, QuantError, Quantized};

/// The instruction set the integer dot products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotIsa {
    /// AVX-512 VNNI `vpdpbusd` on 256-bit vectors (needs avx512vnni and avx512vl).
    Vnni,
    /// AVX2 `vpmaddubsw` (bytes to 16-bit pairs) then `vpmaddwd` (pairs to 32-bit).
    Avx2,
    /// Plain Rust loops over 32-bit integers (any CPU; what the compiler vectorises).
    Portable,
}

impl DotIsa {
    /// The fastest instruction set this CPU supports.
    pub fn detect() -> Self {
        [DotIsa::Vnni, DotIsa::Avx2]
            .into_iter()
            .find(|isa| isa.available())
            .unwrap_or(DotIsa::Portable)
    }

    /// Whether this CPU can run `self`.
    pub fn available(self) -> bool {
        match self {
            DotIsa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            DotIsa::Vnni => {
                std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && DotIsa::Avx2.available()
            }
            #[cfg(target_arch = "x86_64")]
            DotIsa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The name `aios doctor` and the benchmarks print: "vnni", "avx2" or "portable".
    pub fn name(self) -> &'static str {
        match self {
            DotIsa::Vnni => "vnni",
            DotIsa::Avx2 => "avx2",
            DotIsa::Portable => "portable",
        }
    }

    /// Parse a name given by `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "vnni" => Some(DotIsa::Vnni),
            "avx2" => Some(DotIsa::Avx2),
            "portable" => Some(DotIsa::Portable),
            _ => None,
        }
    }

    /// Whether the SIMD kernels handle `layout`: 4- or 8-bit codes in groups of whole 32-byte
    /// vectors (int8: group size a multiple of 32; int4: of 64). Other layouts run portably.
    fn handles(self, layout: &Layout) -> bool {
        self != DotIsa::Portable
            && matches!(layout.bits, 4 | 8)
            && (layout.group_size * layout.bits as usize / 8).is_multiple_of(32)
    }
}

/// How many row tiles ahead the SIMD kernels prefetch weight codes.
const PREFETCH_TILES: usize = 2;

/// Largest group whose integer sum cannot overflow 32 bits (`255 · 127 · n < 2^31`).
pub const MAX_GROUP_SIZE: usize = 65536;

/// `out[b, r] = Σ_c x[b, c] W[r, c]` with `x` quantized to int8 per row and group (see the module
/// documentation for the numerics), on the fastest instruction set of this CPU.
pub fn matmul_q8(
    x: &[f32],
    batch: usize,
    q: Quantized<'_>,
    layout: &Layout,
    out: &mut [f32],
) -> Result<(), QuantError> {
    matmul_q8_threads(DotIsa::detect(), x, batch, q, layout, out, true)
}

/// `matmul_q8` on a chosen instruction set (tests compare them; benchmarks time them),
/// choosing how two cores share the rows: `helper` uses the helper thread that stays awake
/// between calls (`crate::pair`), else rayon's pool. The helper is the faster one unless other
/// threads spin on the second core between calls (torch's OpenMP workers under its default wait
/// policy), where the two would take turns on it.
pub fn matmul_q8_threads(
    isa: DotIsa,
    x: &[f32],
    batch: usize,
    q: Quantized<'_>,
    layout: &Layout,
    out: &mut [f32],
    helper: bool,
) -> Result<(), QuantError> {
    q.check(layout)?;
    if !isa.available() {
        return Err(QuantError::IsaUnavailable(isa.name()));
    }
    if layout.group_size > MAX_GROUP_SIZE {
        return Err(QuantError::BadGroupSize(layout.group_size));
    }
    let (rows, cols) = (layout.rows, layout.cols);
    expect_len("inputs", batch * cols, x.len())?;
    expect_len("output", batch * rows, out.len())?;
    if batch == 0 || rows == 0 {
        return Ok(());
    }
    let simd = isa.handles(layout);
    let acts = Activations::new(x, batch, layout, simd && layout.bits == 4);
    let weights = Weights { q, layout };
    let isa = if simd { isa } else { DotIsa::Portable };
    let rows_per_task = task_rows(rows, batch, layout.padded_cols());
    let run = |r0: usize, part: &mut [f32]| {
        let count = part.len() / batch;
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa.available()` checked the CPU features; `handles` the layout.
            DotIsa::Vnni => unsafe { vnni::rows(&weights, &acts, r0, count, part) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            DotIsa::Avx2 => unsafe { avx2::rows(&weights, &acts, r0, count, part) },
            _ => portable_rows(&weights, &acts, r0, count, part),
        }
    };
    // Work is computed row-major (`rows x batch`, each task owns whole rows) and transposed once
    // at the end; at batch 1 the two layouts coincide and `out` is written directly.
    let mut by_row = if batch == 1 {
        Vec::new()
    } else {
        vec![0.0f32; rows * batch]
    };
    let target: &mut [f32] = if batch == 1 { out } else { &mut by_row };
    if rows_per_task >= rows {
        run(0, target);
    } else if helper && rayon::current_num_threads() == 2 {
        // Two cores: the caller and one helper that stays awake between a forward's calls
        // (`crate::pair`: rayon's sleeping worker was slower to wake than its half took).
        let half = (rows / 2).div_ceil(4) * 4;
        let (first, second) = target.split_at_mut(half * batch);
        crate::pair::join(|| run(0, first), || run(half, second));
    } else {
        target
            .par_chunks_mut(rows_per_task * batch)
            .enumerate()
            .for_each(|(i, part)| run(i * rows_per_task, part));
    }
    if batch > 1 {
        for r in 0..rows {
            for b in 0..batch {
                out[b * rows + r] = by_row[r * batch + b];
            }
        }
    }
    Ok(())
}

/// Rows per rayon task: one task when the whole product is too small to pay for waking a second
/// thread (about 1 M multiply-adds, some 15 µs on one core), else about eight tasks per thread, in multiples of 4.
fn task_rows(rows: usize, batch: usize, cols: usize) -> usize {
    let work = rows * batch * cols;
    let threads = rayon::current_num_threads().max(1);
    if work < 1_000_000 || threads == 1 {
        return rows;
    }
    let per = rows.div_ceil(threads * 8);
    per.div_ceil(4).max(1) * 4
}

/// The quantized weight and its layout.
struct Weights<'a> {
    q: Quantized<'a>,
    layout: &'a Layout,
}

impl Weights<'_> {
    #[inline(always)]
    fn scale(&self, r: usize, g: usize) -> f32 {
        f16::from_bits(self.q.scales[r * self.layout.groups() + g]).to_f32()
    }

    #[inline(always)]
    fn zero(&self, r: usize, g: usize) -> f32 {
        if self.layout.symmetric {
            self.layout.symmetric_zero() as f32
        } else {
            self.q.zeros[r * self.layout.groups() + g] as f32
        }
    }
}

/// One input row's codes, scales, sums and floats, as the quantizer of `Activations` takes them.
type RowParts<'a> = ((&'a mut [i8], &'a mut [f32]), (&'a mut [i32], &'a [f32]));

/// The inputs quantized to int8 per row and group, zero-padded to whole groups.
struct Activations {
    /// `batch x width` codes. For int4 weights on the SIMD paths each 64 inputs are stored as
    /// their 32 even positions then their 32 odd ones, matching the low and high nibbles of the
    /// 32 bytes that hold their codes; otherwise in natural order.
    codes: Vec<i8>,
    /// `batch x groups`: the float scale of each group's codes.
    scales: Vec<f32>,
    /// `batch x groups`: the sum of each group's codes (for the zero-point term).
    sums: Vec<i32>,
    /// `groups x batch`: the scales again, input rows adjacent, so a tile of 4 inputs loads its
    /// 4 scales of a group as one vector.
    scales_by_group: Vec<f32>,
    /// `groups x batch`: scale times code sum, what the zero point multiplies.
    scaled_sums_by_group: Vec<f32>,
    batch: usize,
    width: usize,
    groups: usize,
    group_size: usize,
}

impl Activations {
    fn new(x: &[f32], batch: usize, layout: &Layout, split_nibbles: bool) -> Self {
        let (cols, width, groups, gs) = (
            layout.cols,
            layout.padded_cols(),
            layout.groups(),
            layout.group_size,
        );
        let mut codes = vec![0i8; batch * width];
        let mut scales = vec![0.0f32; batch * groups];
        let mut sums = vec![0i32; batch * groups];
        let quantize_row = |((row_codes, row_scales), (row_sums, xb)): RowParts<'_>| {
            let mut natural = vec![0i8; gs];
            for g in 0..groups {
                let start = g * gs;
                let real = &xb[start.min(cols)..(start + gs).min(cols)];
                let peak = peak_abs(real);
                let (scale, inverse) = if peak > 0.0 {
                    (peak / 127.0, 127.0 / peak)
                } else {
                    (0.0, 0.0)
                };
                row_scales[g] = scale;
                let codes = &mut natural[..real.len()];
                round_codes(real, inverse, codes);
                row_sums[g] = codes.iter().map(|&c| c as i32).sum();
                let group = &mut row_codes[start..start + gs];
                if split_nibbles {
                    // Whole groups of 64 here (the SIMD int4 path needs group % 64 == 0);
                    // the padding past `real` stays 0.
                    for (span, out) in natural.chunks(64).zip(group.chunks_mut(64)) {
                        let (even, odd) = out.split_at_mut(32);
                        for (k, pair) in span.chunks_exact(2).enumerate() {
                            even[k] = pair[0];
                            odd[k] = pair[1];
                        }
                    }
                    natural.fill(0);
                } else {
                    group[..real.len()].copy_from_slice(codes);
                }
            }
        };
        if batch * cols >= 65_536 {
            codes
                .par_chunks_mut(width)
                .zip(scales.par_chunks_mut(groups))
                .zip(sums.par_chunks_mut(groups).zip(x.par_chunks(cols.max(1))))
                .for_each(quantize_row);
        } else {
            codes
                .chunks_mut(width)
                .zip(scales.chunks_mut(groups))
                .zip(sums.chunks_mut(groups).zip(x.chunks(cols.max(1))))
                .for_each(quantize_row);
        }
        let mut scales_by_group = vec![0.0f32; groups * batch];
        let mut scaled_sums_by_group = vec![0.0f32; groups * batch];
        for b in 0..batch {
            for g in 0..groups {
                let (s, sum) = (scales[b * groups + g], sums[b * groups + g]);
                scales_by_group[g * batch + b] = s;
                scaled_sums_by_group[g * batch + b] = s * sum as f32;
            }
        }
        Self {
            codes,
            scales,
            sums,
            scales_by_group,
            scaled_sums_by_group,
            batch,
            width,
            groups,
            group_size: gs,
        }
    }
}

/// The largest magnitude of `values` (0 for none). Eight lanes let the compiler use vector max.
#[inline(always)]
fn peak_abs(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for l in 0..8 {
            let v = chunk[l].abs();
            lanes[l] = if v > lanes[l] { v } else { lanes[l] };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// `codes = round_half_even(values * inverse)`, clamped to ±127. The clamp comes first, so the
/// `1.5 · 2^23` rounding trick is exact and the loop has no branch (it vectorises).
#[inline(always)]
fn round_codes(values: &[f32], inverse: f32, codes: &mut [i8]) {
    const MAGIC: f32 = 12_582_912.0;
    for (c, &v) in codes.iter_mut().zip(values) {
        let t = (v * inverse).clamp(-127.0, 127.0);
        // SAFETY: `t` is rounded to an integer in -127..=127, which an i32 holds exactly.
        *c = unsafe { ((t + MAGIC) - MAGIC).to_int_unchecked::<i32>() } as i8;
    }
}

/// Rows `r0 .. r0 + count` against every input, written to `part[(r - r0) * batch + b]`:
/// codes of a row are unpacked once into 8-bit values, then each group is an integer dot
/// product per input row.
fn portable_rows(w: &Weights<'_>, acts: &Activations, r0: usize, count: usize, part: &mut [f32]) {
    let layout = w.layout;
    let (rb, width, groups, gs) = (layout.row_bytes(), acts.width, acts.groups, acts.group_size);
    let batch = part.len() / count.max(1);
    let per = 8 / layout.bits as usize;
    let mask = ((1u16 << layout.bits) - 1) as u8;
    let mut codes = vec![0u8; width];
    for i in 0..count {
        let r = r0 + i;
        for (k, &byte) in w.q.packed[r * rb..(r + 1) * rb].iter().enumerate() {
            for j in 0..per {
                codes[k * per + j] = (byte >> (j as u32 * layout.bits)) & mask;
            }
        }
        for b in 0..batch {
            let xq = &acts.codes[b * width..(b + 1) * width];
            let mut total = 0.0f32;
            for g in 0..groups {
                let span = g * gs..(g + 1) * gs;
                let dot: i32 = codes[span.clone()]
                    .iter()
                    .zip(&xq[span])
                    .map(|(&c, &q)| c as i32 * q as i32)
                    .sum();
                let s = w.scale(r, g) * acts.scales[b * groups + g];
                total += s * (dot as f32 - w.zero(r, g) * acts.sums[b * groups + g] as f32);
            }
            part[i * batch + b] = total;
        }
    }
}

/// The register-tiled kernel, compiled once per instruction set by `simd_kernel!` with that
/// set's byte dot product (`dot8` for 8-bit codes, `dot4` for 4-bit ones, both adding into
/// 32-bit lanes) and the row tile `R` its register file affords.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_kernel {
    ($features:literal, $row_tile:literal, $few_tile:literal, $offset8:literal) => {
        use super::{Activations, Weights, PREFETCH_TILES};
        use std::arch::x86_64::*;

        /// Added to what `dot8` sums: it multiplies `c - OFFSET8` instead of `c`.
        const OFFSET8: f32 = $offset8 as f32;

        /// Rows `r0 .. r0 + count` against every input (see `portable_rows`).
        ///
        /// # Safety
        /// The CPU must support the module's features and the layout must have 4- or 8-bit
        /// codes in groups of whole 32-byte vectors.
        #[target_feature(enable = $features)]
        #[allow(clippy::int_plus_one)] // `r + 1 <= count` when the row tile is 1
        pub(super) unsafe fn rows(
            w: &Weights<'_>,
            acts: &Activations,
            r0: usize,
            count: usize,
            part: &mut [f32],
        ) {
            let batch = part.len() / count.max(1);
            let mut r = 0;
            // SAFETY (all calls below): tiles stay inside `count` rows and `batch` inputs.
            unsafe {
                if batch < 4 {
                    // Few inputs: a taller tile gives independent accumulator chains.
                    while r + $few_tile <= count {
                        by_inputs::<$few_tile>(w, acts, r0, r, batch, part);
                        r += $few_tile;
                    }
                }
                while r + $row_tile <= count {
                    by_inputs::<$row_tile>(w, acts, r0, r, batch, part);
                    r += $row_tile;
                }
                while r < count {
                    by_inputs::<1>(w, acts, r0, r, batch, part);
                    r += 1;
                }
            }
        }

        /// Rows `r .. r + R` (relative to `r0`) against every input, 4 inputs at a time.
        #[target_feature(enable = $features)]
        unsafe fn by_inputs<const R: usize>(
            w: &Weights<'_>,
            acts: &Activations,
            r0: usize,
            r: usize,
            batch: usize,
            part: &mut [f32],
        ) {
            let mut b = 0;
            // SAFETY: every tile lies inside the inputs and rows.
            unsafe {
                while b + 4 <= batch {
                    tile_bits::<R, 4>(w, acts, r0, r, b, batch, part);
                    b += 4;
                }
                if b + 2 <= batch {
                    tile_bits::<R, 2>(w, acts, r0, r, b, batch, part);
                    b += 2;
                }
                if b < batch {
                    tile_bits::<R, 1>(w, acts, r0, r, b, batch, part);
                }
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn tile_bits<const R: usize, const B: usize>(
            w: &Weights<'_>,
            acts: &Activations,
            r0: usize,
            r: usize,
            b: usize,
            batch: usize,
            part: &mut [f32],
        ) {
            // SAFETY: forwarded.
            unsafe {
                if w.layout.bits == 8 {
                    tile::<8, R, B>(w, acts, r0, r, b, batch, part)
                } else {
                    tile::<4, R, B>(w, acts, r0, r, b, batch, part)
                }
            }
        }

        /// One `R x B` tile: weight rows `r0 + r ..` against inputs `b ..`.
        #[target_feature(enable = $features)]
        unsafe fn tile<const BITS: u32, const R: usize, const B: usize>(
            w: &Weights<'_>,
            acts: &Activations,
            r0: usize,
            r: usize,
            b: usize,
            batch: usize,
            part: &mut [f32],
        ) {
            let layout = w.layout;
            let (rb, groups, gs, width) =
                (layout.row_bytes(), acts.groups, acts.group_size, acts.width);
            let group_bytes = gs * BITS as usize / 8;
            let offset = if BITS == 8 { OFFSET8 } else { 0.0 };
            let nibble = _mm256_set1_epi8(0x0F);
            let mut total = [[_mm256_setzero_ps(); B]; R];
            let mut correction = [[0.0f32; B]; R];
            let codes = w.q.packed.as_ptr();
            let inputs = acts.codes.as_ptr();
            // The rows `PREFETCH_TILES` tiles ahead, fetched a group at a time while this tile
            // computes: a model's weights come from memory, not cache, on every forward, and
            // the hardware prefetchers do not follow `R` rows read a group at a time.
            let ahead = r0 + r + PREFETCH_TILES * R;
            let prefetch = b == 0 && ahead + R <= layout.rows;
            if prefetch {
                // and the scales and zero points of those rows, read in every group's epilogue
                let first = ahead * groups;
                let scales = w.q.scales.as_ptr();
                let zeros = w.q.zeros.as_ptr();
                let mut at = 0;
                while at < R * groups {
                    // SAFETY: a prefetch never faults; the addresses lie in the arrays.
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(scales.add(first + at) as *const i8);
                        if !layout.symmetric {
                            _mm_prefetch::<_MM_HINT_T0>(zeros.add(first + at) as *const i8);
                        }
                    }
                    at += 32;
                }
            }
            for g in 0..groups {
                if prefetch {
                    for i in 0..R {
                        let line = (ahead + i) * rb + g * group_bytes;
                        let mut at = 0;
                        while at < group_bytes {
                            // SAFETY: a prefetch never faults; the address lies in the codes.
                            unsafe {
                                _mm_prefetch::<_MM_HINT_T0>(codes.add(line + at) as *const i8)
                            };
                            at += 64;
                        }
                    }
                }
                let mut dots = [[_mm256_setzero_si256(); B]; R];
                let mut k = 0;
                while k < group_bytes {
                    // SAFETY: k + 32 <= group_bytes, so every load lies in its row of codes
                    // (r0 + r + i < rows) and in its input row (b + j < batch).
                    unsafe {
                        let mut lo = [_mm256_setzero_si256(); R];
                        let mut hi = [_mm256_setzero_si256(); R];
                        for i in 0..R {
                            let p = codes.add((r0 + r + i) * rb + g * group_bytes + k);
                            let v = _mm256_loadu_si256(p as *const __m256i);
                            if BITS == 8 {
                                lo[i] = prepare8(v);
                            } else {
                                lo[i] = _mm256_and_si256(v, nibble);
                                hi[i] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
                            }
                        }
                        for j in 0..B {
                            let row = inputs.add((b + j) * width + g * gs);
                            if BITS == 8 {
                                let x = _mm256_loadu_si256(row.add(k) as *const __m256i);
                                for i in 0..R {
                                    dots[i][j] = dot8(dots[i][j], lo[i], x);
                                }
                            } else {
                                let even = _mm256_loadu_si256(row.add(2 * k) as *const __m256i);
                                let odd = _mm256_loadu_si256(row.add(2 * k + 32) as *const __m256i);
                                for i in 0..R {
                                    dots[i][j] = dot4(dots[i][j], lo[i], even);
                                    dots[i][j] = dot4(dots[i][j], hi[i], odd);
                                }
                            }
                        }
                    }
                    k += 32;
                }
                if B == 4 {
                    // Four inputs: the four integer vectors of a row are folded into one by
                    // horizontal adds (lane j holds input j's low half, lane j + 4 its high
                    // half), so conversion, scaling and the zero-point term are one vector
                    // operation each for all four. `xs` and `es` hold the four inputs' scales
                    // and scaled code sums, twice.
                    // SAFETY: b + 4 <= batch, inside the group's row of the by-group arrays.
                    let (xs, es) = unsafe {
                        let at = g * acts.batch + b;
                        (
                            _mm256_broadcast_ps(&_mm_loadu_ps(
                                acts.scales_by_group.as_ptr().add(at),
                            )),
                            _mm256_broadcast_ps(&_mm_loadu_ps(
                                acts.scaled_sums_by_group.as_ptr().add(at),
                            )),
                        )
                    };
                    for i in 0..R {
                        let ws = half_to_f32(w.q.scales[(r0 + r + i) * groups + g]);
                        let z = w.zero(r0 + r + i, g) - offset;
                        let d = &dots[i];
                        let folded = _mm256_hadd_epi32(
                            _mm256_hadd_epi32(d[0], d[1 % B]),
                            _mm256_hadd_epi32(d[2 % B], d[3 % B]),
                        );
                        let s = _mm256_mul_ps(_mm256_set1_ps(ws), xs);
                        let t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(folded), s, total[i][0]);
                        // Each of the two halves takes half of the zero-point term.
                        total[i][0] = _mm256_fnmadd_ps(_mm256_set1_ps(0.5 * ws * z), es, t);
                    }
                    continue;
                }
                for i in 0..R {
                    let ws = half_to_f32(w.q.scales[(r0 + r + i) * groups + g]);
                    let z = w.zero(r0 + r + i, g) - offset;
                    for j in 0..B {
                        let s = ws * acts.scales[(b + j) * groups + g];
                        let d = _mm256_cvtepi32_ps(dots[i][j]);
                        total[i][j] = _mm256_fmadd_ps(d, _mm256_set1_ps(s), total[i][j]);
                        correction[i][j] += s * z * acts.sums[(b + j) * groups + g] as f32;
                    }
                }
            }
            if B == 4 {
                for i in 0..R {
                    let mut lanes = [0.0f32; 8];
                    // SAFETY: 8 floats into an 8-float array.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total[i][0]) };
                    for j in 0..4 {
                        part[(r + i) * batch + b + j] = lanes[j] + lanes[j + 4];
                    }
                }
                return;
            }
            for i in 0..R {
                for j in 0..B {
                    part[(r + i) * batch + b + j] = sum(total[i][j]) - correction[i][j];
                }
            }
        }

        /// An f16 scale (its bits) as f32, with the F16C instruction.
        #[target_feature(enable = $features)]
        #[inline]
        fn half_to_f32(bits: u16) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
        }

        #[target_feature(enable = $features)]
        #[inline]
        fn sum(v: __m256) -> f32 {
            let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
        }
    };
}

/// AVX-512 VNNI: `vpdpbusd` adds four unsigned-by-signed byte products into each 32-bit lane,
/// without saturation, so 8-bit codes (0..=255) go in as they are.
#[cfg(target_arch = "x86_64")]
mod vnni {
    simd_kernel!("avx2,fma,f16c,avx512f,avx512vl,avx512vnni", 4, 4, 0);

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    #[inline]
    fn prepare8(codes: __m256i) -> __m256i {
        codes
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    #[inline]
    fn dot8(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, codes, x)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    #[inline]
    fn dot4(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, codes, x)
    }
}

/// AVX2: `vpmaddubsw` multiplies unsigned by signed bytes and adds pairs into 16 bits with
/// saturation, which 255 · 127 · 2 would hit. So 8-bit codes are recentred to `c - 128` (signed),
/// and the product `(c - 128) q` is formed as `|c - 128| · (q · sign(c - 128))`: at most
/// 128 · 127 · 2 = 32512 per pair, below 32767. 4-bit codes (at most 15 · 127 · 2) go in as they
/// are. `vpmaddwd` with ones then widens the pairs to 32 bits.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    simd_kernel!("avx2,fma,f16c", 1, 2, 128);

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn prepare8(codes: __m256i) -> __m256i {
        _mm256_xor_si256(codes, _mm256_set1_epi8(-128))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dot8(acc: __m256i, centred: __m256i, x: __m256i) -> __m256i {
        let magnitude = _mm256_sign_epi8(centred, centred);
        let signed_x = _mm256_sign_epi8(x, centred);
        let pairs = _mm256_maddubs_epi16(magnitude, signed_x);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dot4(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(codes, x);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::values;
    use super::super::{dequantize, quantize};
    use super::*;

    struct Case {
        layout: Layout,
        packed: Vec<u8>,
        scales: Vec<u16>,
        zeros: Vec<u8>,
        dequantized: Vec<f32>,
    }

    impl Case {
        fn new(rows: usize, cols: usize, group: usize, bits: u32, symmetric: bool) -> Self {
            let layout = Layout::new(rows, cols, group, bits, symmetric).unwrap();
            let matrix = values(rows * cols, bits as u64 * 31 + cols as u64);
            let mut packed = vec![0u8; rows * layout.row_bytes()];
            let mut scales = vec![0u16; rows * layout.groups()];
            let mut zeros = vec![0u8; if symmetric { 0 } else { scales.len() }];
            quantize(&matrix, &layout, &mut packed, &mut scales, &mut zeros).unwrap();
            let mut dequantized = vec![0.0f32; rows * cols];
            let case = Case {
                layout,
                packed,
                scales,
                zeros,
                dequantized: Vec::new(),
            };
            dequantize(case.q(), &layout, &mut dequantized).unwrap();
            Case {
                dequantized,
                ..case
            }
        }

        fn q(&self) -> Quantized<'_> {
            Quantized {
                packed: &self.packed,
                scales: &self.scales,
                zeros: &self.zeros,
            }
        }

        fn run(&self, isa: DotIsa, x: &[f32], batch: usize) -> Vec<f32> {
            let mut out = vec![0.0f32; batch * self.layout.rows];
            matmul_q8_threads(isa, x, batch, self.q(), &self.layout, &mut out, true).unwrap();
            out
        }

        /// The exact product with the dequantized weight, and the bound on the error of
        /// quantizing `x`: Σ over groups of (max|x_g| / 127 / 2) · Σ_g |w|.
        fn reference(&self, x: &[f32], b: usize, r: usize) -> (f64, f64) {
            let (cols, gs) = (self.layout.cols, self.layout.group_size);
            let xb = &x[b * cols..(b + 1) * cols];
            let w = &self.dequantized[r * cols..(r + 1) * cols];
            let exact = xb.iter().zip(w).map(|(&a, &c)| a as f64 * c as f64).sum();
            let bound = xb
                .chunks(gs)
                .zip(w.chunks(gs))
                .map(|(xg, wg)| {
                    let peak = xg.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
                    let l1: f64 = wg.iter().map(|v| v.abs() as f64).sum();
                    peak / 127.0 / 2.0 * l1
                })
                .sum::<f64>();
            (exact, bound)
        }
    }

    fn isas() -> Vec<DotIsa> {
        [DotIsa::Vnni, DotIsa::Avx2, DotIsa::Portable]
            .into_iter()
            .filter(|isa| isa.available())
            .collect()
    }

    #[test]
    fn every_isa_stays_within_the_per_group_error_bound_of_the_float_product() {
        let shapes = [
            // rows, cols, group, bits, symmetric
            (13, 256, 128, 8, false),
            (13, 256, 128, 4, false),
            (9, 200, 64, 4, true),
            (7, 96, 32, 8, true),
            (6, 100, 32, 4, false),
            (5, 72, 8, 2, false),
        ];
        for (rows, cols, group, bits, symmetric) in shapes {
            let case = Case::new(rows, cols, group, bits, symmetric);
            for batch in [1usize, 2, 3, 5, 8] {
                let x = values(batch * cols, 77 + batch as u64);
                for isa in isas() {
                    let out = case.run(isa, &x, batch);
                    for b in 0..batch {
                        for r in 0..rows {
                            let (exact, bound) = case.reference(&x, b, r);
                            let got = out[b * rows + r] as f64;
                            // The bound, plus float32 rounding of the group sums.
                            let slack = bound + 1e-5 * (1.0 + exact.abs());
                            assert!(
                                (got - exact).abs() <= slack,
                                "{isa:?} int{bits} g{group} sym={symmetric} batch {batch} \
                                 [{b},{r}]: {got} vs {exact} (bound {bound})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_error_is_far_below_the_bound_on_average_and_not_zero() {
        // The bound holds for the worst case; rounding errors cancel, so the typical error is
        // a small fraction of it, and an exact result would mean x was never quantized.
        let case = Case::new(64, 512, 128, 8, false);
        let x = values(4 * 512, 3);
        let out = case.run(DotIsa::detect(), &x, 4);
        let (mut err, mut bound) = (0.0, 0.0);
        for b in 0..4 {
            for r in 0..64 {
                let (exact, limit) = case.reference(&x, b, r);
                err += (out[b * 64 + r] as f64 - exact).abs();
                bound += limit;
            }
        }
        assert!(err > 0.0 && err < 0.2 * bound, "{err} vs {bound}");
    }

    #[test]
    fn simd_paths_agree_with_the_portable_one() {
        for (bits, symmetric) in [(8u32, false), (8, true), (4, false), (4, true)] {
            let case = Case::new(37, 384, 128, bits, symmetric);
            let batch = 11;
            let x = values(batch * 384, 5);
            let portable = case.run(DotIsa::Portable, &x, batch);
            for isa in isas() {
                let out = case.run(isa, &x, batch);
                for (a, p) in out.iter().zip(&portable) {
                    // Same integer sums; only the float sums' order differs.
                    assert!((a - p).abs() <= 1e-4 * (1.0 + p.abs()), "{isa:?} int{bits}");
                }
            }
        }
    }

    #[test]
    fn large_products_split_across_threads_match_a_single_thread() {
        let case = Case::new(256, 1024, 128, 4, false);
        let batch = 32;
        let x = values(batch * 1024, 8);
        let parallel = case.run(DotIsa::detect(), &x, batch);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let serial = pool.install(|| case.run(DotIsa::detect(), &x, batch));
        assert_eq!(parallel, serial);
    }

    #[test]
    fn zero_inputs_give_zero_outputs() {
        let case = Case::new(5, 64, 32, 8, false);
        for isa in isas() {
            assert_eq!(case.run(isa, &[0.0; 128], 2), vec![0.0; 10]);
        }
    }

    #[test]
    fn an_unknown_or_missing_isa_is_refused_by_name() {
        assert_eq!(DotIsa::parse("vnni"), Some(DotIsa::Vnni));
        assert_eq!(DotIsa::parse("sse9"), None);
        let case = Case::new(2, 32, 32, 8, false);
        let mut out = vec![0.0; 2];
        for isa in [DotIsa::Vnni, DotIsa::Avx2] {
            let result =
                matmul_q8_threads(isa, &[1.0; 32], 1, case.q(), &case.layout, &mut out, true);
            if isa.available() {
                assert!(result.is_ok());
            } else {
                assert_eq!(result, Err(QuantError::IsaUnavailable(isa.name())));
            }
        }
    }
}
