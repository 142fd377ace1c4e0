//! `/metrics` as Prometheus's own linter reads it: `promtool check metrics` on the ingress's and
//! a worker's exposition, after real traffic, finds nothing to say.

use serde_json::json;

use crate::helpers::{job_description, spawn_app};

async fn promtool_check(exposition: &str) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool is missing: script/test installs Debian's prometheus package (script/check-deploy)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(exposition.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test]
async fn promtool_finds_nothing_to_say_about_either_processs_metrics() {
    let app = spawn_app().await;
    let answer = app
        .post_json(&json!({
            "resume_text": "Ada Quinlan\nSenior Backend Engineer in Zurich\n\nSeven years of Rust services on RabbitMQ and PostgreSQL.",
            "job_description": job_description(),
        }))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let refused = app.post_json(&json!({"resume_text": "too short"})).await;
    assert_eq!(refused.status, 400);
    for (name, url) in [
        ("ingress", format!("{}/metrics", app.base)),
        (
            "worker",
            format!("http://{}/metrics", app.consumer_metrics[0]),
        ),
    ] {
        let (status, exposition) = app.get_text(&url).await;
        assert_eq!(status, 200, "{name}");
        assert!(exposition.contains("letterbox_"), "{name}: {exposition}");
        let (ok, said) = promtool_check(&exposition).await;
        assert!(ok, "{name}: promtool check metrics failed:\n{said}");
        assert_eq!(said, "", "{name}: promtool check metrics:\n{said}");
    }
    app.stop().await;
}
