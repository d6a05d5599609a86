//! The fsync policy: when the writer calls fdatasync, and so what an acknowledgement
//! means. Only [`FsyncPolicy::Always`] makes an acknowledgement mean durable.

/// When the writer calls fdatasync, and so what an acknowledgement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// Every group is fdatasync'ed before its batches complete. Acked means durable.
    Always,
    /// NOT DURABLE: batches complete once written to the page cache; the writer calls
    /// fdatasync at most every `interval_ms`. A power loss can lose the last interval.
    Interval {
        /// Longest time written data stays unsynced, in milliseconds.
        interval_ms: u64,
    },
    /// NOT DURABLE: batches complete once written to the page cache; only rotation and
    /// shutdown sync. A power loss can lose everything the kernel had not flushed.
    Never,
}

impl FsyncPolicy {
    /// Parses `always`, `never` or `interval:<ms>` (the flag syntax).
    ///
    /// [`FsyncPolicy::try_from`] as a plain function, for clap's `value_parser` (which
    /// cannot name one of the two `TryFrom` impls).
    ///
    /// # Errors
    /// [`FsyncPolicyError`], naming the accepted forms.
    pub fn parse(s: &str) -> Result<Self, FsyncPolicyError> {
        FsyncPolicy::try_from(s)
    }

    /// True only for the policy under which an acknowledgement means durable.
    pub fn is_durable(&self) -> bool {
        matches!(self, FsyncPolicy::Always)
    }
}

/// A string that names no fsync policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fsync must be `always`, `never` or `interval:<ms>` with ms > 0, not {given:?}")]
pub struct FsyncPolicyError {
    /// The string as given.
    pub given: String,
}

impl TryFrom<&str> for FsyncPolicy {
    type Error = FsyncPolicyError;

    /// Parses `always`, `never` or `interval:<ms>` with ms > 0.
    fn try_from(s: &str) -> Result<Self, FsyncPolicyError> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval { interval_ms: ms }),
                _ => Err(FsyncPolicyError {
                    given: s.to_owned(),
                }),
            },
        }
    }
}

/// The flag's and the environment variable's form (clap parses through `FromStr`).
impl std::str::FromStr for FsyncPolicy {
    type Err = FsyncPolicyError;
    fn from_str(s: &str) -> Result<Self, FsyncPolicyError> {
        FsyncPolicy::try_from(s)
    }
}

impl TryFrom<String> for FsyncPolicy {
    type Error = FsyncPolicyError;
    fn try_from(s: String) -> Result<Self, FsyncPolicyError> {
        FsyncPolicy::try_from(s.as_str())
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval { interval_ms } => write!(f, "interval:{interval_ms}"),
        }
    }
}
