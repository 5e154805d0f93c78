//! One retry policy for every call to MongoDB and Qdrant: bounded attempts, exponential backoff
//! with jitter, and only for errors that say a retry may succeed ([`Transient`]). The sink side
//! applies it as a layer ([`crate::sink::Retrying`]), so no call site writes its own loop.

use std::future::Future;
use std::time::Duration;

/// Whether an error is worth another attempt (server unavailable, timeouts, dropped
/// connections); permanent errors (bad input, refused settings) are not.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// Bounded retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(500),
            max: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped, with up to
    /// 50% jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = f64::from(nanos % 1000) / 1000.0 * 0.5;
        exp.mul_f64(1.0 - jitter / 2.0)
    }

    /// Whether a failure on attempt `attempt` (0-based) of `e` gets another try.
    pub fn allows(&self, attempt: u32, e: &impl Transient) -> bool {
        e.is_transient() && attempt + 1 < self.attempts
    }

    /// Run `op` until it succeeds, fails permanently, or the attempts are spent.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Transient + std::fmt::Display,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if self.allows(attempt, &e) => {
                    attempt += 1;
                    let d = self.delay(attempt);
                    tracing::warn!("{what} failed ({e}); retry {attempt} in {d:?}");
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct E(bool);
    impl Transient for E {
        fn is_transient(&self) -> bool {
            self.0
        }
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "e")
        }
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_attempts_are_spent() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = fast(3)
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(true))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = fast(5)
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(false))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(1) <= p.base);
        assert!(p.delay(10) <= p.max);
        assert!(p.delay(10) >= p.max / 2);
    }
}
