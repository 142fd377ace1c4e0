//! The HTTP contract: a JSON request in, a letter out; every refusal a JSON error.

use letterbox_bench::stub::{Failure, letter};
use serde_json::json;

use crate::helpers::{Options, job_description, metric, spawn_app, spawn_app_with};

const RESUME: &str = "Ada Quinlan\nSenior Backend Engineer in Zürich\n\nExperience\n\
    - Built Rust services on RabbitMQ and PostgreSQL serving millions of requests\n\
    - Ran Kubernetes clusters and led incident reviews\n";

#[tokio::test]
async fn a_json_request_returns_the_letter_the_llm_wrote_from_both_documents() {
    let app = spawn_app().await;
    let answer = app
        .post_json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "options": {"tone": "confident", "company": "Northwind Labs", "hiring_manager": "Sam Rivera"}
        }))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let requests = app.stub.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert!(sent.authorized);
    assert_eq!(sent.model, "letterbox-stub-1");
    assert!(
        sent.user
            .contains("Ada Quinlan\nSenior Backend Engineer in Zürich")
    );
    assert!(sent.user.contains("Senior Backend Engineer"));
    assert!(sent.user.contains("Tone: confident\n"));
    assert!(
        sent.user
            .contains("Company: Northwind Labs\nHiring manager: Sam Rivera")
    );
    assert_eq!(sent.max_tokens, Some(250 * 4 + 256));

    let body = &answer.body;
    assert_eq!(
        body["cover_letter"],
        letter::compose(&sent.system, &sent.user)
    );
    let text = body["cover_letter"].as_str().unwrap();
    assert!(text.starts_with("Dear Sam Rivera,"), "{text}");
    assert!(text.contains("Northwind Labs"), "{text}");
    assert!(text.contains("Ada Quinlan"), "{text}");
    assert_eq!(body["model"], "letterbox-stub-1");
    assert!(uuid::Uuid::parse_str(body["job_id"].as_str().unwrap()).is_ok());
    let timings = &body["timings_ms"];
    assert!(timings["total"].as_u64().unwrap() >= timings["llm"].as_u64().unwrap());
    assert!(timings["queued"].is_u64());

    let (status, metrics) = app.get_text(&format!("{}/metrics", app.base)).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&metrics, "letterbox_end_to_end_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "letterbox_overhead_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "letterbox_http_responses_total{code=\"200\"}"),
        Some(1.0)
    );
    let worker = format!("http://{}/metrics", app.consumer_metrics[0]);
    let (_, worker_metrics) = app.get_text(&worker).await;
    assert_eq!(
        metric(&worker_metrics, "letterbox_jobs_total{outcome=\"letter\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&worker_metrics, "letterbox_llm_seconds_count"),
        Some(1.0)
    );
    assert!(!metrics.contains("Ada") && !worker_metrics.contains("Ada"));
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_a_400_with_a_code_and_no_llm_call() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"job_description": "Rust engineer wanted for backend work"}),
            "missing_field",
            "resume_text is required",
        ),
        (
            json!({"resume_text": RESUME}),
            "missing_field",
            "job_description is required",
        ),
        (
            json!({"resume_text": "   ", "job_description": "x"}),
            "empty_field",
            "resume_text is empty",
        ),
        (
            json!({"resume_text": RESUME, "job_description": job_description(), "options": {"tone": "sarcastic"}}),
            "invalid_options",
            "",
        ),
        (
            json!({"resume_text": RESUME, "job_description": job_description(), "options": {"target_words": 9000}}),
            "invalid_options",
            "options.target_words must be between 50 and 1000",
        ),
        (
            json!({"resume_text": RESUME, "job_description": job_description(), "options": {"language": "english please"}}),
            "invalid_options",
            "options.language must be a BCP 47 language tag such as \"en\" or \"de-CH\"",
        ),
        (
            json!({"resume": RESUME, "job_description": "x"}),
            "unknown_field",
            "",
        ),
    ];
    for (body, code, message) in cases {
        let answer = app.post_json(&body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], code, "{body}");
        if !message.is_empty() {
            assert_eq!(answer.body["error"]["message"], message, "{body}");
        }
    }
    let short = app
        .post_json(&json!({"resume_text": "Ada, Rust", "job_description": job_description()}))
        .await;
    assert_eq!(short.status, 422, "{}", short.body);
    assert_eq!(
        short.body,
        json!({"error": {"code": "text_too_short", "message": "resume_text is too short to write a letter from: it needs at least 40 letters"}})
    );

    let broken = app
        .post_raw("application/json", b"{\"resume_text\": ".to_vec())
        .await;
    assert_eq!(broken.status, 400);
    assert_eq!(broken.body["error"]["code"], "invalid_json");

    let wrong_type = app.post_raw("text/plain", b"hello".to_vec()).await;
    assert_eq!(wrong_type.status, 415);
    assert_eq!(wrong_type.body["error"]["code"], "unsupported_content_type");

    let not_found = app.get_text(&format!("{}/v1/nothing", app.base)).await;
    assert_eq!(not_found.0, 404);
    assert_eq!(app.stub.request_count(), 0);
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_texts_are_refused_with_413() {
    let app = spawn_app_with(Options {
        max_upload_bytes: 64 * 1024,
        ..Options::default()
    })
    .await;
    let huge = "word ".repeat(40_000);
    let answer = app
        .post_json(&json!({"resume_text": huge, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "body_too_large");

    let long_resume = "Experienced engineer. ".repeat(2_500); // 55,000 characters > 50,000
    let answer = app
        .post_json(&json!({"resume_text": long_resume, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "text_too_long", "message": "resume_text is longer than 50000 characters"}})
    );
    assert_eq!(app.stub.request_count(), 0);
    app.stop().await;
}

/// An app whose provider answers every call with `status`.
async fn failing_provider(status: u16) -> crate::helpers::TestApp {
    spawn_app_with(Options {
        failure: Some(Failure::Status { status, every: 1 }),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn an_llm_failure_becomes_a_502_with_a_clear_message_after_every_attempt() {
    let app = failing_provider(500).await;
    let answer = app
        .post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_failed", "message": "the LLM provider failed (500)"}})
    );
    // LETTERBOX_LLM_MAX_ATTEMPTS (4): the first call and three retries.
    assert_eq!(app.stub.request_count(), 4);
    let (_, metrics) = app.worker_metrics(0).await;
    assert_eq!(
        metric(
            &metrics,
            "letterbox_llm_retries_total{reason=\"server_error\"}"
        ),
        Some(3.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_passing_provider_failure_is_retried_and_the_client_gets_its_letter() {
    let app = spawn_app_with(Options {
        failure: Some(Failure::Status {
            status: 503,
            every: 2,
        }),
        ..Options::default()
    })
    .await;
    let answer = app
        .post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body["cover_letter"].as_str().unwrap().len() > 200);
    // Call 1 failed (503), call 2 wrote the letter.
    assert_eq!(app.stub.request_count(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let app = failing_provider(400).await;
    let answer = app
        .post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "llm_failed");
    assert_eq!(app.stub.request_count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rate_limited_job_waits_as_told_but_never_past_its_deadline() {
    // Every call is answered 429 with `Retry-After: 1`; the deadline is 3 s. Calls at about 0, 1
    // and 2 s; a fourth could not finish before the deadline, so it is not started.
    let app = spawn_app_with(Options {
        failure: Some(Failure::Status {
            status: 429,
            every: 1,
        }),
        job_timeout_ms: 3_000,
        ..Options::default()
    })
    .await;
    let answer = app
        .post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "llm_rate_limited");
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(app.stub.request_count(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_job_that_expires_in_the_queue_is_never_sent_to_the_llm() {
    let app = spawn_app_with(Options {
        job_timeout_ms: 1,
        ..Options::default()
    })
    .await;
    let answer = app
        .post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    let code = answer.body["error"]["code"].as_str().unwrap();
    assert!(code == "expired" || code == "timeout", "{code}");
    assert_eq!(app.stub.request_count(), 0);
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer_without_credentials() {
    let app = spawn_app().await;
    assert_eq!(
        app.get_text(&format!("{}/healthz", app.base)).await,
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(
        app.get_text(&format!("{}/readyz", app.base)).await,
        (200, r#"{"status":"ready"}"#.to_owned())
    );
    let worker = format!("http://{}/healthz", app.consumer_metrics[0]);
    assert_eq!(app.get_text(&worker).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_at_once() {
    // No workers and a queue limit of one job. A quorum queue accepts the job that takes it over
    // its limit and refuses the next ones: the third request is the first refused.
    let app = spawn_app_with(Options {
        consumers: 0,
        queue_max_length: 1,
        job_timeout_ms: 4_000,
        ..Options::default()
    })
    .await;
    let body = json!({"resume_text": RESUME, "job_description": job_description()});
    let delayed = |ms: u64| {
        let (app, body) = (&app, &body);
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            let started = std::time::Instant::now();
            (app.post_json(body).await, started.elapsed())
        }
    };
    let ((first, _), (second, _), (third, third_took)) =
        tokio::join!(delayed(0), delayed(300), delayed(600));
    assert_eq!(third.status, 503, "{}", third.body);
    assert_eq!(third.retry_after.as_deref(), Some("5"));
    assert_eq!(
        third.body,
        json!({"error": {"code": "queue_full", "message": "the job queue is full; retry shortly"}})
    );
    assert!(
        third_took < std::time::Duration::from_secs(2),
        "the refusal waited {third_took:?}"
    );
    for waited in [first, second] {
        assert_eq!(waited.status, 504, "{}", waited.body);
        assert_eq!(waited.body["error"]["code"], "timeout");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_still_gets_its_letter() {
    let app = spawn_app_with(Options {
        latency: std::time::Duration::from_millis(800),
        ..Options::default()
    })
    .await;
    let body = json!({"resume_text": RESUME, "job_description": job_description()});
    let stop = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        app.begin_shutdown();
    };
    let (answer, ()) = tokio::join!(app.post_json(&body), stop);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(app.stub.request_count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_provider_rate_limit_is_a_503_with_the_providers_retry_after() {
    let app = failing_provider(429).await;
    let answer = app
        .post_json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(
        answer.body,
        json!({"error": {"code": "llm_rate_limited", "message": "the LLM provider is rate-limiting Letterbox (429)"}})
    );
    app.stop().await;
}

#[tokio::test]
async fn wrong_methods_get_a_json_405() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/v1/cover-letters", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn a_development_setup_without_tokens_or_vault_on_the_ingress_still_writes_letters() {
    // LETTERBOX_AUTH=none and no Vault credentials for the ingress: jobs travel unsealed.
    let app = spawn_app_with(Options {
        open: true,
        ..Options::default()
    })
    .await;
    let body = json!({"resume_text": RESUME, "job_description": job_description()});
    let response = app
        .http
        .post(format!("{}/v1/cover-letters", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let letter: serde_json::Value = response.json().await.unwrap();
    let sent = &app.stub.requests()[0];
    assert_eq!(
        letter["cover_letter"],
        letter::compose(&sent.system, &sent.user)
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Options {
        header_timeout_ms: 300,
        ..Options::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: letterbox\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    // The server answers 408 or just closes; either way the connection ends, well within 5 s.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buffer),
    )
    .await;
    assert!(
        read.is_ok(),
        "the half-sent request kept the connection open"
    );
    let text = String::from_utf8_lossy(&buffer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A complete request on a fresh connection is still served.
    assert_eq!(app.get_text(&format!("{}/healthz", app.base)).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_client_may_shorten_its_deadline_but_not_lengthen_it() {
    let app = spawn_app_with(Options {
        latency: std::time::Duration::from_millis(1_500),
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let answer = app
        .post_json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "options": {"timeout_ms": 400},
        }))
        .await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    let code = answer.body["error"]["code"].as_str().unwrap();
    assert!(code == "timeout" || code == "llm_timeout", "{code}");
    // Well before the ingress's own 30 s (and the stub's 1.5 s): the requested 400 ms ruled.
    assert!(started.elapsed() < std::time::Duration::from_millis(1_400));

    let answer = app
        .post_json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "options": {"timeout_ms": 99},
        }))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body["error"]["message"],
        "options.timeout_ms must be between 100 and 3600000"
    );
    // Longer than the ingress's deadline is allowed but changes nothing: the letter comes.
    let answer = app
        .post_json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "options": {"timeout_ms": 3_600_000},
        }))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    app.stop().await;
}
