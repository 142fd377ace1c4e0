//! Canaries: unique strings planted in resumes, job descriptions and options must not show up in
//! anything Letterbox writes or exposes: log lines at debug level, metrics, messages on the
//! broker, files.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use letterbox_bench::stub::Failure;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::helpers::{
    Options, amqp_url, binary, free_port, job_description, spawn_app_with, tokens_path, vault,
};

struct Process {
    child: Child,
    name: &'static str,
}

impl Process {
    fn output(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let output = self.child.wait_with_output_timeout();
        format!("--- {} ---\n{output}", self.name)
    }
}

trait WaitWithTimeout {
    fn wait_with_output_timeout(&mut self) -> String;
}

impl WaitWithTimeout for Child {
    fn wait_with_output_timeout(&mut self) -> String {
        use std::io::Read;
        for _ in 0..100 {
            if self.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.kill();
        let _ = self.wait();
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        if let Some(mut stdout) = self.stdout.take() {
            let _ = stdout.read_to_string(&mut text);
        }
        text
    }
}

#[tokio::test]
async fn canaries_never_reach_logs_metrics_the_broker_or_files() {
    // In-process pieces serve only as the stand-in provider and the test's own tokens; the
    // ingress and the worker below are real processes, logging at debug level.
    let app = spawn_app_with(Options {
        // A refusal the worker does not retry, so some requests end in a 502.
        failure: Some(Failure::Status {
            status: 400,
            every: 4,
        }),
        ..Options::without_workers()
    })
    .await;
    let (vault_addr, vault_token) = vault();
    let workdir = std::env::temp_dir().join(format!(
        "letterbox-canary-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let tmpdir = workdir.join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let producer_port = free_port();
    let consumer_port = free_port();
    let common = |command: &mut Command| {
        command
            .env_clear()
            .current_dir(&workdir)
            .env("TMPDIR", &tmpdir)
            .env("LETTERBOX_LOG", "debug")
            .env("AMQP_URL", amqp_url())
            // The test app's own queue: its clean-up removes it even when the test fails.
            .env("LETTERBOX_JOBS_QUEUE", &app.queue)
            .env("VAULT_ADDR", &vault_addr)
            .env("VAULT_TOKEN", &vault_token)
            .env("LETTERBOX_TOKENS_PATH", tokens_path(&app.key_path))
            .env("LETTERBOX_AUTH", "tokens")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    };
    let mut producer = Command::new(binary("letterbox-producer"));
    common(&mut producer);
    producer.env("LETTERBOX_HTTP_ADDR", format!("127.0.0.1:{producer_port}"));
    let producer = Process {
        child: producer.spawn().unwrap(),
        name: "producer",
    };
    let mut consumer = Command::new(binary("letterbox-consumer"));
    common(&mut consumer);
    consumer
        .env(
            "LETTERBOX_METRICS_ADDR",
            format!("127.0.0.1:{consumer_port}"),
        )
        .env("LETTERBOX_LLM_KEY_PATH", format!("secret/{}", app.key_path))
        .env("LLM_BASE_URL", &app.stub.base_url)
        .env("LLM_MODEL", "letterbox-stub-1")
        // The worker logs as a log pipeline would read it: JSON lines.
        .env("LETTERBOX_LOG_FORMAT", "json");
    let consumer = Process {
        child: consumer.spawn().unwrap(),
        name: "consumer",
    };
    let base = format!("http://127.0.0.1:{producer_port}");
    for _ in 0..100 {
        if app
            .http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            && app
                .http
                .get(format!("http://127.0.0.1:{consumer_port}/healthz"))
                .send()
                .await
                .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut canaries = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (resume, jd, company, name) = (
            format!("CANARY-R{i}-9d41"),
            format!("CANARY-J{i}-9d41"),
            format!("CANARY-C{i}-9d41"),
            format!("CANARY-N{i}-9d41"),
        );
        canaries.extend([resume.clone(), jd.clone(), company.clone(), name.clone()]);
        let letters = format!("{base}/v1/cover-letters");
        let request = app.http.post(&letters).bearer_auth(&app.submit_token);
        let response = match i % 3 {
            0 => request
                .json(&json!({
                    "resume_text": format!("{name}\nBackend engineer {resume}, jane.{i}@example.org, +41 555 01{i:02}, Rust and RabbitMQ"),
                    "job_description": format!("{}\n{jd}", job_description()),
                    "options": {"company": company, "hiring_manager": name, "role": "Engineer"},
                }))
                .send()
                .await
                .unwrap(),
            1 => request
                .multipart(
                    Form::new()
                        .part("resume", Part::bytes(format!("# {name}\n\nBackend engineer {resume}, Rust, RabbitMQ, PostgreSQL").into_bytes()).file_name(format!("{resume}.md")))
                        .text("job_description", format!("{}\n{jd}", job_description()))
                        .text("company", company),
                )
                .send()
                .await
                .unwrap(),
            // Refused requests must not echo what they carried either.
            _ => request
                .json(&json!({
                    "resume_text": format!("{name} {resume}"),
                    "job_description": jd,
                    "options": {"language": company},
                }))
                .send()
                .await
                .unwrap(),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if status != 200 {
            for canary in &canaries {
                assert!(
                    !text.contains(canary.as_str()),
                    "an error echoed {canary}: {text}"
                );
            }
        }
        statuses.push(status);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&502) && statuses.contains(&422),
        "{statuses:?}"
    );

    let mut exposed = String::new();
    for url in [
        format!("{base}/metrics"),
        format!("http://127.0.0.1:{consumer_port}/metrics"),
    ] {
        let response = app
            .http
            .get(&url)
            .bearer_auth(&app.monitor_token)
            .send()
            .await
            .unwrap();
        exposed.push_str(&response.text().await.unwrap());
    }
    assert!(
        exposed.contains("letterbox_jobs_total"),
        "the worker's metrics were not read"
    );
    exposed.push_str(&producer.output());
    let consumer_log = consumer.output();
    assert_json_lines(&consumer_log);
    exposed.push_str(&consumer_log);
    assert!(
        exposed.contains("DEBUG"),
        "the processes did not log at debug level"
    );
    for canary in &canaries {
        assert!(
            !exposed.contains(canary.as_str()),
            "{canary} leaked:\n{exposed}"
        );
    }
    for secret in [app.submit_token.as_str(), app.monitor_token.as_str()] {
        assert!(!exposed.contains(secret), "a client token leaked");
    }
    let files: Vec<_> = walk(&workdir).into_iter().filter(|p| p.is_file()).collect();
    assert!(files.is_empty(), "the processes wrote files: {files:?}");
    let _ = std::fs::remove_dir_all(&workdir);
    app.stop().await;
}

/// Every line the worker wrote is one JSON object with a timestamp, a level and a target, and its
/// finished jobs say which job and how long, as fields a log pipeline can index.
fn assert_json_lines(log: &str) {
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("--- consumer ---"));
    let mut done = 0;
    for line in lines.filter(|line| !line.is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(event[field].is_string(), "no {field}: {line}");
        }
        if event["message"] == "Job done" {
            assert_eq!(event["level"], "INFO");
            assert_eq!(event["target"], "letterbox_consumer::worker");
            assert_eq!(event["job_id"].as_str().map(str::len), Some(36), "{line}");
            assert!(event["processing_ms"].is_u64(), "{line}");
            assert!(event["outcome"].is_string(), "{line}");
            done += 1;
        }
    }
    // Twelve requests: the refused ones never reach a worker, the rest end in a letter or a 502.
    assert_eq!(done, 8, "{log}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
