//! A bounded min-heap that keeps the `k` highest scores seen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f32,
    row: usize,
}

// Reversed so that `BinaryHeap` (a max-heap) keeps the *lowest* score on top, ready to evict.
// Ties prefer the lower row, so results are deterministic however rows were split.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

/// The best `k` (row, score) pairs pushed so far.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
    /// The lowest kept score once the heap is full (else -inf): most rows of a scan score below
    /// it, and one float comparison turns them away without touching the heap.
    worst: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            worst: f32::NEG_INFINITY,
        }
    }

    /// The lowest kept score once `k` rows are kept, else -inf: a row scoring below it cannot
    /// enter (one scoring equal may, if its row number is lower).
    #[inline]
    pub fn worst(&self) -> f32 {
        self.worst
    }

    /// Offer one row; a full heap takes it only if it beats the worst kept entry.
    #[inline]
    pub fn push(&mut self, row: usize, score: f32) {
        if score < self.worst {
            return; // below the kept minimum: it could never displace it (ties go the slow way)
        }
        let entry = Entry { score, row };
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if entry < *worst {
                *worst = entry;
            }
        }
        if self.heap.len() == self.k {
            self.worst = self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.score);
        }
    }

    /// Absorb another heap's entries (the reduction step across threads).
    pub fn merge(&mut self, other: TopK) {
        for entry in other.heap {
            self.push(entry.row, entry.score);
        }
    }

    /// (row, score) pairs, best score first, ties by row.
    pub fn into_sorted(self) -> Vec<(usize, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.row, e.score))
            .collect()
    }
}
