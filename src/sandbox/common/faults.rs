//! Injected failures (`POST /_sandbox/fault`): the next N matching requests fail a chosen way.
//! The error body of a `status` fault is the broker's own envelope, so each broker supplies it.

use std::collections::VecDeque;

/// The rule format is Kite's (`warden sandbox kite`), so one fault JSON works against every
/// sandbox; `error_type` is Kite's alone and the other brokers ignore it.
pub use crate::sandbox::kite::{Fault, FaultKind};

/// The message a `status` fault answers with.
pub fn message(fault: &Fault) -> String {
    fault
        .message
        .clone()
        .unwrap_or_else(|| format!("Injected fault (HTTP {}).", fault.status))
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
        q.push(Fault::default());
        assert!(q.take("/_sandbox/reset").is_none());
        assert!(q.take("/api/login").is_some());
        let f: Fault = serde_json::from_str(r#"{"kind":"drop"}"#).unwrap();
        assert_eq!((f.kind, f.status, f.count), (FaultKind::Drop, 503, 1));
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }
}
