//! Exponential back-off with jitter for reconnecting.
//!
//! rumqttc reconnects as fast as its event loop is polled; device-sim and consumer both wait
//! [`Backoff::next_delay`] between attempts.

use std::time::Duration;

use rand::Rng;

/// First retry delay: short, so a broker that is merely starting up is reached quickly.
const INITIAL: Duration = Duration::from_millis(100);
/// Cap on the delay, so a broker that comes back is noticed within a few seconds.
const MAX: Duration = Duration::from_secs(5);

/// Delay before the next connection attempt: doubles per failure up to [`MAX`], with "equal
/// jitter" (a random point in the upper half) so a fleet of devices does not reconnect in lockstep.
#[derive(Debug, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// A back-off with no failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Call after a successful connection.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Records a failure and returns how long to wait before retrying.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = INITIAL
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(MAX);
        self.attempts = self.attempts.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= INITIAL / 2 && first <= INITIAL);
        for _ in 0..20 {
            assert!(b.next_delay() <= MAX);
        }
        let late = b.next_delay();
        assert!(late >= MAX / 2);
        b.reset();
        assert!(b.next_delay() <= INITIAL);
    }
}
