//! Webhooks: `callback_url` makes a request asynchronous (202 at once); the letter, or why there
//! is none, is POSTed to the callback, signed with HMAC-SHA256 over the timestamp and the body,
//! retried when the receiver fails, and never sent inside the network unless allowed.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use letterbox_bench::stub::Failure;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{Options, job_description, spawn_app_with};

const RESUME: &str = "Ada Quinlan\nSenior Backend Engineer in Zurich\n\nSeven years of Rust \
                      services on RabbitMQ and PostgreSQL, run on Kubernetes.";

/// One delivery as the receiver saw it.
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

/// A receiver on loopback that answers each delivery with the next of `statuses` (then 200)
/// and hands every delivery to the test.
async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Delivery>) {
    #[derive(Clone)]
    struct Shared {
        tx: mpsc::UnboundedSender<Delivery>,
        statuses: std::sync::Arc<std::sync::Mutex<std::vec::IntoIter<u16>>>,
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Shared {
        tx,
        statuses: std::sync::Arc::new(std::sync::Mutex::new(statuses.into_iter())),
    };
    let app = Router::new()
        .route(
            "/hooks/letters",
            post(
                |State(shared): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                    let _ = shared.tx.send(Delivery { headers, body });
                    let status = shared.statuses.lock().unwrap().next().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/letters", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no delivery within 20 s")
        .unwrap()
}

/// The signature a receiver computes: HMAC-SHA256 of "{timestamp}.{body}", hex, after `v1=`.
fn expected_signature(key: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &message);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

#[tokio::test]
async fn a_callback_gets_the_signed_letter_after_a_202_and_a_failed_delivery() {
    let key = format!("whsec-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(Options {
        webhook_key: Some(key.clone()),
        webhook_allow_private: true,
        ..Options::default()
    })
    .await;
    // The receiver fails the first delivery: it must come again.
    let (url, mut deliveries) = receiver(vec![503]).await;
    let answer = app
        .post_json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "callback_url": url,
        }))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["status"], "accepted");
    let job_id = answer.body["job_id"].as_str().unwrap().to_owned();
    assert_eq!(answer.body.as_object().unwrap().len(), 2, "{}", answer.body);

    let first = next(&mut deliveries).await;
    let second = next(&mut deliveries).await;
    assert_eq!(first.body, second.body, "a retry sends the same letter");
    for delivery in [&first, &second] {
        let header = |name: &str| delivery.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("letterbox-job-id"), job_id);
        let timestamp = header("letterbox-timestamp");
        let now = letterbox::time::now_ms() / 1000;
        let sent: u64 = timestamp.parse().unwrap();
        assert!(now.abs_diff(sent) <= 60, "timestamp {sent}, now {now}");
        assert_eq!(
            header("letterbox-signature"),
            expected_signature(&key, &timestamp, &delivery.body)
        );
        // Any other key gives another signature.
        assert_ne!(
            header("letterbox-signature"),
            expected_signature("another-key", &timestamp, &delivery.body)
        );
    }
    let body: Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(body["status"], "done");
    assert_eq!(body["job_id"], job_id.as_str());
    assert_eq!(body["model"], "letterbox-stub-1");
    assert!(body["cover_letter"].as_str().unwrap().len() > 200, "{body}");
    assert!(body["timings_ms"]["total"].is_u64(), "{body}");

    // Delivered on the second attempt, counted once.
    let (status, metrics) = app.get_text(&format!("{}/metrics", app.base)).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("letterbox_webhook_deliveries_total{outcome=\"delivered\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("letterbox_http_responses_total{code=\"202\"} 1\n"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_without_a_letter_is_posted_as_failed_and_a_refusing_receiver_is_not_retried() {
    let key = "whsec-failed".to_owned();
    let app = spawn_app_with(Options {
        webhook_key: Some(key.clone()),
        webhook_allow_private: true,
        // Every call refused with a 400 the worker does not retry.
        failure: Some(Failure::Status {
            status: 400,
            every: 1,
        }),
        ..Options::default()
    })
    .await;
    // A 410 from the receiver is final.
    let (url, mut deliveries) = receiver(vec![410]).await;
    let form = reqwest::multipart::Form::new()
        .part(
            "resume",
            reqwest::multipart::Part::bytes(RESUME.as_bytes().to_vec()).file_name("resume.md"),
        )
        .text("job_description", job_description())
        .text("callback_url", url);
    let answer = app.post_form(form).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let job_id = answer.body["job_id"].as_str().unwrap().to_owned();
    let delivery = next(&mut deliveries).await;
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(
        body,
        json!({
            "job_id": job_id,
            "status": "failed",
            "error": {"code": "llm_failed", "message": "the LLM provider refused the request (400: invalid_request_error)"},
        })
    );
    // No second attempt after the 410.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        deliveries.try_recv().is_err(),
        "delivered again after a 410"
    );
    let (_, metrics) = app.get_text(&format!("{}/metrics", app.base)).await;
    assert!(
        metrics.contains("letterbox_webhook_deliveries_total{outcome=\"refused\"} 1\n"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn callbacks_inside_the_network_or_malformed_are_refused_before_any_work() {
    let app = spawn_app_with(Options {
        webhook_key: Some("whsec-refusals".to_owned()),
        ..Options::default()
    })
    .await;
    let (url, mut deliveries) = receiver(vec![]).await;
    for (callback, status, code) in [
        (url.as_str(), 400, "callback_not_allowed"),
        (
            "http://169.254.169.254/latest/meta-data/",
            400,
            "callback_not_allowed",
        ),
        ("http://[::1]:8080/", 400, "callback_not_allowed"),
        ("http://10.0.0.7/hook", 400, "callback_not_allowed"),
        ("http://localhost:5678/webhook", 400, "callback_not_allowed"),
        ("ftp://example.com/hook", 400, "invalid_callback_url"),
        ("hooks.example.com/letters", 400, "invalid_callback_url"),
        (
            "https://user:secret@example.com/hook",
            400,
            "invalid_callback_url",
        ),
    ] {
        let answer = app
            .post_json(&json!({
                "resume_text": RESUME,
                "job_description": job_description(),
                "callback_url": callback,
            }))
            .await;
        assert_eq!(answer.status, status, "{callback}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], code, "{callback}");
        // The refusal does not echo the URL (it may carry credentials).
        assert!(
            !answer.body.to_string().contains("secret@"),
            "{}",
            answer.body
        );
    }
    assert!(deliveries.try_recv().is_err());
    // Nothing was queued: no worker ever saw a job.
    let (_, metrics) = app.worker_metrics(0).await;
    assert!(
        !metrics.contains("letterbox_jobs_total{outcome=\"letter\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_signing_key_a_callback_is_refused_with_503() {
    let app = spawn_app_with(Options::default()).await;
    let answer = app
        .post_json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "callback_url": "https://hooks.example.com/letters",
        }))
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "webhook_unavailable");
    assert_eq!(
        answer.body["error"]["message"],
        format!(
            "the webhook signing key (secret/{}-webhook) cannot be read; letterbox-admin setup creates it",
            app.key_path
        )
    );
    assert_eq!(answer.retry_after.as_deref(), Some("30"));
    app.stop().await;
}
