use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};

use crate::BrokerError;

/// Opens a connection named `name` (shown in the broker's management UI), giving up after
/// `timeout`: lapin has no connect timeout of its own.
pub async fn connect(
    url: &SecretString,
    name: &str,
    timeout: Duration,
) -> Result<Connection, BrokerError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(
        timeout,
        Connection::connect(url.expose_secret(), properties),
    )
    .await
    .map_err(|_| BrokerError::Timeout(timeout))?
    .map_err(BrokerError::from)
}

/// The two connections every Letterbox process keeps: one to publish on, one to consume from.
/// Separate because the broker's flow control blocks a publishing connection, and replies or
/// deliveries must keep flowing while it does.
pub struct Connections {
    pub publish: Connection,
    pub consume: Connection,
}

impl Connections {
    /// Opens both, named `<process> publish` and `<process> consume`.
    pub async fn open(
        url: &SecretString,
        process: &str,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let publish = connect(url, &format!("{process} publish"), timeout).await?;
        let consume = connect(url, &format!("{process} consume"), timeout).await?;
        Ok(Self { publish, consume })
    }

    /// Closes both; close their channels first (see `Publisher::close`).
    pub async fn close(&self) {
        for connection in [&self.publish, &self.consume] {
            let _ = connection.close(200, "shutdown".into()).await;
        }
    }
}
