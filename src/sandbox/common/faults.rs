//! Injected failures (`POST /_sandbox/fault`): the next N matching requests fail a chosen way.
//! Same rule format as the Kite sandbox's; the error body of a `status` fault is the broker's
//! own envelope, so each broker supplies it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How a faulted request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Answer `status` with the broker's error envelope.
    #[default]
    Status,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Close the connection without answering.
    Drop,
    /// Only wait `delay_ms`, then answer normally.
    Delay,
}

/// One fault rule, as posted to `/_sandbox/fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Path prefix to match; absent = every path outside `/_sandbox/`.
    #[serde(default)]
    pub path: Option<String>,
    /// For `kind = status`.
    #[serde(default = "default_status")]
    pub status: u16,
    /// How many matching requests fail.
    #[serde(default = "default_count")]
    pub count: u32,
    /// Wait this long before failing (or, for `delay`, before answering).
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub kind: FaultKind,
    /// The error message of a `status` fault (default: one that names the status).
    #[serde(default)]
    pub message: Option<String>,
}

fn default_status() -> u16 {
    503
}
fn default_count() -> u32 {
    1
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            path: None,
            status: default_status(),
            count: default_count(),
            delay_ms: 0,
            kind: FaultKind::Status,
            message: None,
        }
    }
}

impl Fault {
    /// The message a `status` fault answers with.
    pub fn message(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("Injected fault (HTTP {}).", self.status))
    }
}

/// Pending faults, first posted first used.
#[derive(Debug, Default)]
pub struct FaultQueue {
    rules: VecDeque<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, fault: Fault) {
        if fault.count > 0 {
            self.rules.push_back(fault);
        }
    }

    /// The rule that applies to a request on `path`, spending one of its uses. Control paths
    /// are never faulted, so a test can always reach them.
    pub fn take(&mut self, path: &str) -> Option<Fault> {
        if path.starts_with("/_sandbox/") {
            return None;
        }
        let i = self.rules.iter().position(|f| match &f.path {
            Some(prefix) => path.starts_with(prefix.as_str()),
            None => true,
        })?;
        let rule = &mut self.rules[i];
        rule.count -= 1;
        let fired = rule.clone();
        if rule.count == 0 {
            self.rules.remove(i);
        }
        Some(fired)
    }

    /// Uses left over all rules.
    pub fn pending(&self) -> u32 {
        self.rules.iter().map(|f| f.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_by_prefix_and_spares_controls() {
        let mut q = FaultQueue::default();
        q.push(Fault {
            path: Some("/v2/profile".into()),
            count: 2,
            ..Fault::default()
        });
        assert!(q.take("/app/generateAccessToken").is_none());
        assert!(q.take("/_sandbox/stats").is_none());
        assert!(q.take("/v2/profile").is_some());
        assert_eq!(q.pending(), 1);
        assert!(q.take("/v2/profile").is_some());
        assert!(q.take("/v2/profile").is_none());
        let f: Fault = serde_json::from_str(r#"{"kind":"drop"}"#).unwrap();
        assert_eq!((f.kind, f.status, f.count), (FaultKind::Drop, 503, 1));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }
}
