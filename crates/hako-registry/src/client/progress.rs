//! Progress messages in the JSON form dockerd streams for pull and push, so the docker CLI
//! (and hako's) render them: `{"status","id","progressDetail":{"current","total"},"progress"}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub type Sink = Arc<dyn Fn(Value) + Send + Sync>;

pub fn status(s: impl Into<String>) -> Value {
    json!({"status": s.into()})
}

pub fn status_id(s: &str, id: &str) -> Value {
    json!({"status": s, "id": id})
}

pub fn layer(id: &str, s: &str) -> Value {
    json!({"status": s, "progressDetail": {}, "id": id})
}

/// Docker's 12-character layer ID.
pub fn short(d: &crate::Digest) -> String {
    d.hex()[..12].to_string()
}

pub fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

/// `[=====>      ]  1.2MB/3.4MB`, 50 columns as docker draws it.
pub fn bar(current: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (current.min(total) * width)
        .checked_div(total)
        .map_or(width, |f| f.max(1));
    let mut b = "=".repeat(filled.saturating_sub(1) as usize);
    b.push('>');
    b.push_str(&" ".repeat((width - filled) as usize));
    format!("[{b}] {:>8}/{}", human(current), human(total))
}

pub fn bytes(id: &str, s: &str, current: u64, total: u64) -> Value {
    json!({"status": s, "progressDetail": {"current": current, "total": total}, "progress": bar(current, total), "id": id})
}

/// Emits byte progress at most every 100 ms per layer.
pub struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    pub fn new() -> Self {
        Throttle { last: None }
    }
    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_millis(100))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}
