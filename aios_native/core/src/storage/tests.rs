use super::*;

/// Flat row-major pseudo-random values (`n` rows of `dim`).
fn pseudo_random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    crate::testing::pseudo_random(n, dim, seed).concat()
}

/// Brute force in f64: every score, sorted best first (ties by row).
fn brute_force(
    data: &[f32],
    dim: usize,
    query: &[f32],
    metric: ScanMetric,
    mask: Option<&[bool]>,
) -> Vec<(usize, f64)> {
    let mut all: Vec<(usize, f64)> = data
        .chunks_exact(dim)
        .enumerate()
        .filter(|(i, _)| mask.is_none_or(|m| m[*i]))
        .map(|(i, row)| {
            let dot: f64 = row
                .iter()
                .zip(query)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            let nr: f64 = row.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let nq: f64 = query
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let l2: f64 = row
                .iter()
                .zip(query)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum();
            let s = match metric {
                ScanMetric::Dot => dot,
                ScanMetric::Cosine => dot / (nr * nq),
                ScanMetric::L2 => -l2,
            };
            (i, s)
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all
}

#[test]
fn top_k_equals_brute_force_for_every_metric() {
    let dim = 37;
    let data = pseudo_random(10_000, dim, 1);
    let query = pseudo_random(1, dim, 2);
    for metric in [ScanMetric::Dot, ScanMetric::Cosine, ScanMetric::L2] {
        let got = top_k(&Rows::new(&data, dim), &query, 10, metric, None).unwrap();
        let want = brute_force(&data, dim, &query, metric, None);
        let got_rows: Vec<usize> = got[0].iter().map(|(r, _)| *r).collect();
        let want_rows: Vec<usize> = want[..10].iter().map(|(r, _)| *r).collect();
        assert_eq!(got_rows, want_rows, "{metric:?}");
        for ((_, g), (_, w)) in got[0].iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-4, "{metric:?}: {g} vs {w}");
        }
    }
}

#[test]
fn a_batch_of_queries_equals_one_query_at_a_time() {
    let dim = 16;
    let data = pseudo_random(5000, dim, 3);
    let queries = pseudo_random(7, dim, 4);
    let rows = Rows::new(&data, dim);
    let batch = top_k(&rows, &queries, 5, ScanMetric::Dot, None).unwrap();
    for (i, q) in queries.chunks_exact(dim).enumerate() {
        assert_eq!(
            batch[i],
            top_k(&rows, q, 5, ScanMetric::Dot, None).unwrap()[0]
        );
    }
}

#[test]
fn masked_rows_are_never_returned_and_k_come_back_when_k_rows_are_allowed() {
    let dim = 8;
    let data = pseudo_random(9000, dim, 5);
    let query = pseudo_random(1, dim, 6);
    let mask: Vec<bool> = (0..9000).map(|i| i % 1000 == 7).collect(); // 9 allowed rows
    let rows = Rows {
        mask: Some(&mask),
        ..Rows::new(&data, dim)
    };
    let got = top_k(&rows, &query, 9, ScanMetric::Dot, None).unwrap();
    assert_eq!(got[0].len(), 9);
    assert!(got[0].iter().all(|(r, _)| r % 1000 == 7));
    let want = brute_force(&data, dim, &query, ScanMetric::Dot, Some(&mask));
    assert_eq!(
        got[0].iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        want.iter().map(|(r, _)| *r).collect::<Vec<_>>()
    );
}

#[test]
fn the_threshold_drops_rows_scoring_below_it() {
    let dim = 8;
    let data = pseudo_random(3000, dim, 7);
    let query = pseudo_random(1, dim, 8);
    let got = top_k(
        &Rows::new(&data, dim),
        &query,
        3000,
        ScanMetric::Dot,
        Some(0.1),
    )
    .unwrap();
    let want = brute_force(&data, dim, &query, ScanMetric::Dot, None);
    let above = want.iter().filter(|(_, s)| *s as f32 >= 0.1).count();
    assert!(above > 0 && above < 3000);
    assert!((got[0].len() as i64 - above as i64).abs() <= 1); // float32 vs f64 rounding at 0.1
    assert!(got[0].iter().all(|(_, s)| *s >= 0.1));
}

#[test]
fn scale_and_bias_turn_a_dot_scan_into_an_affine_score() {
    let dim = 4;
    let data = pseudo_random(100, dim, 9);
    let query = pseudo_random(1, dim, 10);
    let scale: Vec<f32> = (0..100).map(|i| 1.0 + i as f32 / 100.0).collect();
    let bias: Vec<f32> = (0..100).map(|i| -(i as f32) / 50.0).collect();
    let rows = Rows {
        scale: Some(&scale),
        bias: Some(&bias),
        ..Rows::new(&data, dim)
    };
    let got = top_k(&rows, &query, 100, ScanMetric::Dot, None).unwrap();
    for (row, s) in &got[0] {
        let dot: f32 = data[row * dim..(row + 1) * dim]
            .iter()
            .zip(&query)
            .map(|(a, b)| a * b)
            .sum();
        assert!((s - (dot * scale[*row] + bias[*row])).abs() < 1e-5);
    }
}

#[test]
fn int8_codes_rank_nearly_like_float32_after_quantization() {
    let dim = 64;
    let n = 4000;
    let data = pseudo_random(n, dim, 11);
    let mut codes = vec![0i8; n * dim];
    let mut scales = vec![0f32; n];
    quantize_i8(&data, dim, &mut codes, &mut scales).unwrap();
    for (row, (code, scale)) in data
        .chunks_exact(dim)
        .zip(codes.chunks_exact(dim).zip(&scales))
    {
        for (v, c) in row.iter().zip(code) {
            assert!((v - *c as f32 * scale).abs() <= scale * 0.5 + 1e-6);
        }
    }
    let query = pseudo_random(1, dim, 12);
    let mut qcodes = vec![0i8; dim];
    let mut qscale = vec![0f32; 1];
    quantize_i8(&query, dim, &mut qcodes, &mut qscale).unwrap();
    let rows = Rows {
        scale: Some(&scales),
        ..Rows::new(&codes, dim)
    };
    let candidates = top_k(&rows, &qcodes, 50, ScanMetric::Dot, None).unwrap();
    let exact = top_k(&Rows::new(&data, dim), &query, 10, ScanMetric::Dot, None).unwrap();
    let found: Vec<usize> = candidates[0].iter().map(|(r, _)| *r).collect();
    assert!(
        exact[0].iter().all(|(r, _)| found.contains(r)),
        "exact top-10 within the int8 top-50"
    );
}

#[test]
fn float16_scans_agree_with_float32() {
    let dim = 32;
    let data = pseudo_random(2000, dim, 13);
    let query = pseudo_random(1, dim, 14);
    let half: Vec<simsimd::f16> = data.iter().map(|v| simsimd::f16::from_f32(*v)).collect();
    let qhalf: Vec<simsimd::f16> = query.iter().map(|v| simsimd::f16::from_f32(*v)).collect();
    let got = top_k(&Rows::new(&half, dim), &qhalf, 5, ScanMetric::Cosine, None).unwrap();
    let want = top_k(&Rows::new(&data, dim), &query, 5, ScanMetric::Cosine, None).unwrap();
    for ((_, g), (_, w)) in got[0].iter().zip(&want[0]) {
        assert!((g - w).abs() < 2e-3);
    }
}

#[test]
fn a_parallel_scan_equals_a_single_threaded_one() {
    let dim = 24;
    let data = pseudo_random(20_000, dim, 15);
    let queries = pseudo_random(3, dim, 16);
    let rows = Rows::new(&data, dim);
    let parallel = top_k(&rows, &queries, 20, ScanMetric::L2, None).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let serial = pool.install(|| top_k(&rows, &queries, 20, ScanMetric::L2, None).unwrap());
    assert_eq!(parallel, serial);
}

#[test]
fn fewer_rows_than_k_returns_every_row() {
    let data = pseudo_random(3, 2, 17);
    let got = top_k(&Rows::new(&data, 2), &[1.0, 0.0], 10, ScanMetric::Dot, None).unwrap();
    assert_eq!(got[0].len(), 3);
}

#[test]
fn bad_shapes_are_refused_with_their_cause() {
    let data = vec![0.0f32; 10];
    assert_eq!(
        top_k(&Rows::new(&data, 3), &[0.0; 3], 1, ScanMetric::Dot, None),
        Err(ScanError::Ragged {
            what: "the matrix",
            len: 10,
            dim: 3
        })
    );
    assert_eq!(
        top_k(&Rows::new(&data, 5), &[0.0; 4], 1, ScanMetric::Dot, None),
        Err(ScanError::Ragged {
            what: "the queries",
            len: 4,
            dim: 5
        })
    );
    assert_eq!(
        top_k(&Rows::new(&data, 5), &[0.0; 5], 0, ScanMetric::Dot, None),
        Err(ScanError::ZeroK)
    );
    let mask = [true];
    let rows = Rows {
        mask: Some(&mask),
        ..Rows::new(&data, 5)
    };
    assert_eq!(
        top_k(&rows, &[0.0; 5], 1, ScanMetric::Dot, None),
        Err(ScanError::LengthMismatch {
            what: "the mask",
            len: 1,
            rows: 2
        })
    );
    assert_eq!(
        ScanMetric::parse("cosine"),
        Err(ScanError::UnknownMetric("cosine".into()))
    );
}

#[test]
fn blocked_float32_dots_equal_pairwise_dots_for_every_tile_shape() {
    // 7 rows (a 4-row tile and 3 leftovers), 5 queries (two 2-query tiles and one left), and a
    // dimension with a tail after the 8-wide and 32-wide strides.
    let dim = 45;
    let block = pseudo_random(7, dim, 21);
    let queries = pseudo_random(5, dim, 22);
    let mut out = vec![0f32; 7 * 5];
    let mut norms = vec![0f32; 7];
    if !dense::block_dots(&block, dim, &queries, &mut out, Some(&mut norms)) {
        return; // no AVX2 on this CPU: the portable path is what runs, tested elsewhere
    }
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum() };
    for (r, row) in block.chunks_exact(dim).enumerate() {
        assert!((norms[r] as f64 - dot(row, row)).abs() < 1e-4);
        for (q, query) in queries.chunks_exact(dim).enumerate() {
            assert!(
                (out[r * 5 + q] as f64 - dot(row, query)).abs() < 1e-4,
                "row {r} query {q}"
            );
        }
    }
}

#[test]
fn one_query_float32_dots_equal_pairwise_dots_with_norms() {
    // The single-query path (row by row), with a tail after the 32-wide stride.
    let dim = 45;
    let block = pseudo_random(6, dim, 23);
    let query = pseudo_random(1, dim, 24);
    let mut out = vec![0f32; 6];
    let mut norms = vec![0f32; 6];
    if !dense::block_dots(&block, dim, &query, &mut out, Some(&mut norms)) {
        return; // no AVX2 on this CPU
    }
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum() };
    for (r, row) in block.chunks_exact(dim).enumerate() {
        assert!((norms[r] as f64 - dot(row, row)).abs() < 1e-4, "norm {r}");
        assert!((out[r] as f64 - dot(row, &query)).abs() < 1e-4, "row {r}");
    }
}

#[test]
fn blocked_int8_dots_are_exact_for_every_row_count_and_dimension() {
    if !vnni_available() {
        return;
    }
    for dim in [32usize, 40, 64, 384, 512, 768, 7, 100] {
        for n in [1usize, 3, 4, 9, 64] {
            let codes = |len: usize, seed: u64| -> Vec<i8> {
                pseudo_random(1, len, seed)
                    .iter()
                    .map(|v| (v * 200.0).clamp(-127.0, 127.0) as i8)
                    .collect()
            };
            let mut block = codes(n * dim, 3);
            block[0] = -127;
            let queries = codes(3 * dim, 4);
            let mut out = vec![0f32; n * 3];
            assert!(int8::block_dots(&block, dim, &queries, &mut out));
            for r in 0..n {
                for q in 0..3 {
                    let want: i32 = block[r * dim..(r + 1) * dim]
                        .iter()
                        .zip(&queries[q * dim..(q + 1) * dim])
                        .map(|(&a, &b)| a as i32 * b as i32)
                        .sum();
                    assert_eq!(out[r * 3 + q], want as f32, "dim {dim} n {n} [{r},{q}]");
                }
            }
        }
    }
}

#[test]
fn the_stream_checksum_reads_every_byte() {
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 31 % 251) as u8).collect();
    let base = stream_checksum(&data);
    let mut changed = data.clone();
    changed[2_999_999] ^= 1;
    assert_ne!(stream_checksum(&changed), base);
    changed[2_999_999] ^= 1;
    changed[1_048_576 + 5] ^= 4;
    assert_ne!(stream_checksum(&changed), base);
}
