//! The dead-letter queue as an operator sees it: which jobs are parked, why and since when
//! (never their contents, which stay sealed), put one back, or empty it.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde::Serialize;

use crate::jobs::{DEAD_AT_HEADER, DEAD_REASON_HEADER};
use crate::{BrokerError, Publisher, Topology};

/// One parked job: its id, why it was parked and how long ago. Nothing else is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub reason: String,
    /// Milliseconds since it was parked (or, failing that, since it was published).
    pub age_ms: Option<u64>,
}

pub struct DeadLetters {
    channel: Channel,
    publisher: Publisher,
    topology: Topology,
}

/// How long a listing waits for the next parked message before it decides it has seen them all.
const QUIET: Duration = Duration::from_millis(500);

impl DeadLetters {
    pub async fn open(
        connection: &Connection,
        topology: Topology,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let channel = connection.create_channel().await?;
        let publisher = Publisher::open(connection, timeout).await?;
        Ok(Self {
            channel,
            publisher,
            topology,
        })
    }

    /// How many messages the dead-letter queue holds (a passive declare: it is not created).
    async fn depth(&self) -> Result<u32, BrokerError> {
        let queue = self
            .channel
            .queue_declare(
                self.topology.dead_letter_queue().as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(queue.message_count())
    }

    /// Reads every parked message once, hands each to `visit` (which says whether to remove
    /// it), and returns the others to the queue. `visit` sees the properties only.
    async fn walk(
        &self,
        mut visit: impl FnMut(&BasicProperties, &[u8]) -> Visit,
    ) -> Result<(), BrokerError> {
        let depth = self.depth().await?;
        if depth == 0 {
            return Ok(());
        }
        let channel = self.channel.clone();
        channel
            .basic_qos(
                depth.min(u32::from(u16::MAX)) as u16,
                BasicQosOptions::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                self.topology.dead_letter_queue().as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut held = Vec::new();
        let mut seen = 0;
        while seen < depth {
            let Ok(Some(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await else {
                break;
            };
            let delivery = delivery?;
            seen += 1;
            match visit(&delivery.properties, &delivery.data) {
                Visit::Remove(republish) => {
                    if let Some(target) = republish {
                        let (queue, properties) = *target;
                        self.publisher
                            .publish("", &queue, &delivery.data, properties, true)
                            .await?;
                    }
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Visit::Keep => held.push(delivery.acker),
            }
        }
        let _ = channel
            .basic_cancel(consumer.tag(), Default::default())
            .await;
        for acker in held {
            acker.reject(BasicRejectOptions { requeue: true }).await?;
        }
        Ok(())
    }

    /// Every parked job: id, reason, age.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, BrokerError> {
        let now = letterbox::time::now_ms();
        let mut found = Vec::new();
        self.walk(|properties, _| {
            found.push(describe(properties, now));
            Visit::Keep
        })
        .await?;
        Ok(found)
    }

    /// Puts the parked job `id` back on the jobs queue (its reason and death headers removed);
    /// false when no parked job has that id. A worker still checks its deadline: a job replayed
    /// after it is answered `expired` rather than written.
    pub async fn replay(&self, id: &str) -> Result<bool, BrokerError> {
        let jobs_queue = self.topology.jobs_queue.clone();
        let mut replayed = false;
        self.walk(|properties, _| {
            if replayed || describe(properties, 0).id != id {
                return Visit::Keep;
            }
            replayed = true;
            Visit::Remove(Some(Box::new((jobs_queue.clone(), revived(properties)))))
        })
        .await?;
        Ok(replayed)
    }

    /// Empties the dead-letter queue; returns how many jobs it held.
    pub async fn purge(&self) -> Result<u32, BrokerError> {
        self.depth().await?;
        Ok(self
            .channel
            .queue_purge(
                self.topology.dead_letter_queue().as_str().into(),
                QueuePurgeOptions::default(),
            )
            .await?)
    }

    pub async fn close(&self) {
        self.publisher.close().await;
        let _ = self.channel.close(200, "done".into()).await;
    }
}

enum Visit {
    Keep,
    /// Ack it, after republishing it to this queue with these properties when given.
    Remove(Option<Box<(String, BasicProperties)>>),
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn number(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(n.saturating_mul(1000)),
        _ => None,
    }
}

/// Id, reason and age of a parked message, from its properties only.
fn describe(properties: &BasicProperties, now_ms: u64) -> DeadLetter {
    let id = properties
        .correlation_id()
        .as_ref()
        .or(properties.message_id().as_ref())
        .map_or_else(|| "(no id)".to_owned(), ToString::to_string);
    // Ours when a worker parked it; else the broker's own first x-death entry.
    let death = header(properties, "x-death").and_then(|value| match value {
        AMQPValue::FieldArray(deaths) => deaths.as_slice().first().and_then(|first| match first {
            AMQPValue::FieldTable(table) => Some(table.clone()),
            _ => None,
        }),
        _ => None,
    });
    let reason = header(properties, DEAD_REASON_HEADER)
        .and_then(text)
        .or_else(|| {
            death
                .as_ref()
                .and_then(|table| table.inner().get("reason").and_then(text))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let since_ms = header(properties, DEAD_AT_HEADER)
        .and_then(number)
        .or_else(|| {
            death
                .as_ref()
                .and_then(|table| table.inner().get("time").and_then(number))
        })
        .or_else(|| properties.timestamp().map(|s| s.saturating_mul(1000)));
    DeadLetter {
        id,
        reason,
        age_ms: since_ms.map(|since| now_ms.saturating_sub(since)),
    }
}

/// The properties of a parked message as it goes back on the jobs queue: the same ids, key and
/// reply-to; no death bookkeeping.
fn revived(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(original) = properties.headers() {
        for (name, value) in original.inner() {
            let bookkeeping = name.as_str().starts_with("x-death")
                || name.as_str().starts_with("x-first-death")
                || name.as_str().starts_with("x-last-death")
                || matches!(
                    name.as_str(),
                    DEAD_REASON_HEADER | DEAD_AT_HEADER | "x-delivery-count"
                );
            if !bookkeeping {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    crate::jobs::carried(properties, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_job_is_described_by_id_reason_and_age_only() {
        let mut headers = FieldTable::default();
        headers.insert(
            DEAD_REASON_HEADER.into(),
            AMQPValue::LongString("unreadable".into()),
        );
        headers.insert(DEAD_AT_HEADER.into(), AMQPValue::LongLongInt(1_000));
        let properties = BasicProperties::default()
            .with_correlation_id("job-1".into())
            .with_headers(headers);
        assert_eq!(
            describe(&properties, 4_000),
            DeadLetter {
                id: "job-1".into(),
                reason: "unreadable".into(),
                age_ms: Some(3_000),
            }
        );
        let revived = revived(&properties);
        assert!(header(&revived, DEAD_REASON_HEADER).is_none());
        assert_eq!(
            revived.correlation_id().as_ref().map(|id| id.as_str()),
            Some("job-1")
        );
    }

    #[test]
    fn the_brokers_own_death_record_is_read_when_a_worker_left_none() {
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        death.insert("time".into(), AMQPValue::Timestamp(10));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        let properties = BasicProperties::default()
            .with_message_id("job-2".into())
            .with_headers(headers);
        assert_eq!(
            describe(&properties, 12_500),
            DeadLetter {
                id: "job-2".into(),
                reason: "delivery_limit".into(),
                age_ms: Some(2_500),
            }
        );
    }
}
