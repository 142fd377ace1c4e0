use std::path::Path;
use std::time::Duration;

use lapin::tcp::OwnedTLSConfig;
use lapin::{Connection, ConnectionProperties};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};

use crate::BrokerError;

/// Where the broker is and which certificate authorities an `amqps://` connection trusts.
#[derive(Clone)]
pub struct Endpoint {
    url: SecretString,
    /// Extra CA certificates (PEM) trusted beside the system's roots.
    ca_pem: Option<String>,
}

impl Endpoint {
    /// An endpoint that trusts only the system's roots (and needs none for `amqp://`).
    pub fn new(url: SecretString) -> Self {
        Self { url, ca_pem: None }
    }

    /// From the shared settings: reads and checks the CA file once, at start-up, so a wrong path
    /// or a file with no certificate is a clear configuration error rather than a failed
    /// handshake later.
    pub fn from_settings(
        settings: &letterbox::settings::BrokerSettings,
    ) -> Result<Self, BrokerError> {
        let mut endpoint = Self::new(settings.amqp_url.clone());
        if let Some(path) = &settings.amqp_ca_cert {
            endpoint.ca_pem = Some(read_ca(path)?);
            if !endpoint.is_tls() {
                tracing::warn!(
                    "LETTERBOX_AMQP_CA_CERT is set but AMQP_URL is not amqps://: the CA is unused \
                     and the broker connection is not encrypted"
                );
            }
        }
        Ok(endpoint)
    }

    /// True for `amqps://`.
    pub fn is_tls(&self) -> bool {
        self.url
            .expose_secret()
            .trim_start()
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("amqps://"))
    }
}

fn read_ca(path: &Path) -> Result<String, BrokerError> {
    let invalid = |reason: String| BrokerError::InvalidCa {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        certificate.map_err(|error| invalid(error.to_string()))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(invalid("it holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}

/// The largest frame Letterbox asks for unless `AMQP_URL` says otherwise (`?frame_max=`). lapin
/// keeps a receive and a send buffer of 32 frames per connection: at the broker's default of
/// 128 KiB that is 8 MiB a connection, most of an idle process's memory, while a job is a few
/// kilobytes (a larger one simply travels in several frames).
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// `url` parsed, with [`DEFAULT_FRAME_MAX`] when it names no frame size. The error never
/// repeats the URL, which may hold a password.
fn amqp_uri(url: &str) -> Result<lapin::uri::AMQPUri, BrokerError> {
    let mut uri: lapin::uri::AMQPUri = url.parse().map_err(|_| BrokerError::InvalidUrl)?;
    // The URI parser takes the host from a domain name only: for an IP address it would fall
    // back to `localhost`, connecting somewhere else than the URL says. The host is taken here.
    match url::Url::parse(url)
        .ok()
        .and_then(|parsed| parsed.host().map(|host| host.to_owned()))
    {
        Some(url::Host::Ipv4(address)) => uri.authority.host = address.to_string(),
        Some(url::Host::Ipv6(address)) => uri.authority.host = address.to_string(),
        Some(url::Host::Domain(_)) => {}
        None => return Err(BrokerError::InvalidUrl),
    }
    if uri.query.frame_max.is_none() {
        uri.query.frame_max = Some(DEFAULT_FRAME_MAX);
    }
    Ok(uri)
}

/// Opens a connection named `name` (shown in the broker's management UI), giving up after
/// `timeout`: lapin has no connect timeout of its own.
pub async fn connect(
    endpoint: &Endpoint,
    name: &str,
    timeout: Duration,
) -> Result<Connection, BrokerError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: endpoint.ca_pem.clone(),
    };
    let runtime = lapin::runtime::default_runtime()?;
    let uri = amqp_uri(endpoint.url.expose_secret())?;
    tokio::time::timeout(
        timeout,
        Connection::connect_uri_with_config(uri, properties, tls, runtime),
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
        endpoint: &Endpoint,
        process: &str,
        timeout: Duration,
    ) -> Result<Self, BrokerError> {
        let publish = connect(endpoint, &format!("{process} publish"), timeout).await?;
        let consume = connect(endpoint, &format!("{process} consume"), timeout).await?;
        Ok(Self { publish, consume })
    }

    /// Closes both; close their channels first (see `Publisher::close`).
    pub async fn close(&self) {
        for connection in [&self.publish, &self.consume] {
            let _ = connection.close(200, "shutdown".into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_decides_whether_the_connection_is_encrypted() {
        let endpoint = |url: &str| Endpoint::new(SecretString::from(url.to_owned()));
        assert!(endpoint("amqps://u:p@broker:5671/%2f").is_tls());
        assert!(endpoint("AMQPS://broker").is_tls());
        assert!(!endpoint("amqp://u:p@broker:5672/%2f").is_tls());
        assert!(!endpoint("amqp").is_tls());
    }

    #[test]
    fn the_frame_size_is_small_unless_the_url_names_one() {
        let uri = amqp_uri("amqp://u:p@broker:5672/%2f").unwrap();
        assert_eq!(uri.query.frame_max, Some(DEFAULT_FRAME_MAX));
        let uri = amqp_uri("amqp://u:p@broker:5672/%2f?frame_max=131072").unwrap();
        assert_eq!(uri.query.frame_max, Some(131_072));
        let error = amqp_uri("http://u:secret@broker").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn the_host_is_the_one_the_url_names() {
        let host = |url: &str| amqp_uri(url).unwrap().authority.host;
        assert_eq!(host("amqp://u:p@10.0.0.5:5672/%2f"), "10.0.0.5");
        assert_eq!(host("amqp://u:p@[::1]:5672/%2f"), "::1");
        assert_eq!(
            host("amqps://u:p@broker.internal:5671/%2f"),
            "broker.internal"
        );
        assert_eq!(host("amqp://u:p@127.0.0.1:5672/%2f"), "127.0.0.1");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_up_front() {
        let missing = read_ca(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            matches!(missing, BrokerError::InvalidCa { .. }),
            "{missing}"
        );
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let error = read_ca(&manifest).unwrap_err();
        assert!(
            error.to_string().ends_with("it holds no PEM certificate"),
            "{error}"
        );
    }
}
