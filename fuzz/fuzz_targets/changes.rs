//! `apply_change` on arbitrary instructions, against configs both well-formed and with
//! fields of the wrong JSON type: errors are fine, panics are not.

#![no_main]

use hako_image::changes::apply_change;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fn config(which: u8) -> Map<String, Value> {
    let v = match which % 4 {
        0 => json!({}),
        1 => json!({
            "Env": ["PATH=/usr/bin", "A=1"],
            "Labels": {"a": "b"},
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": null,
            "OnBuild": null,
            "Cmd": ["sh"],
        }),
        2 => json!({"Env": "x", "Labels": [], "ExposedPorts": 1, "Volumes": "v", "OnBuild": {}}),
        _ => json!({"Env": [1, null, {"a": 1}, "NOEQUALS", "=v"], "Labels": null, "ExposedPorts": null}),
    };
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut c = config(which);
    // Several instructions in a row, as `--change` may be given more than once.
    for change in text.split('\n') {
        let _ = apply_change(&mut c, change);
    }
    serde_json::to_vec(&Value::Object(c)).expect("the config still serializes");
});
