//! Throughput over the last few steps. With one step in flight behind the one being read, a
//! driver may finish both at one wait (lavapipe often does): timed alone, one step then seems to
//! take two steps' time and the next none, and its images per second would read as 100,000.

use std::collections::VecDeque;

/// Steps a throughput is taken over.
pub const RATE_STEPS: usize = 4;

/// The images and seconds of the last [`RATE_STEPS`] steps.
#[derive(Clone, Debug, Default)]
pub struct StepRate {
    recent: VecDeque<(f64, f64)>,
}

impl StepRate {
    /// Adds a step of `images` that took `seconds` (pauses left out); returns the images per
    /// second over it and the steps before it in the window (0 until any time has passed).
    pub fn push(&mut self, images: f64, seconds: f64) -> f64 {
        if self.recent.len() == RATE_STEPS {
            self.recent.pop_front();
        }
        self.recent.push_back((images, seconds.max(0.0)));
        let (n, t) = self
            .recent
            .iter()
            .fold((0.0, 0.0), |(n, t), &(i, s)| (n + i, t + s));
        if t > 0.0 {
            n / t
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_finished_at_one_wait_share_their_time() {
        let mut r = StepRate::default();
        assert_eq!(r.push(32.0, 0.0), 0.0);
        // 0.5 s a step on average, read as 1 s and 0 s in pairs.
        let rates: Vec<f64> = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
            .iter()
            .map(|&s| r.push(32.0, s))
            .collect();
        assert!((rates[0] - 64.0).abs() < 1e-9, "{rates:?}");
        assert!(
            rates[2..].iter().all(|&x| (x - 64.0).abs() < 1e-9),
            "{rates:?}"
        );
        // Only the window counts: a slower stretch shows at once.
        for _ in 0..RATE_STEPS {
            r.push(32.0, 2.0);
        }
        assert!((r.push(32.0, 2.0) - 16.0).abs() < 1e-9);
    }
}
