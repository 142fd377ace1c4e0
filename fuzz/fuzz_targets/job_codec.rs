//! The broker codec (`letterbox::codec`). Two ways in:
//! 1. the input as a message body off the broker: `decode_job` and `decode_reply` must refuse it
//!    or return a value that survives encode → decode unchanged, with a stable encoding;
//! 2. the input as the contents of a job and a reply (the corpus text files seed it), encoded,
//!    decoded, then damaged in one place (a byte changed, the message cut short, a byte slipped
//!    in) and decoded again, so the decoder also sees near-valid MessagePack from the start.
#![no_main]

use letterbox::codec::{decode_job, decode_reply, encode_job, encode_reply};
use letterbox::{
    FailureCode, Job, JobFailure, Length, Letter, LetterOptions, Outcome, Reply, Tone,
};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    round_trip(data);

    let job = job_from(data);
    let encoded = encode_job(&job).expect("every job encodes");
    assert_eq!(
        decode_job(&encoded).expect("an encoded job decodes"),
        as_sent(&job)
    );
    let reply = reply_from(data);
    let encoded_reply = encode_reply(&reply).expect("every reply encodes");
    assert_eq!(
        decode_reply(&encoded_reply).expect("an encoded reply decodes"),
        reply
    );

    let seed = fnv1a(data);
    for bytes in [encoded, encoded_reply] {
        for damaged in damage(&bytes, seed) {
            round_trip(&damaged);
        }
    }
});

/// Decodes `bytes` both ways; whatever decodes must re-encode to a message that decodes to the
/// same value and re-encodes to the same bytes.
fn round_trip(bytes: &[u8]) {
    if let Ok(job) = decode_job(bytes) {
        let encoded = encode_job(&job).expect("a decoded job encodes");
        let again = decode_job(&encoded).expect("a re-encoded job decodes");
        assert_eq!(
            again,
            as_sent(&job),
            "a decoded job changed on the round trip"
        );
        assert_eq!(
            encode_job(&again).expect("encodes"),
            encoded,
            "unstable job encoding"
        );
    }
    if let Ok(reply) = decode_reply(bytes) {
        let encoded = encode_reply(&reply).expect("a decoded reply encodes");
        let again = decode_reply(&encoded).expect("a re-encoded reply decodes");
        assert_eq!(again, reply, "a decoded reply changed on the round trip");
        assert_eq!(
            encode_reply(&again).expect("encodes"),
            encoded,
            "unstable reply encoding"
        );
    }
}

/// The job as the worker receives it: `options.timeout_ms` is read but never written, because
/// the request's own timeout travels as the job's deadline.
fn as_sent(job: &Job) -> Job {
    let mut sent = job.clone();
    sent.options.timeout_ms = None;
    sent
}

fn job_from(data: &[u8]) -> Job {
    let (resume, job_description) = data.split_at(data.len() / 2);
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let word = |i: usize| u64::from_le_bytes(std::array::from_fn(|k| byte(i + k)));
    Job {
        id: Uuid::from_u128(u128::from(word(0)) << 64 | u128::from(word(8))),
        created_at_us: word(16),
        deadline_ms: word(24),
        resume: String::from_utf8_lossy(resume).into_owned(),
        job_description: String::from_utf8_lossy(job_description).into_owned(),
        options: LetterOptions {
            tone: [
                Tone::Professional,
                Tone::Enthusiastic,
                Tone::Formal,
                Tone::Friendly,
                Tone::Confident,
            ][usize::from(byte(1)) % 5],
            length: [Length::Short, Length::Medium, Length::Long][usize::from(byte(2)) % 3],
            target_words: (byte(3) & 1 == 1).then(|| u16::from_le_bytes([byte(4), byte(5)])),
            language: (byte(3) & 2 == 2).then(|| lossy(&data[..data.len().min(8)])),
            company: (byte(3) & 4 == 4).then(|| lossy(&data[..data.len().min(40)])),
            hiring_manager: (byte(3) & 8 == 8).then(|| lossy(&data[data.len() / 3..])),
            role: (byte(3) & 16 == 16).then(String::new),
            timeout_ms: (byte(3) & 32 == 32).then(|| word(32)),
            // Options added later are left at their defaults.
            ..LetterOptions::default()
        },
        stream: false,
    }
}

fn reply_from(data: &[u8]) -> Reply {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let number = u64::from_le_bytes(std::array::from_fn(|k| byte(k)));
    let outcome = if byte(0) & 1 == 0 {
        Outcome::Letter(Letter {
            text: lossy(data),
            model: lossy(&data[..data.len().min(16)]),
            queued_ms: number,
            llm_ms: number >> 7,
            llm_us: !number,
        })
    } else {
        Outcome::Failed(JobFailure {
            code: [
                FailureCode::LlmFailed,
                FailureCode::LlmRateLimited,
                FailureCode::LlmTimeout,
                FailureCode::Expired,
                FailureCode::SecretUnavailable,
                FailureCode::InvalidJob,
            ][usize::from(byte(1)) % 6],
            message: lossy(data),
            retry_after_ms: (byte(2) & 1 == 1).then_some(number),
        })
    };
    Reply {
        job_id: Uuid::from_u64_pair(number, number.rotate_left(17)),
        outcome,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Three damaged copies of `bytes`, at places chosen by `seed`.
fn damage(bytes: &[u8], seed: u64) -> [Vec<u8>; 3] {
    let len = bytes.len().max(1);
    let at = |salt: u64| (seed.rotate_left(salt as u32) % len as u64) as usize;
    let mut changed = bytes.to_vec();
    if let Some(b) = changed.get_mut(at(0)) {
        *b ^= (seed >> 56) as u8 | 1;
    }
    let cut = bytes[..at(21)].to_vec();
    let mut grown = bytes.to_vec();
    grown.insert(at(42).min(bytes.len()), (seed >> 48) as u8);
    [changed, cut, grown]
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
