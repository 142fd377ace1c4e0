//! AMQPS to the broker and HTTPS to Vault, each checked against a CA the test makes: a RabbitMQ
//! node with no plaintext listener at all and an OpenBao server whose only listener the processes
//! are given is TLS. The ingress, a worker and the admin tool are the real binaries.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use letterbox_bench::stub::{self, StubConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::{Value, json};

use crate::helpers::{binary, free_port, job_description};
use crate::services::{Certificates, PrivateBroker, PrivateVault, scratch_dir, wait_for_port};

/// A CA and a server certificate for `localhost` and 127.0.0.1, written into `dir`.
fn certificates(dir: &Path) -> Certificates {
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let files = Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, server.pem()).unwrap();
    std::fs::write(&files.key, server_key.serialize_pem()).unwrap();
    files
}

/// Runs a binary to completion with `env` only, giving up after 60 s.
fn run(name: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(binary(name));
    command.env_clear().args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A long-running binary, stopped with SIGTERM on drop.
struct Running(Child);

impl Running {
    fn spawn(name: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary(name));
        command.env_clear();
        for (key, value) in env {
            command.env(key, value);
        }
        Self(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..50 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn broker_and_vault_are_reached_over_tls_checked_against_the_configured_ca() {
    letterbox::install_crypto_provider();
    let dir = scratch_dir("transport");
    let certificates = certificates(&dir);
    // The broker runs as its own user: it must be able to read the key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&certificates.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let broker = PrivateBroker::start(&dir, Some(&certificates));
    let vault = PrivateVault::start(&dir, Some(&certificates));
    vault.ready().await;
    broker.ready().await;

    let ca = certificates.ca.display().to_string();
    let root = |with_ca: bool| {
        let mut env = vec![
            ("VAULT_ADDR", vault.addr()),
            ("VAULT_TOKEN", vault.root_token.clone()),
        ];
        if with_ca {
            env.push(("VAULT_CACERT", ca.clone()));
        }
        env
    };

    // Without the CA the admin tool refuses the server's certificate, and says so.
    let refused = run("letterbox-admin", &["setup", "--json"], &root(false));
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("UnknownIssuer"),
        "{}",
        stderr(&refused)
    );
    // A CA file that holds no certificate is a configuration error before any connection.
    let mut bad_ca = root(false);
    bad_ca.push((
        "VAULT_CACERT",
        dir.join("rabbitmq.conf").display().to_string(),
    ));
    let refused = run("letterbox-admin", &["setup", "--json"], &bad_ca);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains(&format!(
            "cannot use the CA certificate file {}/rabbitmq.conf (VAULT_CACERT): it holds no PEM certificate",
            dir.display()
        )),
        "{}",
        stderr(&refused)
    );

    let setup = run("letterbox-admin", &["setup", "--json"], &root(true));
    assert!(setup.status.success(), "{}", stderr(&setup));
    let setup: Value = serde_json::from_slice(&setup.stdout).unwrap();
    let credentials = |process: &str| {
        vec![
            ("VAULT_ADDR", vault.addr()),
            ("VAULT_CACERT", ca.clone()),
            (
                "VAULT_ROLE_ID",
                setup["roles"][process]["role_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            (
                "VAULT_SECRET_ID",
                setup["roles"][process]["secret_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
        ]
    };

    // The LLM key, written over HTTPS by a client that trusts the same CA.
    let key = format!("tls-key-{}", uuid::Uuid::new_v4().simple());
    vault.put_llm_key(&key, Some(&ca)).await;
    let created = run(
        "letterbox-admin",
        &[
            "tokens", "create", "--role", "submit", "--ttl", "1h", "--json",
        ],
        &credentials("admin"),
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();

    let stub = stub::spawn(StubConfig::new(key), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let amqps = format!("amqps://guest:guest@127.0.0.1:{}/%2f", broker.port);
    let worker_env = |with_ca: bool, metrics_port: u16| {
        let mut env = credentials("consumer");
        env.extend([
            ("AMQP_URL", amqps.clone()),
            ("LLM_BASE_URL", stub.base_url.clone()),
            ("LLM_MODEL", "letterbox-stub-1".to_owned()),
            (
                "LETTERBOX_METRICS_ADDR",
                format!("127.0.0.1:{metrics_port}"),
            ),
        ]);
        if with_ca {
            env.push(("LETTERBOX_AMQP_CA_CERT", ca.clone()));
        }
        env
    };

    // Without the CA the worker refuses the broker's certificate and exits.
    let refused = run("letterbox-consumer", &[], &worker_env(false, free_port()));
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("could not connect to RabbitMQ at AMQP_URL")
            && stderr(&refused).contains("UnknownIssuer"),
        "{}",
        stderr(&refused)
    );

    let metrics_port = free_port();
    let _worker = Running::spawn("letterbox-consumer", &worker_env(true, metrics_port));
    let http_port = free_port();
    let mut producer_env = credentials("producer");
    producer_env.extend([
        ("AMQP_URL", amqps.clone()),
        ("LETTERBOX_AMQP_CA_CERT", ca.clone()),
        ("LETTERBOX_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
    ]);
    let _producer = Running::spawn("letterbox-producer", &producer_env);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    for _ in 0..200 {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_port(metrics_port, "the worker").await;

    let response = http
        .post(format!("{base}/v1/cover-letters"))
        .bearer_auth(&token)
        .json(&json!({
            "resume_text": "Backend engineer: Rust, RabbitMQ, PostgreSQL, eight years of distributed systems.",
            "job_description": job_description(),
        }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "letterbox-stub-1");
    assert!(
        body["cover_letter"]
            .as_str()
            .is_some_and(|letter| letter.len() > 200)
    );
    assert_eq!(stub.request_count(), 1);

    // Every client connection the node holds is TLS (it has no other listener).
    let connections = broker.ctl(&["list_connections", "-q", "ssl"]);
    let flags = String::from_utf8_lossy(&connections.stdout);
    let flags: Vec<&str> = flags
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && *line != "ssl")
        .collect();
    assert_eq!(flags, ["true"; 4], "{flags:?}");

    drop((_producer, _worker, vault, broker));
    let _ = std::fs::remove_dir_all(&dir);
}
