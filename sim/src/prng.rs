//! A small deterministic PRNG (splitmix64): no `rand` dependency, stable across versions.

/// splitmix64 generator.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Prng(seed)
    }

    /// A generator derived from a seed and a stream label, independent of other labels.
    pub fn derive(seed: u64, label: &str, index: u64) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in label.bytes() {
            h = mix(h ^ u64::from(b));
        }
        Prng(mix(h ^ index.wrapping_mul(0xA24B_AED4_963E_E407)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform integer in `[lo, hi]` (inclusive); `lo` when `hi <= lo`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as i64
    }

    /// Uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// 40 lowercase hex characters (the shape of Withings device ids and tokens).
    pub fn hex40(&mut self) -> String {
        let mut s = String::with_capacity(40);
        for _ in 0..3 {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(40);
        s
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Prng::derive(42, "x", 1);
        let mut b = Prng::derive(42, "x", 1);
        let mut c = Prng::derive(42, "y", 1);
        let va: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn range_is_inclusive_and_bounded() {
        let mut p = Prng::new(7);
        for _ in 0..1000 {
            let v = p.range(-3, 3);
            assert!((-3..=3).contains(&v));
        }
        assert_eq!(p.range(5, 5), 5);
        assert_eq!(p.hex40().len(), 40);
    }
}
