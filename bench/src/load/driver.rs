//! Runs one step: sends the load (see [`super::schedule`]), watches the processes' memory, shows
//! a progress bar, and turns what came back into samples with the provider's time attached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::clock::ProviderClock;
use super::rss::{CpuSnapshot, PeakRss, Watched};
use super::schedule::{Mode, Schedule, Window, ramp_start};
use super::stats::{Outcome, Sample, StepResult, summarize};
use super::target::{Attempt, Target};

/// How often memory is sampled and the progress bar redrawn.
const TICK: Duration = Duration::from_millis(250);

/// A closed-loop user pauses this long after an error, so a system that refuses in microseconds
/// is not hammered by a busy loop (the error is counted all the same).
const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(100);

/// The open loop never has more requests than this outstanding; a request over it waits for a
/// slot, and its latency still runs from its slot in the schedule.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 20_000;

/// What the step is and where its provider times come from.
pub struct Step<'a> {
    pub label: String,
    pub mode: Mode,
    pub window: Window,
    pub target: Arc<Target>,
    /// The stub's clock; `None` when the target reports the provider's time itself (the floor).
    pub clock: Option<&'a ProviderClock>,
    pub watched: Vec<Watched>,
    pub serials: Arc<AtomicU64>,
}

/// One request as sent: its marker serial, when it was meant to go, when it was answered.
struct Record {
    serial: u64,
    intended: Duration,
    completed: Duration,
    attempt: Attempt,
}

/// Counters the progress bar shows while the step runs.
#[derive(Default)]
struct Live {
    letters: AtomicU64,
    errors: AtomicU64,
}

impl Live {
    fn count(&self, attempt: &Attempt) {
        let counter = if attempt.outcome == Outcome::Letter {
            &self.letters
        } else {
            &self.errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn run(step: Step<'_>) -> StepResult {
    if let Some(clock) = step.clock {
        clock.clear();
    }
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let end = started + step.window.to;
    let progress = progress_bar(&step.label, step.window.to);
    let mut peaks = PeakRss::default();
    // CPU times when the window opens and when it closes, and when each was read.
    let mut cpu: [Option<(Instant, CpuSnapshot)>; 2] = [None, None];
    let load = send(&step, started, end, Arc::clone(&live));
    tokio::pin!(load);
    let records = loop {
        tokio::select! {
            records = &mut load => break records,
            () = tokio::time::sleep(TICK) => {
                peaks.sample(&step.watched);
                let elapsed = started.elapsed();
                let slot = if elapsed < step.window.from {
                    None
                } else if elapsed < step.window.to {
                    cpu[0].is_none().then_some(0)
                } else {
                    cpu[1].is_none().then_some(1)
                };
                if let Some(slot) = slot {
                    cpu[slot] = Some((Instant::now(), CpuSnapshot::take(&step.watched)));
                }
                progress.set_position(elapsed.min(step.window.to).as_millis() as u64);
                let phase = if elapsed < step.window.from {
                    "warm-up"
                } else if elapsed < step.window.to {
                    "measuring"
                } else {
                    "draining"
                };
                progress.set_message(format!(
                    "{phase}: {} letters, {} errors",
                    live.letters.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed)
                ));
            }
        }
    };
    peaks.sample(&step.watched);
    // A step whose requests all end with its window (a 0 ms stub) closes it here.
    if cpu[0].is_some() && cpu[1].is_none() {
        cpu[1] = Some((Instant::now(), CpuSnapshot::take(&step.watched)));
    }
    progress.finish_and_clear();
    let samples: Vec<Sample> = records
        .into_iter()
        .map(|record| Sample {
            intended: record.intended,
            completed: record.completed,
            provider: match step.clock {
                Some(clock) => clock.take(record.serial),
                None => record.attempt.reported_provider,
            },
            reported_provider: record.attempt.reported_provider,
            outcome: record.attempt.outcome,
        })
        .collect();
    let mut result = summarize(step.mode, step.window, &samples, &peaks.peaks);
    if let [Some((opened, first)), Some((closed, last))] = &cpu {
        result.cpu_percent = first.usage(last, closed.duration_since(*opened).as_secs_f64());
        if result.throughput_rps > 0.0 {
            // A core fully busy for a second is 1,000 ms of CPU.
            result.cpu_ms_per_letter = result
                .cpu_percent
                .iter()
                .map(|(name, percent)| {
                    let ms = percent * 10.0 / result.throughput_rps;
                    (name.clone(), (ms * 1000.0).round() / 1000.0)
                })
                .collect();
        }
    }
    result
}

fn progress_bar(label: &str, length: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(length.as_millis() as u64),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}

async fn send(step: &Step<'_>, started: Instant, end: Instant, live: Arc<Live>) -> Vec<Record> {
    match step.mode {
        Mode::Closed { users } => {
            // Over the first half of the warm-up, so the window sees them all at work.
            let ramp = step.window.from / 2;
            closed(&step.target, users, ramp, started, end, &step.serials, live).await
        }
        Mode::Open { rate } => match Schedule::new(rate) {
            Some(schedule) => {
                open(
                    &step.target,
                    schedule,
                    step.window.to,
                    started,
                    &step.serials,
                    live,
                )
                .await
            }
            None => Vec::new(),
        },
    }
}

/// `users` users, each sending its next request when the last is answered, until `end`; they
/// start spread over `ramp`.
async fn closed(
    target: &Arc<Target>,
    users: usize,
    ramp: Duration,
    started: Instant,
    end: Instant,
    serials: &Arc<AtomicU64>,
    live: Arc<Live>,
) -> Vec<Record> {
    let mut set = JoinSet::new();
    for user in 0..users {
        let (target, serials, live) = (Arc::clone(target), Arc::clone(serials), Arc::clone(&live));
        let first = started + ramp_start(user, users, ramp);
        set.spawn(async move {
            tokio::time::sleep_until(first.into()).await;
            let mut records = Vec::new();
            while Instant::now() < end {
                let serial = serials.fetch_add(1, Ordering::Relaxed);
                let intended = started.elapsed();
                let attempt = target.send(serial).await;
                let completed = started.elapsed();
                live.count(&attempt);
                let failed = attempt.outcome != Outcome::Letter;
                records.push(Record {
                    serial,
                    intended,
                    completed,
                    attempt,
                });
                if failed {
                    tokio::time::sleep(PAUSE_AFTER_ERROR).await;
                }
            }
            records
        });
    }
    let mut records = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(mut some) = joined {
            records.append(&mut some);
        }
    }
    records
}

/// Requests on `schedule` until `until` after the start, each charged from its slot.
async fn open(
    target: &Arc<Target>,
    schedule: Schedule,
    until: Duration,
    started: Instant,
    serials: &Arc<AtomicU64>,
    live: Arc<Live>,
) -> Vec<Record> {
    let slots = Arc::new(Semaphore::new(OPEN_LOOP_MAX_IN_FLIGHT));
    let mut set = JoinSet::new();
    let mut records = Vec::new();
    for index in 0..schedule.count_before(until) {
        let intended = schedule.due(index);
        tokio::time::sleep_until((started + intended).into()).await;
        // Collect what is done as we go, so the set stays small.
        while let Some(joined) = set.try_join_next() {
            records.extend(joined.ok());
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let (target, live) = (Arc::clone(target), Arc::clone(&live));
        let serial = serials.fetch_add(1, Ordering::Relaxed);
        set.spawn(async move {
            let attempt = target.send(serial).await;
            let completed = started.elapsed();
            drop(slot);
            live.count(&attempt);
            Record {
                serial,
                intended,
                completed,
                attempt,
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        records.extend(joined.ok());
    }
    records
}
