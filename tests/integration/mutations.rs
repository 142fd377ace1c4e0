//! Damaged documents, as real uploads arrive: the corpus files with bits flipped, cut short,
//! with bytes slipped in or lost, spliced together or with a chunk repeated. Whatever the damage,
//! the ingress answers a letter (200) or a documented 4xx, never a 5xx and never silence.
//!
//! Each run draws a new seed and prints it; `LETTERBOX_MUTATION_SEED=<seed>` replays a run and
//! `LETTERBOX_MUTATION_CASES=<n>` changes how many documents it sends (128 by default). Every
//! document that broke the rule is written to a temporary folder the failure message names.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{corpus, job_description, spawn_app};

/// The corpus files mutated, uploaded under their own names (the extension is the client's
/// declaration, which the ingress checks against the content).
const ORIGINALS: [&str; 6] = [
    "rendercv_John_Doe_ClassicTheme_CV.pdf",
    "scorelia_sample_resume.docx",
    "rendercv_sample_cv_text.txt",
    "resume-matcher_jd_backend-eng.txt",
    "larpmyresume_image_only.pdf",
    "scorelia_corrupt_file.pdf",
];

const DEFAULT_CASES: usize = 128;

/// Uploads in flight at once: the ingress extracts four documents at a time.
const IN_FLIGHT: usize = 4;

/// Longer than the ingress's own bounds (extraction 10 s, the job's deadline 15 s), so a request
/// that runs into it is one the ingress failed to end.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);

/// The README's error table: every 4xx status with the codes it may carry.
const DOCUMENTED_4XX: &[(u16, &[&str])] = &[
    (
        400,
        &[
            "missing_field",
            "empty_field",
            "invalid_json",
            "invalid_options",
            "unknown_field",
            "duplicate_field",
            "malformed_multipart",
        ],
    ),
    (401, &["unauthorized"]),
    (403, &["forbidden"]),
    (404, &["not_found"]),
    (405, &["method_not_allowed"]),
    (408, &["request_timeout"]),
    (
        413,
        &["body_too_large", "document_too_large", "text_too_long"],
    ),
    (415, &["unsupported_content_type", "unsupported_media_type"]),
    (
        422,
        &[
            "no_text",
            "text_too_short",
            "garbled_text",
            "encrypted_document",
            "unreadable_document",
            "extraction_timeout",
        ],
    ),
    (429, &["rate_limited"]),
];

#[tokio::test]
async fn damaged_corpus_documents_get_a_letter_or_a_documented_4xx() {
    let seed = std::env::var("LETTERBOX_MUTATION_SEED")
        .ok()
        .map(|seed| {
            seed.parse::<u64>()
                .expect("LETTERBOX_MUTATION_SEED is a u64")
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cases = std::env::var("LETTERBOX_MUTATION_CASES")
        .ok()
        .map(|n| {
            n.parse::<usize>()
                .expect("LETTERBOX_MUTATION_CASES is a number")
        })
        .unwrap_or(DEFAULT_CASES);
    println!("mutation seed {seed} ({cases} cases): replay with LETTERBOX_MUTATION_SEED={seed}");

    let originals: Vec<(&str, Vec<u8>)> = ORIGINALS.iter().map(|&n| (n, corpus(n))).collect();
    let mut rng = SplitMix64(seed);
    let documents: Vec<Mutant> = (0..cases)
        .map(|case| Mutant::draw(case, &originals, &mut rng))
        .collect();

    let app = spawn_app().await;
    let job_description = job_description();
    let outcomes: Vec<(usize, Outcome)> =
        futures_util::stream::iter(documents.iter().map(|mutant| {
            let form = Form::new()
                .part(
                    "resume",
                    Part::bytes(mutant.bytes.clone()).file_name(mutant.original.to_owned()),
                )
                .text("job_description", job_description.clone());
            let request = app
                .http
                .post(format!("{}/v1/cover-letters", app.base))
                .bearer_auth(&app.submit_token)
                .multipart(form)
                .timeout(CLIENT_TIMEOUT);
            async move { (mutant.case, send(request).await) }
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut broken = Vec::new();
    for (case, outcome) in outcomes {
        let mutant = &documents[case];
        let verdict = match &outcome {
            Ok((status, body)) => {
                *tally.entry(label(*status, body)).or_default() += 1;
                judge(*status, body).err()
            }
            Err(error) => Some(error.clone()),
        };
        if let Some(why) = verdict {
            broken.push((mutant, why));
        }
    }
    println!("answers: {tally:?}");
    app.stop().await;

    if !broken.is_empty() {
        let dir = std::env::temp_dir().join(format!("letterbox-mutations-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut report = String::new();
        for (mutant, why) in &broken {
            let path = mutant.save(&dir);
            report.push_str(&format!(
                "\n  case {} ({}): {why}\n    input: {}",
                mutant.case,
                mutant.recipe,
                path.display()
            ));
        }
        panic!(
            "{} of {cases} damaged documents were not answered with 200 or a documented 4xx \
             (seed {seed}; replay with LETTERBOX_MUTATION_SEED={seed}):{report}",
            broken.len()
        );
    }
}

/// The status and JSON body of an answer, or why there was none.
type Outcome = Result<(u16, Value), String>;

async fn send(request: reqwest::RequestBuilder) -> Outcome {
    let response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| describe(&e))?;
    let body = serde_json::from_slice(&bytes).map_err(|_| {
        format!(
            "status {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok((status, body))
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", CLIENT_TIMEOUT.as_secs())
    } else {
        format!("the request failed: {error}")
    }
}

/// 200 with a letter, or a 4xx whose code the README lists under that status, with a message.
fn judge(status: u16, body: &Value) -> Result<(), String> {
    if status == 200 {
        return match body["cover_letter"].as_str() {
            Some(letter) if !letter.is_empty() => Ok(()),
            _ => Err(format!("200 without a cover letter: {body}")),
        };
    }
    let code = body["error"]["code"].as_str();
    let message = body["error"]["message"].as_str();
    let documented = DOCUMENTED_4XX
        .iter()
        .find(|(documented, _)| *documented == status)
        .map(|(_, codes)| *codes);
    match (documented, code, message) {
        (Some(codes), Some(code), Some(message))
            if codes.contains(&code) && !message.is_empty() =>
        {
            Ok(())
        }
        _ => Err(format!("{status} {body}")),
    }
}

fn label(status: u16, body: &Value) -> String {
    match body["error"]["code"].as_str() {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    }
}

/// One damaged document and how it was made.
struct Mutant {
    case: usize,
    original: &'static str,
    recipe: String,
    bytes: Vec<u8>,
}

impl Mutant {
    /// One to three mutations of a random corpus file.
    fn draw(case: usize, originals: &[(&'static str, Vec<u8>)], rng: &mut SplitMix64) -> Self {
        let (original, bytes) = &originals[rng.below(originals.len())];
        let mut bytes = bytes.clone();
        let mut steps = Vec::new();
        for _ in 0..=rng.below(3) {
            steps.push(mutate(&mut bytes, originals, rng));
        }
        Self {
            case,
            original,
            recipe: format!("{original}: {}", steps.join(", ")),
            bytes,
        }
    }

    fn save(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join(format!("case-{}-{}", self.case, self.original));
        std::fs::write(&path, &self.bytes).unwrap();
        path
    }
}

/// Applies one random mutation to `bytes` and says which.
fn mutate(bytes: &mut Vec<u8>, originals: &[(&str, Vec<u8>)], rng: &mut SplitMix64) -> String {
    let len = bytes.len();
    match rng.below(6) {
        0 => {
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                if let Some(byte) = bytes.get_mut(rng.below(len.max(1))) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            format!("{flips} bit flips")
        }
        1 => {
            let keep = rng.below(len + 1);
            bytes.truncate(keep);
            format!("cut to {keep} bytes")
        }
        2 => {
            let at = rng.below(len + 1);
            let count = 1 + rng.below(16);
            let inserted: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, inserted);
            format!("{count} bytes inserted at {at}")
        }
        3 => {
            let at = rng.below(len + 1);
            let end = (at + 1 + rng.below(16)).min(len);
            bytes.drain(at..end);
            format!("bytes {at}..{end} deleted")
        }
        4 => {
            let (other, tail) = &originals[rng.below(originals.len())];
            let at = rng.below(len + 1);
            let from = rng.below(tail.len() + 1);
            bytes.truncate(at);
            bytes.extend_from_slice(&tail[from..]);
            format!("first {at} bytes, then {other} from byte {from}")
        }
        _ => {
            let start = rng.below(len + 1);
            let end = (start + 1 + rng.below(4096)).min(len);
            let chunk = bytes[start..end].to_vec();
            let at = rng.below(len + 1);
            bytes.splice(at..at, chunk);
            format!("bytes {start}..{end} repeated at {at}")
        }
    }
}

/// A small, fixed generator, so that a seed replays the same documents on every machine and
/// with every version of the dependencies.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for test inputs; 0 when `n` is 0.
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
