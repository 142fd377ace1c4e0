//! HTTPS on the ingress, with a CA the test makes.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use crate::helpers::{Options, Tls, spawn_app_with};

/// A CA and a certificate for `localhost` signed by it, written where the producer can read
/// them; returns the files and the CA's PEM.
fn certificates() -> (PathBuf, PathBuf, String, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("letterbox-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    (cert, key, ca.pem(), dir)
}

#[tokio::test]
async fn the_api_is_served_over_https_with_the_configured_certificate() {
    let (cert, key, ca_pem, dir) = certificates();
    let app = spawn_app_with(Options {
        tls: Some(Tls {
            cert,
            key,
            min_version: "1.2",
            ca_pem: ca_pem.clone(),
        }),
        ..Options::default()
    })
    .await;
    assert!(app.base.starts_with("https://localhost:"));
    let (status, body) = app.get_text(&format!("{}/healthz", app.base)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    // Plain HTTP to the same port gets no answer.
    let plain = app.base.replacen("https://", "http://", 1);
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .is_err()
    );
    // A client that does not trust the CA refuses the server.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .is_err()
    );
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tls_1_2_is_refused_when_the_minimum_is_1_3() {
    let (cert, key, ca_pem, dir) = certificates();
    let app = spawn_app_with(Options {
        tls: Some(Tls {
            cert,
            key,
            min_version: "1.3",
            ca_pem: ca_pem.clone(),
        }),
        ..Options::default()
    })
    .await;
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let old = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(
        old.get(format!("{}/healthz", app.base))
            .send()
            .await
            .is_err()
    );
    let current = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let response = current
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
