//! The one codec for everything on the broker: MessagePack with named fields.
//!
//! Named fields (a map, not an array) let either side add an optional field without breaking the
//! other during a rolling upgrade; the cost over positional encoding is a few bytes per field.

use serde::{Serialize, de::DeserializeOwned};

use crate::job::{Job, Reply};

/// The AMQP `content-type` of every message Letterbox publishes.
pub const CONTENT_TYPE: &str = "application/msgpack";

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message could not be encoded: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("message is not a valid Letterbox message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

pub fn encode_job(job: &Job) -> Result<Vec<u8>, CodecError> {
    encode(job)
}

pub fn decode_job(bytes: &[u8]) -> Result<Job, CodecError> {
    decode(bytes)
}

pub fn encode_reply(reply: &Reply) -> Result<Vec<u8>, CodecError> {
    encode(reply)
}

pub fn decode_reply(bytes: &[u8]) -> Result<Reply, CodecError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::job::{FailureCode, JobFailure, Length, Letter, LetterOptions, Outcome, Tone};

    fn job() -> Job {
        Job {
            id: Uuid::from_u128(7),
            created_at_us: 1_700_000_000_000_000,
            deadline_ms: 1_700_000_030_000,
            resume: "Ada Example\nBoğaziçi University\n".into(),
            job_description: "Senior Backend Engineer — Rust".into(),
            options: LetterOptions {
                tone: Tone::Confident,
                length: Length::Short,
                target_words: Some(120),
                language: Some("en-GB".into()),
                company: Some("Example Ltd".into()),
                hiring_manager: None,
                role: Some("Backend Engineer".into()),
                timeout_ms: None,
            },
            stream: false,
        }
    }

    #[test]
    fn a_job_survives_the_round_trip_exactly() {
        let original = job();
        let bytes = encode_job(&original).unwrap();
        assert_eq!(decode_job(&bytes).unwrap(), original);
    }

    #[test]
    fn both_reply_outcomes_survive_the_round_trip() {
        for outcome in [
            Outcome::Letter(Letter {
                text: "Dear team,".into(),
                model: "m".into(),
                queued_ms: 3,
                llm_ms: 1000,
                llm_us: 1_000_123,
            }),
            Outcome::Failed(JobFailure {
                code: FailureCode::LlmTimeout,
                message: "The LLM did not answer in time.".into(),
                retry_after_ms: Some(1500),
            }),
        ] {
            let reply = Reply {
                job_id: Uuid::from_u128(9),
                outcome,
            };
            let bytes = encode_reply(&reply).unwrap();
            assert_eq!(decode_reply(&bytes).unwrap(), reply);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_job(b"\xc1\xff not msgpack"),
            Err(CodecError::Decode(_))
        ));
        assert!(matches!(decode_job(&[]), Err(CodecError::Decode(_))));
        // A reply is not a job.
        let reply = Reply {
            job_id: Uuid::nil(),
            outcome: Outcome::Failed(JobFailure {
                code: FailureCode::Expired,
                message: String::new(),
                retry_after_ms: None,
            }),
        };
        assert!(decode_job(&encode_reply(&reply).unwrap()).is_err());
    }
}
