//! When requests are sent and which of them a step counts.
//!
//! A **closed loop** has N users, each sending its next request when the last is answered: the
//! load adapts to the system, so a slow system is simply sent less. An **open loop** sends R
//! requests per second on a fixed schedule, whatever the system does, as independent clients
//! would. When the system stalls, a naive load generator stalls with it and never measures the
//! requests it failed to send ("coordinated omission"); here every request keeps its slot in the
//! schedule and its latency runs from that *intended* send time, so a stall shows up as the
//! latency every client scheduled during it would have seen.
//!
//! Every step starts with a warm-up that is not recorded, then the measured window.

use std::time::Duration;

use super::stats::Sample;

/// How the load is generated in one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Closed { users: usize },
    Open { rate: f64 },
}

impl Mode {
    /// `100 users`, `250 req/s`.
    pub fn label(&self) -> String {
        match self {
            Self::Closed { users } => format!("{users} users"),
            Self::Open { rate } => format!("{rate} req/s"),
        }
    }
}

/// The measured part of a step, as offsets from the step's start: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Duration,
    pub to: Duration,
}

impl Window {
    /// The window after `warmup`, lasting `duration`.
    pub fn new(warmup: Duration, duration: Duration) -> Self {
        Self {
            from: warmup,
            to: warmup + duration,
        }
    }

    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }

    pub fn contains(&self, at: Duration) -> bool {
        self.from <= at && at < self.to
    }

    /// Whether a request enters the step's latency figures and error tally.
    ///
    /// - Closed loop: when it *completed* inside the window. Requests still in flight at its
    ///   end are drained (answered, not counted) before the next step starts.
    /// - Open loop: when it was *scheduled* inside the window, however late its answer came:
    ///   dropping the slow answers would hide exactly what the open loop is there to show.
    pub fn counts(&self, mode: Mode, sample: &Sample) -> bool {
        match mode {
            Mode::Closed { .. } => self.contains(sample.completed),
            Mode::Open { .. } => self.contains(sample.intended),
        }
    }
}

/// When closed-loop user `user` of `users` sends its first request: the users start evenly
/// spread over `ramp`, so they arrive as independent users do. Started together, with a provider
/// of fixed latency, they would stay in lockstep and send every request in bursts of N, which
/// measures how a queue drains a burst rather than what a request costs.
pub fn ramp_start(user: usize, users: usize, ramp: Duration) -> Duration {
    if users == 0 {
        return Duration::ZERO;
    }
    ramp.mul_f64(user as f64 / users as f64)
}

/// The open loop's timetable: request `index` is due `index / rate` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` requests per second; `None` unless it is a positive, finite number.
    pub fn new(rate: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then_some(Self { rate })
    }

    /// When request `index` is due, from the start of the step.
    pub fn due(&self, index: u64) -> Duration {
        Duration::from_secs_f64(index as f64 / self.rate)
    }

    /// How many requests are due before `end`.
    pub fn count_before(&self, end: Duration) -> u64 {
        (end.as_secs_f64() * self.rate).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Outcome;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn sample(intended: u64, completed: u64) -> Sample {
        Sample {
            intended: ms(intended),
            completed: ms(completed),
            provider: None,
            reported_provider: None,
            outcome: Outcome::Letter,
        }
    }

    #[test]
    fn the_schedule_spaces_requests_evenly() {
        let schedule = Schedule::new(4.0).unwrap();
        let due: Vec<Duration> = (0..5).map(|index| schedule.due(index)).collect();
        assert_eq!(due, [ms(0), ms(250), ms(500), ms(750), ms(1000)]);
        // 2.5 s at 4 req/s: requests 0 to 9 are due before it ends.
        assert_eq!(schedule.count_before(ms(2500)), 10);
        assert_eq!(schedule.count_before(ms(2501)), 11);
        let slow = Schedule::new(0.5).unwrap();
        assert_eq!(slow.due(3), ms(6000));
        assert_eq!(Schedule::new(0.0), None);
        assert_eq!(Schedule::new(f64::NAN), None);
    }

    #[test]
    fn closed_loop_users_start_spread_over_the_ramp() {
        let starts: Vec<Duration> = (0..4).map(|user| ramp_start(user, 4, ms(2000))).collect();
        assert_eq!(starts, [ms(0), ms(500), ms(1000), ms(1500)]);
        assert_eq!(ramp_start(0, 0, ms(2000)), ms(0));
        assert_eq!(ramp_start(3, 4, Duration::ZERO), ms(0));
    }

    #[test]
    fn a_stalled_send_is_charged_from_its_slot_in_the_schedule() {
        // 10 req/s: request 7 is due at 700 ms. The system stalled, so it could only be sent at
        // 1,650 ms, and was answered 50 ms later. A client that arrived on time waited 1,000 ms,
        // not the 50 ms the connection saw.
        let schedule = Schedule::new(10.0).unwrap();
        let intended = schedule.due(7);
        assert_eq!(intended, ms(700));
        let answered = sample(700, 1700);
        assert_eq!(answered.latency(), ms(1000));
        // In a closed loop the intended time is the actual send: no correction.
        assert_eq!(sample(1650, 1700).latency(), ms(50));
    }

    #[test]
    fn the_window_counts_closed_loops_by_completion_and_open_loops_by_schedule() {
        let window = Window::new(ms(2000), ms(10_000));
        assert_eq!(window.length(), ms(10_000));
        let closed = Mode::Closed { users: 10 };
        let open = Mode::Open { rate: 5.0 };
        // Sent in the warm-up, answered in the window.
        let early = sample(1500, 2500);
        assert!(window.counts(closed, &early));
        assert!(!window.counts(open, &early));
        // Scheduled in the window, answered after it.
        let late = sample(11_500, 12_500);
        assert!(!window.counts(closed, &late));
        assert!(window.counts(open, &late));
        // The window is half-open.
        assert!(window.contains(ms(2000)));
        assert!(!window.contains(ms(12_000)));
        assert_eq!(closed.label(), "10 users");
        assert_eq!(open.label(), "5 req/s");
    }
}
