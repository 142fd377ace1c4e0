//! Worker processes compete for jobs: start two real `letterbox-consumer` processes and check
//! that both took part of the work.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Options, Process, free_port, job_description, metric, spawn_app_with};

#[tokio::test]
async fn two_consumer_processes_both_take_work() {
    // No in-process workers: only the two processes below can answer.
    let app = spawn_app_with(Options {
        consumers: 0,
        latency: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let ports = [free_port(), free_port()];
    let _workers: Vec<Process> = ports
        .iter()
        .map(|port| app.consumer_process(*port, &[("LETTERBOX_CONCURRENCY", "2")]))
        .collect();
    // Wait until both workers serve their metrics (they subscribe before listening).
    for port in ports {
        app.wait_until_ok(&format!("http://127.0.0.1:{port}/healthz"))
            .await;
    }

    let body = json!({"resume_text": "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL", "job_description": job_description()});
    let answers = futures_util::future::join_all((0..8).map(|_| app.post_json(&body))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    let mut per_worker = Vec::new();
    for port in ports {
        let (_, text) = app
            .get_text(&format!("http://127.0.0.1:{port}/metrics"))
            .await;
        per_worker.push(metric(&text, "letterbox_jobs_total{outcome=\"letter\"}").unwrap_or(0.0));
    }
    assert_eq!(per_worker.iter().sum::<f64>(), 8.0, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|n| *n >= 1.0),
        "a worker took no job: {per_worker:?}"
    );
    app.stop().await;
}
