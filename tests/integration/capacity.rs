//! Capacity: workers fit how many jobs they run at once to the LLM provider's rate limit, and
//! report how busy they are and how many jobs wait, for an autoscaler.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use letterbox_bench::stub::{Failure, RateLimit};
use serde_json::json;

use crate::helpers::{Options, Process, free_port, job_description, metric, spawn_app_with};

/// The provider's limit: calls a second, and as many at once after a pause.
const RATE: u32 = 20;
const BURST: u32 = 20;
/// The provider's time per call. With the rate, it sets how many calls the whole fleet can
/// have in flight: 20 a second for 1 s each is 20, about 7 per worker.
const LATENCY: Duration = Duration::from_millis(1000);
const WORKERS: usize = 3;
/// Each worker's maximum: together 48, far more than the provider takes.
const CONCURRENCY: &str = "16";
const CLIENTS: usize = 40;
/// Long enough for the limits to come down from 16 and settle.
const WARM_UP: Duration = Duration::from_secs(8);
const MEASURED: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_fleet_fits_its_concurrency_to_the_providers_rate_limit() {
    let app = spawn_app_with(Options {
        consumers: 0,
        latency: LATENCY,
        rate_limit: Some(RateLimit {
            per_second: NonZeroU32::new(RATE).unwrap(),
            burst: NonZeroU32::new(BURST).unwrap(),
        }),
        job_timeout_ms: 30_000,
        ..Options::default()
    })
    .await;
    let ports: Vec<u16> = (0..WORKERS).map(|_| free_port()).collect();
    let _workers: Vec<Process> = ports
        .iter()
        .map(|port| app.consumer_process(*port, &[("LETTERBOX_CONCURRENCY", CONCURRENCY)]))
        .collect();
    for port in &ports {
        app.wait_until_ok(&format!("http://127.0.0.1:{port}/readyz"))
            .await;
    }

    // Closed loop: each client sends its next request when the last one is answered.
    let app = Arc::new(app);
    let letters = Arc::new(AtomicU64::new(0));
    let body = json!({"resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL", "job_description": job_description()});
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (app, letters, body) = (Arc::clone(&app), Arc::clone(&letters), body.clone());
            tokio::spawn(async move {
                loop {
                    if app.post_json(&body).await.status == 200 {
                        letters.fetch_add(1, Ordering::SeqCst);
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(WARM_UP).await;
    let start = (
        Instant::now(),
        letters.load(Ordering::SeqCst),
        app.stub.letter_count(),
        app.stub.rate_limited_count(),
    );
    tokio::time::sleep(MEASURED).await;
    let elapsed = start.0.elapsed().as_secs_f64();
    let delivered = letters.load(Ordering::SeqCst) - start.1;
    let answered = app.stub.letter_count() - start.2;
    let refused = app.stub.rate_limited_count() - start.3;
    for client in clients {
        client.abort();
        let _ = client.await;
    }

    let mut limits = Vec::new();
    for port in &ports {
        let (status, text) = app
            .get_text(&format!("http://127.0.0.1:{port}/metrics"))
            .await;
        assert_eq!(status, 200);
        let limit = metric(&text, "letterbox_consumer_concurrency_limit").unwrap();
        let utilization = metric(&text, "letterbox_consumer_utilization").unwrap();
        assert!((0.0..=1.0).contains(&utilization), "{utilization}");
        limits.push(limit);
    }

    let per_second = delivered as f64 / elapsed;
    let refused_share = refused as f64 / (refused + answered).max(1) as f64;
    println!(
        "{WORKERS} workers of {CONCURRENCY}, {CLIENTS} clients, provider {RATE}/s (burst {BURST}) at {} ms: \
         {per_second:.1} letters/s over {elapsed:.1} s ({:.0}% of the rate), \
         {refused} of {} calls got 429 ({:.1}%), limits at the end {limits:?}",
        LATENCY.as_millis(),
        100.0 * per_second / f64::from(RATE),
        refused + answered,
        100.0 * refused_share,
    );
    assert!(
        per_second >= 0.9 * f64::from(RATE),
        "{per_second:.1} letters/s, under 90% of the provider's {RATE}/s"
    );
    assert!(
        refused_share < 0.05,
        "{refused} of {} calls got 429",
        refused + answered
    );
    assert!(
        limits.iter().all(|limit| *limit < 16.0),
        "a worker kept its full concurrency: {limits:?}"
    );
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn a_busy_worker_reports_full_utilization_and_the_jobs_waiting() {
    // One job at a time, and the provider never answers: one runs, the rest wait in the queue.
    let app = spawn_app_with(Options {
        concurrency: 1,
        failure: Some(Failure::Hang { every: 1 }),
        ..Options::default()
    })
    .await;
    let app = Arc::new(app);
    let body = json!({"resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL", "job_description": job_description()});
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (app, body) = (Arc::clone(&app), body.clone());
            tokio::spawn(async move { app.post_json(&body).await })
        })
        .collect();

    // The depth is read every few seconds.
    let mut text = String::new();
    for _ in 0..100 {
        text = app.worker_metrics(0).await.1;
        if metric(&text, "letterbox_queue_depth") == Some(5.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&text, "letterbox_queue_depth"), Some(5.0), "{text}");
    assert_eq!(metric(&text, "letterbox_jobs_in_flight"), Some(1.0));
    assert_eq!(metric(&text, "letterbox_worker_capacity"), Some(1.0));
    assert_eq!(
        metric(&text, "letterbox_consumer_concurrency_limit"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "letterbox_consumer_utilization"), Some(1.0));
    for client in clients {
        client.abort();
        let _ = client.await;
    }
    Arc::into_inner(app).unwrap().stop().await;
}
