use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use letterbox::codec::{self, CONTENT_TYPE};
use letterbox::sealing::{KEY_HEADER, Sealer, job_aad, reply_aad};
use letterbox::shutdown::CancellationToken;
use letterbox::{Job, Outcome, Piece, Reply};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{BrokerError, Connections, Publisher, Topology, wrapped_key};

/// Why a registered reply will never come.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyLost {
    #[error("the reply queue closed before the reply arrived")]
    ChannelClosed,
    #[error("the reply could not be decoded")]
    Undecodable,
}

/// Whoever waits for a job's reply, and, for a streaming job, for the pieces before it.
struct Waiter {
    done: oneshot::Sender<Result<Reply, ReplyLost>>,
    chunks: Option<mpsc::UnboundedSender<Piece>>,
}

/// The ingress's reply queue and the one owner of the correlation map.
///
/// Each ingress process declares one exclusive, server-named queue and consumes it without acks:
/// replies are routed by correlation id (the job id) to whoever waits. The queue dies with the
/// connection, so a reply addressed to a dead ingress is dropped by the broker rather than kept.
pub struct ReplyRouter {
    queue: String,
    pending: Mutex<HashMap<Uuid, Waiter>>,
    open: AtomicBool,
}

impl ReplyRouter {
    /// Declares the reply queue, starts consuming it on a task owned by `tracker`, and stops
    /// when `shutdown` is cancelled or the channel closes (every waiter then learns the reply is
    /// lost rather than hanging).
    pub async fn start(
        connection: &Connection,
        sealer: Option<Arc<dyn Sealer>>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, BrokerError> {
        let channel = connection.create_channel().await?;
        let (queue, mut consumer) = private_reply_queue(&channel, "").await?;
        let router = Arc::new(Self {
            queue,
            pending: Mutex::new(HashMap::new()),
            open: AtomicBool::new(true),
        });
        let task_router = Arc::clone(&router);
        tracker.spawn(async move {
            loop {
                let delivery = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = consumer.next() => next,
                };
                match delivery {
                    Some(Ok(delivery)) => {
                        let correlation = delivery
                            .properties
                            .correlation_id()
                            .as_ref()
                            .and_then(|id| Uuid::parse_str(id.as_str()).ok());
                        let body = match (correlation, wrapped_key(&delivery.properties), &sealer) {
                            (Some(job_id), Some(wrapped), Some(sealer)) => sealer
                                .open(&wrapped, &reply_aad(&job_id.to_string()), &delivery.data)
                                .await
                                .ok()
                                .map(Zeroizing::new),
                            // This ingress seals nothing, so its replies come back in the clear.
                            (Some(_), None, None) => Some(Zeroizing::new(delivery.data)),
                            _ => None,
                        };
                        task_router.route(correlation, body.as_ref().map(|b| b.as_slice()));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "Reply consumer failed");
                        break;
                    }
                    None => break,
                }
            }
            task_router.close();
            // Closed and awaited here, before anyone closes the connection: a channel left to
            // lapin's close-on-drop races the connection's own close.
            let _ = channel.close(200, "shutdown".into()).await;
        });
        Ok(router)
    }

    /// The queue name workers reply to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// How many requests are waiting for a reply.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Registers interest in the reply to `job_id`, and with `stream` in the pieces of the letter
    /// before it; do this before publishing the job.
    pub fn expect(self: &Arc<Self>, job_id: Uuid, stream: bool) -> Result<PendingReply, ReplyLost> {
        let (tx, rx) = oneshot::channel();
        let (chunks_tx, chunks_rx) = if stream {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut pending = self.lock();
        // Checked under the lock, so `close` cannot drain the map between check and insert.
        if !self.is_open() {
            return Err(ReplyLost::ChannelClosed);
        }
        pending.insert(
            job_id,
            Waiter {
                done: tx,
                chunks: chunks_tx,
            },
        );
        Ok(PendingReply {
            rx,
            chunks: chunks_rx,
            router: Arc::clone(self),
            job_id,
        })
    }

    /// Hands a reply to its waiter; `body` is `None` when it could not be decrypted.
    fn route(&self, correlation: Option<Uuid>, body: Option<&[u8]>) {
        let Some(job_id) = correlation else {
            tracing::warn!("Dropped a reply without a valid correlation id");
            return;
        };
        // A body that does not decrypt or decode is not the worker's reply: anyone who can
        // publish to the reply queue could send one. Drop it and keep waiting for the real one.
        let reply = match body.map(codec::decode_reply) {
            Some(Ok(reply)) if reply.job_id == job_id => reply,
            _ => {
                tracing::warn!(%job_id, "Dropped a reply that could not be read");
                return;
            }
        };
        let reply = match reply.outcome {
            Outcome::Chunk(piece) => {
                // Pieces go to the stream in the order they arrived; the final reply after them.
                match self.lock().get(&job_id).and_then(|w| w.chunks.as_ref()) {
                    Some(chunks) => {
                        let _ = chunks.send(piece);
                    }
                    None => tracing::debug!(%job_id, "Dropped a piece of a letter nobody streams"),
                }
                return;
            }
            outcome => Reply { job_id, outcome },
        };
        let Some(waiter) = self.lock().remove(&job_id) else {
            // Late (after the deadline) or duplicate (a redelivered job answered twice).
            tracing::debug!(%job_id, "Dropped a reply nobody waits for");
            return;
        };
        let _ = waiter.done.send(Ok(reply));
    }

    fn close(&self) {
        let mut pending = self.lock();
        self.open.store(false, Ordering::Release);
        // Dropping the senders wakes every waiter with `ChannelClosed`.
        pending.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Waiter>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A reply someone waits for; dropping it (a timeout, a client gone) forgets the job id, so a
/// late reply is dropped instead of accumulating.
pub struct PendingReply {
    rx: oneshot::Receiver<Result<Reply, ReplyLost>>,
    chunks: Option<mpsc::UnboundedReceiver<Piece>>,
    router: Arc<ReplyRouter>,
    job_id: Uuid,
}

impl PendingReply {
    /// The pieces of a streaming job's letter, as they arrive (once; `None` for other jobs).
    pub fn take_chunks(&mut self) -> Option<mpsc::UnboundedReceiver<Piece>> {
        self.chunks.take()
    }

    /// The final reply: a borrowed wait, so the pieces can be read while it is pending.
    pub async fn reply(&mut self) -> Result<Reply, ReplyLost> {
        (&mut self.rx)
            .await
            .unwrap_or(Err(ReplyLost::ChannelClosed))
    }

    pub async fn wait(mut self) -> Result<Reply, ReplyLost> {
        (&mut self.rx)
            .await
            .unwrap_or(Err(ReplyLost::ChannelClosed))
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        self.router.lock().remove(&self.job_id);
    }
}

/// The ingress's whole view of the broker: submit a job, get something to await.
pub struct JobSubmitter {
    publisher: Publisher,
    router: Arc<ReplyRouter>,
    topology: Topology,
    /// Encrypts every job body before it leaves the process; `None` only without Vault.
    sealer: Option<Arc<dyn Sealer>>,
}

impl JobSubmitter {
    /// Declares the topology and starts the reply router. Publishing and consuming use separate
    /// connections, so flow control on the publishing one cannot stall replies.
    pub async fn start(
        connections: &Connections,
        sealer: Option<Arc<dyn Sealer>>,
        topology: Topology,
        timeout: Duration,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, BrokerError> {
        let publisher = Publisher::open(&connections.publish, timeout).await?;
        topology.declare(publisher.channel()).await?;
        let router =
            ReplyRouter::start(&connections.consume, sealer.clone(), tracker, shutdown).await?;
        Ok(Self {
            publisher,
            router,
            topology,
            sealer,
        })
    }

    /// Publishes `job` (confirmed, mandatory, expiring at its deadline) and returns the reply to
    /// wait for.
    pub async fn submit(&self, job: &Job) -> Result<PendingReply, BrokerError> {
        let pending = self
            .router
            .expect(job.id, job.stream)
            .map_err(|_| BrokerError::ReplyQueueClosed)?;
        let id = job.id.to_string();
        let plain = Zeroizing::new(codec::encode_job(job)?);
        let mut headers = FieldTable::default();
        let body = match &self.sealer {
            Some(sealer) => {
                let sealed = sealer
                    .seal(&job_aad(&id, self.router.queue()), &plain)
                    .await?;
                headers.insert(
                    KEY_HEADER.into(),
                    AMQPValue::LongString(sealed.wrapped_key.as_str().into()),
                );
                sealed.ciphertext
            }
            // Only an ingress without Vault (a development setup) publishes in the clear.
            None => plain.to_vec(),
        };
        let ttl_ms = job
            .deadline_ms
            .saturating_sub(letterbox::time::now_ms())
            .max(1);
        let properties = BasicProperties::default()
            .with_headers(headers)
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(2)
            .with_message_id(id.as_str().into())
            .with_correlation_id(id.as_str().into())
            .with_reply_to(self.router.queue().into())
            .with_expiration(ttl_ms.to_string().into())
            .with_timestamp(job.created_at_us / 1_000_000);
        self.publisher
            .publish("", &self.topology.jobs_queue, &body, properties, true)
            .await?;
        Ok(pending)
    }

    /// Ready while both the publishing channel and the reply consumer are up.
    pub fn is_ready(&self) -> bool {
        self.publisher.is_open() && self.router.is_open()
    }

    pub fn waiting(&self) -> usize {
        self.router.waiting()
    }

    /// Closes the publishing channel; call once no more jobs will be submitted.
    pub async fn close(&self) {
        self.publisher.close().await;
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }
}

/// Declares a reply queue only this channel's connection sees (server-named, exclusive, deleted
/// with the connection) and consumes it without acks, as RabbitMQ's direct reply pattern wants.
/// Returns the queue's name, for `reply_to`, and its consumer.
pub async fn private_reply_queue(
    channel: &lapin::Channel,
    consumer_tag: &str,
) -> Result<(String, lapin::Consumer), lapin::Error> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            consumer_tag.into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue.name().to_string(), consumer))
}
