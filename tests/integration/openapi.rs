//! The OpenAPI document at `/openapi.json`, and schemathesis (the property-based API tester)
//! sending what the document allows, and much it does not, to a live ingress with real workers.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_document_describes_every_route_and_refusal() {
    let app = spawn_app().await;
    // No token: the document is public, like the health checks.
    let response = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Letterbox");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths: BTreeSet<&str> = keys(&doc["paths"]).into_iter().collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/v1/cover-letters",
            "/v1/stats"
        ])
    );
    let post = &doc["paths"]["/v1/cover-letters"]["post"];
    let statuses = keys(&post["responses"]);
    assert_eq!(
        statuses,
        [
            "200", "202", "400", "401", "403", "408", "413", "415", "422", "429", "500", "502",
            "503", "504"
        ]
    );
    let bodies = keys(&post["requestBody"]["content"]);
    assert_eq!(bodies, ["application/json", "multipart/form-data"]);
    let tones = &doc["components"]["schemas"]["Tone"]["enum"];
    assert_eq!(
        tones,
        &serde_json::json!([
            "professional",
            "enthusiastic",
            "formal",
            "friendly",
            "confident"
        ])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The health checks and the document itself need no token; everything else does.
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/openapi.json", "get"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"],
            serde_json::json!([{}]),
            "{path}"
        );
    }
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    app.stop().await;
}

/// An object's keys, in the document's order.
fn keys(object: &Value) -> Vec<&str> {
    object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn schemathesis() -> PathBuf {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.venv/bin/schemathesis"
    ));
    assert!(
        path.exists(),
        "{} is missing: script/test installs it (script/bootstrap's letterbox_install_schemathesis)",
        path.display()
    );
    path
}

/// Runs schemathesis on the operations `filter` picks, with `token`; its summary.
async fn schemathesis_run(app: &crate::helpers::TestApp, token: &str, filter: &[&str]) -> String {
    let output = tokio::process::Command::new(schemathesis())
        .arg("--config-file")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", app.base))
        .args(filter)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,ignored_auth",
        ])
        .args(["--seed", "1", "--no-color"])
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis_hooks.py"),
        )
        // Nothing written beside the hooks (no __pycache__).
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    report
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let app = spawn_app().await;
    // Letters with a submit token, the figures and health checks with a monitor token: every
    // operation (schemathesis leaves the document's own path out) is reached with a token it
    // accepts, and `ignored_auth` also tries each one without.
    let letters = schemathesis_run(&app, &app.submit_token, &["--include-method", "POST"]).await;
    assert!(
        letters.contains("Selected: 1/5\n  Tested: 1\n"),
        "{letters}"
    );
    let operations =
        schemathesis_run(&app, &app.monitor_token, &["--exclude-method", "POST"]).await;
    assert!(
        operations.contains("Selected: 4/5\n  Tested: 4\n"),
        "{operations}"
    );
    // The documented example went through the whole pipeline to the stub and back.
    let (_, stats) = app.get_text(&format!("{}/v1/stats", app.base)).await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert!(stats["responses"]["200"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["responses"].get("500"), None, "{stats}");
    app.stop().await;
}
