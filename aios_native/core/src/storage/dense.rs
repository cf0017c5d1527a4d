//! Blocked float32 dot products: a small matrix product of a block of rows with all queries.
//!
//! simsimd's float32 dot keeps one accumulator, so each row waits on a chain of dependent FMAs.
//! Rows are scored four at a time, one independent chain per (row, query). One query reads the
//! four rows one after the other (memory in order, which the hardware prefetcher follows); a
//! batch reads them side by side so each query chunk loaded from L1 serves four rows, and
//! prefetches the rows further on in software (four side-by-side streams outrun the hardware
//! prefetcher). Both sum in the same order, so a batch equals its queries one at a time. On AVX2+FMA CPUs (checked at run time) this is
//! what scans float32 segments; elsewhere the portable simsimd path does.

/// `out[r * nq + q] = block_row_r · query_q` and, when `norms` is given, `norms[r] = |row_r|²`.
/// Returns false (and writes nothing) when this CPU lacks AVX2/FMA.
pub fn block_dots(
    block: &[f32],
    dim: usize,
    queries: &[f32],
    out: &mut [f32],
    norms: Option<&mut [f32]>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for, and slice
            // lengths are checked by the callers' shapes (asserted below).
            unsafe { x86::block_dots(block, dim, queries, out, norms) };
            return true;
        }
    }
    let _ = (block, dim, queries, out, norms);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum(v: __m256) -> f32 {
        let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let quad = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)))
    }

    /// Dot products of four rows with one vector `v` (all `dim` long). `ahead` is where the
    /// same four rows lie further on: its lines are prefetched, two per 32 bytes of each row
    /// read here (see `super::super::prefetch_ahead`).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four(rows: [*const f32; 4], v: *const f32, dim: usize, ahead: *const u8) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let whole = dim - dim % 8;
        let mut c = 0;
        while c < whole {
            super::super::prefetch_lines::<2>(ahead.wrapping_add(16 * c));
            let x = _mm256_loadu_ps(v.add(c));
            for (a, row) in acc.iter_mut().zip(rows) {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(c)), x, *a);
            }
            c += 8;
        }
        let mut result = [sum(acc[0]), sum(acc[1]), sum(acc[2]), sum(acc[3])];
        for (r, row) in result.iter_mut().zip(rows) {
            for t in whole..dim {
                *r += *row.add(t) * *v.add(t);
            }
        }
        result
    }

    /// `four` without prefetching, each row read start to end before the next: the same sums
    /// in the same order (one chain per row), the loads in memory order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four_in_order(rows: [*const f32; 4], v: *const f32, dim: usize) -> [f32; 4] {
        let whole = dim - dim % 8;
        let mut result = [0f32; 4];
        for (value, row) in result.iter_mut().zip(rows) {
            let mut acc = _mm256_setzero_ps();
            let mut c = 0;
            while c < whole {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(c)), _mm256_loadu_ps(v.add(c)), acc);
                c += 8;
            }
            *value = sum(acc);
            for t in whole..dim {
                *value += *row.add(t) * *v.add(t);
            }
        }
        result
    }

    /// Dot products of four rows with two queries: eight independent FMA chains, six loads per
    /// eight FMAs (the register tile of the batch path). `ahead` as for `four`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four_by_two(
        rows: [*const f32; 4],
        v: [*const f32; 2],
        dim: usize,
        ahead: *const u8,
    ) -> [[f32; 4]; 2] {
        let mut acc = [[_mm256_setzero_ps(); 4]; 2];
        let whole = dim - dim % 8;
        let mut c = 0;
        while c < whole {
            super::super::prefetch_lines::<2>(ahead.wrapping_add(16 * c));
            let x = [_mm256_loadu_ps(v[0].add(c)), _mm256_loadu_ps(v[1].add(c))];
            for (i, row) in rows.iter().enumerate() {
                let r = _mm256_loadu_ps(row.add(c));
                acc[0][i] = _mm256_fmadd_ps(r, x[0], acc[0][i]);
                acc[1][i] = _mm256_fmadd_ps(r, x[1], acc[1][i]);
            }
            c += 8;
        }
        let mut result = [[0f32; 4]; 2];
        for q in 0..2 {
            for (i, row) in rows.iter().enumerate() {
                let mut value = sum(acc[q][i]);
                for t in whole..dim {
                    value += *row.add(t) * *v[q].add(t);
                }
                result[q][i] = value;
            }
        }
        result
    }

    /// Dot product of one row with one vector, four accumulators over 32-value strides.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn one(row: *const f32, v: *const f32, dim: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let whole = dim - dim % 32;
        let mut c = 0;
        while c < whole {
            for (j, a) in acc.iter_mut().enumerate() {
                let at = c + 8 * j;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(row.add(at)), _mm256_loadu_ps(v.add(at)), *a);
            }
            c += 32;
        }
        let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut result = sum(total);
        for t in whole..dim {
            result += *row.add(t) * *v.add(t);
        }
        result
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block_dots(
        block: &[f32],
        dim: usize,
        queries: &[f32],
        out: &mut [f32],
        mut norms: Option<&mut [f32]>,
    ) {
        let n = block.len() / dim;
        let nq = queries.len() / dim;
        assert!(out.len() >= n * nq);
        assert!(norms.as_ref().is_none_or(|s| s.len() >= n));
        let base = block.as_ptr();
        let mut r = 0;
        if nq == 1 {
            // One query: the tile's rows each read start to end, memory in order, which the
            // hardware prefetcher follows (no software prefetch). Same sums as `four`.
            while r + 4 <= n {
                let rows = [0, 1, 2, 3].map(|i| base.add((r + i) * dim));
                let dots = four_in_order(rows, queries.as_ptr(), dim);
                out[r..r + 4].copy_from_slice(&dots);
                if let Some(norms) = norms.as_deref_mut() {
                    for (i, row) in rows.iter().enumerate() {
                        norms[r + i] = one(*row, *row, dim);
                    }
                }
                r += 4;
            }
        }
        while r + 4 <= n {
            let rows = [0, 1, 2, 3].map(|i| base.add((r + i) * dim));
            // The first pass over these rows prefetches those further on; later passes find
            // the rows in L1.
            let ahead = super::super::prefetch_ahead(rows[0].cast(), 4 * dim * 4);
            let mut q = 0;
            while q + 2 <= nq {
                let pair = [q, q + 1].map(|j| queries.as_ptr().add(j * dim));
                let first = if q == 0 { ahead } else { std::ptr::null() };
                let dots = four_by_two(rows, pair, dim, first);
                for (j, column) in dots.iter().enumerate() {
                    for (i, d) in column.iter().enumerate() {
                        out[(r + i) * nq + q + j] = *d;
                    }
                }
                q += 2;
            }
            if q < nq {
                let first = if q == 0 { ahead } else { std::ptr::null() };
                let dots = four(rows, queries.as_ptr().add(q * dim), dim, first);
                for (i, d) in dots.iter().enumerate() {
                    out[(r + i) * nq + q] = *d;
                }
            }
            if let Some(norms) = norms.as_deref_mut() {
                for (i, row) in rows.iter().enumerate() {
                    norms[r + i] = one(*row, *row, dim);
                }
            }
            r += 4;
        }
        for r in r..n {
            let row = base.add(r * dim);
            for q in 0..nq {
                out[r * nq + q] = one(row, queries.as_ptr().add(q * dim), dim);
            }
            if let Some(norms) = norms.as_deref_mut() {
                norms[r] = one(row, row, dim);
            }
        }
    }
}
