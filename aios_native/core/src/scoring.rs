//! Similarity of one query against every vector of an Arrow column, split across cores.
//!
//! Vectors arrive as an Arrow `FixedSizeList<Float32>` column, the layout ArrowStorage keeps on
//! disk, so a memory-mapped segment is scored in place without copying. Each row is scored by
//! simsimd's SIMD kernels and rows are split across rayon's thread pool.

use arrow_array::{Array, FixedSizeListArray, Float32Array};
use rayon::prelude::*;
use simsimd::SpatialSimilarity;
use thiserror::Error;

/// How a query is compared with a stored vector. Scores are "higher is closer" for `Dot` and
/// `Cosine` and a squared distance ("lower is closer") for `L2Squared`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Dot,
    Cosine,
    L2Squared,
}

/// Why a column could not be scored.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("vectors have {stored} dimensions but the query has {query}")]
    DimensionMismatch { stored: usize, query: usize },
    #[error("the vector column must hold float32 values, found {0}")]
    WrongValueType(String),
    #[error("row {0} holds a null vector; drop or fill it before scoring")]
    NullVector(usize),
}

/// Score `query` against every row of `vectors` (a `FixedSizeList<Float32>` column).
pub fn scores(
    vectors: &FixedSizeListArray,
    query: &[f32],
    metric: Metric,
) -> Result<Vec<f32>, KernelError> {
    let dim = usize::try_from(vectors.value_length()).unwrap_or(0);
    if dim != query.len() {
        return Err(KernelError::DimensionMismatch {
            stored: dim,
            query: query.len(),
        });
    }
    if let Some(row) = (0..vectors.len()).find(|&i| vectors.is_null(i)) {
        return Err(KernelError::NullVector(row));
    }
    let values = vectors
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .ok_or_else(|| KernelError::WrongValueType(vectors.value_type().to_string()))?;
    let start = vectors.offset() * dim;
    let flat = &values.values()[start..start + vectors.len() * dim];
    if dim == 0 {
        return Ok(vec![0.0; vectors.len()]);
    }
    let score = |row: &[f32]| -> f32 {
        let value = match metric {
            Metric::Dot => <f32 as SpatialSimilarity>::dot(row, query),
            Metric::Cosine => {
                <f32 as SpatialSimilarity>::cos(row, query).map(|distance| 1.0 - distance)
            }
            Metric::L2Squared => <f32 as SpatialSimilarity>::l2sq(row, query),
        };
        // Lengths are equal by construction, so simsimd always returns a value.
        value.unwrap_or(f64::NAN) as f32
    };
    Ok(flat.par_chunks_exact(dim).map(score).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Float32Type;
    use std::sync::Arc;

    fn column(rows: &[Vec<f32>]) -> FixedSizeListArray {
        let dim = rows[0].len() as i32;
        FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            rows.iter()
                .map(|r| Some(r.iter().copied().map(Some).collect::<Vec<_>>())),
            dim,
        )
    }

    use crate::testing::pseudo_random;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn every_metric_agrees_with_a_scalar_reference() {
        let rows = pseudo_random(1000, 67, 7);
        let query = &pseudo_random(1, 67, 99)[0];
        let col = column(&rows);
        let dots = scores(&col, query, Metric::Dot).unwrap();
        let cosines = scores(&col, query, Metric::Cosine).unwrap();
        let l2 = scores(&col, query, Metric::L2Squared).unwrap();
        for (i, row) in rows.iter().enumerate() {
            let d = dot(row, query);
            let cos = d / (dot(row, row).sqrt() * dot(query, query).sqrt());
            let l2sq: f64 = row
                .iter()
                .zip(query)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            assert!((dots[i] as f64 - d).abs() < 1e-4, "dot row {i}");
            assert!((cosines[i] as f64 - cos).abs() < 1e-4, "cosine row {i}");
            assert!((l2[i] as f64 - l2sq).abs() < 1e-3, "l2 row {i}");
        }
    }

    #[test]
    fn a_sliced_column_scores_only_its_rows() {
        let rows = pseudo_random(50, 8, 1);
        let query = vec![1.0; 8];
        let col = column(&rows);
        let all = scores(&col, &query, Metric::Dot).unwrap();
        let part = scores(&col.slice(10, 5), &query, Metric::Dot).unwrap();
        assert_eq!(part, all[10..15].to_vec());
    }

    #[test]
    fn a_query_of_the_wrong_dimension_is_refused() {
        let col = column(&pseudo_random(3, 4, 2));
        assert_eq!(
            scores(&col, &[1.0; 5], Metric::Dot),
            Err(KernelError::DimensionMismatch {
                stored: 4,
                query: 5
            })
        );
    }

    #[test]
    fn a_null_vector_is_refused_with_its_row() {
        let col = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            vec![Some(vec![Some(1.0), Some(2.0)]), None],
            2,
        );
        assert_eq!(
            scores(&col, &[1.0, 1.0], Metric::Dot),
            Err(KernelError::NullVector(1))
        );
    }

    #[test]
    fn a_column_of_other_values_is_refused() {
        let field = Arc::new(arrow_schema::Field::new(
            "item",
            arrow_schema::DataType::Int32,
            false,
        ));
        let values = Arc::new(arrow_array::Int32Array::from(vec![1, 2, 3, 4]));
        let col = FixedSizeListArray::new(field, 2, values, None);
        assert!(matches!(
            scores(&col, &[1.0, 1.0], Metric::Dot),
            Err(KernelError::WrongValueType(_))
        ));
    }

    #[test]
    fn scores_split_across_threads_equal_a_single_threaded_run() {
        let rows = pseudo_random(4096, 32, 3);
        let query = &pseudo_random(1, 32, 4)[0];
        let col = column(&rows);
        let parallel = scores(&col, query, Metric::Dot).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let serial = pool.install(|| scores(&col, query, Metric::Dot).unwrap());
        assert_eq!(parallel, serial);
    }
}
