//! What sits on the broker: job bodies are AES-256-GCM ciphertext under a data key from Vault's
//! transit engine, bound to their job, and still readable after the transit key rotates.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicGetOptions;
use letterbox::sealing::{KEY_HEADER, SealError, Sealer, job_aad};
use letterbox_vault::payload::TransitSealer;
use serde_json::json;

use crate::helpers::{
    Options, admin_store, amqp_url, job_description, spawn_app_with, vault_client,
};

fn sealer(store: Arc<letterbox_vault::SecretStore>) -> TransitSealer {
    TransitSealer::new(store, "transit", "letterbox-payload")
}

#[tokio::test]
async fn a_job_on_the_queue_is_ciphertext_bound_to_its_job() {
    // No workers: the job stays on the queue for us to read.
    let app = spawn_app_with(Options {
        job_timeout_ms: 4_000,
        ..Options::without_workers()
    })
    .await;
    let canary = "CANARY-7f3a-PAYLOAD";
    let body = json!({
        "resume_text": format!("Ada Quinlan {canary}\nBackend engineer: Rust services on RabbitMQ and PostgreSQL"),
        "job_description": job_description(),
        "options": {"company": format!("Acme {canary}")},
    });
    let request = app.post_json(&body);
    let read = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let url = secrecy::SecretString::from(amqp_url());
        let connection =
            letterbox_rabbitmq::connect(&url, "letterbox-tests reader", Duration::from_secs(5))
                .await
                .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let message = channel
            .basic_get(app.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("the job is on the queue");
        let _ = channel.close(200, "done".into()).await;
        let _ = connection.close(200, "done".into()).await;
        message.delivery
    };
    let (answer, delivery) = tokio::join!(request, read);
    assert_eq!(answer.status, 504, "{}", answer.body);

    let data = &delivery.data;
    assert!(
        !data.windows(canary.len()).any(|w| w == canary.as_bytes()),
        "plaintext on the broker"
    );
    assert!(
        !data.windows(11).any(|w| w == b"Ada Quinlan"),
        "plaintext on the broker"
    );
    let headers = delivery.properties.headers().as_ref().unwrap();
    let wrapped = match headers.inner().get(KEY_HEADER).unwrap() {
        lapin::types::AMQPValue::LongString(value) => value.to_string(),
        other => panic!("unexpected header {other:?}"),
    };
    assert!(wrapped.starts_with("vault:v"), "{wrapped}");
    let header_text = format!("{:?}", delivery.properties);
    assert!(!header_text.contains(canary));

    let job_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .unwrap()
        .to_string();
    let reader = sealer(Arc::new(admin_store().await));
    let plain = reader
        .open(&wrapped, &job_aad(&job_id), data)
        .await
        .unwrap();
    let job = letterbox::codec::decode_job(&plain).unwrap();
    assert_eq!(job.id.to_string(), job_id);
    assert!(job.resume.contains(canary));
    // Moved onto another job's message, the body does not decrypt.
    let other = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        reader.open(&wrapped, &job_aad(&other), data).await.err(),
        Some(SealError::Corrupt)
    );
    app.stop().await;
}

#[tokio::test]
async fn payloads_sealed_before_a_transit_key_rotation_still_open_after_it() {
    let store = Arc::new(admin_store().await);
    let before = sealer(Arc::clone(&store))
        .seal(b"aad", b"sealed before the rotation")
        .await
        .unwrap();
    vaultrs::transit::key::rotate(&vault_client(), "transit", "letterbox-payload")
        .await
        .unwrap();
    // A fresh sealer has nothing cached: it must unwrap the old data key through Vault.
    let after = sealer(Arc::clone(&store));
    let opened = after
        .open(&before.wrapped_key, b"aad", &before.ciphertext)
        .await
        .unwrap();
    assert_eq!(opened, b"sealed before the rotation");
    let version = |wrapped: &str| -> u32 {
        wrapped
            .strip_prefix("vault:v")
            .and_then(|rest| rest.split(':').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let new = after.seal(b"aad", b"sealed after").await.unwrap();
    assert!(
        version(&new.wrapped_key) > version(&before.wrapped_key),
        "{} vs {}",
        new.wrapped_key,
        before.wrapped_key
    );
}
