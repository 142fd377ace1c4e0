//! The page for end users at `/` (`LETTERBOX_WEB_PAGE=true`): a form that streams the letter in.
//!
//! The page holds no credential. Serving it sets a session cookie: HttpOnly (scripts cannot read
//! it), SameSite=Strict (no other site's page can send it), scoped to `/v1/cover-letters`, valid
//! for `LETTERBOX_WEB_SESSION_TTL_SECS`, and good for one thing only: writing letters, at
//! `LETTERBOX_WEB_RATE` per session and `LETTERBOX_WEB_TOTAL_RATE` for all sessions together.
//! Sessions are stateless: the cookie is an expiry and a random id signed with a key this
//! process drew at start (HMAC-SHA256), so a restart ends every session.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use letterbox_vault::auth::{AuthError, Caller};
use letterbox_vault::tokens::{Rate, Role};
use ring::rand::SecureRandom;

pub const COOKIE: &str = "letterbox_session";
/// How a page session's caller id starts (a token's id never does: it is hex).
pub const SESSION_PREFIX: &str = "web-";
const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");

/// Only this origin's own resources: no inline script, no other host, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub struct WebSettings {
    pub session_ttl: Duration,
    pub per_session: Rate,
    pub total: Rate,
    /// Served over HTTPS: the cookie is `Secure`.
    pub secure: bool,
}

pub struct WebPage {
    key: ring::hmac::Key,
    random: ring::rand::SystemRandom,
    settings: WebSettings,
    sessions: DefaultKeyedRateLimiter<String>,
    all: DefaultDirectRateLimiter,
    checks: std::sync::atomic::AtomicU64,
}

fn quota(rate: Rate) -> Quota {
    let requests = NonZeroU32::new(rate.requests).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(u64::from(rate.per_seconds.max(1))) / requests.get();
    Quota::with_period(period.max(Duration::from_micros(1)))
        .unwrap_or_else(|| Quota::per_second(requests))
        .allow_burst(requests)
}

impl WebPage {
    pub fn new(settings: WebSettings) -> anyhow::Result<Self> {
        let random = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &random)
            .map_err(|_| anyhow::anyhow!("no randomness for the web session key"))?;
        Ok(Self {
            key,
            random,
            sessions: DefaultKeyedRateLimiter::keyed(quota(settings.per_session)),
            all: DefaultDirectRateLimiter::direct(quota(settings.total)),
            settings,
            checks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The page, with a fresh session cookie.
    pub fn index(&self, now_s: u64) -> Response {
        let mut response = (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            INDEX,
        )
            .into_response();
        let headers = response.headers_mut();
        secure_headers(headers);
        if let Some(cookie) = self.cookie(now_s) {
            headers.insert(header::SET_COOKIE, cookie);
        }
        response
    }

    pub fn script() -> Response {
        let mut response = (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            SCRIPT,
        )
            .into_response();
        secure_headers(response.headers_mut());
        response
    }

    pub fn style() -> Response {
        let mut response =
            ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response();
        secure_headers(response.headers_mut());
        response
    }

    fn cookie(&self, now_s: u64) -> Option<HeaderValue> {
        let mut id = [0u8; 12];
        self.random.fill(&mut id).ok()?;
        let expiry = now_s + self.settings.session_ttl.as_secs();
        let claims = format!("v1.{expiry}.{}", hex(&id));
        let tag = ring::hmac::sign(&self.key, claims.as_bytes());
        let secure = if self.settings.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={claims}.{}; Path=/v1/cover-letters; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            hex(tag.as_ref()),
            self.settings.session_ttl.as_secs()
        ))
        .ok()
    }

    /// A request without a token that carries this page's session cookie: who it is, or why it
    /// may not write a letter.
    pub fn check(&self, headers: &HeaderMap, now_s: u64) -> Option<Result<Caller, AuthError>> {
        let value = session_cookie(headers)?;
        Some(self.check_value(value, headers, now_s))
    }

    fn check_value(
        &self,
        value: &str,
        headers: &HeaderMap,
        now_s: u64,
    ) -> Result<Caller, AuthError> {
        let (claims, tag) = value.rsplit_once('.').ok_or(AuthError::Invalid)?;
        let tag = unhex(tag).ok_or(AuthError::Invalid)?;
        ring::hmac::verify(&self.key, claims.as_bytes(), &tag).map_err(|_| AuthError::Invalid)?;
        let mut parts = claims.split('.');
        let (Some("v1"), Some(expiry), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid);
        };
        if expiry.parse::<u64>().map_err(|_| AuthError::Invalid)? <= now_s {
            return Err(AuthError::SessionExpired);
        }
        // The cookie is SameSite=Strict already; a browser that says the request comes from
        // another site is refused all the same.
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| site != "same-origin");
        if cross_site {
            return Err(AuthError::CrossSite);
        }
        let limited = |rate: Rate, wait: Duration| AuthError::SessionRateLimited {
            rate,
            retry_after_secs: u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX),
        };
        let now = DefaultClock::default().now();
        // The session's own limit first: what it refuses costs the other sessions nothing.
        let session = id.to_owned();
        self.sessions.check_key(&session).map_err(|not_until| {
            limited(self.settings.per_session, not_until.wait_time_from(now))
        })?;
        self.all
            .check()
            .map_err(|not_until| limited(self.settings.total, not_until.wait_time_from(now)))?;
        // Sessions that have not written for a while are forgotten now and then.
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(1024)
        {
            self.sessions.retain_recent();
        }
        Ok(Caller {
            token_id: format!("{SESSION_PREFIX}{}", &session[..8]),
            role: Role::Submit,
        })
    }
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The session cookie's value among the request's cookies.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(per_session: u32) -> WebPage {
        WebPage::new(WebSettings {
            session_ttl: Duration::from_secs(600),
            per_session: Rate {
                requests: per_session,
                per_seconds: 60,
            },
            total: Rate {
                requests: 1000,
                per_seconds: 60,
            },
            secure: true,
        })
        .unwrap()
    }

    fn cookie_of(response: &Response) -> String {
        response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn headers_with(cookie: &str) -> HeaderMap {
        let value = cookie.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_cookie_is_narrow_and_writes_letters_until_its_rate_is_used() {
        let page = page(2);
        let set = cookie_of(&page.index(1_000));
        assert!(set.starts_with("letterbox_session=v1.1600."), "{set}");
        assert!(
            set.ends_with(
                "; Path=/v1/cover-letters; Max-Age=600; HttpOnly; SameSite=Strict; Secure"
            ),
            "{set}"
        );
        let headers = headers_with(&set);
        let caller = page.check(&headers, 1_001).unwrap().unwrap();
        assert_eq!(caller.role, Role::Submit);
        assert!(caller.token_id.starts_with("web-"));
        assert_eq!(caller.token_id.len(), 12);
        assert!(page.check(&headers, 1_002).unwrap().is_ok());
        assert!(matches!(
            page.check(&headers, 1_003).unwrap(),
            Err(AuthError::SessionRateLimited { .. })
        ));
        // Another session has its own allowance.
        let other = headers_with(&cookie_of(&page.index(1_000)));
        assert!(page.check(&other, 1_004).unwrap().is_ok());
    }

    #[test]
    fn what_one_session_is_refused_costs_the_others_nothing() {
        let page = WebPage::new(WebSettings {
            session_ttl: Duration::from_secs(600),
            per_session: Rate {
                requests: 1,
                per_seconds: 60,
            },
            total: Rate {
                requests: 3,
                per_seconds: 60,
            },
            secure: false,
        })
        .unwrap();
        let session = || headers_with(&cookie_of(&page.index(1_000)));
        let greedy = session();
        assert!(page.check(&greedy, 1_001).unwrap().is_ok());
        for _ in 0..5 {
            assert!(matches!(
                page.check(&greedy, 1_001).unwrap(),
                Err(AuthError::SessionRateLimited { .. })
            ));
        }
        // Two more sessions fit in the total of 3; a fourth does not.
        assert!(page.check(&session(), 1_001).unwrap().is_ok());
        assert!(page.check(&session(), 1_001).unwrap().is_ok());
        assert!(matches!(
            page.check(&session(), 1_001).unwrap(),
            Err(AuthError::SessionRateLimited { .. })
        ));
    }

    #[test]
    fn forged_expired_foreign_and_cross_site_sessions_are_refused() {
        let page = page(10);
        let set = cookie_of(&page.index(1_000));
        let headers = headers_with(&set);
        assert!(matches!(
            page.check(&headers, 1_600).unwrap(),
            Err(AuthError::SessionExpired)
        ));
        // A later expiry with the old signature.
        let value = set.split(';').next().unwrap().replace(".1600.", ".9999.");
        assert!(matches!(
            page.check(&headers_with(&value), 1_001).unwrap(),
            Err(AuthError::Invalid)
        ));
        // Another process's (another key's) cookie.
        let foreign = cookie_of(&self::page(10).index(1_000));
        assert!(matches!(
            page.check(&headers_with(&foreign), 1_001).unwrap(),
            Err(AuthError::Invalid)
        ));
        for garbage in [
            "letterbox_session=",
            "letterbox_session=v1",
            "letterbox_session=a.b.c.zz",
        ] {
            assert!(matches!(
                page.check(&headers_with(garbage), 1_001).unwrap(),
                Err(AuthError::Invalid)
            ));
        }
        let mut cross = headers_with(&set);
        cross.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(matches!(
            page.check(&cross, 1_001).unwrap(),
            Err(AuthError::CrossSite)
        ));
        // No cookie at all: not this module's business.
        assert!(page.check(&HeaderMap::new(), 1_001).is_none());
    }
}
