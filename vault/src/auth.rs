//! Checking a request's bearer token: one `Authenticator` per process holds the token records
//! it may accept (refreshed from Vault every few seconds, so a revocation reaches every replica
//! quickly) and one rate limiter per token (GCRA, from `governor`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use letterbox::shutdown::CancellationToken;

use crate::tokens::{Rate, Role, TokenRecord, token_id};
use crate::{SecretStore, TokensPath, VaultError};

/// Where client tokens are and how they are enforced; every process that checks tokens takes
/// these options.
#[derive(clap::Args, Clone)]
pub struct TokenArgs {
    /// `tokens`: every endpoint but the health checks needs a bearer token of the right role.
    /// `none`: no client authentication (development only; loopback addresses only).
    #[arg(long, env = letterbox::env::AUTH, value_enum, default_value = "tokens")]
    pub auth: AuthMode,

    /// KV v2 path under which client token records live.
    #[arg(long, env = letterbox::env::TOKENS_PATH, default_value = letterbox::settings::DEFAULT_TOKENS_PATH)]
    pub tokens_path: String,

    /// Rate limit of a token that names none (`N/s`, `N/min` or `N/h`).
    #[arg(long, env = letterbox::env::DEFAULT_RATE, default_value = "60/min")]
    pub default_rate: Rate,

    /// Seconds between two loads of the token records (revocations take effect within this).
    #[arg(long, env = letterbox::env::TOKEN_REFRESH_SECS, default_value_t = 10)]
    pub token_refresh_secs: u64,
}

impl Default for TokenArgs {
    fn default() -> Self {
        Self {
            auth: AuthMode::Tokens,
            tokens_path: letterbox::settings::DEFAULT_TOKENS_PATH.to_owned(),
            default_rate: Rate {
                requests: 60,
                per_seconds: 60,
            },
            token_refresh_secs: 10,
        }
    }
}

/// Whether clients must present a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// No client authentication: anyone who reaches the port may call every endpoint.
    None,
    /// Bearer tokens with roles and rate limits, checked against Vault.
    Tokens,
}

/// Why a request is refused before it does anything.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("send `Authorization: Bearer <token>`; see the README for how tokens are made")]
    Missing,
    #[error("the token is not valid: unknown, revoked or malformed")]
    Invalid,
    #[error("send one Authorization header, not several")]
    Ambiguous,
    #[error("the token has expired; ask an administrator for a new one")]
    Expired,
    #[error("this token's role ({held}) may not do this; it needs the {needed} role")]
    Forbidden { held: Role, needed: Role },
    #[error(
        "this token's rate limit ({rate}) is used up; retry in {retry_after_secs} s (the limit is \
         Letterbox's own, per token, not the LLM provider's)"
    )]
    RateLimited { rate: Rate, retry_after_secs: u32 },
    #[error("tokens could not be loaded from Vault yet; retry shortly")]
    NotLoaded,
    #[error("the page's session may only be used by the page itself, not from another site")]
    CrossSite,
    #[error("the page's session has expired; reload the page")]
    SessionExpired,
    #[error("this page session's letters ({rate}) are used up; retry in {retry_after_secs} s")]
    SessionRateLimited { rate: Rate, retry_after_secs: u32 },
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing
            | Self::Invalid
            | Self::Ambiguous
            | Self::Expired
            | Self::SessionExpired => "unauthorized",
            Self::Forbidden { .. } | Self::CrossSite => "forbidden",
            Self::RateLimited { .. } | Self::SessionRateLimited { .. } => "rate_limited",
            Self::NotLoaded => "auth_unavailable",
        }
    }

    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing
            | Self::Invalid
            | Self::Ambiguous
            | Self::Expired
            | Self::SessionExpired => 401,
            Self::Forbidden { .. } | Self::CrossSite => 403,
            Self::RateLimited { .. } | Self::SessionRateLimited { .. } => 429,
            Self::NotLoaded => 503,
        }
    }

    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::SessionRateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::NotLoaded => Some(5),
            _ => None,
        }
    }
}

/// Who made a request, once the token checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
}

struct Limiter {
    rate: Rate,
    limiter: DefaultDirectRateLimiter,
}

pub struct Authenticator {
    /// Roles whose records this process loads (a worker loads no client tokens).
    roles: Vec<Role>,
    records: RwLock<Arc<HashMap<String, TokenRecord>>>,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    default_rate: Rate,
    loaded: AtomicBool,
}

impl Authenticator {
    pub fn new(roles: &[Role], default_rate: Rate) -> Self {
        Self {
            roles: roles.to_vec(),
            records: RwLock::new(Arc::new(HashMap::new())),
            limiters: Mutex::new(HashMap::new()),
            default_rate,
            loaded: AtomicBool::new(false),
        }
    }

    /// Replaces the records with what Vault holds now.
    pub async fn refresh(
        &self,
        store: &SecretStore,
        path: &TokensPath,
    ) -> Result<usize, VaultError> {
        let records = store.list_tokens(path, &self.roles).await?;
        let count = records.len();
        let map: HashMap<String, TokenRecord> = records
            .into_iter()
            .map(|record| (record.id.clone(), record))
            .collect();
        // Limiters of tokens that are gone go too; the others keep their state.
        lock(&self.limiters).retain(|id, _| map.contains_key(id));
        *self
            .records
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(map);
        self.loaded.store(true, Ordering::Release);
        Ok(count)
    }

    /// Refreshes every `every` until `shutdown`; a failed refresh keeps the last records.
    pub async fn keep_fresh(
        self: Arc<Self>,
        store: Arc<SecretStore>,
        path: TokensPath,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let mut result = self.refresh(&store, &path).await;
            if matches!(result, Err(VaultError::Forbidden { .. })) {
                // The process's Vault token may have been revoked: log in again, then retry.
                if store.relogin().await.is_ok() {
                    result = self.refresh(&store, &path).await;
                }
            }
            if let Err(error) = result {
                tracing::warn!(%error, "Could not refresh client tokens; keeping the last ones");
            }
        }
    }

    /// Checks the `Authorization` header's value for a token allowed to do what `needed` may,
    /// and takes one request from its rate limit.
    pub fn check(
        &self,
        authorization: Option<&str>,
        needed: Role,
        now_s: u64,
    ) -> Result<Caller, AuthError> {
        if !self.loaded.load(Ordering::Acquire) {
            return Err(AuthError::NotLoaded);
        }
        // The scheme is case-insensitive (RFC 9110): `Bearer`, `bearer`, `BEARER`.
        let token = authorization
            .and_then(|value| value.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(AuthError::Missing)?;
        let id = token_id(token).ok_or(AuthError::Invalid)?;
        let record = {
            let records = self
                .records
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            records.get(id).cloned().ok_or(AuthError::Invalid)?
        };
        if !record.matches(token) {
            return Err(AuthError::Invalid);
        }
        if record.is_expired_at(now_s) {
            return Err(AuthError::Expired);
        }
        if !record.role.allows(needed) {
            return Err(AuthError::Forbidden {
                held: record.role,
                needed,
            });
        }
        let rate = record.rate.unwrap_or(self.default_rate);
        let limiter = self.limiter(&record.id, rate);
        if let Err(not_until) = limiter.limiter.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after_secs =
                u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
            return Err(AuthError::RateLimited {
                rate,
                retry_after_secs,
            });
        }
        Ok(Caller {
            token_id: record.id,
            role: record.role,
        })
    }

    fn limiter(&self, id: &str, rate: Rate) -> Arc<Limiter> {
        let mut limiters = lock(&self.limiters);
        if let Some(existing) = limiters.get(id)
            && existing.rate == rate
        {
            return Arc::clone(existing);
        }
        let limiter = Arc::new(Limiter {
            rate,
            limiter: DefaultDirectRateLimiter::direct(quota(rate)),
        });
        limiters.insert(id.to_owned(), Arc::clone(&limiter));
        limiter
    }
}

/// The request's one `Authorization` value (`None` when absent or not text); several are refused
/// rather than one of them picked.
pub fn sole_authorization<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<&'a str>, AuthError> {
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::Ambiguous);
    }
    Ok(first.and_then(|value| std::str::from_utf8(value).ok()))
}

/// Refuses `LETTERBOX_AUTH=none` on a listener other clients can reach: an unauthenticated
/// service is a development convenience, and only on a loopback address.
pub fn check_open_listener(mode: AuthMode, addr: std::net::SocketAddr) -> Result<(), String> {
    if mode == AuthMode::None && !addr.ip().is_loopback() {
        return Err(format!(
            "LETTERBOX_AUTH=none is only allowed on a loopback address, not {addr}: set \
             LETTERBOX_AUTH=tokens (the default) or listen on 127.0.0.1"
        ));
    }
    Ok(())
}

/// Loads the token records of `roles` from `path` and keeps them fresh every `refresh` on a task
/// owned by `tracker`. A configuration error (no such mount, no policy) fails here, once; an
/// unreachable Vault is reported and retried, and requests are answered 503 until it answers.
pub async fn start(
    store: Arc<SecretStore>,
    args: &TokenArgs,
    roles: &[Role],
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> Result<Option<Arc<Authenticator>>, VaultError> {
    if args.auth == AuthMode::None {
        tracing::warn!(
            "Client authentication is off (LETTERBOX_AUTH=none): anyone who reaches this port may use it"
        );
        return Ok(None);
    }
    let path = TokensPath::parse(&args.tokens_path)?;
    let refresh = Duration::from_secs(args.token_refresh_secs);
    let authenticator = Arc::new(Authenticator::new(roles, args.default_rate));
    match authenticator.refresh(&store, &path).await {
        Ok(count) => tracing::info!(tokens = count, "Client tokens loaded"),
        Err(error) if error.is_transient() => {
            tracing::warn!(%error, "Vault is not answering yet; client tokens will be loaded later");
        }
        Err(error) => return Err(error),
    }
    tracker.spawn(Arc::clone(&authenticator).keep_fresh(
        store,
        path,
        refresh.max(Duration::from_millis(100)),
        shutdown,
    ));
    Ok(Some(authenticator))
}

/// `requests` per `per_seconds`, with the whole allowance available as a burst.
fn quota(rate: Rate) -> Quota {
    let burst = NonZeroU32::new(rate.requests).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(u64::from(rate.per_seconds)) / burst.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_listener_must_be_on_loopback() {
        let addr = |text: &str| text.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(
            check_open_listener(AuthMode::None, addr("127.0.0.1:8080")),
            Ok(())
        );
        assert_eq!(
            check_open_listener(AuthMode::None, addr("[::1]:8080")),
            Ok(())
        );
        assert_eq!(
            check_open_listener(AuthMode::Tokens, addr("0.0.0.0:8080")),
            Ok(())
        );
        assert_eq!(
            check_open_listener(AuthMode::None, addr("0.0.0.0:8080")),
            Err(
                "LETTERBOX_AUTH=none is only allowed on a loopback address, not 0.0.0.0:8080: set \
                 LETTERBOX_AUTH=tokens (the default) or listen on 127.0.0.1"
                    .to_owned()
            )
        );
    }
    use crate::tokens::{generate, reveal};

    fn loaded(records: Vec<TokenRecord>, default_rate: Rate) -> Authenticator {
        let auth = Authenticator::new(&Role::ALL, default_rate);
        *auth.records.write().unwrap() =
            Arc::new(records.into_iter().map(|r| (r.id.clone(), r)).collect());
        auth.loaded.store(true, Ordering::Release);
        auth
    }

    const PLENTY: Rate = Rate {
        requests: 1000,
        per_seconds: 1,
    };

    #[test]
    fn one_authorization_header_or_none() {
        let one: [&[u8]; 1] = [b"Bearer x"];
        assert_eq!(sole_authorization(one.into_iter()), Ok(Some("Bearer x")));
        assert_eq!(sole_authorization(std::iter::empty()), Ok(None));
        let two: [&[u8]; 2] = [b"Bearer x", b"Bearer y"];
        assert_eq!(
            sole_authorization(two.into_iter()),
            Err(AuthError::Ambiguous)
        );
        let binary: [&[u8]; 1] = [b"Bearer \xff"];
        assert_eq!(sole_authorization(binary.into_iter()), Ok(None));
    }

    #[test]
    fn roles_decide_what_a_valid_token_may_do() {
        let submit = generate(Role::Submit, "app", Duration::from_secs(60), None, 100).unwrap();
        let auth = loaded(vec![submit.record.clone()], PLENTY);
        let header = format!("Bearer {}", reveal(&submit));
        assert_eq!(
            auth.check(Some(&header), Role::Submit, 100),
            Ok(Caller {
                token_id: submit.record.id.clone(),
                role: Role::Submit
            })
        );
        assert_eq!(
            auth.check(Some(&header), Role::Monitor, 100),
            Err(AuthError::Forbidden {
                held: Role::Submit,
                needed: Role::Monitor
            })
        );
        assert_eq!(
            auth.check(Some(&header), Role::Submit, 160),
            Err(AuthError::Expired)
        );
        assert_eq!(auth.check(None, Role::Submit, 100), Err(AuthError::Missing));
        assert_eq!(
            auth.check(Some("Basic abc"), Role::Submit, 100),
            Err(AuthError::Missing)
        );
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let header = format!("{scheme} {}", reveal(&submit));
            assert!(
                auth.check(Some(&header), Role::Submit, 100).is_ok(),
                "{scheme}"
            );
        }
        assert_eq!(
            auth.check(Some(reveal(&submit)), Role::Submit, 100),
            Err(AuthError::Missing)
        );
        let other = generate(Role::Submit, "x", Duration::from_secs(60), None, 100).unwrap();
        assert_eq!(
            auth.check(
                Some(&format!("Bearer {}", reveal(&other))),
                Role::Submit,
                100
            ),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_token_over_its_rate_is_told_when_to_retry() {
        let rate = Rate {
            requests: 2,
            per_seconds: 60,
        };
        let token = generate(
            Role::Submit,
            "app",
            Duration::from_secs(60),
            Some(rate),
            100,
        )
        .unwrap();
        let auth = loaded(vec![token.record.clone()], PLENTY);
        let header = format!("Bearer {}", reveal(&token));
        assert!(auth.check(Some(&header), Role::Submit, 100).is_ok());
        assert!(auth.check(Some(&header), Role::Submit, 100).is_ok());
        match auth.check(Some(&header), Role::Submit, 100) {
            Err(AuthError::RateLimited {
                rate: limited,
                retry_after_secs,
            }) => {
                assert_eq!(limited, rate);
                assert!((1..=31).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_accepted_before_the_first_load() {
        let auth = Authenticator::new(&Role::ALL, PLENTY);
        assert_eq!(
            auth.check(Some("Bearer x"), Role::Submit, 0),
            Err(AuthError::NotLoaded)
        );
    }
}
