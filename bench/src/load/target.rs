//! The systems a step can load, and what one request to each of them got.
//!
//! - `letterbox`: the real ingress and workers (`POST /v1/cover-letters`, a `submit` token).
//! - `broker`: the floor, Letterbox's broker path alone (see [`super::floor`]).
//! - `direct`: the stub itself, with no Letterbox at all: the zero-overhead reference.
//! - `litellm`: LiteLLM's proxy in front of the same stub (see [`super::litellm`]).
//!
//! The peers get the chat-completions request a worker sends, unstreamed as a worker asks by
//! default (and as the ingress's client gets its letter: whole, in one answer).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::floor::Floor;
use super::stats::Outcome;
use super::workload::Workload;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Letterbox,
    Broker,
    Direct,
    Litellm,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            Self::Letterbox => "letterbox",
            Self::Broker => "broker",
            Self::Direct => "direct",
            Self::Litellm => "litellm",
        }
    }
}

/// What one request got.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The provider time the system reported itself (the ingress's `timings_ms.llm`; the floor's
    /// hold, which stands in for the provider).
    pub reported_provider: Option<Duration>,
}

impl Attempt {
    fn failed(reason: &str) -> Self {
        Self {
            outcome: Outcome::Failed {
                reason: reason.to_owned(),
            },
            reported_provider: None,
        }
    }
}

/// Something a step sends requests to.
pub enum Target {
    Http(HttpTarget),
    Floor(Arc<Floor>),
}

impl Target {
    pub async fn send(&self, serial: u64) -> Attempt {
        match self {
            Self::Http(target) => target.send(serial).await,
            Self::Floor(floor) => floor.send(serial).await,
        }
    }
}

/// A system reached over HTTP.
pub struct HttpTarget {
    system: System,
    /// Ask a peer for a streamed answer, as a worker does.
    stream: bool,
    http: reqwest::Client,
    url: String,
    token: String,
    workload: Arc<Workload>,
}

impl HttpTarget {
    /// `base` is the ingress's base URL for Letterbox, else an OpenAI base URL (`…/v1`);
    /// `connections` the most the step opens at once.
    pub fn new(
        system: System,
        stream: bool,
        base: &str,
        token: String,
        workload: Arc<Workload>,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let url = match system {
            System::Letterbox => format!("{base}/v1/cover-letters"),
            _ => format!("{base}/chat/completions"),
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(300))
            .tcp_nodelay(true)
            .build()
            .context("could not build the load's HTTP client")?;
        Ok(Self {
            system,
            stream: stream && system != System::Letterbox,
            http,
            url,
            token,
            workload,
        })
    }

    pub async fn send(&self, serial: u64) -> Attempt {
        let body = match self.system {
            System::Letterbox => self.workload.ingress_body(serial),
            _ => self.workload.completion_body(serial, self.stream),
        };
        let response = match self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return Attempt::failed(crate::failure_reason(&error)),
        };
        let status = response.status().as_u16();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return Attempt::failed(crate::failure_reason(&error)),
        };
        if self.stream && status == 200 {
            return read_stream(&bytes);
        }
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        read_answer(self.system, status, &json)
    }
}

/// A streamed answer is a letter when it carries content and ends with `[DONE]`, as a worker
/// requires.
fn read_stream(body: &[u8]) -> Attempt {
    let text = String::from_utf8_lossy(body);
    let finished = text.trim_end().ends_with("data: [DONE]");
    let outcome = if finished && text.contains("\"content\":\"") {
        Outcome::Letter
    } else {
        Outcome::Refused {
            status: 200,
            code: "stream_incomplete".to_owned(),
        }
    };
    Attempt {
        outcome,
        reported_provider: None,
    }
}

/// A letter, or the status and error code in the answer.
fn read_answer(system: System, status: u16, json: &Value) -> Attempt {
    let letter = match system {
        System::Letterbox => json["cover_letter"].as_str(),
        _ => json["choices"][0]["message"]["content"].as_str(),
    };
    if status == 200 && letter.is_some_and(|text| !text.is_empty()) {
        let reported_provider = json["timings_ms"]["llm"]
            .as_u64()
            .map(Duration::from_millis);
        return Attempt {
            outcome: Outcome::Letter,
            reported_provider,
        };
    }
    // Letterbox's `{"error": {"code"}}`, OpenAI's and LiteLLM's `{"error": {"type"}}`.
    let error = &json["error"];
    let code = error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .unwrap_or(if status == 200 {
            "no_letter"
        } else {
            "no_error_code"
        });
    Attempt {
        outcome: Outcome::Refused {
            status,
            code: code.to_owned(),
        },
        reported_provider: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_letter_is_read_from_each_systems_answer() {
        let ingress = json!({"job_id": "x", "cover_letter": "Dear", "timings_ms": {"llm": 1002}});
        let attempt = read_answer(System::Letterbox, 200, &ingress);
        assert_eq!(attempt.outcome, Outcome::Letter);
        assert_eq!(attempt.reported_provider, Some(Duration::from_millis(1002)));
        let openai = json!({"choices": [{"message": {"content": "Dear"}}]});
        let attempt = read_answer(System::Litellm, 200, &openai);
        assert_eq!(attempt.outcome, Outcome::Letter);
        assert_eq!(attempt.reported_provider, None);
    }

    #[test]
    fn a_stream_counts_only_when_it_has_content_and_is_finished() {
        let whole = b"data: {\"choices\":[{\"delta\":{\"content\":\"Dear\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(read_stream(whole).outcome, Outcome::Letter);
        let cut = b"data: {\"choices\":[{\"delta\":{\"content\":\"Dear\"}}]}\n\n";
        assert_eq!(
            read_stream(cut).outcome,
            Outcome::Refused {
                status: 200,
                code: "stream_incomplete".to_owned()
            }
        );
    }

    #[test]
    fn anything_else_is_refused_with_its_status_and_code() {
        let refused = |system, status, body: Value| read_answer(system, status, &body).outcome;
        assert_eq!(
            refused(
                System::Letterbox,
                503,
                json!({"error": {"code": "overloaded"}})
            ),
            Outcome::Refused {
                status: 503,
                code: "overloaded".to_owned()
            }
        );
        assert_eq!(
            refused(
                System::Litellm,
                429,
                json!({"error": {"type": "rate_limit"}})
            ),
            Outcome::Refused {
                status: 429,
                code: "rate_limit".to_owned()
            }
        );
        assert_eq!(
            refused(System::Direct, 200, json!({"choices": []})),
            Outcome::Refused {
                status: 200,
                code: "no_letter".to_owned()
            }
        );
        assert_eq!(
            refused(System::Direct, 502, Value::Null),
            Outcome::Refused {
                status: 502,
                code: "no_error_code".to_owned()
            }
        );
    }
}
