//! Blocked int8 dot products with AVX-512 VNNI: a block of rows against every query.
//!
//! simsimd scores one (row, query) pair per call; over a million 384-byte rows that call and its
//! horizontal sum cost more than reading the row, so the int8 scan ran below the memory bus.
//! Here four rows at a time are scored against each query with 512-bit `vpdpbusd` (64 byte
//! products per instruction into sixteen 32-bit lanes); a dimension that is not a multiple of 64
//! ends with one masked load (the missing bytes read as zero), so there is no scalar tail, and
//! the four accumulators are folded into four sums with three horizontal adds. `vpdpbusd`
//! multiplies *unsigned* by signed bytes, so each row's bytes are shifted to `r + 128` (unsigned)
//! by one XOR with 0x80 as they are loaded, and the queries stay signed:
//! `Σ (r + 128) q = Σ r q + 128 Σ q`, where `Σ q` is computed once per query (a masked-off byte
//! is 0 in the query, so its shifted row byte adds nothing). All sums are exact in 32 bits
//! (|Σ| ≤ 255 · 128 · dim, below 2^31 for any dim under 65 000); the dot products are exact as
//! floats while below 2^24 (any dim up to 1040 at full scale).
//!
//! Each row of a tile is read start to end before the next, so the loads walk memory in order
//! and the hardware prefetcher keeps up: no software prefetch (with it, the scan from DRAM ran
//! 1.4-1.9x slower in this order; it helps only the float32 tile's side-by-side order).

/// `out[r * nq + q] = block_row_r · query_q` in exact integer arithmetic, as floats.
/// Returns false (and writes nothing) when this CPU lacks AVX-512 VNNI.
pub fn block_dots(block: &[i8], dim: usize, queries: &[i8], out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni_available() && dim < 65_000 {
            // SAFETY: the CPU supports the features; lengths are checked inside.
            unsafe { x86::block_dots(block, dim, queries, out) };
            return true;
        }
    }
    let _ = (block, dim, queries, out);
    false
}

/// Whether this CPU has AVX-512 VNNI (with BW, for masked byte loads).
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512f")
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

    /// The sums of four rows' shifted bytes times one signed query, as the lanes of a 128-bit
    /// vector.
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    unsafe fn four<const STEPS: usize>(
        rows: [*const i8; 4],
        query: *const i8,
        dim: usize,
    ) -> __m128i {
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [_mm512_setzero_si512(); 4];
        // A known step count unrolls the row loops into straight-line code.
        let whole = if STEPS > 0 {
            64 * STEPS
        } else {
            dim - dim % 64
        };
        // Row after row, so the loads walk memory in order (a third faster from DRAM than the
        // four rows side by side); the rows' chains are independent and overlap out of order.
        // Two chains per row (even and odd steps) halve the wait on each product's latency.
        for (a, row) in acc.iter_mut().zip(rows) {
            let mut chains = [_mm512_setzero_si512(); 2];
            let mut c = 0;
            while c < whole {
                // SAFETY: c + 64 <= whole <= dim, inside every row and the query.
                unsafe {
                    let q = _mm512_loadu_si512(query.add(c).cast());
                    let r = _mm512_loadu_si512(row.add(c).cast());
                    let chain = &mut chains[(c / 64) % 2];
                    *chain = _mm512_dpbusd_epi32(*chain, _mm512_xor_si512(r, flip), q);
                }
                c += 64;
            }
            *a = _mm512_add_epi32(chains[0], chains[1]);
        }
        if whole < dim {
            let c = whole;
            let mask: __mmask64 = (1u64 << (dim - c)) - 1;
            // SAFETY: the mask covers bytes c .. dim only; masked loads touch nothing else.
            unsafe {
                let q = _mm512_maskz_loadu_epi8(mask, query.add(c));
                for (a, row) in acc.iter_mut().zip(rows) {
                    let r = _mm512_maskz_loadu_epi8(mask, row.add(c));
                    *a = _mm512_dpbusd_epi32(*a, _mm512_xor_si512(r, flip), q);
                }
            }
        }
        // 512 -> 256 bits per accumulator, then three horizontal adds: [Σa, Σb, Σc, Σd].
        let half = |v: __m512i| {
            _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
        };
        let ab = _mm256_hadd_epi32(half(acc[0]), half(acc[1]));
        let cd = _mm256_hadd_epi32(half(acc[2]), half(acc[3]));
        let abcd = _mm256_hadd_epi32(ab, cd);
        _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256::<1>(abcd),
        )
    }

    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn block_dots(block: &[i8], dim: usize, queries: &[i8], out: &mut [f32]) {
        // Common embedding widths get their own unrolled kernel.
        match dim {
            384 => scan::<6>(block, dim, queries, out),
            512 => scan::<8>(block, dim, queries, out),
            768 => scan::<12>(block, dim, queries, out),
            _ => scan::<0>(block, dim, queries, out),
        }
    }

    /// `block_dots` with `STEPS` 64-byte steps per row (0: as many as `dim` has).
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    unsafe fn scan<const STEPS: usize>(block: &[i8], dim: usize, queries: &[i8], out: &mut [f32]) {
        let n = block.len() / dim;
        let nq = queries.len() / dim;
        assert!(out.len() >= n * nq && block.len() == n * dim && queries.len() == nq * dim);
        // 128 Σ q per query: what the rows' shift adds to every sum.
        let offsets: Vec<i32> = queries
            .chunks_exact(dim)
            .map(|q| 128 * q.iter().map(|&v| v as i32).sum::<i32>())
            .collect();
        let base = block.as_ptr();
        let mut r = 0;
        while r < n {
            // The last rows of a block that are not four repeat its last row (scored, unused).
            let live = (n - r).min(4);
            // SAFETY: rows r .. r + live lie in the block.
            let rows = [0, 1, 2, 3].map(|i| unsafe { base.add((r + i.min(live - 1)) * dim) });
            for (q, offset) in offsets.iter().enumerate() {
                // SAFETY: query q's `dim` bytes lie in `queries`.
                let sums = unsafe { four::<STEPS>(rows, queries.as_ptr().add(q * dim), dim) };
                let mut lanes = [0i32; 4];
                // SAFETY: four i32 lanes into a four-i32 array.
                unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), sums) };
                for (i, sum) in lanes.iter().take(live).enumerate() {
                    out[(r + i) * nq + q] = (sum - offset) as f32;
                }
            }
            r += 4;
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
