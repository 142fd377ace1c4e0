//! The clients: each sends one request after another (a closed loop), as a web app's workers
//! do, until the scenario ends, and keeps what every request got.
//!
//! A client waits for an answer longer than the ingress's own deadline, so an ingress that keeps
//! a client waiting past its deadline is seen ("hung") rather than cut off by the client; only a
//! request with no answer at all within that longer wait is "lost".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How much later than its deadline an answer may come before it counts as hung.
pub const HUNG_GRACE: Duration = Duration::from_secs(1);

/// How much longer than deadline + grace a client waits before it gives up (the request is then
/// lost).
const CLIENT_MARGIN: Duration = Duration::from_secs(5);

/// A client pauses this long after a failed request, so an outage answered in microseconds does
/// not turn the load into a busy loop.
const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(200);

const JOB_DESCRIPTION: &str = "Senior Backend Engineer (Rust) at Harbourline Freight Systems: \
build the booking platform on RabbitMQ and PostgreSQL, run on Kubernetes.";

/// What one request got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From just before the request was sent to the end of its answer's body.
    pub elapsed: Duration,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a letter; `own` when the letter names the candidate of this very request.
    Letter { job_id: String, own: bool },
    /// Any other status, with the JSON error code (or what stood in for one).
    Refused {
        status: u16,
        code: String,
        job_id: Option<String>,
    },
    /// No answer: the connection failed or the client gave up waiting.
    Lost { reason: &'static str },
}

impl Outcome {
    /// Whether an answer came later than `deadline` + [`HUNG_GRACE`] after the request was sent.
    pub fn is_hung(&self, deadline: Duration) -> bool {
        !matches!(self.answer, Answer::Lost { .. }) && self.elapsed > deadline + HUNG_GRACE
    }

    pub fn job_id(&self) -> Option<&str> {
        match &self.answer {
            Answer::Letter { job_id, .. } => Some(job_id),
            Answer::Refused { job_id, .. } => job_id.as_deref(),
            Answer::Lost { .. } => None,
        }
    }
}

pub struct Load {
    http: reqwest::Client,
    url: String,
    token: String,
    clients: usize,
    deadline: Duration,
    /// Numbers every request, so each letter can be checked against its own candidate.
    sequence: AtomicU64,
}

impl Load {
    /// `deadline` is the ingress's `LETTERBOX_JOB_TIMEOUT_MS`.
    pub fn new(
        base_url: &str,
        token: String,
        clients: usize,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(deadline + HUNG_GRACE + CLIENT_MARGIN)
            .pool_max_idle_per_host(clients)
            .build()
            .context("could not build the load's HTTP client")?;
        Ok(Self {
            http,
            url: format!("{base_url}/v1/cover-letters"),
            token,
            clients,
            deadline,
            sequence: AtomicU64::new(0),
        })
    }

    /// The ingress's deadline for a request.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Runs every client until `stop` is cancelled; requests in flight then still finish (each
    /// within the client timeout).
    pub async fn run(&self, stop: &CancellationToken) -> Vec<Outcome> {
        let clients = (0..self.clients).map(|_| self.client(stop));
        futures_util::future::join_all(clients)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn client(&self, stop: &CancellationToken) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while !stop.is_cancelled() {
            let outcome = self.one().await;
            let failed = !matches!(outcome.answer, Answer::Letter { .. });
            outcomes.push(outcome);
            if failed {
                tokio::select! {
                    () = tokio::time::sleep(PAUSE_AFTER_ERROR) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        outcomes
    }

    /// One request, with a candidate of its own.
    pub async fn one(&self) -> Outcome {
        let serial = self.sequence.fetch_add(1, Ordering::Relaxed);
        let candidate = format!("Avery Quinlan R{serial:07}");
        let body = json!({
            "resume_text": format!(
                "{candidate}\nSenior Backend Engineer, Zurich\nSeven years of Rust services on \
                 RabbitMQ and PostgreSQL, run on Kubernetes; built the booking platform of a \
                 freight company."
            ),
            "job_description": JOB_DESCRIPTION,
        });
        let started = Instant::now();
        let answer = self.send(&body, &candidate).await;
        Outcome {
            elapsed: started.elapsed(),
            answer,
        }
    }

    async fn send(&self, body: &Value, candidate: &str) -> Answer {
        let response = match self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return lost(&error),
        };
        let status = response.status().as_u16();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return lost(&error),
        };
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let job_id = json["job_id"].as_str().map(str::to_owned);
        match (status, json["cover_letter"].as_str(), job_id) {
            (200, Some(letter), Some(job_id)) => Answer::Letter {
                job_id,
                own: letter.contains(candidate),
            },
            (_, _, job_id) => Answer::Refused {
                status,
                code: json["error"]["code"]
                    .as_str()
                    .map_or_else(|| "no_error_code".to_owned(), str::to_owned),
                job_id,
            },
        }
    }
}

fn lost(error: &reqwest::Error) -> Answer {
    Answer::Lost {
        reason: crate::failure_reason(error),
    }
}
