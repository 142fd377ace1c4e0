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
