//! Providers and fallback: the worker speaks Anthropic's Messages API as it speaks OpenAI's (the
//! same retries, limits and metrics), and hands a job to a second provider when the first fails
//! it for good, counting why.

use std::time::Duration;

use letterbox_bench::stub::{Api, Failure, RetryAfter};
use letterbox_consumer::LlmProvider;
use serde_json::json;

use crate::helpers::{
    Answer, FALLBACK_MODEL, Fallback, Options, TestApp, free_port, job_description, metric,
    spawn_app_with,
};

const RESUME: &str = "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL";

async fn letter(app: &TestApp) -> Answer {
    app.post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await
}

/// A sample of worker 0's metrics; `None` when the series was never counted.
async fn worker_metric(app: &TestApp, series: &str) -> Option<f64> {
    let (status, text) = app.worker_metrics(0).await;
    assert_eq!(status, 200);
    metric(&text, series)
}

async fn calls(app: &TestApp, provider: &str, outcome: &str) -> Option<f64> {
    worker_metric(
        app,
        &format!("letterbox_llm_calls_total{{provider=\"{provider}\",outcome=\"{outcome}\"}}"),
    )
    .await
}

async fn fallbacks(app: &TestApp, reason: &str) -> Option<f64> {
    worker_metric(
        app,
        &format!("letterbox_llm_fallbacks_total{{reason=\"{reason}\"}}"),
    )
    .await
}

async fn retries(app: &TestApp, reason: &str) -> Option<f64> {
    worker_metric(
        app,
        &format!("letterbox_llm_retries_total{{reason=\"{reason}\"}}"),
    )
    .await
}

fn signed(answer: &Answer) -> bool {
    answer.body["cover_letter"]
        .as_str()
        .is_some_and(|text| text.ends_with("Ada Quinlan"))
}

#[tokio::test]
async fn the_anthropic_provider_writes_the_letter_whole_and_streamed() {
    for stream in [false, true] {
        let app = spawn_app_with(Options {
            provider: LlmProvider::Anthropic,
            llm_stream: stream,
            latency: Duration::from_millis(50),
            ..Options::default()
        })
        .await;
        let answer = letter(&app).await;
        assert_eq!(answer.status, 200, "stream {stream}: {}", answer.body);
        assert!(signed(&answer), "stream {stream}: {}", answer.body);
        assert_eq!(answer.body["model"], "letterbox-stub-1");
        let requests = app.stub.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(
            (
                request.api,
                request.authorized,
                request.stream,
                request.anthropic_version.as_deref(),
                request.model.as_str(),
            ),
            (
                Api::Anthropic,
                true,
                stream,
                Some("2023-06-01"),
                "letterbox-stub-1"
            )
        );
        // The system prompt travels apart from the one user message, which holds the documents.
        assert!(request.system.starts_with("You write cover letters"));
        assert!(!request.system.contains("Ada Quinlan"));
        assert!(request.user.contains(RESUME));
        assert_eq!(calls(&app, "primary", "letter").await, Some(1.0));
        assert_eq!(
            worker_metric(&app, "letterbox_llm_fallbacks_total").await,
            None
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn anthropic_rate_limits_and_overloads_are_retried_and_counted() {
    // 429 rate_limit_error with Retry-After: 1, then the letter.
    let app = spawn_app_with(Options {
        provider: LlmProvider::Anthropic,
        failure: Some(Failure::RateLimited {
            every: 2,
            retry_after: RetryAfter::Seconds(1),
        }),
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(app.stub.request_count(), 2);
    assert_eq!(app.stub.rate_limited_count(), 1);
    assert_eq!(retries(&app, "rate_limited").await, Some(1.0));
    assert_eq!(calls(&app, "primary", "rate_limited").await, Some(1.0));
    assert_eq!(calls(&app, "primary", "letter").await, Some(1.0));
    // The 429 halved the worker's concurrency limit, as OpenAI's does.
    assert_eq!(
        worker_metric(&app, "letterbox_consumer_concurrency_limit").await,
        Some(4.0)
    );
    app.stop().await;

    // 529 overloaded_error with Retry-After: 1, then the letter.
    let app = spawn_app_with(Options {
        provider: LlmProvider::Anthropic,
        failure: Some(Failure::Status {
            status: 529,
            every: 2,
        }),
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(app.stub.request_count(), 2);
    assert_eq!(retries(&app, "server_error").await, Some(1.0));
    assert_eq!(calls(&app, "primary", "server_error").await, Some(1.0));
    assert_eq!(
        worker_metric(&app, "letterbox_consumer_concurrency_limit").await,
        Some(8.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn an_anthropic_error_event_after_the_200_is_retried_until_attempts_run_out() {
    let app = spawn_app_with(Options {
        provider: LlmProvider::Anthropic,
        failure: Some(Failure::ErrorEvent { every: 1 }),
        latency: Duration::from_millis(50),
        ..Options::default()
    })
    .await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_failed", "message": "the LLM provider reported an error in the middle of its answer (overloaded_error)"}})
    );
    assert_eq!(app.stub.request_count(), 4);
    assert_eq!(retries(&app, "stream_failed").await, Some(3.0));
    assert_eq!(calls(&app, "primary", "stream_failed").await, Some(4.0));
    app.stop().await;
}

#[tokio::test]
async fn a_primary_that_fails_every_call_hands_each_job_to_the_fallback() {
    let app = spawn_app_with(Options {
        failure: Some(Failure::Status {
            status: 500,
            every: 1,
        }),
        fallback: Some(Fallback {
            provider: LlmProvider::Anthropic,
            failure: None,
        }),
        ..Options::default()
    })
    .await;
    let answers = futures_util::future::join_all((0..3).map(|_| letter(&app))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(signed(answer), "{}", answer.body);
        assert_eq!(answer.body["model"], FALLBACK_MODEL);
    }
    // Every attempt the primary allows, then the fallback's first call, for each job.
    let fallback = app.fallback_stub.as_ref().unwrap();
    assert_eq!(app.stub.request_count(), 12);
    assert_eq!(fallback.request_count(), 3);
    assert!(
        fallback
            .requests()
            .iter()
            .all(|r| r.api == Api::Anthropic && r.authorized)
    );
    assert_eq!(fallbacks(&app, "server_error").await, Some(3.0));
    assert_eq!(retries(&app, "server_error").await, Some(9.0));
    assert_eq!(calls(&app, "primary", "server_error").await, Some(12.0));
    assert_eq!(calls(&app, "fallback", "letter").await, Some(3.0));
    assert_eq!(calls(&app, "primary", "letter").await, None);
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_primary_falls_back_to_an_openai_compatible_provider() {
    let app = spawn_app_with(Options {
        provider: LlmProvider::Anthropic,
        // Nobody listens there.
        llm_base_url: Some(format!("http://127.0.0.1:{}/v1", free_port())),
        fallback: Some(Fallback {
            provider: LlmProvider::OpenAi,
            failure: None,
        }),
        ..Options::default()
    })
    .await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["model"], FALLBACK_MODEL);
    let fallback = app.fallback_stub.as_ref().unwrap();
    assert_eq!(fallback.request_count(), 1);
    assert_eq!(fallback.requests()[0].api, Api::OpenAi);
    assert_eq!(app.stub.request_count(), 0);
    assert_eq!(fallbacks(&app, "unreachable").await, Some(1.0));
    assert_eq!(calls(&app, "primary", "unreachable").await, Some(4.0));
    assert_eq!(calls(&app, "fallback", "letter").await, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn a_key_the_primary_refuses_falls_back_at_once() {
    let app = spawn_app_with(Options {
        // The primary accepts another key than the one in Vault: every call is a 401.
        stub_key: "a-key-the-worker-does-not-have".to_owned(),
        fallback: Some(Fallback {
            provider: LlmProvider::Anthropic,
            failure: None,
        }),
        ..Options::default()
    })
    .await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["model"], FALLBACK_MODEL);
    // One refused call (Vault holds no newer key), no retry, then the fallback.
    assert_eq!(app.stub.request_count(), 1);
    assert!(!app.stub.requests()[0].authorized);
    assert_eq!(app.fallback_stub.as_ref().unwrap().request_count(), 1);
    assert_eq!(fallbacks(&app, "unauthorized").await, Some(1.0));
    assert_eq!(calls(&app, "primary", "unauthorized").await, Some(1.0));
    assert_eq!(
        worker_metric(&app, "letterbox_llm_retries_total").await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failing_fallback_ends_in_its_own_error_and_a_refused_request_is_not_handed_on() {
    // Both fail: the client hears the fallback's last failure.
    let app = spawn_app_with(Options {
        failure: Some(Failure::Status {
            status: 500,
            every: 1,
        }),
        fallback: Some(Fallback {
            provider: LlmProvider::Anthropic,
            failure: Some(Failure::Status {
                status: 529,
                every: 1,
            }),
        }),
        job_timeout_ms: 30_000,
        ..Options::default()
    })
    .await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_failed", "message": "the LLM provider failed (529)"}})
    );
    assert_eq!(fallbacks(&app, "server_error").await, Some(1.0));
    assert_eq!(calls(&app, "fallback", "server_error").await, Some(4.0));
    app.stop().await;

    // A request the primary refuses (400) would be refused anywhere: no fallback.
    let app = spawn_app_with(Options {
        failure: Some(Failure::Status {
            status: 400,
            every: 1,
        }),
        fallback: Some(Fallback {
            provider: LlmProvider::Anthropic,
            failure: None,
        }),
        ..Options::default()
    })
    .await;
    let answer = letter(&app).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(app.fallback_stub.as_ref().unwrap().request_count(), 0);
    assert_eq!(
        worker_metric(&app, "letterbox_llm_fallbacks_total").await,
        None
    );
    app.stop().await;
}
