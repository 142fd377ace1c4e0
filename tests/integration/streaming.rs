//! Streaming: `Accept: text/event-stream` gets the letter as the provider writes it, through the
//! worker and the reply queue: a `job` event at once, keep-alive comments while nothing else is
//! sent, a `token` event per piece, then `done` with the letter, or `error` when the provider
//! cuts the stream.

use std::time::Duration;

use letterbox_bench::stub::{CUT_AFTER_CHUNKS, Failure};
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, consumer_settings, job_description, spawn_app_with};

const RESUME: &str = "Ada Quinlan\nSenior Backend Engineer in Zurich\n\nSeven years of Rust \
                      services on RabbitMQ and PostgreSQL, run on Kubernetes.";

/// One server-sent event: its name and data; a comment line is `("", ":")`.
#[derive(Debug)]
struct Sse {
    event: String,
    data: String,
}

/// Sends a streaming request and reads the whole answer: its status, content type and events
/// (comments included, in order).
async fn stream(app: &TestApp) -> (u16, String, Vec<Sse>) {
    stream_with(app.http.clone(), app.base.clone(), app.submit_token.clone()).await
}

async fn stream_with(
    http: reqwest::Client,
    base: String,
    token: String,
) -> (u16, String, Vec<Sse>) {
    let response = http
        .post(format!("{base}/v1/cover-letters"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the stream did not end within 30 s")
        .unwrap();
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let (mut event, mut data) = (String::new(), String::new());
        for line in block.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            } else if line.starts_with(':') {
                event.clear();
                data = ":".to_owned();
            }
        }
        events.push(Sse { event, data });
    }
    (status, content_type, events)
}

/// The text of `token` events, joined.
fn text_of(tokens: &[&Sse]) -> String {
    tokens
        .iter()
        .map(|t| {
            serde_json::from_str::<Value>(&t.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Asserts the ingress's `/metrics` holds each of `lines`.
async fn assert_metrics(app: &TestApp, lines: &[&str]) {
    let (_, metrics) = app.get_text(&format!("{}/metrics", app.base)).await;
    for line in lines {
        assert!(metrics.contains(line), "no {line:?} in:\n{metrics}");
    }
}

fn named<'a>(events: &'a [Sse], name: &str) -> Vec<&'a Sse> {
    events.iter().filter(|e| e.event == name).collect()
}

#[tokio::test]
async fn a_streamed_letter_arrives_piece_by_piece_and_ends_with_the_whole_letter() {
    let app = spawn_app_with(Options {
        // Paced: the stub spreads its 600 ms over the letter's pieces.
        latency: Duration::from_millis(600),
        ..Options::default()
    })
    .await;
    let (status, content_type, events) = stream(&app).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    let names: Vec<&str> = events
        .iter()
        .filter(|e| !e.event.is_empty())
        .map(|e| e.event.as_str())
        .collect();
    assert_eq!(names.first(), Some(&"job"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    let tokens = named(&events, "token");
    assert!(tokens.len() >= 10, "only {} pieces", tokens.len());
    assert_eq!(names.len(), tokens.len() + 2, "{names:?}");
    let job: Value = serde_json::from_str(&events[0].data).unwrap();
    let done: Value = serde_json::from_str(&named(&events, "done")[0].data).unwrap();
    assert_eq!(done["job_id"], job["job_id"]);
    assert_eq!(done["model"], "letterbox-stub-1");
    let streamed = text_of(&tokens);
    assert_eq!(streamed.trim(), done["cover_letter"].as_str().unwrap());
    let first = done["timings_ms"]["first_token"].as_u64().unwrap();
    let total = done["timings_ms"]["total"].as_u64().unwrap();
    assert!(first < total, "first token {first} ms, total {total} ms");

    assert_metrics(
        &app,
        &[
            "letterbox_time_to_first_token_seconds_count 1\n",
            "letterbox_end_to_end_seconds_count 1\n",
            "letterbox_streams_total{outcome=\"done\"} 1\n",
            "letterbox_http_requests_in_flight 0\n",
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn keep_alives_fill_the_wait_before_the_first_piece() {
    // No worker at first: the job waits in the queue, and the stream must stay alive meanwhile.
    let mut app = spawn_app_with(Options {
        consumers: 0,
        sse_keepalive_ms: 200,
        ..Options::default()
    })
    .await;
    let request = tokio::spawn(stream_with(
        app.http.clone(),
        app.base.clone(),
        app.submit_token.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let settings = consumer_settings(&app.queue, &app.key_path, &app.stub.base_url, 8);
    app.add_consumer(settings).await.unwrap();
    let (status, _, events) = request.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(events[0].event, "job", "{events:?}");
    let first_token = events.iter().position(|e| e.event == "token").unwrap();
    let comments_before = events[..first_token]
        .iter()
        .filter(|e| e.data == ":")
        .count();
    // A second in the queue at one comment per 200 ms of silence (fewer only if the machine
    // stalls for long).
    assert!(comments_before >= 2, "{events:?}");
    assert_eq!(events.last().unwrap().event, "done");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_the_provider_cuts_ends_with_an_error_event_and_is_not_retried() {
    let app = spawn_app_with(Options {
        latency: Duration::from_millis(300),
        failure: Some(Failure::CutStream { every: 1 }),
        ..Options::default()
    })
    .await;
    let (status, _, events) = stream(&app).await;
    assert_eq!(status, 200);
    // The stub's first pieces, however the worker grouped them while publishing.
    let tokens = named(&events, "token");
    assert!((1..=CUT_AFTER_CHUNKS).contains(&tokens.len()), "{events:?}");
    let streamed = text_of(&tokens);
    assert_eq!(streamed, "Dear Hiring Manager,\n\nI am ");
    let last = events.last().unwrap();
    assert_eq!(last.event, "error", "{events:?}");
    let error: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(error["error"]["code"], "llm_failed");
    // Pieces were shown: a retry would write a second letter after the first one's start.
    assert_eq!(app.stub.request_count(), 1);
    // Behind its 200, the stream is counted by how it ended.
    assert_metrics(
        &app,
        &["letterbox_streams_total{outcome=\"llm_failed\"} 1\n"],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_stream_and_a_callback_together_are_refused() {
    let app = spawn_app_with(Options::default()).await;
    let response = app
        .http
        .post(format!("{}/v1/cover-letters", app.base))
        .bearer_auth(&app.submit_token)
        .header("accept", "text/event-stream")
        .json(&json!({
            "resume_text": RESUME,
            "job_description": job_description(),
            "callback_url": "https://hooks.example.com/letters",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflicting_modes");
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_before_the_first_piece_frees_its_place_at_once() {
    // No worker: the job waits, and so would its reply slot, until the deadline (15 s here).
    let app = spawn_app_with(Options {
        consumers: 0,
        sse_keepalive_ms: 200,
        ..Options::default()
    })
    .await;
    let mut response = app
        .http
        .post(format!("{}/v1/cover-letters", app.base))
        .bearer_auth(&app.submit_token)
        .header("accept", "text/event-stream")
        .json(&json!({"resume_text": RESUME, "job_description": job_description()}))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"event: job\n"), "{first:?}");
    let waiting = || async {
        let (_, metrics) = app.get_text(&format!("{}/metrics", app.base)).await;
        metrics.contains("letterbox_replies_waiting 1\n")
    };
    assert!(waiting().await);
    drop(response);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !waiting().await {
            freed = true;
            break;
        }
    }
    assert!(freed, "the reply slot was kept after the client left");
    assert_metrics(
        &app,
        &[
            "letterbox_streams_total{outcome=\"abandoned\"} 1\n",
            "letterbox_http_requests_in_flight 0\n",
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn once_pieces_flow_a_stream_may_use_the_whole_deadline() {
    // A 3 s deadline and a provider writing for 2 s: more than the half of the time an attempt
    // gets while a retry may follow, but a stream that has shown pieces is never retried.
    let app = spawn_app_with(Options {
        latency: Duration::from_millis(2_000),
        job_timeout_ms: 3_000,
        ..Options::default()
    })
    .await;
    let (status, _, events) = stream(&app).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    assert_eq!(app.stub.request_count(), 1);
    app.stop().await;
}
