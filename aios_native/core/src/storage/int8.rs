//! Blocked int8 dot products with AVX-512 VNNI: a block of rows against every query.
//!
//! simsimd scores one (row, query) pair per call; over a million 384-byte rows that call and its
//! horizontal sum cost more than reading the row, so the int8 scan ran below the memory bus.
//! Here a block of rows is scored against all queries with `vpdpbusd` (32 byte products per
//! instruction into 32-bit lanes). `vpdpbusd` multiplies *unsigned* by signed bytes, so each
//! 32 bytes of a row are shifted to `r + 128` (unsigned) by one XOR with 0x80 as they are loaded,
//! and the queries stay signed: `Σ (r + 128) q = Σ r q + 128 Σ q`, where `Σ q` is computed once
//! per query. All sums are exact in 32 bits (|Σ| ≤ 255 · 127 · dim, below 2^31 for any dim under
//! 66 000).

/// `out[r * nq + q] = block_row_r · query_q` in exact integer arithmetic, as floats.
/// Returns false (and writes nothing) when this CPU lacks AVX-512 VNNI.
pub fn block_dots(block: &[i8], dim: usize, queries: &[i8], out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni_available() && dim < 66_000 {
            // SAFETY: the CPU supports the features; lengths are checked inside.
            unsafe { x86::block_dots(block, dim, queries, out) };
            return true;
        }
    }
    let _ = (block, dim, queries, out);
    false
}

/// Whether this CPU has AVX-512 VNNI (with VL, for 256-bit vectors).
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    #[inline]
    fn sum(v: __m256i) -> i32 {
        let quad = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let pair = _mm_add_epi32(quad, _mm_unpackhi_epi64(quad, quad));
        _mm_cvtsi128_si32(_mm_add_epi32(pair, _mm_shuffle_epi32::<1>(pair)))
    }

    /// Four rows (shifted to unsigned as they are loaded) against one signed query: four
    /// independent accumulator chains.
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn four(rows: [*const i8; 4], query: *const i8, whole: usize) -> [i32; 4] {
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut c = 0;
        while c < whole {
            // SAFETY: c + 32 <= whole <= dim, inside every row and the query.
            unsafe {
                let q = _mm256_loadu_si256(query.add(c) as *const __m256i);
                for (a, row) in acc.iter_mut().zip(rows) {
                    let r = _mm256_loadu_si256(row.add(c) as *const __m256i);
                    *a = _mm256_dpbusd_epi32(*a, _mm256_xor_si256(r, flip), q);
                }
            }
            c += 32;
        }
        acc.map(|a| sum(a))
    }

    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    pub unsafe fn block_dots(block: &[i8], dim: usize, queries: &[i8], out: &mut [f32]) {
        let n = block.len() / dim;
        let nq = queries.len() / dim;
        assert!(out.len() >= n * nq && block.len() == n * dim && queries.len() == nq * dim);
        let whole = dim - dim % 32;
        // 128 Σ q over the vectorised part of each query: what the row shift adds.
        let offsets: Vec<i32> = queries
            .chunks_exact(dim)
            .map(|q| 128 * q[..whole].iter().map(|&v| v as i32).sum::<i32>())
            .collect();
        let tail = |row: &[i8], q: usize| -> i32 {
            row[whole..]
                .iter()
                .zip(&queries[q * dim + whole..(q + 1) * dim])
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum()
        };
        let base = block.as_ptr();
        let mut r = 0;
        while r + 4 <= n {
            // SAFETY: rows r .. r + 4 lie in the block.
            let rows = [0, 1, 2, 3].map(|i| unsafe { base.add((r + i) * dim) });
            for (q, offset) in offsets.iter().enumerate() {
                // SAFETY: query q's `whole` bytes lie in `queries`.
                let dots = unsafe { four(rows, queries.as_ptr().add(q * dim), whole) };
                for (i, dot) in dots.iter().enumerate() {
                    let row = &block[(r + i) * dim..(r + i + 1) * dim];
                    out[(r + i) * nq + q] = (dot - offset + tail(row, q)) as f32;
                }
            }
            r += 4;
        }
        for r in r..n {
            let row = &block[r * dim..(r + 1) * dim];
            for q in 0..nq {
                out[r * nq + q] = row
                    .iter()
                    .zip(&queries[q * dim..(q + 1) * dim])
                    .map(|(&a, &b)| a as i32 * b as i32)
                    .sum::<i32>() as f32;
            }
        }
    }
}

/// Bytes read per second with every rayon thread streaming its share of `data`: the floor
/// against which a scan that reads the same bytes is judged. Returns a checksum so the reads
/// cannot be optimised away.
pub fn stream_checksum(data: &[u8]) -> u64 {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 20;
    data.par_chunks(CHUNK)
        .map(|chunk| {
            let mut lanes = [0u64; 8];
            let mut words = chunk.chunks_exact(64);
            for line in &mut words {
                for (l, word) in lanes.iter_mut().zip(line.chunks_exact(8)) {
                    *l ^= u64::from_le_bytes(word.try_into().expect("8 bytes"));
                }
            }
            let rest = words
                .remainder()
                .iter()
                .fold(0u64, |a, &b| a.rotate_left(8) ^ b as u64);
            lanes.iter().fold(rest, |a, &b| a ^ b)
        })
        .reduce(|| 0, |a, b| a ^ b)
}
