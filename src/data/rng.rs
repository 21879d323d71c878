//! A small deterministic random number generator for augmentation, masks and shuffling.
//!
//! xoshiro256** seeded through SplitMix64. The crate carries its own generator so that a run is
//! reproducible bit for bit across platforms and dependency updates, and so that its state can
//! be saved in a checkpoint and restored for an exact resume.
//!
//! [`Rng::derive`] gives an independent stream per key (for example seed, epoch and position in
//! the epoch), so what a sample receives never depends on which thread built it or when.

use serde::{Deserialize, Serialize};

/// SplitMix64's increment (2⁶⁴ divided by the golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective mix, so distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A xoshiro256** generator; its state serialises as four integers for an exact resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "[u64; 4]", into = "[u64; 4]")]
pub struct Rng {
    s: [u64; 4],
}

impl TryFrom<[u64; 4]> for Rng {
    type Error = &'static str;

    /// Rejects the all-zero state, on which xoshiro would return zeros forever.
    fn try_from(s: [u64; 4]) -> Result<Self, Self::Error> {
        if s == [0; 4] {
            Err("an all-zero xoshiro256** state is invalid")
        } else {
            Ok(Rng { s })
        }
    }
}

impl From<Rng> for [u64; 4] {
    fn from(rng: Rng) -> Self {
        rng.s
    }
}

impl Rng {
    /// A generator whose state is filled from `seed` by SplitMix64.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut s = [0u64; 4];
        for word in &mut s {
            x = x.wrapping_add(GOLDEN);
            *word = mix(x);
        }
        // Four consecutive SplitMix64 outputs are distinct, so at most one of them is zero and
        // the state can never be all zeros.
        Rng { s }
    }

    /// An independent stream for `seed` and a key such as `[epoch, position]`.
    ///
    /// Keys are hashed in order with their length, so `[1, 2]`, `[2, 1]` and `[1, 2, 0]` all
    /// give different streams.
    pub fn derive(seed: u64, key: &[u64]) -> Self {
        let mut h = mix(seed ^ GOLDEN);
        for &word in key {
            h = mix(h.rotate_left(23) ^ mix(word.wrapping_add(GOLDEN)));
        }
        h = mix(h ^ (key.len() as u64).wrapping_mul(GOLDEN));
        Rng::new(h)
    }

    /// The raw state, for saving alongside a checkpoint.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Restores a state from [`Rng::state`]; `None` for the invalid all-zero state.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        Rng::try_from(s).ok()
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform f32 in [0, 1), from the top 24 bits so every value is exact.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// A uniform f64 in [0, 1), from the top 53 bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform f32 between `lo` and `hi` (`lo + (hi − lo)·u`, so `lo > hi` also works).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// A uniform f64 between `lo` and `hi`, for quantities that are rounded to integers later.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform_f64()
    }

    /// A uniform integer in `0..n` without modulo bias; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let n = n as u64;
        // Lemire's multiply-and-reject: the high half of x·n is uniform once the low half is
        // outside the short first interval.
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as usize
    }

    /// A uniform integer in `lo..=hi` (inclusive, as Python's `random.randint`); `lo` if empty.
    pub fn range_inclusive(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` (never for p ≤ 0, always for p ≥ 1).
    pub fn bernoulli(&mut self, p: f32) -> bool {
        self.uniform() < p
    }

    /// Shuffles a slice in place (Fisher–Yates), every order equally likely.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
