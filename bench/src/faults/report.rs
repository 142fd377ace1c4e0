//! What each scenario did to the clients, as a table for people and as JSON for tools.
//!
//! Every request lands in exactly one of: a letter, a clear error (an answer with a status and a
//! JSON error code), lost (no answer), hung (an answer, but after the deadline + 1 s). A
//! scenario passes when nothing is lost or hung, no job id is answered twice, no client gets
//! another client's letter, no process crashes, and its own checks hold.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::fleet::Crash;
use super::load::{Answer, Outcome};

/// A condition a scenario checks besides the counts (a SIGTERMed worker exits 0, say).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
}

/// Percentiles of the answered requests' times, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub title: String,
    pub sent: usize,
    pub letters: usize,
    /// `"<status> <code>"` → count.
    pub errors: BTreeMap<String, usize>,
    pub lost: usize,
    pub lost_reasons: BTreeMap<String, usize>,
    pub hung: usize,
    /// Answers carrying a job id that an earlier answer (in any scenario) carried already.
    pub duplicates: usize,
    /// Letters that do not name the candidate of the request they answer.
    pub wrong_letters: usize,
    /// Calls the stub LLM received during the scenario (retries included).
    pub llm_calls: usize,
    pub latency_ms: Latency,
    pub crashes: Vec<Crash>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub passed: bool,
}

impl Row {
    /// Counts `outcomes` of requests whose deadline is `deadline`; `seen` holds every job id answered so far in the suite.
    pub fn tally(
        scenario: &str,
        title: &str,
        outcomes: &[Outcome],
        deadline: Duration,
        seen: &mut HashMap<String, usize>,
    ) -> Self {
        let mut row = Self {
            scenario: scenario.to_owned(),
            title: title.to_owned(),
            sent: outcomes.len(),
            letters: 0,
            errors: BTreeMap::new(),
            lost: 0,
            lost_reasons: BTreeMap::new(),
            hung: 0,
            duplicates: 0,
            wrong_letters: 0,
            llm_calls: 0,
            latency_ms: latency(outcomes),
            crashes: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            passed: false,
        };
        for outcome in outcomes {
            if let Some(job_id) = outcome.job_id() {
                let times = seen.entry(job_id.to_owned()).or_insert(0);
                *times += 1;
                if *times > 1 {
                    row.duplicates += 1;
                }
            }
            if outcome.is_hung(deadline) {
                row.hung += 1;
                continue;
            }
            match &outcome.answer {
                Answer::Letter { own, .. } => {
                    row.letters += 1;
                    if !own {
                        row.wrong_letters += 1;
                    }
                }
                Answer::Refused { status, code, .. } => {
                    *row.errors.entry(format!("{status} {code}")).or_insert(0) += 1;
                }
                Answer::Lost { reason } => {
                    row.lost += 1;
                    *row.lost_reasons.entry((*reason).to_owned()).or_insert(0) += 1;
                }
            }
        }
        row
    }

    pub fn check(&mut self, what: impl Into<String>, ok: bool) {
        self.checks.push(Check {
            what: what.into(),
            ok,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Decides the verdict once everything is in.
    pub fn conclude(&mut self) {
        self.passed = self.lost == 0
            && self.hung == 0
            && self.duplicates == 0
            && self.wrong_letters == 0
            && self.crashes.is_empty()
            && self.checks.iter().all(|check| check.ok);
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "-".to_owned();
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(code, count)| format!("{code} x{count}"))
            .collect();
        parts.join(", ")
    }
}

fn latency(outcomes: &[Outcome]) -> Latency {
    let mut answered: Vec<Duration> = outcomes
        .iter()
        .filter(|outcome| !matches!(outcome.answer, Answer::Lost { .. }))
        .map(|outcome| outcome.elapsed)
        .collect();
    if answered.is_empty() {
        return Latency::default();
    }
    answered.sort_unstable();
    let at = |quantile: f64| {
        let index = ((answered.len() - 1) as f64 * quantile).round() as usize;
        answered[index.min(answered.len() - 1)].as_millis() as u64
    };
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub settings: serde_json::Value,
    pub scenarios: Vec<Row>,
    /// How each process ended when the suite stopped it with SIGTERM.
    pub teardown: Vec<Check>,
    /// Why the suite stopped before its last scenario, if it did.
    pub aborted: Option<String>,
    pub passed: bool,
}

impl Report {
    pub fn new(settings: serde_json::Value) -> Self {
        Self {
            settings,
            scenarios: Vec::new(),
            teardown: Vec::new(),
            aborted: None,
            passed: false,
        }
    }

    pub fn conclude(&mut self) {
        self.passed = self.aborted.is_none()
            && !self.scenarios.is_empty()
            && self.scenarios.iter().all(|row| row.passed)
            && self.teardown.iter().all(|check| check.ok);
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))
    }

    /// The table, then each scenario's notes, checks and crashes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>7} {:>5} {:>5} {:>4} {:>6} {:>6} {:>7} {:>7}  {:<6} clear errors (status code x count)",
            "scenario",
            "sent",
            "letters",
            "lost",
            "hung",
            "dup",
            "wrong",
            "llm",
            "p50 ms",
            "p99 ms",
            "result"
        );
        for row in &self.scenarios {
            let _ = writeln!(
                out,
                "{:<16} {:>6} {:>7} {:>5} {:>5} {:>4} {:>6} {:>6} {:>7} {:>7}  {:<6} {}",
                row.scenario,
                row.sent,
                row.letters,
                row.lost,
                row.hung,
                row.duplicates,
                row.wrong_letters,
                row.llm_calls,
                row.latency_ms.p50,
                row.latency_ms.p99,
                if row.passed { "pass" } else { "FAIL" },
                row.errors_text()
            );
        }
        for row in &self.scenarios {
            let _ = writeln!(out, "\n{}: {}", row.scenario, row.title);
            for note in &row.notes {
                let _ = writeln!(out, "  - {note}");
            }
            if !row.lost_reasons.is_empty() {
                let reasons: Vec<String> = row
                    .lost_reasons
                    .iter()
                    .map(|(reason, count)| format!("{reason} x{count}"))
                    .collect();
                let _ = writeln!(out, "  - lost: {}", reasons.join(", "));
            }
            for check in &row.checks {
                let mark = if check.ok { "ok" } else { "FAILED" };
                let _ = writeln!(out, "  - [{mark}] {}", check.what);
            }
            for crash in &row.crashes {
                let _ = writeln!(
                    out,
                    "  - [FAILED] {} crashed ({})",
                    crash.name, crash.status
                );
                for line in &crash.log_tail {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
        if !self.teardown.is_empty() {
            let _ = writeln!(out, "\nteardown:");
            for check in &self.teardown {
                let mark = if check.ok { "ok" } else { "FAILED" };
                let _ = writeln!(out, "  - [{mark}] {}", check.what);
            }
        }
        if let Some(reason) = &self.aborted {
            let _ = writeln!(out, "\nABORTED: {reason}");
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.passed {
                "All scenarios passed."
            } else {
                "The suite FAILED."
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(8);

    fn outcome(millis: u64, answer: Answer) -> Outcome {
        Outcome {
            elapsed: Duration::from_millis(millis),
            answer,
        }
    }

    fn letter(job_id: &str, own: bool) -> Answer {
        Answer::Letter {
            job_id: job_id.to_owned(),
            own,
        }
    }

    fn refused(status: u16, code: &str) -> Answer {
        Answer::Refused {
            status,
            code: code.to_owned(),
            job_id: None,
        }
    }

    #[test]
    fn every_request_lands_in_exactly_one_column() {
        let outcomes = [
            outcome(300, letter("a", true)),
            outcome(400, letter("b", false)),
            outcome(20, refused(503, "broker_unavailable")),
            outcome(30, refused(503, "broker_unavailable")),
            outcome(8_000, refused(504, "timeout")),
            // Later than the deadline + 1 s: hung, whatever it says.
            outcome(9_001, refused(504, "timeout")),
            outcome(9_500, letter("c", true)),
            outcome(
                14_000,
                Answer::Lost {
                    reason: "client timeout",
                },
            ),
            outcome(
                5,
                Answer::Lost {
                    reason: "connection refused",
                },
            ),
        ];
        let mut seen = HashMap::new();

        let row = Row::tally("s", "t", &outcomes, DEADLINE, &mut seen);

        assert_eq!(row.sent, 9);
        assert_eq!(row.letters, 2);
        assert_eq!(row.wrong_letters, 1);
        assert_eq!(
            row.errors,
            BTreeMap::from([
                ("503 broker_unavailable".to_owned(), 2),
                ("504 timeout".to_owned(), 1)
            ])
        );
        assert_eq!(row.hung, 2);
        assert_eq!(row.lost, 2);
        assert_eq!(
            row.lost_reasons,
            BTreeMap::from([
                ("client timeout".to_owned(), 1),
                ("connection refused".to_owned(), 1)
            ])
        );
        assert_eq!(row.duplicates, 0);
        assert_eq!(row.latency_ms.max, 9_500);
    }

    #[test]
    fn a_job_id_answered_twice_is_a_duplicate_even_across_scenarios() {
        let mut seen = HashMap::new();
        let first = [outcome(300, letter("a", true))];
        let second = [
            outcome(300, letter("a", true)),
            outcome(300, letter("b", true)),
            outcome(
                300,
                Answer::Refused {
                    status: 504,
                    code: "timeout".to_owned(),
                    job_id: Some("b".to_owned()),
                },
            ),
        ];

        let first = Row::tally("one", "t", &first, DEADLINE, &mut seen);
        let second = Row::tally("two", "t", &second, DEADLINE, &mut seen);

        assert_eq!((first.duplicates, second.duplicates), (0, 2));
    }

    #[test]
    fn a_scenario_passes_only_with_nothing_lost_hung_crashed_or_failed() {
        let mut seen = HashMap::new();
        let clean = [
            outcome(300, letter("a", true)),
            outcome(20, refused(503, "queue_full")),
        ];
        let mut row = Row::tally("s", "t", &clean, DEADLINE, &mut seen);
        row.conclude();
        assert!(row.passed, "clear errors alone pass");

        row.check("consumer-2 exited with exit 0", true);
        row.check("consumer-3 exited with exit 1", false);
        row.conclude();
        assert!(!row.passed);

        let lost = [outcome(
            14_000,
            Answer::Lost {
                reason: "client timeout",
            },
        )];
        let mut row = Row::tally("s", "t", &lost, DEADLINE, &mut seen);
        row.conclude();
        assert!(!row.passed);

        let mut row = Row::tally("s", "t", &[], DEADLINE, &mut seen);
        row.crashes.push(Crash {
            name: "producer".to_owned(),
            status: "signal 11".to_owned(),
            log_tail: Vec::new(),
        });
        row.conclude();
        assert!(!row.passed);
    }
}
