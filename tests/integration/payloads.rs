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
        let connection = letterbox_rabbitmq::connect(
            &letterbox_rabbitmq::Endpoint::new(url.clone()),
            "letterbox-tests reader",
            Duration::from_secs(5),
        )
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
    let reply_to = delivery.properties.reply_to().as_ref().unwrap().to_string();
    let reader = sealer(Arc::new(admin_store().await));
    let plain = reader
        .open(&wrapped, &job_aad(&job_id, &reply_to), data)
        .await
        .unwrap();
    let job = letterbox::codec::decode_job(&plain).unwrap();
    assert_eq!(job.id.to_string(), job_id);
    assert!(job.resume.contains(canary));
    // Moved onto another job's message, the body does not decrypt.
    let other = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        reader
            .open(&wrapped, &job_aad(&other, &reply_to), data)
            .await
            .err(),
        Some(SealError::Corrupt)
    );
    // Nor does it with its reply sent to another queue.
    assert_eq!(
        reader
            .open(&wrapped, &job_aad(&job_id, "amq.gen-attacker"), data)
            .await
            .err(),
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

#[tokio::test]
async fn a_worker_taking_tokens_refuses_jobs_that_were_not_sealed() {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;
    // Workers in `tokens` mode (the default for the tests' apps) only answer sealed jobs: a job
    // published straight to the broker, unsealed, must not buy an LLM call.
    let app = spawn_app_with(Options::default()).await;
    let url = secrecy::SecretString::from(amqp_url());
    let connection = letterbox_rabbitmq::connect(
        &letterbox_rabbitmq::Endpoint::new(url.clone()),
        "letterbox-tests forger",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let id = uuid::Uuid::new_v4();
    let job = letterbox::Job {
        id,
        created_at_us: letterbox::time::now_us(),
        deadline_ms: letterbox::time::now_ms() + 10_000,
        resume: "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL".into(),
        job_description: job_description(),
        options: letterbox::LetterOptions::default(),
        stream: false,
    };
    let body = letterbox::codec::encode_job(&job).unwrap();
    channel
        .basic_publish(
            "".into(),
            app.queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_correlation_id(id.to_string().as_str().into())
                .with_reply_to("amq.rabbitmq.reply-to.nobody".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // It lands in the dead-letter queue, unanswered.
    let dead = format!("{}.dead", app.queue);
    let mut found = None;
    for _ in 0..50 {
        found = channel
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead_letter = found.expect("the unsealed job was dead-lettered");
    assert_eq!(
        dead_letter
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .unwrap()
            .to_string(),
        id.to_string()
    );
    assert_eq!(app.stub.request_count(), 0);
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    app.stop().await;
}
