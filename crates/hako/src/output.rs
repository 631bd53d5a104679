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

/// Rows under a `--format` other than the default table: `json` prints each row as one JSON
/// line, `table TEMPLATE` aligns the template's tab-separated cells under a header made from
/// `headers` (field name to column title), any other template prints one line a row.
pub fn print_formatted(format: &str, rows: &[Value], headers: &Value) {
    if format == "json" {
        rows.iter().for_each(|r| println!("{r}"));
        return;
    }
    match format.strip_prefix("table ") {
        Some(tpl) => {
            let cells = |v: &Value| template(tpl, v).split('\t').map(String::from).collect::<Vec<_>>();
            let mut out = vec![cells(headers)];
            out.extend(rows.iter().map(cells));
            print!("{}", table(&out));
        }
        None => rows.iter().for_each(|r| println!("{}", template(format, r))),
    }
}

/// JSON with Docker's four-space indent (`inspect`).
pub fn pretty_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("json values serialize");
    String::from_utf8(buf).expect("json is utf-8")
}

/// Go's net.JoinHostPort: an IPv6 host goes in brackets.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The order of github.com/fvbommel/sortorder's NaturalLess, which the docker CLI sorts names
/// and port mappings with: runs of digits compare as numbers, and come before other bytes.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let (dx, dy) = (x[i].is_ascii_digit(), y[j].is_ascii_digit());
        if dx != dy {
            return if dx { Ordering::Less } else { Ordering::Greater };
        }
        if !dx {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < x.len() && x[i] == b'0' {
            i += 1;
        }
        while j < y.len() && y[j] == b'0' {
            j += 1;
        }
        let (nz_i, nz_j) = (i, j);
        while i < x.len() && x[i].is_ascii_digit() {
            i += 1;
        }
        while j < y.len() && y[j].is_ascii_digit() {
            j += 1;
        }
        let by_len = (i - nz_i).cmp(&(j - nz_j));
        if by_len != Ordering::Equal {
            return by_len;
        }
        let by_digits = x[nz_i..i].cmp(&y[nz_j..j]);
        if by_digits != Ordering::Equal {
            return by_digits;
        }
        // Equal numbers: the one with fewer leading zeros first.
        if nz_i != nz_j {
            return nz_i.cmp(&nz_j);
        }
    }
    x.len().cmp(&y.len())
}

/// Go's netip.Addr order for the IP of a port summary: none, then IPv4, then IPv6.
fn ip_order(ip: &str) -> (u8, u128, String) {
    match ip.parse::<std::net::IpAddr>() {
        _ if ip.is_empty() => (0, 0, String::new()),
        Ok(std::net::IpAddr::V4(v)) => (1, u32::from(v) as u128, String::new()),
        Ok(std::net::IpAddr::V6(v)) => (2, u128::from(v), String::new()),
        Err(_) => (3, 0, ip.to_string()),
    }
}

/// The PORTS column of `docker ps` (the docker CLI's DisplayablePorts) from the `Ports` of a
/// container summary: exposed ports, and ports published on the same host port, grouped into
/// consecutive ranges (`8000-8002/tcp`, `0.0.0.0:80-81->80-81/tcp`); ports published on another
/// host port listed one by one after them (`0.0.0.0:8080->80/tcp`).
pub fn displayable_ports(ports: &[Value]) -> String {
    struct Port {
        ip: String,
        private: u16,
        public: u16,
        kind: String,
    }
    let num = |v: &Value| v.as_u64().unwrap_or(0) as u16;
    let mut ports: Vec<Port> = ports
        .iter()
        .map(|p| Port {
            ip: p["IP"].as_str().unwrap_or("").to_string(),
            private: num(&p["PrivatePort"]),
            public: num(&p["PublicPort"]),
            kind: p["Type"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    ports.sort_by(|a, b| {
        a.private
            .cmp(&b.private)
            .then_with(|| ip_order(&a.ip).cmp(&ip_order(&b.ip)))
            .then_with(|| a.public.cmp(&b.public))
            .then_with(|| a.kind.cmp(&b.kind))
    });
    let form_group = |key: &str, first: u16, last: u16| {
        let (ip, kind) = match key.split('/').collect::<Vec<_>>().as_slice() {
            [kind] => ("", kind.to_string()),
            [ip, kind, ..] => (*ip, kind.to_string()),
            [] => ("", String::new()),
        };
        let mut group = first.to_string();
        if first != last {
            group = format!("{group}-{last}");
        }
        if !ip.is_empty() {
            group = format!("{}->{group}", join_host_port(ip, &group));
        }
        format!("{group}/{kind}")
    };
    let mut groups: std::collections::HashMap<String, (u16, u16)> = Default::default();
    let mut keys: Vec<String> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for p in &ports {
        let current = p.private;
        let mut key = p.kind.clone();
        if !p.ip.is_empty() {
            if p.public != current {
                let host = join_host_port(&p.ip, &p.public.to_string());
                host_mappings.push(format!("{host}->{}/{}", p.private, p.kind));
                continue;
            }
            key = format!("{}/{}", p.ip, p.kind);
        }
        match groups.get_mut(&key) {
            None => {
                groups.insert(key.clone(), (current, current));
                keys.push(key);
            }
            Some(g) if current == g.1.wrapping_add(1) => g.1 = current,
            Some(g) => {
                result.push(form_group(&key, g.0, g.1));
                *g = (current, current);
            }
        }
    }
    for k in &keys {
        let (first, last) = groups[k];
        result.push(form_group(k, first, last));
    }
    result.extend(host_mappings);
    result.join(", ")
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
    use serde_json::json;

    #[test]
    fn ports_column() {
        let p = |v: Value| displayable_ports(v.as_array().unwrap());
        assert_eq!(
            p(
                json!([{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}, {"PrivatePort":443,"Type":"tcp"}])
            ),
            "443/tcp, 0.0.0.0:8080->80/tcp"
        );
        // Exposed ports in a row group; so do ports published on the same numbers.
        assert_eq!(
            p(
                json!([{"PrivatePort":8002,"Type":"tcp"}, {"PrivatePort":8000,"Type":"tcp"}, {"PrivatePort":8001,"Type":"tcp"}, {"PrivatePort":9000,"Type":"tcp"}, {"PrivatePort":8001,"Type":"udp"}])
            ),
            "8000-8002/tcp, 9000/tcp, 8001/udp"
        );
        assert_eq!(
            p(json!([
                {"IP":"0.0.0.0","PrivatePort":81,"PublicPort":81,"Type":"tcp"},
                {"IP":"0.0.0.0","PrivatePort":80,"PublicPort":80,"Type":"tcp"},
                {"IP":"::","PrivatePort":80,"PublicPort":80,"Type":"tcp"},
                {"IP":"::","PrivatePort":81,"PublicPort":81,"Type":"tcp"},
            ])),
            "0.0.0.0:80-81->80-81/tcp, [::]:80-81->80-81/tcp"
        );
        // Published on other host ports: one mapping each, after the groups.
        assert_eq!(
            p(json!([
                {"IP":"0.0.0.0","PrivatePort":82,"PublicPort":8002,"Type":"tcp"},
                {"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8000,"Type":"tcp"},
                {"IP":"0.0.0.0","PrivatePort":81,"PublicPort":8001,"Type":"tcp"},
                {"IP":"::","PrivatePort":80,"PublicPort":8000,"Type":"tcp"},
                {"PrivatePort":22,"Type":"tcp"},
            ])),
            "22/tcp, 0.0.0.0:8000->80/tcp, [::]:8000->80/tcp, 0.0.0.0:8001->81/tcp, 0.0.0.0:8002->82/tcp"
        );
        assert_eq!(p(json!([])), "");
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "80/tcp -> 0.0.0.0:8080",
            "443/tcp -> 0.0.0.0:8443",
            "8080/tcp -> 0.0.0.0:1",
            "9/udp -> :::9",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "9/udp -> :::9",
                "80/tcp -> 0.0.0.0:8080",
                "443/tcp -> 0.0.0.0:8443",
                "8080/tcp -> 0.0.0.0:1"
            ]
        );
        let mut n = vec!["net10", "net2", "bridge", "host", "net02", "none"];
        n.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(n, ["bridge", "host", "net2", "net02", "net10", "none"]);
        assert_eq!(join_host_port("::", "80"), "[::]:80");
        assert_eq!(pretty_json(&json!([])), "[]");
        assert_eq!(pretty_json(&json!([{"a": 1}])), "[\n    {\n        \"a\": 1\n    }\n]");
    }

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
