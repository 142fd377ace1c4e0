use std::time::Duration;

/// What can go wrong talking to the broker, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot use the CA certificate file {path} (LETTERBOX_AMQP_CA_CERT): {reason}")]
    InvalidCa { path: String, reason: String },
    #[error(
        "AMQP_URL cannot be read: it needs amqp:// or amqps://, a host, and numbers where a port \
         or a query parameter (frame_max, heartbeat, …) takes one"
    )]
    InvalidUrl,
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message (the queue is full)")]
    Rejected,
    #[error("the message could not be routed to any queue")]
    Unroutable,
    #[error(
        "queue {queue} exists with other arguments than these settings declare; \
         delete it or use the settings it was created with"
    )]
    TopologyMismatch { queue: String, source: lapin::Error },
    #[error("the connection to the broker is down; reconnecting")]
    Disconnected,
    #[error("the reply queue is closed")]
    ReplyQueueClosed,
    #[error("{0}")]
    Seal(#[from] letterbox::sealing::SealError),
    #[error("message could not be encoded: {0}")]
    Codec(#[from] letterbox::codec::CodecError),
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
}

impl BrokerError {
    /// True when a later attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::TopologyMismatch { .. }
            | Self::InvalidCa { .. }
            | Self::InvalidUrl
            | Self::Codec(_) => false,
            Self::Seal(error) => error.is_transient(),
            _ => true,
        }
    }
}
