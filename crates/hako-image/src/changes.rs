//! `--change` instructions (`docker import --change`, `docker commit -c`): the Dockerfile
//! instructions that only edit an image's config.

use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
#[error("invalid --change {change:?}: {reason}")]
pub struct ChangeError {
    pub change: String,
    pub reason: String,
}

/// Applies one instruction to the `config` object of an image config.
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<(), ChangeError> {
    let err = |reason: &str| ChangeError {
        change: change.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = change.trim();
    let (word, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
    let rest = rest.trim();
    let instr = word.to_ascii_uppercase();
    match instr.as_str() {
        "CMD" | "ENTRYPOINT" => {
            let key = if instr == "CMD" { "Cmd" } else { "Entrypoint" };
            config.insert(key.into(), json!(exec_or_shell(rest)));
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| err("the image's Env is not a list"))?;
            for (k, v) in key_values(rest).map_err(|r| err(&r))? {
                list.retain(|e| {
                    e.as_str()
                        .and_then(|s| s.split_once('='))
                        .map(|(ek, _)| ek != k)
                        .unwrap_or(true)
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            if labels.is_null() {
                *labels = json!({});
            }
            let map = labels
                .as_object_mut()
                .ok_or_else(|| err("the image's Labels is not a map"))?;
            for (k, v) in key_values(rest).map_err(|r| err(&r))? {
                map.insert(k, json!(v));
            }
        }
        "WORKDIR" => {
            if rest.is_empty() {
                return Err(err("WORKDIR needs a path"));
            }
            config.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            if rest.is_empty() {
                return Err(err("USER needs a user name or ID"));
            }
            config.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(rest));
        }
        "EXPOSE" | "VOLUME" => {
            let key = if instr == "EXPOSE" { "ExposedPorts" } else { "Volumes" };
            let items: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest).map_err(|_| err("expected a JSON array of strings"))?
            } else {
                rest.split_whitespace().map(String::from).collect()
            };
            if items.is_empty() {
                return Err(err(&format!("{instr} needs at least one argument")));
            }
            let set = config.entry(key).or_insert_with(|| json!({}));
            if set.is_null() {
                *set = json!({});
            }
            let map = set
                .as_object_mut()
                .ok_or_else(|| err("expected a map in the image config"))?;
            for it in items {
                let name = if instr == "EXPOSE" {
                    normalize_port(&it).map_err(|r| err(&r))?
                } else {
                    it
                };
                map.insert(name, json!({}));
            }
        }
        "ONBUILD" => {
            let list = config.entry("OnBuild").or_insert_with(|| json!([]));
            if list.is_null() {
                *list = json!([]);
            }
            list.as_array_mut()
                .ok_or_else(|| err("OnBuild is not a list"))?
                .push(json!(rest));
        }
        _ => {
            return Err(err(&format!(
                "{word} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR"
            )))
        }
    }
    Ok(())
}

/// `["a","b"]` is the exec form; anything else runs through `/bin/sh -c`.
fn exec_or_shell(s: &str) -> Vec<String> {
    if s.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(s) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), s.into()]
}

fn normalize_port(p: &str) -> Result<String, String> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok_port = |s: &str| s.parse::<u16>().is_ok();
    let valid = match port.split_once('-') {
        Some((a, b)) => ok_port(a) && ok_port(b),
        None => ok_port(port),
    };
    if !valid || !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("invalid port {p:?}: expected PORT[/tcp|udp|sctp]"));
    }
    Ok(format!("{port}/{proto}"))
}

/// `k=v k2="v 2"` or the legacy `k v...` form.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let words = shell_words(s)?;
    if words.is_empty() {
        return Err("expected KEY=VALUE".into());
    }
    if !words[0].contains('=') {
        let (k, v) = s
            .split_once(char::is_whitespace)
            .ok_or("expected KEY=VALUE or KEY VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Splits on whitespace honouring double and single quotes and backslash escapes.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated quote".into()),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => cur.push(chars.next().ok_or("unterminated quote")?),
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_each_instruction() {
        let mut c = Map::new();
        for ch in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app --flag",
            r#"ENV A=1 B="two words""#,
            "ENV A 3",
            "WORKDIR /srv",
            "EXPOSE 80 53/udp",
            "USER nobody",
            r#"LABEL org.x="y z""#,
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        let v = Value::Object(c);
        assert_eq!(v["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "/bin/app --flag"]));
        assert_eq!(v["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(v["WorkingDir"], "/srv");
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["User"], "nobody");
        assert_eq!(v["Labels"], json!({"org.x": "y z"}));
        let mut c = Map::new();
        assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut c, "EXPOSE 99999").is_err());
        assert!(apply_change(&mut c, r#"ENV A="x"#).is_err());
    }
}
