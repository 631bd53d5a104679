//! Docker's ways of printing: sizes, ages, aligned tables, `--format` templates.

use serde_json::Value;

/// go-units HumanSizeWithPrecision(size, 3): decimal units, three significant digits.
pub fn human_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", sig3(v), UNITS[i])
}

/// `%.3g` for values below 1000.
fn sig3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub use hako_api::human::human_duration;

pub fn ago(unix: i64) -> String {
    if unix <= 0 {
        return "N/A".into();
    }
    format!("{} ago", human_duration(chrono::Utc::now().timestamp() - unix))
}

/// Aligns rows as Docker's tabwriter does: a cell is as wide as the column's widest cell
/// plus 3 spaces of padding, and at least 10 characters.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let width = (widths[i] + 3).max(10);
                line.push_str(&" ".repeat(width - c.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A small subset of Go templates: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`,
/// and `\t` / `\n` escapes. Enough for the `--format` strings people use with docker.
pub fn template(tpl: &str, v: &Value) -> String {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tpl.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = after[..end].trim();
        out.push_str(&eval(expr, v));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn eval(expr: &str, v: &Value) -> String {
    let (json, path) = match expr.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, expr),
    };
    let mut cur = v;
    let null = Value::Null;
    for part in path.trim_start_matches('.').split('.').filter(|p| !p.is_empty()) {
        cur = cur.get(part).unwrap_or(&null);
    }
    if json {
        return cur.to_string();
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        other => other.to_string(),
    }
}

/// A prune's answer as docker prints it: the removed names under `title`, then the space
/// the daemon says it reclaimed.
pub fn print_pruned(v: &Value, key: &str, title: &str) {
    print_deleted(v, key, title);
    println!("Total reclaimed space: {}", human_size(reclaimed(v)));
}

/// The names under `key` of a prune's answer, as a list headed by `title`.
pub fn print_deleted(v: &Value, key: &str, title: &str) {
    let names: Vec<&str> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !names.is_empty() {
        println!("{title}:\n{}\n", names.join("\n"));
    }
}

pub fn reclaimed(v: &Value) -> f64 {
    v["SpaceReclaimed"].as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_units() {
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(524_288_000.0), "524MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(10_000.0), "10kB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(
            template(
                "{{.Repository}}:{{.Tag}}\\t{{json .X}}",
                &serde_json::json!({"Repository":"a","Tag":"b","X":[1]})
            ),
            "a:b\t[1]"
        );
    }
}
