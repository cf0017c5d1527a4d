//! Two-way fork-join on a helper thread that spins between calls, for kernels called every
//! few hundred microseconds with single-threaded work in between.
//!
//! Why not rayon here: a quantized model's forward calls the int8 product about 120 times per
//! step, each call 50-400 µs, with NumPy work between them. Rayon's idle workers go to sleep
//! after a short spin, and waking one (a futex through the hypervisor on a VM) took longer than
//! the half of the work it was woken for: measured on the 2-core development machine, a
//! 3072 × 576 × 8 product took 141 µs on two threads back to back, 201 µs on one, and 250 µs
//! on two with 100 µs of other work between calls, slower than one thread. This helper spins
//! for `SPIN` after each job before it parks, so the calls of one forward find it awake.
//!
//! `join(a, b)` runs `a` on the calling thread and offers `b` to the helper; if the helper has
//! not taken `b` by the time `a` is done, the caller runs it itself, so a busy or parked helper
//! never makes a call slower than running both halves in turn. One job is offered at a time:
//! concurrent callers that find the slot taken run both halves themselves.

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long the helper spins for the next job before it parks.
const SPIN: Duration = Duration::from_millis(2);

const EMPTY: u8 = 0;
const OFFERED: u8 = 1;
const TAKEN: u8 = 2;
const DONE: u8 = 3;
const CLAIMED: u8 = 4; // the slot is being filled by a caller

/// A job as the helper sees it: a pointer to the caller's closure and how to call it.
struct Job {
    data: *mut (),
    call: unsafe fn(*mut ()),
}

struct Slot {
    state: AtomicU8,
    job: UnsafeCell<Option<Job>>,
    helper: OnceLock<Thread>,
}

// SAFETY: `job` is written only by the caller that moved `state` from EMPTY to CLAIMED and read
// only by the thread that moved it from OFFERED to TAKEN; the state's acquire/release orderings
// make those accesses happen-before one another.
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot {
    state: AtomicU8::new(EMPTY),
    job: UnsafeCell::new(None),
    helper: OnceLock::new(),
};

/// Set by the helper when the half it ran panicked; the caller panics in turn.
static HELPER_PANICKED: AtomicBool = AtomicBool::new(false);

/// Whether two-way joins can run in parallel here (more than one CPU).
pub fn available() -> bool {
    thread::available_parallelism().map_or(1, |n| n.get()) > 1
}

/// Run `a` and `b`, in parallel when the helper is free; returns when both are done.
pub fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    if !available()
        || SLOT
            .state
            .compare_exchange(EMPTY, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        a();
        b();
        return;
    }
    let mut b = Some(b);
    unsafe fn call<B: FnOnce()>(data: *mut ()) {
        // SAFETY: `data` points at the caller's `Option<B>`, alive until the job is DONE.
        let b = unsafe { &mut *(data as *mut Option<B>) };
        if let Some(b) = b.take() {
            b();
        }
    }
    // SAFETY: this thread owns the slot (CLAIMED); nobody reads `job` until OFFERED.
    unsafe {
        *SLOT.job.get() = Some(Job {
            data: &mut b as *mut Option<B> as *mut (),
            call: call::<B>,
        });
    }
    SLOT.state.store(OFFERED, Ordering::Release);
    helper().unpark();
    // `b` borrows from this frame: whatever `a` does, wait for `b` before leaving it
    let a_result = panic::catch_unwind(AssertUnwindSafe(a));
    if SLOT
        .state
        .compare_exchange(OFFERED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // The helper did not take it: run it here.
        // SAFETY: as in `call`; the job is ours again (TAKEN by this thread).
        unsafe { call::<B>(&mut b as *mut Option<B> as *mut ()) };
    } else {
        while SLOT.state.load(Ordering::Acquire) != DONE {
            std::hint::spin_loop();
        }
    }
    // SAFETY: the slot is ours (TAKEN or DONE); clear it before releasing.
    unsafe { *SLOT.job.get() = None };
    let helper_panicked = HELPER_PANICKED.swap(false, Ordering::AcqRel);
    SLOT.state.store(EMPTY, Ordering::Release);
    if let Err(payload) = a_result {
        panic::resume_unwind(payload);
    }
    assert!(!helper_panicked, "the second half of a parallel kernel panicked");
}

/// The helper thread, started on first use.
fn helper() -> &'static Thread {
    SLOT.helper.get_or_init(|| {
        thread::Builder::new()
            .name("aios-pair".into())
            .spawn(helper_loop)
            .expect("the kernels' helper thread could not start")
            .thread()
            .clone()
    })
}

fn helper_loop() {
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            if SLOT.state.load(Ordering::Acquire) == OFFERED
                && SLOT
                    .state
                    .compare_exchange(OFFERED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: TAKEN by this thread: the job was written before OFFERED (release)
                // and the caller keeps it alive until it sees DONE.
                let ran = panic::catch_unwind(|| unsafe {
                    if let Some(job) = (*SLOT.job.get()).as_ref() {
                        (job.call)(job.data);
                    }
                });
                if ran.is_err() {
                    HELPER_PANICKED.store(true, Ordering::Release);
                }
                SLOT.state.store(DONE, Ordering::Release);
                idle_since = Instant::now();
                spins = 0;
                continue;
            }
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(1024) && idle_since.elapsed() > SPIN {
                break;
            }
        }
        // Parked until the next offer (`unpark` before parking makes `park` return at once).
        if SLOT.state.load(Ordering::Acquire) != OFFERED {
            thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn both_halves_run_exactly_once() {
        for round in 0..2000 {
            let a = AtomicUsize::new(0);
            let b = AtomicUsize::new(0);
            join(
                || {
                    a.fetch_add(1, Ordering::Relaxed);
                },
                || {
                    b.fetch_add(round + 1, Ordering::Relaxed);
                },
            );
            assert_eq!(a.load(Ordering::Relaxed), 1);
            assert_eq!(b.load(Ordering::Relaxed), round + 1);
            if round % 500 == 0 {
                thread::sleep(Duration::from_millis(5)); // let the helper park
            }
        }
    }

    #[test]
    fn the_halves_write_disjoint_parts_of_one_buffer() {
        let mut out = vec![0u64; 1000];
        for round in 1..200u64 {
            let (left, right) = out.split_at_mut(400);
            join(
                || left.iter_mut().for_each(|v| *v += round),
                || right.iter_mut().for_each(|v| *v += 2 * round),
            );
        }
        let total: u64 = (1..200u64).sum();
        assert!(out[..400].iter().all(|&v| v == total));
        assert!(out[400..].iter().all(|&v| v == 2 * total));
    }

    #[test]
    fn concurrent_callers_each_get_both_halves_done() {
        let count = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        join(
                            || {
                                count.fetch_add(1, Ordering::Relaxed);
                            },
                            || {
                                count.fetch_add(1, Ordering::Relaxed);
                            },
                        );
                    }
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 4 * 500 * 2);
    }
}
