//! The page for end users (`LETTERBOX_WEB_PAGE=true`): served with a narrow session cookie that
//! writes letters and nothing else, and driven in headless Chromium as a user would drive it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Options, example, job_description, spawn_app, spawn_app_with, vault};

fn page_app() -> Options {
    Options {
        web_page: true,
        // Slow enough that its pieces arrive apart, however busy the machine.
        latency: Duration::from_millis(2_000),
        ..Options::default()
    }
}

#[tokio::test]
async fn the_page_gives_a_session_cookie_that_writes_letters_and_nothing_else() {
    let app = spawn_app_with(page_app()).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'; script-src 'self';")
    );
    let set_cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.ends_with("; Path=/v1/cover-letters; Max-Age=1800; HttpOnly; SameSite=Strict"),
        "{set_cookie}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    assert!(
        !html.contains("letterbox_session"),
        "the page shows its cookie"
    );
    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let response = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let form = || {
        reqwest::multipart::Form::new()
            .part(
                "resume",
                reqwest::multipart::Part::bytes(example("resume.md")).file_name("resume.md"),
            )
            .text("job_description", job_description())
    };
    // The cookie alone writes a letter.
    let letter = http
        .post(format!("{}/v1/cover-letters", app.base))
        .header("cookie", &cookie)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(letter.status(), 200);
    let body: Value = letter.json().await.unwrap();
    assert!(body["cover_letter"].as_str().unwrap().len() > 200, "{body}");
    // It cannot have letters posted elsewhere: only a client with a token asks for callbacks.
    let callback = http
        .post(format!("{}/v1/cover-letters", app.base))
        .header("cookie", &cookie)
        .multipart(form().text("callback_url", "https://hooks.example.com/letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 400);
    let body: Value = callback.json().await.unwrap();
    assert_eq!(body["error"]["code"], "callback_not_allowed");
    // It reads no figures, even on the ingress's own paths.
    let metrics = http
        .get(format!("{}/metrics", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 401);
    // A browser that says another site sent the request is refused.
    let cross = http
        .post(format!("{}/v1/cover-letters", app.base))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let body: Value = cross.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "the page's session may only be used by the page itself, not from another site"
    );
    // A forged session is no session.
    let forged = cookie.replace("letterbox_session=v1.", "letterbox_session=v1.9");
    let refused = http
        .post(format!("{}/v1/cover-letters", app.base))
        .header("cookie", forged)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    app.stop().await;

    // Off by default: no page, no cookie.
    let app = spawn_app().await;
    let page = http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(page.headers().get("set-cookie").is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_user_writes_a_letter_on_the_page_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: script/test installs Debian's chromium"
    );
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser"));
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: script/test runs npm ci in tests/browser"
    );
    let app = spawn_app_with(page_app()).await;
    let (_, vault_token) = vault();
    // Everything the browser must never see.
    let secrets = [
        app.llm_key.clone(),
        app.submit_token.clone(),
        app.monitor_token.clone(),
        vault_token,
    ]
    .join("\n");
    let resume = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/resume.pdf"
    ));
    let output = tokio::process::Command::new("node")
        .arg(dir.join("page.mjs"))
        .current_dir(&dir)
        .env("LETTERBOX_PAGE_URL", format!("{}/", app.base))
        .env("LETTERBOX_RESUME", &resume)
        .env(
            "LETTERBOX_JOB_POST",
            String::from_utf8(example("job_description.txt")).unwrap(),
        )
        .env("LETTERBOX_SECRETS", secrets)
        .env("CHROMIUM", &chromium)
        // The README's picture of the page: `LETTERBOX_SCREENSHOT=docs/page.png` when running
        // this test by hand.
        .envs(
            std::env::var("LETTERBOX_SCREENSHOT")
                .ok()
                .map(|path| ("LETTERBOX_SCREENSHOT", path)),
        )
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(summary["letter_chars"].as_u64().unwrap() > 200, "{summary}");
    assert!(
        summary["status"].as_str().unwrap().starts_with("Done in "),
        "{summary}"
    );
    assert_eq!(summary["copy_enabled"], true);
    // It grew on screen piece by piece (more than the one change the finished letter makes).
    assert!(summary["updates"].as_u64().unwrap() >= 3, "{summary}");
    let responses: Vec<&str> = summary["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(responses.contains(&"200 /"), "{responses:?}");
    assert!(
        responses.contains(&"200 /v1/cover-letters"),
        "{responses:?}"
    );
    app.stop().await;
}
