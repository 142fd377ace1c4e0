use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::BrokerError;

/// The broker objects Letterbox needs, derived from the jobs queue's name.
///
/// - `<jobs>`: a quorum queue (replicated, durable) holding jobs for the workers; bounded by
///   `max_length` with `reject-publish`, so a full queue nacks the publish (backpressure) instead
///   of dropping old jobs; a job delivered `delivery_limit` times without an ack is dead-lettered
///   rather than looping forever.
/// - `<jobs>.dlx`: a direct exchange receiving dead letters (rejected, expired, over the limit).
/// - `<jobs>.dead`: a quorum queue holding them, each for at most `dead_letter_ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub jobs_queue: String,
    pub max_length: u32,
    pub delivery_limit: u32,
    pub dead_letter_ttl_ms: u32,
}

impl Topology {
    pub fn new(jobs_queue: impl Into<String>) -> Self {
        Self {
            jobs_queue: jobs_queue.into(),
            max_length: 10_000,
            delivery_limit: 3,
            dead_letter_ttl_ms: 86_400_000,
        }
    }

    /// The topology the shared broker settings describe.
    pub fn from_settings(settings: &letterbox::settings::BrokerSettings) -> Self {
        Self {
            max_length: settings.queue_max_length,
            delivery_limit: settings.max_deliveries,
            ..Self::new(settings.jobs_queue.clone())
        }
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.jobs_queue)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.jobs_queue)
    }

    /// Declares everything; succeeds when it all exists already with the same arguments.
    pub async fn declare(&self, channel: &Channel) -> Result<(), BrokerError> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), long_string("quorum"));
        dead_args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(self.dead_letter_ttl_ms.into()),
        );
        let dead = self.dead_letter_queue();
        channel
            .queue_declare(dead.as_str().into(), durable, dead_args)
            .await
            .map_err(|source| BrokerError::TopologyMismatch {
                queue: dead.clone(),
                source,
            })?;
        channel
            .queue_bind(
                dead.as_str().into(),
                self.dead_letter_exchange().into(),
                self.jobs_queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.jobs_queue),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        args.insert("x-overflow".into(), long_string("reject-publish"));
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(self.max_length.into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit.into()),
        );
        channel
            .queue_declare(self.jobs_queue.as_str().into(), durable, args)
            .await
            .map_err(|source| BrokerError::TopologyMismatch {
                queue: self.jobs_queue.clone(),
                source,
            })?;
        Ok(())
    }

    /// Removes the queues and the exchange (tests clean up with this).
    pub async fn delete(&self, channel: &Channel) -> Result<(), BrokerError> {
        for queue in [self.jobs_queue.clone(), self.dead_letter_queue()] {
            channel
                .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(self.dead_letter_exchange().into(), Default::default())
            .await?;
        Ok(())
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
