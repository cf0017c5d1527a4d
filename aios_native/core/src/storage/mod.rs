//! ArrowStorage's search kernels: fused scoring and top-k selection over row-major vectors.
//!
//! The vectors of one segment arrive as a flat row-major slice (a memory-mapped Arrow
//! `FixedSizeList` column seen as `rows × dim`), in float32, float16 or int8. One pass scores
//! every allowed row against every query and keeps the best `k` per query in a small heap, so no
//! array of all scores is ever written and read back (a separate arg-partition would cost as
//! much again as an int8 scan). Rows are split across rayon's threads in chunks; for a batch of
//! queries each row is loaded once and scored against all of them while it sits in L1.

mod dense;
mod int8;
mod topk;

pub use int8::{stream_checksum, vnni_available};
pub use topk::TopK;

use rayon::prelude::*;
use simsimd::SpatialSimilarity;
use thiserror::Error;

/// Rows per rayon task: large enough to amortise the per-task heaps, small enough to balance.
const CHUNK_ROWS: usize = 4096;
/// Rows scored together against all queries: a block of a 384-wide f32 matrix stays in L2.
const BLOCK_ROWS: usize = 64;

/// How far ahead of the rows being scored the float32 batch tiles prefetch, in bytes. A tile
/// reads four rows side by side, 32 bytes of each per step: four streams the hardware
/// prefetcher follows too late (a single-query scan in that order ran at half the bus; 8 KB
/// measured best among 2-32 KB). Each step prefetches as many bytes as it consumes, this far
/// on. Single-query float32 and all int8 tiles read their rows one after the other instead,
/// which the hardware prefetcher follows, and prefetch nothing.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the x86 tiles only
const PREFETCH_BYTES: usize = 8192;

/// Where the prefetches of a tile of rows starting at `tile`, `tile_bytes` long, begin: the
/// prefetch distance on, or just past the tile when the tile is longer than that.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the x86 tiles only
#[inline]
fn prefetch_ahead(tile: *const u8, tile_bytes: usize) -> *const u8 {
    tile.wrapping_add(PREFETCH_BYTES.max(tile_bytes))
}

/// Prefetch the `LINES` cache lines from `at` into L1 (nothing for a null pointer). A prefetch
/// never faults, so addresses past the end of the rows are harmless.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the x86 tiles only
#[inline(always)]
fn prefetch_lines<const LINES: usize>(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    if !at.is_null() {
        for line in 0..LINES {
            // SAFETY: prefetching is a hint without architectural effect, valid for any address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    at.wrapping_add(64 * line).cast(),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// How a row is scored against a query; every score is "higher is closer".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMetric {
    /// `dot(row, query) * scale[row] + bias[row]` (scale and bias default to 1 and 0).
    Dot,
    /// Cosine similarity; 0 when either vector is zero.
    Cosine,
    /// Minus the squared Euclidean distance.
    L2,
}

impl ScanMetric {
    /// Parse the names the Python side uses: "dot", "cos", "l2".
    pub fn parse(name: &str) -> Result<Self, ScanError> {
        match name {
            "dot" => Ok(ScanMetric::Dot),
            "cos" => Ok(ScanMetric::Cosine),
            "l2" => Ok(ScanMetric::L2),
            other => Err(ScanError::UnknownMetric(other.to_string())),
        }
    }
}

/// Why a scan was refused; the bindings turn these into Python `ValueError`s.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("unknown metric {0:?}; use \"dot\", \"cos\" or \"l2\"")]
    UnknownMetric(String),
    #[error("dimension must be positive")]
    ZeroDimension,
    #[error("{what} holds {len} values, not a multiple of the dimension {dim}")]
    Ragged {
        what: &'static str,
        len: usize,
        dim: usize,
    },
    #[error("{what} has {len} entries but there are {rows} rows")]
    LengthMismatch {
        what: &'static str,
        len: usize,
        rows: usize,
    },
    #[error("k must be positive")]
    ZeroK,
}

/// One segment's vectors and what restricts or adjusts their scores.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a, T> {
    pub data: &'a [T],
    pub dim: usize,
    /// Rows to consider (`true`); `None` allows every row.
    pub mask: Option<&'a [bool]>,
    /// Per-row multiplier of the dot product (int8 codes carry their row's scale here).
    pub scale: Option<&'a [f32]>,
    /// Per-row term added to the dot product (minus squared norms turn dot into L2 order).
    pub bias: Option<&'a [f32]>,
}

impl<'a, T> Rows<'a, T> {
    /// All rows of `data`, no mask, scale or bias.
    pub fn new(data: &'a [T], dim: usize) -> Self {
        Rows {
            data,
            dim,
            mask: None,
            scale: None,
            bias: None,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self) -> Result<usize, ScanError> {
        if self.dim == 0 {
            return Err(ScanError::ZeroDimension);
        }
        if !self.data.len().is_multiple_of(self.dim) {
            return Err(ScanError::Ragged {
                what: "the matrix",
                len: self.data.len(),
                dim: self.dim,
            });
        }
        let rows = self.len();
        let lengths = [
            ("the mask", self.mask.map(<[bool]>::len)),
            ("the scale", self.scale.map(<[f32]>::len)),
            ("the bias", self.bias.map(<[f32]>::len)),
        ];
        for (what, len) in lengths {
            if let Some(len) = len.filter(|&len| len != rows) {
                return Err(ScanError::LengthMismatch { what, len, rows });
            }
        }
        Ok(rows)
    }
}

/// The best `k` rows of `rows` for each query (`queries` is row-major, `dim` wide), best first.
///
/// Rows scoring below `threshold` are skipped. Each result has at most `k` entries of
/// (row, score); fewer when fewer rows are allowed or pass the threshold.
pub fn top_k<T>(
    rows: &Rows<'_, T>,
    queries: &[T],
    k: usize,
    metric: ScanMetric,
    threshold: Option<f32>,
) -> Result<Vec<Vec<(usize, f32)>>, ScanError>
where
    T: Element,
{
    let n = rows.check()?;
    if k == 0 {
        return Err(ScanError::ZeroK);
    }
    let dim = rows.dim;
    if !queries.len().is_multiple_of(dim) {
        return Err(ScanError::Ragged {
            what: "the queries",
            len: queries.len(),
            dim,
        });
    }
    let nq = queries.len() / dim;
    let floor = threshold.unwrap_or(f32::NEG_INFINITY);
    let query_norms: Vec<f32> = queries
        .chunks_exact(dim)
        .map(|q| T::dot(q, q).unwrap_or(0.0) as f32)
        .collect();
    // One set of heaps per rayon split, carried across all the chunks that split scans (a
    // fold, not a map per chunk): a heap that starts empty takes its first k rows and then
    // ~k·ln(rows/k) more, so a fresh one per 4096-row chunk made the k = 80 candidate heaps of
    // a quantized scan cost a quarter of the scan. A warm heap turns nearly every row away.
    let empty = || -> Vec<TopK> { (0..nq).map(|_| TopK::new(k)).collect() };
    let scan_chunk = |mut heaps: Vec<TopK>, (chunk_index, chunk): (usize, &[T])| -> Vec<TopK> {
        let mut scores = vec![0f32; BLOCK_ROWS * nq];
        let mut norms = vec![0f32; BLOCK_ROWS];
        for (block_index, block) in chunk.chunks(BLOCK_ROWS * dim).enumerate() {
            let first = chunk_index * CHUNK_ROWS + block_index * BLOCK_ROWS;
            let count = block.len() / dim;
            if let Some(mask) = rows.mask {
                if !mask[first..first + count].iter().any(|&allowed| allowed) {
                    continue;
                }
            }
            T::block_scores(
                block,
                dim,
                queries,
                &query_norms,
                metric,
                &mut scores,
                &mut norms,
            );
            let scores = &mut scores[..count * nq];
            if metric == ScanMetric::Dot {
                apply_scale_and_bias(scores, nq, rows.scale, rows.bias, first);
            }
            for (q, heap) in heaps.iter_mut().enumerate() {
                // Most rows score below the heap's kept minimum: one comparison turns each away,
                // and the heap (and mask) are looked at only for the few that pass.
                let mut bar = heap.worst().max(floor);
                // (A NaN score compares false and never enters.)
                for (offset, row_scores) in scores.chunks_exact(nq).enumerate() {
                    let score = row_scores[q];
                    let index = first + offset;
                    if score >= bar && rows.mask.is_none_or(|mask| mask[index]) {
                        heap.push(index, score);
                        bar = heap.worst().max(floor);
                    }
                }
            }
        }
        heaps
    };
    let merge = |mut a: Vec<TopK>, b: Vec<TopK>| {
        for (x, y) in a.iter_mut().zip(b) {
            x.merge(y);
        }
        a
    };
    let heaps = if n == 0 || nq == 0 {
        empty()
    } else {
        rows.data
            .par_chunks(CHUNK_ROWS * dim)
            .enumerate()
            .fold(empty, scan_chunk)
            .reduce(empty, merge)
    };
    Ok(heaps.into_iter().map(TopK::into_sorted).collect())
}

/// `scores[r * nq + q] = scores[r * nq + q] * scale[first + r] + bias[first + r]` for a block
/// of rows starting at row `first` (a missing scale is 1, a missing bias 0).
fn apply_scale_and_bias(
    scores: &mut [f32],
    nq: usize,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    first: usize,
) {
    let count = scores.len() / nq;
    if let Some(scale) = scale {
        for (row_scores, s) in scores
            .chunks_exact_mut(nq)
            .zip(&scale[first..first + count])
        {
            row_scores.iter_mut().for_each(|v| *v *= s);
        }
    }
    if let Some(bias) = bias {
        for (row_scores, b) in scores.chunks_exact_mut(nq).zip(&bias[first..first + count]) {
            row_scores.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// A vector element type the scan supports; `block_scores` is where a type brings a faster
/// kernel than simsimd's one-pair-at-a-time functions.
pub trait Element: SpatialSimilarity + Copy + Sync + Send {
    /// `scores[r * nq + q]` = the metric's score (before scale and bias) of row `r` of `block`
    /// against query `q`; `query_norms` are the queries' squared norms; `norms` is scratch.
    fn block_scores(
        block: &[Self],
        dim: usize,
        queries: &[Self],
        query_norms: &[f32],
        metric: ScanMetric,
        scores: &mut [f32],
        norms: &mut [f32],
    ) {
        let _ = (query_norms, norms);
        pairwise_scores(block, dim, queries, metric, scores);
    }
}

/// Every (row, query) pair scored with simsimd, one pair at a time (the portable path).
fn pairwise_scores<T: SpatialSimilarity>(
    block: &[T],
    dim: usize,
    queries: &[T],
    metric: ScanMetric,
    scores: &mut [f32],
) {
    let nq = queries.len() / dim;
    for (r, row) in block.chunks_exact(dim).enumerate() {
        for (q, query) in queries.chunks_exact(dim).enumerate() {
            scores[r * nq + q] = pair_score(metric, row, query);
        }
    }
}

impl Element for i8 {
    fn block_scores(
        block: &[i8],
        dim: usize,
        queries: &[i8],
        query_norms: &[f32],
        metric: ScanMetric,
        scores: &mut [f32],
        norms: &mut [f32],
    ) {
        // Dot products (what the store's int8 copies are scanned with) run on VNNI in blocks;
        // other metrics, and CPUs without VNNI, use simsimd pair by pair.
        if metric != ScanMetric::Dot || !int8::block_dots(block, dim, queries, scores) {
            let _ = (query_norms, norms);
            pairwise_scores(block, dim, queries, metric, scores);
        }
    }
}
impl Element for simsimd::f16 {}

impl Element for f32 {
    fn block_scores(
        block: &[f32],
        dim: usize,
        queries: &[f32],
        query_norms: &[f32],
        metric: ScanMetric,
        scores: &mut [f32],
        norms: &mut [f32],
    ) {
        let need_norms = metric != ScanMetric::Dot;
        let row_norms = if need_norms { Some(&mut *norms) } else { None };
        if !dense::block_dots(block, dim, queries, scores, row_norms) {
            // No AVX2/FMA here: simsimd's portable kernels.
            pairwise_scores(block, dim, queries, metric, scores);
            return;
        }
        let nq = queries.len() / dim;
        let count = block.len() / dim;
        match metric {
            ScanMetric::Dot => {}
            ScanMetric::Cosine => {
                for r in 0..count {
                    for q in 0..nq {
                        let denominator = (norms[r] * query_norms[q]).sqrt();
                        let value = &mut scores[r * nq + q];
                        *value = if denominator > 0.0 {
                            *value / denominator
                        } else {
                            0.0
                        };
                    }
                }
            }
            ScanMetric::L2 => {
                for r in 0..count {
                    for q in 0..nq {
                        let value = &mut scores[r * nq + q];
                        *value = -(norms[r] - 2.0 * *value + query_norms[q]).max(0.0);
                    }
                }
            }
        }
    }
}

/// One row against one query with simsimd (the portable path).
#[inline]
fn pair_score<T: SpatialSimilarity>(metric: ScanMetric, row: &[T], query: &[T]) -> f32 {
    // Lengths are equal by construction, so simsimd always returns a value.
    match metric {
        ScanMetric::Dot => T::dot(row, query).unwrap_or(0.0) as f32,
        ScanMetric::Cosine => {
            // simsimd returns the cosine *distance*, 1 when either vector is zero.
            let similarity = 1.0 - T::cos(row, query).unwrap_or(1.0) as f32;
            if similarity.is_finite() {
                similarity
            } else {
                0.0
            }
        }
        ScanMetric::L2 => -(T::l2sq(row, query).unwrap_or(f64::INFINITY) as f32),
    }
}

/// Per-row symmetric int8 codes and scales (`row ≈ codes * scale`), rows split across threads.
pub fn quantize_i8(
    data: &[f32],
    dim: usize,
    codes: &mut [i8],
    scales: &mut [f32],
) -> Result<(), ScanError> {
    let rows = Rows::new(data, dim);
    let n = rows.check()?;
    if codes.len() != data.len() {
        return Err(ScanError::LengthMismatch {
            what: "the codes",
            len: codes.len(),
            rows: n,
        });
    }
    if scales.len() != n {
        return Err(ScanError::LengthMismatch {
            what: "the scales",
            len: scales.len(),
            rows: n,
        });
    }
    codes
        .par_chunks_mut(dim)
        .zip(scales.par_iter_mut())
        .zip(data.par_chunks(dim))
        .for_each(|((code, scale), row)| {
            let peak = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            *scale = if peak > 0.0 { peak / 127.0 } else { 1.0 };
            let inverse = 1.0 / *scale;
            for (c, v) in code.iter_mut().zip(row) {
                *c = (v * inverse).round().clamp(-127.0, 127.0) as i8;
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests;
