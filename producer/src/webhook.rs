//! Webhooks: a request with a `callback_url` is answered 202 at once, and the letter (or why
//! there is none) is POSTed to that URL when it is ready, signed, and retried with backoff.
//!
//! The signature is HMAC-SHA256 with the deployment's signing key (read from Vault) over
//! `"{timestamp}.{body}"`, sent as `Letterbox-Signature: v1=<hex>` beside
//! `Letterbox-Timestamp: <unix seconds>`: a receiver recomputes it over the raw body and rejects
//! stale timestamps, so a captured delivery cannot be replayed later.
//!
//! Callbacks never go to loopback, private, link-local or otherwise internal addresses unless
//! `LETTERBOX_WEBHOOK_ALLOW_PRIVATE=true`: the host is checked when the request arrives and every
//! address it resolves to is checked again at each delivery (a name that later resolves inside
//! the network is refused, not followed), and redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use letterbox::backoff::Backoff;
use letterbox::telemetry::CounterVec;
use letterbox_vault::{KvPath, SecretStore};
use secrecy::ExposeSecret;
use url::Url;
use uuid::Uuid;

/// The longest callback URL accepted.
const MAX_URL_CHARS: usize = 2048;

/// Waits between delivery attempts: full jitter under a ceiling doubling from 1 s to 5 min.
const RETRY: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(300),
};

pub const SIGNATURE_HEADER: &str = "letterbox-signature";
pub const TIMESTAMP_HEADER: &str = "letterbox-timestamp";
pub const JOB_ID_HEADER: &str = "letterbox-job-id";

/// Why a callback URL is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CallbackError {
    Invalid(&'static str),
    NotAllowed,
}

/// Checks a callback URL as it arrives: an absolute `http(s)` URL with a host, no credentials,
/// and, unless private addresses are allowed, not an IP literal inside the network (names are
/// checked at delivery, when they are resolved).
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, CallbackError> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(CallbackError::Invalid(
            "callback_url is longer than 2048 characters",
        ));
    }
    let url = Url::parse(text.trim())
        .map_err(|_| CallbackError::Invalid("callback_url is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CallbackError::Invalid(
            "callback_url must be an http or https URL",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackError::Invalid(
            "callback_url must not carry credentials",
        ));
    }
    let ip = match url.host() {
        None => return Err(CallbackError::Invalid("callback_url has no host")),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if !allow_private && (name == "localhost" || name.ends_with(".localhost")) {
                return Err(CallbackError::NotAllowed);
            }
            None
        }
    };
    if let Some(ip) = ip
        && !allow_private
        && !is_public(ip)
    {
        return Err(CallbackError::NotAllowed);
    }
    Ok(url)
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast, documentation or reserved, in either
/// family (an IPv4 address inside IPv6 is judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // Documentation 2001:db8::/32; NAT64 64:ff9b::/96 reaches IPv4 inside.
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)
                // IPv4-compatible ::a.b.c.d (deprecated), IPv4-translated ::ffff:0:a.b.c.d and
                // 6to4 2002::/16: IPv4 reached through a gateway, inside the network or not.
                || v6.segments()[..6].iter().all(|s| *s == 0)
                || v6.segments()[..6] == [0, 0, 0, 0, 0xffff, 0]
                || first == 0x2002)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (CGNAT) 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments 192.0.0.0/24, benchmarking 198.18.0.0/15, reserved 240/4.
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

/// Resolves callback hosts and refuses the ones that resolve inside the network, so a name
/// cannot be pointed at an internal address after it was accepted.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|addr| !is_public(addr.ip())) {
                return Err("the callback host resolves to a non-public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Signs `body` sent at `timestamp` (unix seconds): `v1=` and the hex HMAC-SHA256 of
/// `"{timestamp}.{body}"`.
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v1=");
    for byte in tag.as_ref() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Posts letters to callback URLs.
pub struct Webhooks {
    http: reqwest::Client,
    /// Ends the waits between attempts: at shutdown, what is not delivered is given up.
    shutdown: letterbox::shutdown::CancellationToken,
    store: Arc<SecretStore>,
    key: KvPath,
    allow_private: bool,
    max_attempts: u32,
    pub deliveries: CounterVec,
}

pub struct WebhookSettings {
    pub key_path: String,
    pub allow_private: bool,
    pub max_attempts: u32,
    pub timeout: Duration,
}

/// The signing key's field in its KV v2 secret.
pub const KEY_FIELD: &str = "signing_key";

impl Webhooks {
    pub fn new(
        store: Arc<SecretStore>,
        settings: &WebhookSettings,
        shutdown: letterbox::shutdown::CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(settings.timeout)
            .user_agent(concat!("letterbox/", env!("CARGO_PKG_VERSION")))
            // A redirect could lead anywhere, inside the network included.
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the receiver: a proxy would resolve the name itself, past the check
            // of where it points.
            .no_proxy();
        if !settings.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            http: builder.build()?,
            shutdown,
            store,
            key: KvPath::parse(&settings.key_path, KEY_FIELD)?,
            allow_private: settings.allow_private,
            max_attempts: settings.max_attempts.max(1),
            deliveries: CounterVec::new(
                "letterbox_webhook_deliveries_total",
                "Webhook deliveries, by outcome (delivered; refused: the receiver answered 4xx; gave_up: every attempt failed).",
                "outcome",
            ),
        })
    }

    /// Where the signing key is read from, for messages.
    pub fn key_path(&self) -> String {
        format!("{}/{}", self.key.mount, self.key.path)
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Whether the signing key can be read now: a request with a callback is refused at once
    /// when its letter could not be signed.
    pub async fn ready(&self) -> bool {
        self.store.read(&self.key).await.is_ok()
    }

    /// Delivers `body` to `url`, retrying network errors, timeouts, 408, 429 and 5xx with
    /// backoff; a receiver's other 4xx is final.
    pub async fn deliver(&self, url: &Url, job_id: Uuid, body: &[u8]) {
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let result = self.attempt(url, job_id, body).await;
            let retry_after = match result {
                Ok(()) => break "delivered",
                Err(Attempt::Final(status)) => {
                    tracing::warn!(%job_id, status, "The callback receiver refused the letter");
                    break "refused";
                }
                Err(Attempt::Again { retry_after, why }) => {
                    tracing::info!(%job_id, attempt, why, "Callback delivery failed");
                    retry_after
                }
            };
            if attempt >= self.max_attempts {
                break "gave_up";
            }
            let wait = RETRY
                .delay(attempt - 1)
                .max(retry_after.unwrap_or_default());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => {
                    tracing::warn!(%job_id, attempts = attempt, "Shutting down: the letter's callback is given up");
                    break "gave_up";
                }
            }
        };
        if outcome == "delivered" {
            tracing::info!(%job_id, attempts = attempt, "Letter delivered to its callback");
        } else if outcome == "gave_up" {
            tracing::warn!(%job_id, attempts = attempt, "Gave up delivering a letter to its callback");
        }
        self.deliveries.inc(outcome);
    }

    async fn attempt(&self, url: &Url, job_id: Uuid, body: &[u8]) -> Result<(), Attempt> {
        let key = self
            .store
            .read(&self.key)
            .await
            .map_err(|_| Attempt::Again {
                retry_after: None,
                why: "signing_key_unavailable",
            })?;
        let timestamp = letterbox::time::now_ms() / 1000;
        let signature = sign(key.value.expose_secret().as_bytes(), timestamp, body);
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .header(JOB_ID_HEADER, job_id.to_string())
            .body(body.to_vec())
            .send()
            .await
            .map_err(|error| Attempt::Again {
                retry_after: None,
                why: if error.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                },
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(300)));
            return Err(Attempt::Again {
                retry_after,
                why: "status",
            });
        }
        // A redirect is not followed, and counts as a refusal like any other answer.
        Err(Attempt::Final(code))
    }
}

enum Attempt {
    Final(u16),
    Again {
        retry_after: Option<Duration>,
        why: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "::10.0.0.1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn callback_urls_are_checked() {
        assert_eq!(
            check_url("https://hooks.example.com/letter?x=1", false)
                .unwrap()
                .as_str(),
            "https://hooks.example.com/letter?x=1"
        );
        for (url, error) in [
            (
                "not a url",
                CallbackError::Invalid("callback_url is not an absolute URL"),
            ),
            (
                "/relative",
                CallbackError::Invalid("callback_url is not an absolute URL"),
            ),
            (
                "ftp://example.com/",
                CallbackError::Invalid("callback_url must be an http or https URL"),
            ),
            (
                "file:///etc/passwd",
                CallbackError::Invalid("callback_url must be an http or https URL"),
            ),
            (
                "https://user:pw@example.com/",
                CallbackError::Invalid("callback_url must not carry credentials"),
            ),
            ("http://127.0.0.1:8080/", CallbackError::NotAllowed),
            ("http://[::1]/", CallbackError::NotAllowed),
            (
                "http://169.254.169.254/latest/meta-data/",
                CallbackError::NotAllowed,
            ),
            ("http://0x7f000001/", CallbackError::NotAllowed),
            ("http://2130706433/", CallbackError::NotAllowed),
            ("http://localhost:9000/", CallbackError::NotAllowed),
            ("http://api.LOCALHOST/", CallbackError::NotAllowed),
            ("http://localhost./", CallbackError::NotAllowed),
        ] {
            assert_eq!(check_url(url, false).unwrap_err(), error, "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(
            check_url(&long, false).unwrap_err(),
            CallbackError::Invalid("callback_url is longer than 2048 characters")
        );
        // Allowed by configuration: a receiver on this machine or inside the network.
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_url("http://localhost:5678/webhook/letters", true).is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_inside_the_network_are_refused_at_delivery() {
        use reqwest::dns::Resolve;
        // `localhost` resolves from /etc/hosts, no network needed; check_url would refuse the
        // name itself, so this is the resolver's own check, which also catches any other name
        // pointed at an internal address.
        let error = PublicOnly
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "the callback host resolves to a non-public address"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // As Python's hmac.new(b"Jefe", b'1700000000.{"job_id":"x"}', sha256) computes it.
        assert_eq!(
            sign(b"Jefe", 1_700_000_000, br#"{"job_id":"x"}"#),
            "v1=bf9f27c1ddf9ff1d686390924333b8aae4d808fcf189a1a3ff4d209115272ec7"
        );
    }
}
