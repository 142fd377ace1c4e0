//! Jobs that can never be answered are parked in the dead-letter queue with their reason, and
//! `letterbox-admin dlq` lists (ids, reasons, ages; never contents), replays and purges them.

use std::process::Command;
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

use crate::helpers::{Options, amqp_url, binary, spawn_app_with};

/// Runs `letterbox-admin dlq ARGS` off the test's runtime, whose thread also runs the worker.
async fn dlq(queue: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(binary("letterbox-admin"));
    command
        .env_clear()
        .env("AMQP_URL", amqp_url())
        .env("LETTERBOX_JOBS_QUEUE", queue)
        .arg("dlq")
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The parked jobs, waiting up to 5 s for `count` of them.
async fn parked(queue: &str, count: usize) -> Vec<Value> {
    let mut listed = Vec::new();
    for _ in 0..50 {
        let (ok, out, err) = dlq(queue, &["list", "--json"]).await;
        assert!(ok, "{err}");
        listed = serde_json::from_str(&out).unwrap();
        if listed.len() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    listed
}

#[tokio::test]
async fn a_forged_job_is_parked_with_its_reason_and_the_admin_tool_lists_replays_and_purges_it() {
    let app = spawn_app_with(Options::default()).await;
    let connection = letterbox_rabbitmq::connect(
        &letterbox_rabbitmq::Endpoint::new(secrecy::SecretString::from(amqp_url())),
        "letterbox-tests forger",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // A message that names a data key and a job id but whose body was never sealed by an ingress.
    let id = uuid::Uuid::new_v4().to_string();
    let canary = "CANARY-DLQ-5f1c";
    let mut headers = FieldTable::default();
    headers.insert(
        "x-letterbox-key".into(),
        AMQPValue::LongString("vault:v1:bm90IGEga2V5".into()),
    );
    channel
        .basic_publish(
            "".into(),
            app.queue.as_str().into(),
            BasicPublishOptions::default(),
            format!("{canary} garbage that is not ciphertext").as_bytes(),
            BasicProperties::default()
                .with_headers(headers)
                .with_correlation_id(id.as_str().into())
                .with_reply_to("amq.gen-nobody".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let listed = parked(&app.queue, 1).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["reason"], "undecryptable");
    assert!(listed[0]["age_ms"].as_u64().unwrap() < 60_000);
    // The listing shows ids, reasons and ages only; the table form too.
    let (ok, table, _) = dlq(&app.queue, &["list"]).await;
    assert!(ok);
    assert!(
        table.contains(&id) && table.contains("undecryptable"),
        "{table}"
    );
    assert!(!table.contains(canary));
    // Listing leaves the jobs where they are.
    assert_eq!(parked(&app.queue, 1).await.len(), 1);

    // Replayed, it is taken again, refused again and parked again: still one, still no LLM call.
    let (ok, _, err) = dlq(&app.queue, &["replay", &id]).await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("Job {id} is back on {}", app.queue)),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = parked(&app.queue, 1).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["reason"], "undecryptable");
    let (ok, _, err) = dlq(&app.queue, &["replay", "no-such-job"]).await;
    assert!(!ok);
    assert!(err.contains("no parked job with id no-such-job"), "{err}");

    let (ok, _, err) = dlq(&app.queue, &["purge"]).await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("Purged 1 jobs from {}.dead", app.queue)),
        "{err}"
    );
    assert_eq!(parked(&app.queue, 0).await.len(), 0);
    assert_eq!(app.stub.request_count(), 0);
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    app.stop().await;
}

#[tokio::test]
async fn a_job_workers_keep_dying_on_is_parked_and_its_client_told() {
    use futures_util::StreamExt;
    // A development setup (no tokens, unsealed jobs), so the test can publish a job itself.
    let app = spawn_app_with(Options {
        open: true,
        ..Options::default()
    })
    .await;
    let connection = letterbox_rabbitmq::connect(
        &letterbox_rabbitmq::Endpoint::new(secrecy::SecretString::from(amqp_url())),
        "letterbox-tests redeliveries",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let (reply_to, mut consumer) = letterbox_rabbitmq::private_reply_queue(&channel, "")
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4();
    let job = letterbox::Job {
        id,
        created_at_us: letterbox::time::now_us(),
        deadline_ms: letterbox::time::now_ms() + 30_000,
        resume: "Ada Quinlan\nBackend engineer: Rust services on RabbitMQ and PostgreSQL".into(),
        job_description: crate::helpers::job_description(),
        options: letterbox::LetterOptions::default(),
        stream: false,
    };
    // As it arrives after two workers died holding it: the queue counts deliveries this way.
    let mut headers = FieldTable::default();
    headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
    channel
        .basic_publish(
            "".into(),
            app.queue.as_str().into(),
            BasicPublishOptions::default(),
            &letterbox::codec::encode_job(&job).unwrap(),
            BasicProperties::default()
                .with_headers(headers)
                .with_correlation_id(id.to_string().as_str().into())
                .with_reply_to(reply_to.as_str().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("no reply")
        .unwrap()
        .unwrap();
    let reply = letterbox::codec::decode_reply(&delivery.data).unwrap();
    assert_eq!(reply.job_id, id);
    let letterbox::Outcome::Failed(failure) = reply.outcome else {
        panic!("a letter was written for a job past its delivery limit");
    };
    assert_eq!(failure.code, letterbox::FailureCode::DeliveryLimit);
    let listed = parked(&app.queue, 1).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.to_string().as_str());
    assert_eq!(listed[0]["reason"], "delivery_limit");
    assert_eq!(app.stub.request_count(), 0);
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    app.stop().await;
}
