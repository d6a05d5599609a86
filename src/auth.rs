//! Bearer tokens with scopes on the HTTP and WebSocket listeners (`auth_token_file`,
//! `auth_tokens`; `docs/security.md`, "Tokens").
//!
//! The server never holds a token, only its SHA-256: a copy of the token file or of
//! the configuration lets nobody in. A presented token is hashed and its hash compared
//! with every entry's in constant time, so neither the comparison nor which entry
//! matched shows in the answer's timing. The hash is enough (no salt, no slow hash):
//! tokens are 32 random bytes, so there is nothing to guess from a dictionary.
//!
//! A reload (SIGHUP) reads the file again and swaps the whole set at once; requests
//! already authorised keep going, new ones see the new set. A reload that fails keeps
//! the previous set.
//!
//! # Token file format
//!
//! UTF-8 text, at most [`TOKEN_FILE_BYTES_MAX`] bytes, lines ended by LF (a CR before
//! the LF is ignored). A line that is empty after trimming spaces and tabs, or whose
//! first non-blank byte is `#`, is ignored. Every other line is one token, three
//! fields separated by one or more spaces or tabs:
//!
//! ```text
//! sha256:<64 hex digits> <scopes> <name>
//! ```
//!
//! - the SHA-256 of the whole token as the client sends it (prefix `rst_` included),
//!   hex, either case;
//! - the scopes: one or more of `write`, `read`, `metrics`, separated by `,` (no
//!   spaces), each at most once;
//! - a name, 1..=[`NAME_BYTES_MAX`] bytes of `A-Z a-z 0-9 . _ -`, unique in the set:
//!   it names the token in refusals and on stderr.
//!
//! `auth_tokens` holds the same lines separated by `;` instead of LF. Both sources
//! together hold at most `auth_tokens_max` tokens; the same hash or name twice is an
//! error.

use std::{
    fmt,
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, RwLock, atomic::Ordering},
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{config::Settings, http_proto::HttpError, stats::AuthStats};

/// What every generated token starts with: recognisable in a leaked file or a log
/// (secret scanners can match it), and never mistaken for another system's key.
pub const TOKEN_PREFIX: &str = "rst_";

/// Random bytes in a generated token: 256 bits, beyond any search.
pub const TOKEN_RANDOM_BYTES: usize = 32;

/// Largest token file read, in bytes: about 6,000 lines of 160 bytes, more than
/// `auth_tokens_max` allows at its top; a larger file is refused, not read in part.
pub const TOKEN_FILE_BYTES_MAX: u64 = 1 << 20;

/// Longest token a client may present, in bytes; a longer one is refused as invalid
/// without being hashed. Generated tokens are 47 bytes.
pub const TOKEN_BYTES_MAX: usize = 256;

/// Longest token name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// What a token may do. Each route needs exactly one (`docs/security.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Ingest: `POST /ingest`, `POST /v1/logs` (OTLP included).
    Write,
    /// Read records: `GET /v1/logs`, WebSocket subscriptions, `GET /v1/config`,
    /// `GET /v1/aggregates`.
    Read,
    /// `GET /stats`, `GET /metrics`.
    Metrics,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Write, Scope::Read, Scope::Metrics];

    /// The scope's name in the token file and in refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Write => 1,
            Scope::Read => 2,
            Scope::Metrics => 4,
        }
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Whether `s` is in the set.
    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    /// Parses `write,read`: one or more scope names separated by commas.
    ///
    /// # Errors
    /// An unknown or repeated name, or an empty list, with the reason.
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut set = Scopes(0);
        for part in s.split(',') {
            let scope = Scope::ALL
                .into_iter()
                .find(|c| c.as_str() == part)
                .ok_or_else(|| format!("unknown scope {part:?} (write, read or metrics)"))?;
            if set.contains(scope) {
                return Err(format!("scope {part:?} given twice"));
            }
            set.0 |= scope.bit();
        }
        Ok(set)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Scope::as_str)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// One token as the server knows it.
#[derive(Clone)]
struct Entry {
    hash: [u8; 32],
    scopes: Scopes,
    name: String,
}

/// Why tokens could not be loaded: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file cannot be opened or read.
    #[error("token file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The token file is over [`TOKEN_FILE_BYTES_MAX`].
    #[error("token file {} is larger than {TOKEN_FILE_BYTES_MAX} bytes", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A line that is not a token entry.
    #[error("{source_name}, line {line}: {why}")]
    Entry {
        /// `auth_tokens` or the file's path.
        source_name: String,
        /// 1-based line (entry) number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// More tokens than `auth_tokens_max`.
    #[error("{count} tokens, more than auth_tokens_max ({max})")]
    TooMany {
        /// Tokens found (so far).
        count: usize,
        /// The setting.
        max: usize,
    },
}

/// The tokens in force: every entry of `auth_tokens` and of the file.
#[derive(Clone, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: hashes are not secrets, but have no business in logs either.
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

impl TokenSet {
    /// Tokens in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty (every request that needs a scope is refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the entries of `text` (lines split at `sep`), read from `source_name`.
    fn add(
        &mut self,
        text: &str,
        sep: char,
        source_name: &str,
        max: usize,
    ) -> Result<(), AuthError> {
        for (i, line) in text.split(sep).enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: String| AuthError::Entry {
                source_name: source_name.to_owned(),
                line: i + 1,
                why,
            };
            let entry = parse_entry(line).map_err(err)?;
            if self.entries.iter().any(|e| e.name == entry.name) {
                return Err(err(format!("name {:?} is used twice", entry.name)));
            }
            if self.entries.iter().any(|e| e.hash == entry.hash) {
                return Err(err(format!(
                    "the hash of {:?} is another entry's (the same token twice)",
                    entry.name
                )));
            }
            if self.entries.len() == max {
                return Err(AuthError::TooMany {
                    count: max + 1,
                    max,
                });
            }
            self.entries.push(entry);
        }
        Ok(())
    }

    /// The entry whose hash is `hash`. Every entry is compared, in constant time, so
    /// the time taken does not depend on which one matched, or how closely.
    fn find(&self, hash: &[u8; 32]) -> Option<&Entry> {
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(hash)) {
                found = Some(e);
            }
        }
        found
    }
}

/// One line of the token file: `sha256:<hex> <scopes> <name>`.
fn parse_entry(line: &str) -> Result<Entry, String> {
    let mut fields = line.split([' ', '\t']).filter(|f| !f.is_empty());
    let (Some(hash), Some(scopes), Some(name), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("expected three fields: sha256:<64 hex digits> <scopes> <name>".into());
    };
    let hex = hash
        .strip_prefix("sha256:")
        .ok_or("the hash must start with `sha256:`")?;
    let hash = decode_hex32(hex).ok_or("the hash must be 64 hex digits after `sha256:`")?;
    let scopes = Scopes::parse(scopes)?;
    check_name(name)?;
    Ok(Entry {
        hash,
        scopes,
        name: name.to_owned(),
    })
}

/// Checks a token name: 1..=[`NAME_BYTES_MAX`] bytes of `A-Z a-z 0-9 . _ -`.
///
/// # Errors
/// Why the name is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=NAME_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1..={NAME_BYTES_MAX} bytes of A-Z a-z 0-9 . _ -"
        ))
    }
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a token, as the server stores it.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token and its entry for the token file (`ringstash token`).
#[derive(Debug)]
pub struct NewToken {
    /// The token, for the client: shown once, stored nowhere.
    pub token: String,
    /// Its line for the token file (or an `auth_tokens` entry).
    pub line: String,
}

/// Makes a token: [`TOKEN_PREFIX`] and [`TOKEN_RANDOM_BYTES`] from the operating
/// system's generator, base64url without padding. `name` defaults to `token-` and the
/// first 8 hex digits of its hash.
///
/// # Errors
/// A bad name, or no randomness from the system (`getrandom` failed).
pub fn generate(scopes: Scopes, name: Option<&str>) -> Result<NewToken, String> {
    use base64::Engine;
    if scopes == Scopes::default() {
        return Err("at least one scope is needed".into());
    }
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness from the system: {e}"))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let hash = hex(&hash_token(&token));
    let name = match name {
        Some(n) => {
            check_name(n)?;
            n.to_owned()
        }
        None => format!("token-{}", &hash[..8]),
    };
    let line = format!("sha256:{hash} {scopes} {name}");
    Ok(NewToken { token, line })
}

/// What a request carries: no token, a token, or an `Authorization` header that is
/// not a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// Nothing.
    None,
    /// `Authorization: Bearer <token>`, or `access_token=<token>` on a WebSocket.
    Token(&'a str),
    /// Something that cannot be a token (another scheme, two tokens), and why.
    Malformed(&'static str),
}

impl<'a> Presented<'a> {
    /// From an `Authorization` header value: the `Bearer` scheme (any case, RFC 7235)
    /// and one or more spaces before the token.
    pub fn from_header(value: Option<&'a str>) -> Presented<'a> {
        let Some(v) = value else {
            return Presented::None;
        };
        let v = v.trim();
        match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                let token = token.trim_start();
                if token.is_empty() || token.contains([' ', '\t']) {
                    Presented::Malformed("the Authorization header must be `Bearer <token>`")
                } else {
                    Presented::Token(token)
                }
            }
            _ => Presented::Malformed("the Authorization scheme must be Bearer"),
        }
    }
}

/// Why a request was refused, and so its answer: 401 (no token, an unknown one) or 403
/// (a known token without the scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token at all.
    Missing,
    /// A token that matches no entry, or a malformed `Authorization`.
    Invalid(&'static str),
    /// A known token without the scope the route needs.
    Forbidden {
        /// The token's name.
        name: String,
        /// The scope the route needs.
        needed: Scope,
    },
}

impl Refusal {
    /// The JSON error the HTTP port and the WebSocket handshake answer with.
    pub fn http_error(&self) -> HttpError {
        match self {
            Refusal::Missing => HttpError::new(
                401,
                "token_missing",
                "this server needs a token: Authorization: Bearer <token>",
            ),
            Refusal::Invalid(why) => HttpError::new(401, "token_invalid", *why),
            Refusal::Forbidden { name, needed } => HttpError::new(
                403,
                "scope_missing",
                format!("token {name:?} does not have the {} scope", needed.as_str()),
            ),
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 section 3).
    pub fn challenge(&self) -> String {
        match self {
            Refusal::Missing => r#"Bearer realm="ringstash""#.into(),
            Refusal::Invalid(_) => r#"Bearer realm="ringstash", error="invalid_token""#.into(),
            Refusal::Forbidden { needed, .. } => format!(
                r#"Bearer realm="ringstash", error="insufficient_scope", scope="{}""#,
                needed.as_str()
            ),
        }
    }
}

/// Which listener asks, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The HTTP port (reactors).
    Http,
    /// The WebSocket port (fan-out core).
    Ws,
}

/// The tokens in force and where they come from; shared by the reactors and the
/// fan-out core.
pub struct Auth {
    /// `auth_token_file`, read again on reload; `None` when only `auth_tokens` is set.
    file: Option<PathBuf>,
    /// `auth_tokens` (fixed until restart).
    inline: String,
    tokens_max: usize,
    current: RwLock<Arc<TokenSet>>,
    /// Refusals by listener and reason, reloads.
    pub stats: Arc<AuthStats>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("file", &self.file)
            .field("tokens", &*self.tokens())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Loads the tokens if `auth_token_file` or `auth_tokens` is set; `None` (auth
    /// off) if neither is.
    ///
    /// # Errors
    /// The file cannot be read or is too large, an entry is malformed or repeated, or
    /// there are more than `auth_tokens_max` tokens.
    pub fn from_settings(s: &Settings, stats: Arc<AuthStats>) -> Result<Option<Auth>, AuthError> {
        let file = (!s.auth_token_file.as_os_str().is_empty()).then(|| s.auth_token_file.clone());
        if file.is_none() && s.auth_tokens.trim().is_empty() {
            return Ok(None);
        }
        let set = load(file.as_deref(), &s.auth_tokens, s.auth_tokens_max)?;
        stats.auth_tokens.store(set.len() as u64, Ordering::Relaxed);
        Ok(Some(Auth {
            file,
            inline: s.auth_tokens.clone(),
            tokens_max: s.auth_tokens_max,
            current: RwLock::new(Arc::new(set)),
            stats,
        }))
    }

    /// The set in force.
    pub fn tokens(&self) -> Arc<TokenSet> {
        self.current.read().expect("token set lock").clone()
    }

    /// The token file, if tokens come from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Whether `presented` may do what `needed` allows, and if so the token's name
    /// (for the per-token rate limits); a refusal is counted for `listener`.
    ///
    /// # Errors
    /// The [`Refusal`] to answer with.
    pub fn check(
        &self,
        listener: Listener,
        presented: Presented<'_>,
        needed: Scope,
    ) -> Result<String, Refusal> {
        let result = match presented {
            Presented::None => Err(Refusal::Missing),
            Presented::Malformed(why) => Err(Refusal::Invalid(why)),
            Presented::Token(t) if t.len() > TOKEN_BYTES_MAX => Err(Refusal::Invalid(
                "the token is longer than any this server issues",
            )),
            Presented::Token(t) => match self.tokens().find(&hash_token(t)) {
                None => Err(Refusal::Invalid("the token is not one of this server's")),
                Some(e) if e.scopes.contains(needed) => Ok(e.name.clone()),
                Some(e) => Err(Refusal::Forbidden {
                    name: e.name.clone(),
                    needed,
                }),
            },
        };
        if let Err(r) = &result {
            let s = &self.stats;
            let counter = match (listener, r) {
                (Listener::Http, Refusal::Missing) => &s.http_auth_missing_total,
                (Listener::Http, Refusal::Invalid(_)) => &s.http_auth_invalid_total,
                (Listener::Http, Refusal::Forbidden { .. }) => &s.http_auth_forbidden_total,
                (Listener::Ws, Refusal::Missing) => &s.ws_auth_missing_total,
                (Listener::Ws, Refusal::Invalid(_)) => &s.ws_auth_invalid_total,
                (Listener::Ws, Refusal::Forbidden { .. }) => &s.ws_auth_forbidden_total,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Reads the token file again (SIGHUP) and swaps the set; returns how many tokens
    /// are now in force. On failure the previous set stays. Without a file there is
    /// nothing to read (`auth_tokens` changes with a restart) and nothing changes.
    ///
    /// # Errors
    /// As [`Auth::from_settings`].
    pub fn reload(&self) -> Result<usize, AuthError> {
        match load(self.file.as_deref(), &self.inline, self.tokens_max) {
            Ok(set) => {
                let n = set.len();
                *self.current.write().expect("token set lock") = Arc::new(set);
                self.stats.auth_tokens.store(n as u64, Ordering::Relaxed);
                self.stats
                    .auth_reloads_total
                    .fetch_add(1, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.stats
                    .auth_reload_failures_total
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// `auth_tokens`, then the file.
fn load(file: Option<&Path>, inline: &str, max: usize) -> Result<TokenSet, AuthError> {
    let mut set = TokenSet::default();
    set.add(inline, ';', "auth_tokens", max)?;
    if let Some(path) = file {
        let text = read_bounded(path)?;
        set.add(&text, '\n', &path.display().to_string(), max)?;
    }
    Ok(set)
}

/// Reads the whole file, refusing one over [`TOKEN_FILE_BYTES_MAX`] (checked on the
/// bytes read, not the size the metadata gives, which a file being written changes).
fn read_bounded(path: &Path) -> Result<String, AuthError> {
    let read_err = |error| AuthError::Read {
        path: path.to_owned(),
        error,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    f.take(TOKEN_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > TOKEN_FILE_BYTES_MAX {
        return Err(AuthError::FileTooLarge {
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

/// Splits a WebSocket query string into its `access_token` (percent-decoded) and the
/// rest, which the subscription's parser reads. `Err` if the parameter is given twice.
///
/// # Errors
/// `access_token` more than once, or badly percent-encoded.
pub fn take_access_token(query: &str) -> Result<(Option<String>, String), &'static str> {
    let mut token = None;
    let mut rest: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|_| !query.is_empty()) {
        match pair.split_once('=') {
            Some(("access_token", v)) => {
                if token.is_some() {
                    return Err("access_token given twice");
                }
                let v = crate::query::filter::percent_decode(v)
                    .map_err(|_| "access_token is badly percent-encoded")?;
                token = Some(v.into_owned());
            }
            _ => rest.push(pair),
        }
    }
    Ok((token, rest.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str, max: usize) -> Result<TokenSet, AuthError> {
        let mut set = TokenSet::default();
        set.add(text, '\n', "test", max)?;
        Ok(set)
    }

    #[test]
    fn generated_tokens_parse_and_match_only_themselves() {
        let scopes = Scopes::parse("write,metrics").unwrap();
        let a = generate(scopes, Some("ingest")).unwrap();
        let b = generate(scopes, None).unwrap();
        assert!(
            a.token.starts_with("rst_") && a.token.len() == 4 + 43,
            "{}",
            a.token
        );
        assert_ne!(a.token, b.token);
        assert!(a.line.ends_with(" write,metrics ingest"), "{}", a.line);
        assert!(b.line.contains(" token-"), "{}", b.line);
        let set = auth(&format!("# comment\n\n{}\r\n  {}\n", a.line, b.line), 8).unwrap();
        assert_eq!(set.len(), 2);
        let e = set.find(&hash_token(&a.token)).unwrap();
        assert_eq!(e.name, "ingest");
        assert!(e.scopes.contains(Scope::Write) && !e.scopes.contains(Scope::Read));
        assert!(set.find(&hash_token(&format!("{}x", a.token))).is_none());
    }

    #[test]
    fn malformed_repeated_and_too_many_entries_are_refused() {
        let h = "sha256:".to_string() + &"ab".repeat(32);
        let h2 = "sha256:".to_string() + &"cd".repeat(32);
        for (text, want) in [
            (format!("{h} write"), "three fields"),
            (format!("{h} write a b"), "three fields"),
            (format!("md5:{} write a", "ab".repeat(32)), "sha256:"),
            (format!("sha256:{} write a", "ab".repeat(31)), "64 hex"),
            (format!("{h} write,admin a"), "unknown scope"),
            (format!("{h} write,write a"), "twice"),
            (format!("{h} write a/b"), "name"),
            (format!("{h} read a\n{h2} read a"), "used twice"),
            (format!("{h} read a\n{h} write b"), "same token twice"),
        ] {
            let err = auth(&text, 8).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = auth(&format!("{h} read a\n{h2} read b"), 1).unwrap_err();
        assert!(matches!(err, AuthError::TooMany { max: 1, .. }), "{err}");
        let err = auth(&format!("\n\n{h} nope a"), 8).unwrap_err().to_string();
        assert!(err.starts_with("test, line 3:"), "{err}");
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(Presented::from_header(None), Presented::None);
        assert_eq!(
            Presented::from_header(Some("Bearer  rst_abc")),
            Presented::Token("rst_abc")
        );
        assert_eq!(
            Presented::from_header(Some("bearer rst_abc")),
            Presented::Token("rst_abc")
        );
        assert!(matches!(
            Presented::from_header(Some("Basic dXNlcjpwYXNz")),
            Presented::Malformed(_)
        ));
        assert!(matches!(
            Presented::from_header(Some("Bearer a b")),
            Presented::Malformed(_)
        ));
        assert!(matches!(
            Presented::from_header(Some("Bearer")),
            Presented::Malformed(_)
        ));
    }

    #[test]
    fn access_token_is_taken_out_of_the_query() {
        assert_eq!(
            take_access_token("from=0&access_token=rst_a%2Db&q=x").unwrap(),
            (Some("rst_a-b".into()), "from=0&q=x".into())
        );
        assert_eq!(take_access_token("").unwrap(), (None, String::new()));
        assert!(take_access_token("access_token=a&access_token=b").is_err());
    }

    #[test]
    fn refusals_answer_401_or_403_with_a_challenge() {
        assert_eq!(Refusal::Missing.http_error().status, 401);
        assert_eq!(Refusal::Invalid("x").http_error().code, "token_invalid");
        let f = Refusal::Forbidden {
            name: "prom".into(),
            needed: Scope::Write,
        };
        assert_eq!(f.http_error().status, 403);
        assert!(f.challenge().contains(r#"scope="write""#));
    }
}
