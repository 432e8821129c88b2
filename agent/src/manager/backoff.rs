//! When to restart a failed unit: exponential backoff per unit, and a cap
//! on failures within a window after which hostd gives up (a crash loop
//! that restarts forever hides the problem and burns the machine).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::RestartPolicy;

#[derive(Debug, Default)]
pub struct FailureHistory {
    failures: VecDeque<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RestartIn(Duration),
    GiveUp { failures: usize },
}

impl FailureHistory {
    /// Records a failure at `now` and decides what to do about it.
    pub fn on_failure(&mut self, policy: &RestartPolicy, now: Instant) -> Decision {
        let window = policy.window.0;
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        let n = self.failures.len();
        if n > policy.max_restarts as usize {
            return Decision::GiveUp { failures: n };
        }
        // 1st failure: initial; each further one in the window doubles.
        let exp = u32::try_from(n.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(16);
        let delay = policy
            .backoff_initial
            .0
            .saturating_mul(1 << exp)
            .min(policy.backoff_max.0);
        Decision::RestartIn(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: HumanDuration(Duration::from_secs(1)),
            backoff_max: HumanDuration(Duration::from_secs(5)),
            max_restarts: 4,
            window: HumanDuration(Duration::from_secs(60)),
            ..RestartPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_max_then_gives_up() {
        let p = policy();
        let mut h = FailureHistory::default();
        let t = Instant::now();
        let delays: Vec<_> = (0..5)
            .map(|i| h.on_failure(&p, t + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            delays,
            [
                Decision::RestartIn(Duration::from_secs(1)),
                Decision::RestartIn(Duration::from_secs(2)),
                Decision::RestartIn(Duration::from_secs(4)),
                Decision::RestartIn(Duration::from_secs(5)),
                Decision::GiveUp { failures: 5 },
            ]
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let p = policy();
        let mut h = FailureHistory::default();
        let t = Instant::now();
        for i in 0..3 {
            h.on_failure(&p, t + Duration::from_secs(i));
        }
        let later = h.on_failure(&p, t + Duration::from_secs(120));
        assert_eq!(later, Decision::RestartIn(Duration::from_secs(1)));
    }
}
