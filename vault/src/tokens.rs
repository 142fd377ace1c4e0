//! Client tokens: who may call Letterbox, in which role, until when, how fast.
//!
//! A token is `lbx_<id>_<secret>`: a public id (8 random bytes, hex) that names its record, and a
//! secret of 32 random bytes (256 bits, hex). Vault keeps only the SHA-256 of the whole token, at
//! `<tokens path>/<role>/<id>`, with the role, a name, the expiry and an optional rate; the token
//! itself is shown once, when it is created. A fast hash is right here: the secret has 256 bits
//! of entropy, so there is nothing to guess, and every request is verified.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Create cover letters.
    Submit,
    /// Read metrics and statistics.
    Monitor,
    /// Manage tokens and keys; allowed everything the other roles are.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Submit, Role::Monitor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Monitor => "monitor",
            Self::Admin => "admin",
        }
    }

    /// Whether a token of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self == needed || self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("unknown role {text:?}: expected submit, monitor or admin"))
    }
}

/// A request rate: `N/s`, `N/min` or `N/h` (also `sec`, `second`, `minute`, `hour`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub requests: u32,
    pub per_seconds: u32,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid rate {text:?}: expected e.g. 60/min, 5/s or 1000/h");
        let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let requests: u32 = count.trim().parse().map_err(|_| invalid())?;
        let per_seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(invalid()),
        };
        if requests == 0 {
            return Err(invalid());
        }
        Ok(Self {
            requests,
            per_seconds,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_seconds {
            1 => "s",
            60 => "min",
            3600 => "h",
            other => return write!(f, "{}/{other}s", self.requests),
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// What Vault stores for a token: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    pub role: Role,
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Seconds since the Unix epoch; the token is refused from then on.
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl TokenRecord {
    pub fn is_expired_at(&self, now_s: u64) -> bool {
        now_s >= self.expires_at
    }

    /// Whether `token` is the one this record was made from (constant time).
    pub fn matches(&self, token: &str) -> bool {
        let presented = hash(token);
        presented.as_bytes().ct_eq(self.hash.as_bytes()).into()
    }
}

/// A token just made: the secret to show once, and the record to store.
pub struct NewToken {
    pub token: SecretString,
    pub record: TokenRecord,
}

/// Makes a token for `role`, valid for `ttl` from `now_s`.
pub fn generate(
    role: Role,
    name: &str,
    ttl: Duration,
    rate: Option<Rate>,
    now_s: u64,
) -> Result<NewToken, String> {
    let random = SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    random
        .fill(&mut id)
        .map_err(|_| "no system randomness".to_owned())?;
    random
        .fill(&mut secret)
        .map_err(|_| "no system randomness".to_owned())?;
    let id = hex(&id);
    let token = format!("lbx_{id}_{}", hex(&secret));
    let record = TokenRecord {
        id: id.clone(),
        hash: hash(&token),
        role,
        name: name.to_owned(),
        created_at: now_s,
        expires_at: now_s.saturating_add(ttl.as_secs()),
        rate,
    };
    Ok(NewToken {
        token: SecretString::from(token),
        record,
    })
}

/// The id of a well-formed token, without touching its secret part.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("lbx_")?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 16
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(id)
}

/// SHA-256 of a token, hex.
pub fn hash(token: &str) -> String {
    hex(digest(&SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shows a token once, for a human or a script, and keeps it out of `Debug`.
pub fn reveal(token: &NewToken) -> &str {
    token.token.expose_secret()
}

/// A token's lifetime: a duration from one second to ten years.
pub fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_ttl(text)?;
    if ttl.is_zero() || ttl > Duration::from_secs(3650 * 86_400) {
        return Err(format!("a token lives between 1s and 3650d, not {text:?}"));
    }
    Ok(ttl)
}

/// Parses a duration such as `90d`, `12h`, `30m` or `45s`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("invalid duration {text:?}: expected e.g. 90d, 12h, 30m");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (count, unit) = text.split_at(split);
    let count: u64 = count.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs(count.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_matches_only_its_own_record() {
        let made = generate(Role::Submit, "web", Duration::from_secs(60), None, 1_000).unwrap();
        let token = reveal(&made).to_owned();
        assert_eq!(token.len(), 4 + 16 + 1 + 64);
        assert_eq!(token_id(&token), Some(made.record.id.as_str()));
        assert!(made.record.matches(&token));
        let mut forged = token.clone();
        forged.replace_range(
            token.len() - 1..,
            if token.ends_with('0') { "1" } else { "0" },
        );
        assert!(!made.record.matches(&forged));
        assert_eq!(made.record.expires_at, 1_060);
        assert!(!made.record.hash.contains(&token[21..]));
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        assert_eq!(token_id("lbx_abc_def"), None);
        assert_eq!(token_id("Bearer lbx_"), None);
        assert_eq!(
            token_id(&format!("lbx_{}_{}", "g".repeat(16), "0".repeat(64))),
            None
        );
    }

    #[test]
    fn rates_and_ttls_parse_the_documented_forms() {
        assert_eq!(
            "60/min".parse(),
            Ok(Rate {
                requests: 60,
                per_seconds: 60
            })
        );
        assert_eq!(
            "5/s".parse(),
            Ok(Rate {
                requests: 5,
                per_seconds: 1
            })
        );
        assert_eq!(
            "1000/hour".parse(),
            Ok(Rate {
                requests: 1000,
                per_seconds: 3600
            })
        );
        assert!("0/min".parse::<Rate>().is_err());
        assert!("ten/min".parse::<Rate>().is_err());
        assert_eq!(
            Rate {
                requests: 60,
                per_seconds: 60
            }
            .to_string(),
            "60/min"
        );
        assert_eq!(parse_ttl("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_ttl("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_token_ttl("0s").is_err());
        assert!(parse_token_ttl("3000000d").is_err());
        assert_eq!(
            parse_token_ttl("3650d"),
            Ok(Duration::from_secs(3650 * 86_400))
        );
    }

    #[test]
    fn admin_may_do_what_every_role_may() {
        assert!(Role::Admin.allows(Role::Monitor));
        assert!(Role::Admin.allows(Role::Submit));
        assert!(!Role::Submit.allows(Role::Monitor));
        assert!(!Role::Monitor.allows(Role::Submit));
    }
}
