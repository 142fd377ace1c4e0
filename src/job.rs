//! A job (what the ingress asks a worker to do) and its reply (what comes back).
//!
//! Both carry user documents or a letter, so neither derives `Debug`: their `Debug` prints ids
//! and sizes only, which keeps document text out of any log line that formats them.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The voice of the letter.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    #[default]
    Professional,
    Enthusiastic,
    Formal,
    Friendly,
    Confident,
}

impl Tone {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Professional => "professional",
            Self::Enthusiastic => "enthusiastic",
            Self::Formal => "formal",
            Self::Friendly => "friendly",
            Self::Confident => "confident",
        }
    }
}

/// How long the letter should be.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    Short,
    #[default]
    Medium,
    Long,
}

impl Length {
    /// The number of words the letter aims for.
    pub fn target_words(self) -> u16 {
        match self {
            Self::Short => 150,
            Self::Medium => 250,
            Self::Long => 400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Short => "short",
            Self::Medium => "medium",
            Self::Long => "long",
        }
    }
}

/// What a client may say about the letter besides the two documents.
///
/// Validated by the ingress (`LetterOptions::validate`) before a job is published.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterOptions {
    #[serde(default)]
    pub tone: Tone,
    #[serde(default)]
    pub length: Length,
    /// Overrides `length` with an explicit word count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 50, maximum = 1000))]
    pub target_words: Option<u16>,
    /// BCP 47 language tag of the letter; when absent, the language of the job description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub hiring_manager: Option<String>,
    /// The title of the position, when the job description does not make it obvious.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub role: Option<String>,
    /// A shorter deadline for this request than the ingress's own, in milliseconds from its
    /// arrival. It travels as the job's deadline, not as an option.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(minimum = 100, maximum = 3_600_000))]
    pub timeout_ms: Option<u64>,
}

/// Bounds on option values.
pub const MIN_TARGET_WORDS: u16 = 50;
pub const MAX_TARGET_WORDS: u16 = 1000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MIN_TIMEOUT_MS: u64 = 100;
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

impl LetterOptions {
    /// The word count the letter aims for.
    pub fn words(&self) -> u16 {
        self.target_words
            .unwrap_or_else(|| self.length.target_words())
    }

    /// Checks and tidies the options; the error names the offending field, never its value.
    pub fn validate(&mut self) -> Result<(), String> {
        if let Some(timeout) = self.timeout_ms
            && !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout)
        {
            return Err(format!(
                "options.timeout_ms must be between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS}"
            ));
        }
        if let Some(words) = self.target_words
            && !(MIN_TARGET_WORDS..=MAX_TARGET_WORDS).contains(&words)
        {
            return Err(format!(
                "options.target_words must be between {MIN_TARGET_WORDS} and {MAX_TARGET_WORDS}"
            ));
        }
        if let Some(language) = self.language.as_mut() {
            *language = language.trim().to_owned();
            if !is_language_tag(language) {
                return Err(
                    "options.language must be a BCP 47 language tag such as \"en\" or \"de-CH\""
                        .to_owned(),
                );
            }
        }
        for (field, value) in [
            ("company", &mut self.company),
            ("hiring_manager", &mut self.hiring_manager),
            ("role", &mut self.role),
        ] {
            if let Some(text) = value.as_mut() {
                let tidy: String = text
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                if tidy.chars().count() > MAX_NAME_CHARS {
                    return Err(format!(
                        "options.{field} must be at most {MAX_NAME_CHARS} characters"
                    ));
                }
                if tidy.is_empty() {
                    *value = None;
                } else {
                    *text = tidy;
                }
            }
        }
        Ok(())
    }
}

/// A loose BCP 47 check: a 2–3 letter primary subtag, then alphanumeric subtags of 1–8.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    primary_ok
        && tag.len() <= 35
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl fmt::Debug for LetterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LetterOptions")
            .field("tone", &self.tone)
            .field("length", &self.length)
            .field("target_words", &self.target_words)
            .field("language", &self.language)
            .field("company", &self.company.as_ref().map(|_| "<set>"))
            .field(
                "hiring_manager",
                &self.hiring_manager.as_ref().map(|_| "<set>"),
            )
            .field("role", &self.role.as_ref().map(|_| "<set>"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// One request for a letter, as it travels on the jobs queue.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: Uuid,
    /// When the ingress published the job, in µs since the Unix epoch.
    pub created_at_us: u64,
    /// After this instant (ms since the Unix epoch) nobody waits for the letter: a worker that
    /// sees an expired job drops it without calling the LLM.
    pub deadline_ms: u64,
    pub resume: String,
    pub job_description: String,
    pub options: LetterOptions,
    /// The client watches the letter as it is written: the worker streams from the provider and
    /// sends each piece back as a `Chunk` reply before the final one.
    #[serde(default)]
    pub stream: bool,
}

/// The most a worker accepts, whatever an ingress let through: a job published straight to the
/// broker must not buy an unbounded prompt.
pub const MAX_JOB_RESUME_CHARS: usize = 200_000;
pub const MAX_JOB_DESCRIPTION_CHARS: usize = 100_000;

impl Job {
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        now_ms >= self.deadline_ms
    }

    /// Checks what a worker must not take on trust: option bounds and document sizes.
    pub fn check_bounds(&self) -> Result<(), String> {
        self.options.clone().validate()?;
        if self.resume.chars().count() > MAX_JOB_RESUME_CHARS
            || self.job_description.chars().count() > MAX_JOB_DESCRIPTION_CHARS
        {
            return Err("the job's documents are longer than any ingress allows".to_owned());
        }
        Ok(())
    }
}

/// The documents are wiped from memory when the job is dropped, not left for the allocator to
/// hand out again.
impl Drop for Job {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.resume.zeroize();
        self.job_description.zeroize();
        for name in [
            &mut self.options.company,
            &mut self.options.hiring_manager,
            &mut self.options.role,
        ]
        .into_iter()
        .flatten()
        {
            name.zeroize();
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("created_at_us", &self.created_at_us)
            .field("deadline_ms", &self.deadline_ms)
            .field("resume_chars", &self.resume.chars().count())
            .field(
                "job_description_chars",
                &self.job_description.chars().count(),
            )
            .field("options", &self.options)
            .finish()
    }
}

/// What a worker sends back for one job.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub job_id: Uuid,
    pub outcome: Outcome,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Letter(letter) => format!("Letter({} chars)", letter.text.chars().count()),
            Outcome::Failed(failure) => format!("Failed({:?})", failure.code),
            Outcome::Chunk(piece) => format!("Chunk({} chars)", piece.text.chars().count()),
        };
        f.debug_struct("Reply")
            .field("job_id", &self.job_id)
            .field("outcome", &outcome)
            .finish()
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Letter(Letter),
    Failed(JobFailure),
    /// A piece of the letter as the provider wrote it, for a streaming job; the final reply
    /// (`Letter` or `Failed`) follows.
    Chunk(Piece),
}

/// A piece of a streaming job's letter.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    /// Drawn by the worker for each time it starts the job: pieces of another run than the
    /// ones before belong to a letter written again from the start (the first worker stopped).
    pub run: u32,
    pub text: String,
}

/// A finished letter and what it cost.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Letter {
    pub text: String,
    /// The model the provider says answered.
    pub model: String,
    /// From the ingress accepting the job to a worker starting it.
    pub queued_ms: u64,
    /// The provider call alone.
    pub llm_ms: u64,
    /// The provider call alone, in microseconds, for the overhead histogram.
    pub llm_us: u64,
}

/// Why a job produced no letter. The message is written for the client and never contains
/// document text, provider bodies or secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    pub code: FailureCode,
    pub message: String,
    /// When the client may try again, if the cause says (a provider's `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The provider answered with an error or an unusable letter.
    LlmFailed,
    /// The provider is rate-limiting Letterbox.
    LlmRateLimited,
    /// The provider did not answer in time.
    LlmTimeout,
    /// The job's deadline passed before a worker could start it.
    Expired,
    /// The LLM key could not be read from the secret store.
    SecretUnavailable,
    /// The job could not be read by the worker.
    InvalidJob,
    /// The job was delivered as often as allowed without being finished (workers died on it):
    /// it is parked in the dead-letter queue for an operator instead of being tried again.
    DeliveryLimit,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LlmFailed => "llm_failed",
            Self::LlmRateLimited => "llm_rate_limited",
            Self::LlmTimeout => "llm_timeout",
            Self::Expired => "expired",
            Self::SecretUnavailable => "secret_unavailable",
            Self::InvalidJob => "invalid_job",
            Self::DeliveryLimit => "delivery_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_checked_loosely() {
        assert!(is_language_tag("en"));
        assert!(is_language_tag("de-CH"));
        assert!(is_language_tag("zh-Hant-TW"));
        assert!(!is_language_tag("english please"));
        assert!(!is_language_tag("e"));
        assert!(!is_language_tag("en-"));
    }

    #[test]
    fn options_are_tidied_and_bounded() {
        let mut options = LetterOptions {
            company: Some("  Acme \n Corp ".into()),
            hiring_manager: Some("   ".into()),
            ..Default::default()
        };
        assert_eq!(options.validate(), Ok(()));
        assert_eq!(options.company.as_deref(), Some("Acme Corp"));
        assert_eq!(options.hiring_manager, None);
        assert_eq!(options.words(), 250);

        let mut too_long = LetterOptions {
            target_words: Some(5000),
            ..Default::default()
        };
        assert_eq!(
            too_long.validate(),
            Err("options.target_words must be between 50 and 1000".to_owned())
        );

        for (timeout, valid) in [
            (99, false),
            (100, true),
            (3_600_000, true),
            (3_600_001, false),
        ] {
            let mut options = LetterOptions {
                timeout_ms: Some(timeout),
                ..Default::default()
            };
            assert_eq!(
                options.validate().is_ok(),
                valid,
                "{timeout}: {:?}",
                options.validate()
            );
        }
    }

    #[test]
    fn a_requested_timeout_travels_as_the_deadline_not_as_an_option() {
        let options: LetterOptions = serde_json::from_str(r#"{"timeout_ms": 5000}"#).unwrap();
        assert_eq!(options.timeout_ms, Some(5000));
        let job = Job {
            id: Uuid::nil(),
            created_at_us: 1,
            deadline_ms: 2,
            resume: "r".into(),
            job_description: "j".into(),
            options,
            stream: false,
        };
        let decoded = crate::codec::decode_job(&crate::codec::encode_job(&job).unwrap()).unwrap();
        assert_eq!(decoded.options.timeout_ms, None);
    }

    #[test]
    fn debug_output_hides_document_text() {
        let job = Job {
            id: Uuid::nil(),
            created_at_us: 1,
            deadline_ms: 2,
            resume: "Jane Roe, jane@example.org".into(),
            job_description: "Rust engineer".into(),
            options: LetterOptions {
                company: Some("Acme".into()),
                ..Default::default()
            },
            stream: false,
        };
        let printed = format!("{job:?}");
        assert!(!printed.contains("Jane"), "{printed}");
        assert!(!printed.contains("Acme"), "{printed}");
        assert!(printed.contains("resume_chars: 26"), "{printed}");
    }
}
