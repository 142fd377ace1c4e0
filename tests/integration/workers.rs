//! Worker processes compete for jobs: start two real `letterbox-consumer` processes and check
//! that both took part of the work.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    Options, amqp_url, binary, free_port, job_description, metric, spawn_app_with, tokens_path,
    vault,
};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_consumer_processes_both_take_work() {
    // No in-process workers: only the two processes below can answer.
    let app = spawn_app_with(Options {
        consumers: 0,
        latency: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let (vault_addr, vault_token) = vault();
    let ports = [free_port(), free_port()];
    let _workers: Vec<Process> = ports
        .iter()
        .map(|port| {
            Process(
                Command::new(binary("letterbox-consumer"))
                    .env_clear()
                    .env("AMQP_URL", amqp_url())
                    .env("LETTERBOX_JOBS_QUEUE", &app.queue)
                    .env("LETTERBOX_METRICS_ADDR", format!("127.0.0.1:{port}"))
                    .env("LETTERBOX_CONCURRENCY", "2")
                    .env("VAULT_ADDR", &vault_addr)
                    .env("VAULT_TOKEN", &vault_token)
                    .env("LETTERBOX_LLM_KEY_PATH", format!("secret/{}", app.key_path))
                    .env("LETTERBOX_TOKENS_PATH", tokens_path(&app.key_path))
                    .env("LETTERBOX_AUTH", "tokens")
                    .env("LLM_BASE_URL", &app.stub.base_url)
                    .env("LLM_MODEL", "letterbox-stub-1")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Wait until both workers serve their metrics (they subscribe before listening).
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/healthz");
        let mut up = false;
        for _ in 0..100 {
            if app
                .http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "worker on port {port} did not start");
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
