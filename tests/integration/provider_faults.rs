//! A provider that misbehaves the ways real ones do: a stream cut off mid-letter, an error event
//! after a 200, a call that never answers, rate limits with every form of `Retry-After`. Passing
//! failures are retried within the deadline; what cannot succeed ends in a clear error.

use std::time::Duration;

use letterbox_bench::stub::{Failure, RetryAfter};
use serde_json::json;

use crate::helpers::{Options, TestApp, job_description, metric, spawn_app_with};

const RESUME: &str = "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL";

async fn app_with(failure: Failure, job_timeout_ms: u64) -> TestApp {
    spawn_app_with(Options {
        failure: Some(failure),
        job_timeout_ms,
        latency: Duration::from_millis(50),
        ..Options::default()
    })
    .await
}

/// Workers asking for whole answers (`LETTERBOX_LLM_STREAM=false`) from a stub failing so.
async fn whole_answers_with(failure: Failure) -> TestApp {
    spawn_app_with(Options {
        failure: Some(failure),
        latency: Duration::from_millis(50),
        llm_stream: false,
        ..Options::default()
    })
    .await
}

/// The stub sent an error after its 200 on every call: the client gets a 502 naming it, after
/// every attempt `LETTERBOX_LLM_MAX_ATTEMPTS` allows.
async fn every_attempt_met_the_error(app: &TestApp) {
    let answer = letter(app).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_failed", "message": "the LLM provider reported an error in the middle of its answer (internal_error)"}})
    );
    assert_eq!(app.stub.request_count(), 4);
    assert_eq!(retries(app, "stream_failed").await, Some(3.0));
}

async fn retries(app: &TestApp, reason: &str) -> Option<f64> {
    let (_, text) = app.worker_metrics(0).await;
    metric(
        &text,
        &format!("letterbox_llm_retries_total{{reason=\"{reason}\"}}"),
    )
}

async fn letter(app: &TestApp) -> crate::helpers::Answer {
    app.post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await
}

#[tokio::test]
async fn a_stream_cut_off_mid_letter_is_a_failure_and_is_retried() {
    let app = app_with(Failure::CutStream { every: 2 }, 30_000).await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The whole letter, signed, from the second call; not the first call's fragment.
    let text = answer.body["cover_letter"].as_str().unwrap();
    assert!(text.ends_with("Ada Quinlan"), "{text}");
    assert_eq!(app.stub.request_count(), 2);
    assert_eq!(retries(&app, "stream_failed").await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn an_error_event_after_a_200_is_never_a_short_letter() {
    let app = app_with(Failure::ErrorEvent { every: 1 }, 30_000).await;
    every_attempt_met_the_error(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn whole_answers_are_asked_for_when_streaming_is_off_and_a_cut_one_is_retried() {
    let app = whole_answers_with(Failure::CutStream { every: 2 }).await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The whole letter from the second call; the first call's body was cut inside the letter.
    let text = answer.body["cover_letter"].as_str().unwrap();
    assert!(text.ends_with("Ada Quinlan"), "{text}");
    let requests = app.stub.requests();
    assert_eq!(
        requests.iter().map(|r| r.stream).collect::<Vec<_>>(),
        [false, false]
    );
    assert_eq!(retries(&app, "stream_failed").await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn a_whole_answer_that_is_an_error_object_is_never_a_letter() {
    let app = whole_answers_with(Failure::ErrorEvent { every: 1 }).await;
    every_attempt_met_the_error(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_call_that_never_answers_leaves_time_for_a_retry() {
    // Call 1 hangs; it gets half of the 4 s deadline, and call 2 writes the letter.
    let app = app_with(Failure::Hang { every: 2 }, 4_000).await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(app.stub.request_count(), 2);
    assert_eq!(retries(&app, "timeout").await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn a_provider_that_always_hangs_is_a_504_by_the_deadline() {
    let app = app_with(Failure::Hang { every: 1 }, 2_000).await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    let code = answer.body["error"]["code"].as_str().unwrap();
    assert!(code == "llm_timeout" || code == "timeout", "{code}");
    app.stop().await;
}

#[tokio::test]
async fn every_form_of_retry_after_is_honoured() {
    for retry_after in [
        RetryAfter::Seconds(1),
        RetryAfter::HttpDate(1),
        RetryAfter::Millis(300),
        RetryAfter::None,
    ] {
        let app = app_with(
            Failure::RateLimited {
                every: 2,
                retry_after,
            },
            30_000,
        )
        .await;
        let started = std::time::Instant::now();
        let answer = letter(&app).await;
        let waited = started.elapsed();
        assert_eq!(answer.status, 200, "{retry_after:?}: {}", answer.body);
        assert_eq!(app.stub.request_count(), 2, "{retry_after:?}");
        assert_eq!(
            retries(&app, "rate_limited").await,
            Some(1.0),
            "{retry_after:?}"
        );
        let asked = match retry_after {
            RetryAfter::Seconds(s) => Duration::from_secs(s.into()),
            // An HTTP date has whole seconds: "in one second" may be due a little sooner.
            RetryAfter::HttpDate(_) => Duration::ZERO,
            RetryAfter::Millis(ms) => Duration::from_millis(ms.into()),
            RetryAfter::None => Duration::ZERO,
        };
        assert!(waited >= asked, "{retry_after:?}: waited {waited:?}");
        app.stop().await;
    }
}
