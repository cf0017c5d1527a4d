//! Which SIMD instruction sets simsimd dispatches to on this CPU.
//!
//! simsimd picks its kernels at run time, so what matters is what it detects on the machine that
//! runs the code, not what the binary was compiled for; `aios doctor` shows this.

use simsimd::capabilities as caps;

/// The instruction-set families simsimd can dispatch to, and whether each is usable here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    flags: Vec<(&'static str, bool)>,
    /// Whether kernels are chosen at run time (true for this crate's build of simsimd).
    pub dynamic_dispatch: bool,
}

impl Capabilities {
    /// Ask simsimd what this CPU supports.
    pub fn detect() -> Self {
        let flags = vec![
            ("haswell", caps::uses_haswell()),
            ("skylake", caps::uses_skylake()),
            ("ice", caps::uses_ice()),
            ("genoa", caps::uses_genoa()),
            ("sapphire", caps::uses_sapphire()),
            ("turin", caps::uses_turin()),
            ("sierra", caps::uses_sierra()),
            ("neon", caps::uses_neon()),
            ("neon_f16", caps::uses_neon_f16()),
            ("neon_bf16", caps::uses_neon_bf16()),
            ("neon_i8", caps::uses_neon_i8()),
            ("sve", caps::uses_sve()),
            ("sve_f16", caps::uses_sve_f16()),
            ("sve_bf16", caps::uses_sve_bf16()),
            ("sve_i8", caps::uses_sve_i8()),
        ];
        Capabilities {
            flags,
            dynamic_dispatch: caps::uses_dynamic_dispatch(),
        }
    }

    /// Every known family with its availability, in a stable order.
    pub fn flags(&self) -> &[(&'static str, bool)] {
        &self.flags
    }

    /// The names of the usable families; empty means only the portable serial kernels run.
    pub fn enabled(&self) -> Vec<&'static str> {
        self.flags
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_lists_every_family_once() {
        let caps = Capabilities::detect();
        let mut names: Vec<_> = caps.flags().iter().map(|(n, _)| *n).collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
        assert_eq!(total, 15);
    }

    #[test]
    fn families_of_the_other_architecture_are_never_enabled() {
        let enabled = Capabilities::detect().enabled();
        if cfg!(target_arch = "x86_64") {
            assert!(enabled
                .iter()
                .all(|n| !n.starts_with("neon") && !n.starts_with("sve")));
        }
        if cfg!(target_arch = "aarch64") {
            assert!(enabled
                .iter()
                .all(|n| n.starts_with("neon") || n.starts_with("sve")));
        }
    }

    #[test]
    fn detection_matches_the_cpu_feature_flags() {
        // simsimd's "haswell" family needs AVX2 and FMA; std can check those independently.
        #[cfg(target_arch = "x86_64")]
        {
            let cpu_has = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            let caps = Capabilities::detect();
            assert_eq!(caps.enabled().contains(&"haswell"), cpu_has);
        }
    }
}
