//! Adaptive concurrency: how many jobs this worker runs at once, fitted to what the LLM provider
//! accepts (additive increase, multiplicative decrease, as TCP fits its congestion window).
//!
//! The limit starts at the maximum (`LETTERBOX_CONCURRENCY`, also the prefetch). A 429 from the
//! provider halves it, never below one; successful calls raise it by one for every
//! [`INCREASE_AFTER_LIMITS`] limits' worth of them, back up to the maximum. Calls started together
//! that all meet the same rate limit are one signal, not many: a 429 lowers the limit only when
//! its call started after the last decrease, so the limit falls at most once per round trip.
//!
//! A semaphore enforces the limit, one permit per job. Lowering it forgets the free permits it
//! can and books the rest as debt, which permits pay as their jobs finish (they are forgotten
//! instead of returned); raising it pays debt first, then adds a permit. So at any moment,
//! free permits + held permits − debt = limit.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Successful calls that raise the limit by one, in multiples of the limit: with 2, a worker at
/// limit 8 goes to 9 after 16 successes. Slower than TCP's one per round trip, because every
/// worker of a fleet probes the same provider limit at once.
pub const INCREASE_AFTER_LIMITS: usize = 2;

/// The number of decreases so far; a call remembers the one it started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round(u64);

#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    semaphore: Arc<Semaphore>,
    max: usize,
    /// Off: the limit stays at the maximum whatever the provider answers.
    adaptive: bool,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    /// Permits in use above the limit since it was lowered: that many permits are forgotten
    /// when their jobs finish, instead of going back to the semaphore.
    debt: usize,
    /// Successful calls counted toward the next increase.
    successes: usize,
    round: u64,
}

/// One job's share of the limit; gives it back when dropped.
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    inner: Arc<Inner>,
}

impl Limiter {
    /// A limit that starts at `max` (at least 1), and moves with the provider's answers when
    /// `adaptive`.
    pub fn new(max: usize, adaptive: bool) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(max)),
                max,
                adaptive,
                state: Mutex::new(State {
                    limit: max,
                    debt: 0,
                    successes: 0,
                    round: 0,
                }),
            }),
        }
    }

    /// Waits until the limit allows one more job.
    pub async fn acquire(&self) -> Result<Permit, AcquireError> {
        let permit = Arc::clone(&self.inner.semaphore).acquire_owned().await?;
        Ok(Permit {
            permit: Some(permit),
            inner: Arc::clone(&self.inner),
        })
    }

    pub fn limit(&self) -> usize {
        self.inner.state().limit
    }

    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// To be taken just before an LLM call, and handed back with its outcome.
    pub fn round(&self) -> Round {
        Round(self.inner.state().round)
    }

    /// A call succeeded. It counts toward an increase only while the limit is what holds the
    /// worker back (no permit free): a success below the limit says nothing about a higher one.
    pub fn succeeded(&self) {
        if !self.inner.adaptive {
            return;
        }
        let mut state = self.inner.state();
        if state.limit >= self.inner.max || self.inner.semaphore.available_permits() > 0 {
            return;
        }
        state.successes += 1;
        if state.successes >= state.limit * INCREASE_AFTER_LIMITS {
            state.successes = 0;
            state.limit += 1;
            if state.debt > 0 {
                state.debt -= 1;
            } else {
                self.inner.semaphore.add_permits(1);
            }
        }
    }

    /// The provider answered a call started in `round` with 429. Halves the limit, unless the
    /// limit was already lowered after that call started.
    pub fn rate_limited(&self, round: Round) {
        if !self.inner.adaptive {
            return;
        }
        let mut state = self.inner.state();
        if round.0 != state.round {
            return;
        }
        state.round += 1;
        state.successes = 0;
        let lower = (state.limit / 2).max(1);
        let cut = state.limit - lower;
        state.limit = lower;
        let forgotten = self.inner.semaphore.forget_permits(cut);
        state.debt += cut - forgotten;
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        // Under the lock, so an increase that pays debt cannot race with a permit paying it.
        let mut state = self.inner.state();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Free permits, as the semaphore counts them.
    fn free(limiter: &Limiter) -> usize {
        limiter.inner.semaphore.available_permits()
    }

    async fn take(limiter: &Limiter, n: usize) -> Vec<Permit> {
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(limiter.acquire().await.unwrap());
        }
        permits
    }

    #[tokio::test]
    async fn the_limit_starts_at_the_maximum() {
        let limiter = Limiter::new(16, true);
        assert_eq!(limiter.limit(), 16);
        assert_eq!(limiter.max(), 16);
        assert_eq!(free(&limiter), 16);
    }

    #[tokio::test]
    async fn a_429_halves_the_limit_and_frees_no_more_jobs_than_the_new_limit() {
        let limiter = Limiter::new(16, true);
        let mut held = take(&limiter, 10).await;
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 8);
        // Six free permits were forgotten; the two above the new limit are owed.
        assert_eq!(free(&limiter), 0);
        held.truncate(8);
        assert_eq!(free(&limiter), 0, "the two returned paid the debt");
        held.truncate(7);
        assert_eq!(free(&limiter), 1);
        drop(held);
        assert_eq!(free(&limiter), 8);
    }

    #[tokio::test]
    async fn calls_started_before_a_decrease_do_not_lower_the_limit_again() {
        let limiter = Limiter::new(16, true);
        // Four calls start together and all meet the rate limit.
        let rounds: Vec<Round> = (0..4).map(|_| limiter.round()).collect();
        for round in rounds {
            limiter.rate_limited(round);
        }
        assert_eq!(limiter.limit(), 8);
        // A call started after that decrease is a new signal.
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 4);
    }

    #[tokio::test]
    async fn the_limit_never_falls_below_one() {
        let limiter = Limiter::new(3, true);
        for expected in [1, 1, 1] {
            let round = limiter.round();
            limiter.rate_limited(round);
            assert_eq!(limiter.limit(), expected);
        }
        assert_eq!(free(&limiter), 1);
    }

    #[tokio::test]
    async fn successes_at_the_limit_raise_it_by_one_per_two_limits_worth() {
        let limiter = Limiter::new(16, true);
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 8);
        let held = take(&limiter, 8).await;
        for _ in 0..15 {
            limiter.succeeded();
        }
        assert_eq!(limiter.limit(), 8);
        limiter.succeeded();
        assert_eq!(limiter.limit(), 9);
        assert_eq!(free(&limiter), 1, "the increase added a permit");
        // Busy at 9 again: 18 more successes for the next step.
        let more = take(&limiter, 1).await;
        for _ in 0..17 {
            limiter.succeeded();
        }
        assert_eq!(limiter.limit(), 9);
        limiter.succeeded();
        assert_eq!(limiter.limit(), 10);
        drop((held, more));
        assert_eq!(free(&limiter), 10);
    }

    #[tokio::test]
    async fn successes_below_the_limit_do_not_raise_it() {
        let limiter = Limiter::new(16, true);
        let round = limiter.round();
        limiter.rate_limited(round);
        let _held = take(&limiter, 7).await;
        for _ in 0..100 {
            limiter.succeeded();
        }
        assert_eq!(limiter.limit(), 8);
    }

    #[tokio::test]
    async fn an_increase_pays_debt_before_adding_permits() {
        let limiter = Limiter::new(4, true);
        let held = take(&limiter, 4).await;
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 2);
        // All four permits are held: the cut of two is owed. At the limit, so successes count.
        for _ in 0..4 {
            limiter.succeeded();
        }
        assert_eq!(limiter.limit(), 3);
        assert_eq!(free(&limiter), 0);
        drop(held);
        // Four come back, one pays the remaining debt: three free, the limit.
        assert_eq!(free(&limiter), 3);
    }

    #[tokio::test]
    async fn the_limit_climbs_back_to_the_maximum_and_no_further() {
        let limiter = Limiter::new(4, true);
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 2);
        for expected in [3, 4] {
            let _held = take(&limiter, limiter.limit()).await;
            for _ in 0..limiter.limit() * INCREASE_AFTER_LIMITS {
                limiter.succeeded();
            }
            assert_eq!(limiter.limit(), expected);
        }
        let _held = take(&limiter, 4).await;
        for _ in 0..100 {
            limiter.succeeded();
        }
        assert_eq!(limiter.limit(), 4);
        assert_eq!(free(&limiter), 0);
    }

    #[tokio::test]
    async fn a_fixed_limit_ignores_the_provider() {
        let limiter = Limiter::new(8, false);
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 8);
        assert_eq!(free(&limiter), 8);
    }

    #[tokio::test]
    async fn a_job_waits_while_the_lowered_limit_is_in_use() {
        let limiter = Limiter::new(2, true);
        let held = take(&limiter, 2).await;
        let round = limiter.round();
        limiter.rate_limited(round);
        assert_eq!(limiter.limit(), 1);
        let mut held = held.into_iter();
        drop(held.next());
        // One job still runs, at the limit of one: the next must wait.
        assert_eq!(free(&limiter), 0);
        drop(held);
        assert_eq!(free(&limiter), 1);
        assert!(limiter.acquire().await.is_ok());
    }

    /// One round trip against a provider that takes `takes` calls at once: the worker starts as
    /// many calls as its limit allows, the provider refuses the calls over `takes` at once (as
    /// providers answer 429s) and answers the others later. Returns the limit afterwards.
    async fn round_trip(limiter: &Limiter, takes: usize) -> usize {
        let started = limiter.limit();
        let permits = take(limiter, started).await;
        let round = limiter.round();
        for _ in takes..started {
            limiter.rate_limited(round);
        }
        for _ in 0..started.min(takes) {
            limiter.succeeded();
        }
        drop(permits);
        assert_eq!(free(limiter), limiter.limit(), "permits and limit disagree");
        limiter.limit()
    }

    #[tokio::test]
    async fn against_a_provider_that_takes_five_the_limit_saws_between_three_and_six() {
        let limiter = Limiter::new(16, true);
        let mut limits = Vec::new();
        for _ in 0..12 {
            limits.push(round_trip(&limiter, 5).await);
        }
        // One halving for the whole first round's refusals; then up by one every two limits'
        // worth of successes, down by half on the first refusal.
        assert_eq!(limits, [8, 4, 5, 5, 6, 3, 4, 4, 5, 5, 6, 3]);
    }

    #[tokio::test]
    async fn against_a_provider_that_takes_everything_the_limit_stays_at_the_maximum() {
        let limiter = Limiter::new(16, true);
        for _ in 0..5 {
            assert_eq!(round_trip(&limiter, 100).await, 16);
        }
    }
}
