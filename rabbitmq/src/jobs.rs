use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use letterbox::codec::{self, CONTENT_TYPE, CodecError};
use letterbox::sealing::{KEY_HEADER, SealError, Sealer, job_aad, reply_aad};
use letterbox::{Job, Reply};
use zeroize::Zeroizing;

use crate::{BrokerError, Publisher, Topology};

/// A worker's subscription to the jobs queue, with manual acks and a prefetch equal to the
/// most jobs the worker runs at once: a job waits in the queue, where any idle worker can take
/// it, rather than in a busy worker's buffer. (The broker fixes a subscription's prefetch when
/// it starts, so a worker whose adaptive limit is lower may hold a few jobs it has not started.)
pub struct JobStream {
    channel: Channel,
    consumer: Consumer,
    sealer: Arc<dyn Sealer>,
    queue: String,
}

impl JobStream {
    pub async fn open(
        connection: &Connection,
        sealer: Arc<dyn Sealer>,
        topology: &Topology,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Self, BrokerError> {
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        let consumer = channel
            .basic_consume(
                topology.jobs_queue.as_str().into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            channel,
            consumer,
            sealer,
            queue: topology.jobs_queue.clone(),
        })
    }

    /// Reads how many jobs wait in the queue, on this subscription's channel.
    pub fn depth_probe(&self) -> QueueDepth {
        QueueDepth {
            channel: self.channel.clone(),
            queue: self.queue.clone(),
        }
    }

    /// The next job; `None` once the subscription is cancelled or the channel is gone.
    pub async fn next(&mut self) -> Option<Result<JobDelivery, BrokerError>> {
        let delivery = match self.consumer.next().await? {
            Ok(delivery) => delivery,
            Err(error) => return Some(Err(error.into())),
        };
        let properties = &delivery.properties;
        let delivery_count = properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-delivery-count").and_then(as_u64));
        let correlation_id = properties
            .correlation_id()
            .as_ref()
            .map(ToString::to_string);
        let wrapped_key = crate::wrapped_key(properties);
        let reply_to = properties.reply_to().as_ref().map(ToString::to_string);
        let job = match (&correlation_id, &wrapped_key) {
            (Some(id), Some(wrapped)) => match self
                .sealer
                .open(
                    wrapped,
                    &job_aad(id, reply_to.as_deref().unwrap_or_default()),
                    &delivery.data,
                )
                .await
            {
                Ok(plain) => {
                    codec::decode_job(&Zeroizing::new(plain)).map_err(UnreadableJob::Undecodable)
                }
                Err(error) => Err(UnreadableJob::Unsealable(error)),
            },
            // An ingress without Vault sends jobs in the clear.
            (Some(_), None) => {
                codec::decode_job(&delivery.data).map_err(UnreadableJob::Undecodable)
            }
            (None, _) => Err(UnreadableJob::NotSealed),
        };
        Some(Ok(JobDelivery {
            job,
            wrapped_key,
            reply_to,
            correlation_id,
            redelivered: delivery.redelivered,
            previous_deliveries: delivery_count.unwrap_or(0),
            acker: delivery.acker,
            body: Zeroizing::new(delivery.data),
            properties: delivery.properties,
        }))
    }

    /// Stops new deliveries; jobs already delivered can still be acked.
    pub async fn cancel(&self) -> Result<(), BrokerError> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await?;
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Closes the channel (unacked deliveries go back to the queue).
    pub async fn close(&self) {
        if self.is_open() {
            let _ = self.channel.close(200, "shutdown".into()).await;
        }
    }
}

/// The jobs queue's backlog: messages ready for any worker, not those delivered and unacked.
pub struct QueueDepth {
    channel: Channel,
    queue: String,
}

impl QueueDepth {
    /// One passive declare: a round trip to the broker that changes nothing. The queue exists
    /// while the subscription does, so it cannot fail with 404 and close the channel.
    pub async fn ready(&self) -> Result<u32, BrokerError> {
        let queue = self
            .channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(queue.message_count())
    }
}

fn as_u64(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        _ => None,
    }
}

/// Why a delivered job cannot be worked on.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableJob {
    #[error("the job carries no correlation id: it was not published by Letterbox")]
    NotSealed,
    #[error("{0}")]
    Unsealable(SealError),
    #[error("{0}")]
    Undecodable(CodecError),
}

impl UnreadableJob {
    /// True when the job itself is fine and only the key service failed: try again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unsealable(error) if error.is_transient())
    }
}

/// One job as a worker receives it. Settle it exactly once with `ack`, `requeue` or
/// `dead_letter`.
pub struct JobDelivery {
    /// The decrypted, decoded job, or why it could not be read.
    pub job: Result<Job, UnreadableJob>,
    /// The data key the job was sealed under; its reply is sealed under the same.
    pub wrapped_key: Option<String>,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub redelivered: bool,
    /// How many times the broker delivered this message before (quorum queues count them).
    pub previous_deliveries: u64,
    acker: Acker,
    /// The message as it arrived (sealed, normally), for parking it in the dead-letter queue.
    body: Zeroizing<Vec<u8>>,
    properties: BasicProperties,
}

/// The properties of a job message moved to another queue: its ids, reply-to, content type and
/// timestamp, with `headers`, persistent, and no expiration.
pub(crate) fn carried(original: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut properties = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2);
    if let Some(value) = original.content_type() {
        properties = properties.with_content_type(value.clone());
    }
    if let Some(value) = original.correlation_id() {
        properties = properties.with_correlation_id(value.clone());
    }
    if let Some(value) = original.message_id() {
        properties = properties.with_message_id(value.clone());
    }
    if let Some(value) = original.reply_to() {
        properties = properties.with_reply_to(value.clone());
    }
    if let Some(value) = original.timestamp() {
        properties = properties.with_timestamp(*value);
    }
    properties
}

/// Headers a parked job carries: why, and when (ms since the epoch).
pub const DEAD_REASON_HEADER: &str = "x-letterbox-dead-reason";
pub const DEAD_AT_HEADER: &str = "x-letterbox-dead-at";

impl JobDelivery {
    pub async fn ack(&self) -> Result<(), BrokerError> {
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Hands the job back to the queue for any worker to take again.
    pub async fn requeue(&self) -> Result<(), BrokerError> {
        self.acker
            .reject(BasicRejectOptions { requeue: true })
            .await?;
        Ok(())
    }

    /// Sends the job to the dead-letter queue through the broker's own dead-lettering (which
    /// records only "rejected"); `Replier::park` records the reason.
    pub async fn dead_letter(&self) -> Result<(), BrokerError> {
        self.acker
            .reject(BasicRejectOptions { requeue: false })
            .await?;
        Ok(())
    }
}

/// Publishes replies to the reply queue named by each job, confirmed by the broker.
#[derive(Clone)]
pub struct Replier {
    publisher: Publisher,
    sealer: Arc<dyn Sealer>,
    /// Where jobs that can never be answered are parked.
    dead_letter_queue: String,
}

impl Replier {
    pub async fn open(
        connection: &Connection,
        sealer: Arc<dyn Sealer>,
        timeout: Duration,
        topology: &Topology,
    ) -> Result<Self, BrokerError> {
        Ok(Self {
            publisher: Publisher::open(connection, timeout).await?,
            sealer,
            dead_letter_queue: topology.dead_letter_queue(),
        })
    }

    /// Moves `delivery` to the dead-letter queue with `reason` in a header (body and headers
    /// otherwise as they came, so still sealed), then acks it. When the broker does not confirm
    /// the copy, the delivery is dead-lettered by the broker instead: never lost either way.
    pub async fn park(&self, delivery: &JobDelivery, reason: &str) -> Result<(), BrokerError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            DEAD_REASON_HEADER.into(),
            AMQPValue::LongString(reason.into()),
        );
        headers.insert(
            DEAD_AT_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(letterbox::time::now_ms()).unwrap_or(i64::MAX)),
        );
        // A parked job lives by the dead-letter queue's own TTL, not its old expiration.
        let properties = carried(&delivery.properties, headers);
        let parked = self
            .publisher
            .publish(
                "",
                &self.dead_letter_queue,
                &delivery.body,
                properties,
                true,
            )
            .await;
        match parked {
            Ok(()) => delivery.ack().await,
            Err(error) => {
                tracing::warn!(%error, "Could not park a job with its reason; letting the broker dead-letter it");
                delivery.dead_letter().await
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.publisher.is_open()
    }

    pub async fn close(&self) {
        self.publisher.close().await;
    }

    /// Not `mandatory`: when the ingress that asked is gone, so is its reply queue, and there is
    /// nobody left to tell.
    pub async fn send(
        &self,
        reply_to: &str,
        correlation_id: &str,
        wrapped_key: Option<&str>,
        reply: &Reply,
    ) -> Result<(), BrokerError> {
        let plain = Zeroizing::new(codec::encode_reply(reply)?);
        let mut headers = FieldTable::default();
        // A reply travels the way its job did: sealed under the job's key, or in the clear.
        let body = match wrapped_key {
            Some(wrapped_key) => {
                headers.insert(KEY_HEADER.into(), AMQPValue::LongString(wrapped_key.into()));
                self.sealer
                    .seal_with(wrapped_key, &reply_aad(correlation_id), &plain)
                    .await?
            }
            None => plain.to_vec(),
        };
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type(CONTENT_TYPE.into())
            .with_correlation_id(correlation_id.into());
        self.publisher
            .publish("", reply_to, &body, properties, false)
            .await
    }
}
