//! Letterbox's RabbitMQ adapter: the only code that knows lapin.
//!
//! The rest of Letterbox sees a small typed surface: declare the topology, submit a job and await
//! its reply (ingress), take jobs and send replies (workers). One file per role:
//! - `connection`: opening connections with a timeout and a name the broker's UI shows;
//! - `topology`: the queues and exchanges, declared idempotently by whichever side starts first;
//! - `publisher`: confirmed, mandatory publishing that turns nacks and returns into errors;
//! - `replies`: the ingress's reply queue and the one router that owns the correlation map;
//! - `link`: the ingress's self-healing session (reconnects with backoff after a broker outage);
//! - `jobs`: the workers' side, deliveries in and replies out.

mod connection;
mod dead;
mod error;
mod jobs;
mod link;
mod publisher;
mod replies;
mod topology;

pub use connection::{Connections, Endpoint, connect};
pub use dead::{DeadLetter, DeadLetters};
pub use error::BrokerError;
pub use jobs::{
    DEAD_AT_HEADER, DEAD_REASON_HEADER, JobDelivery, JobStream, QueueDepth, Replier, UnreadableJob,
};
pub use lapin::Connection;
pub use link::SubmitLink;
pub use publisher::Publisher;
pub use replies::{JobSubmitter, PendingReply, ReplyLost, ReplyRouter, private_reply_queue};
pub use topology::Topology;

/// The wrapped data key an encrypted message names in its headers.
pub(crate) fn wrapped_key(properties: &lapin::BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(letterbox::sealing::KEY_HEADER)? {
        lapin::types::AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}
