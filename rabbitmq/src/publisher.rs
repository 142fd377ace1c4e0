use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use crate::BrokerError;

/// A channel in confirm mode. `publish` returns only once the broker has taken responsibility
/// for the message, and turns every other answer into an error:
/// a nack (a full queue with `reject-publish`) is `Rejected`; an ack carrying a returned message
/// (a `mandatory` publish nobody could route) is `Unroutable`; silence is `Timeout`.
///
/// Channels are cheap and lapin serialises frames per channel, so one publisher serves every
/// request of a process concurrently, with confirms pipelined.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    timeout: Duration,
}

impl Publisher {
    pub async fn open(connection: &Connection, timeout: Duration) -> Result<Self, BrokerError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel, timeout })
    }

    /// The channel, for declaring topology on it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Closes the channel and waits for the broker to confirm. Before closing a connection, close
    /// its channels this way: lapin's close-on-drop would race the connection's close.
    pub async fn close(&self) {
        if self.is_open() {
            let _ = self.channel.close(200, "shutdown".into()).await;
        }
    }

    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), BrokerError> {
        let timeout = self.timeout;
        let confirm = tokio::time::timeout(
            timeout,
            self.channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                payload,
                properties,
            ),
        )
        .await
        .map_err(|_| BrokerError::Timeout(timeout))??;
        let confirmation = tokio::time::timeout(timeout, confirm)
            .await
            .map_err(|_| BrokerError::Timeout(timeout))??;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(BrokerError::Unroutable),
            Confirmation::Nack(_) => Err(BrokerError::Rejected),
            // `open` always selects confirm mode, so this means the channel was replaced
            // underneath us; the broker's answer is unknown.
            Confirmation::NotRequested => Err(BrokerError::Timeout(timeout)),
        }
    }
}
