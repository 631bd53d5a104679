//! A network as the engine stores it, and as `docker network inspect` shows it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use hako_net::ipam::Pool;

use super::Endpoint;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// `bridge`, or `host` / `null` for the built-in pseudo networks.
    pub driver: String,
    /// The bridge interface (bridge driver).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: Value,
    #[serde(default)]
    pub options: Value,
    /// Subnet, gateway and leases (bridge driver; chosen when the bridge is first made).
    #[serde(default)]
    pub pool: Option<Pool>,
    /// Made by the engine (`bridge`, `host`, `none`): never removed.
    #[serde(default)]
    pub builtin: bool,
}

impl NetworkRecord {
    pub fn new(name: &str, driver: &str) -> NetworkRecord {
        NetworkRecord {
            id: crate::containers::random_id(),
            name: name.to_string(),
            created: hako_image::service::now_rfc3339(),
            driver: driver.to_string(),
            bridge: String::new(),
            internal: false,
            attachable: false,
            labels: json!({}),
            options: json!({}),
            pool: None,
            builtin: false,
        }
    }

    /// `GET /networks/{id}`; `containers` are (ID, name, endpoint) of those attached.
    pub fn inspect(&self, containers: &[(String, String, Endpoint)]) -> Value {
        let config: Vec<Value> = self
            .pool
            .iter()
            .map(|p| json!({"Subnet": p.subnet.to_string(), "Gateway": p.gateway.to_string()}))
            .collect();
        let mut attached = Map::new();
        for (id, name, ep) in containers {
            attached.insert(
                id.clone(),
                json!({
                    "Name": name.trim_start_matches('/'),
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                    "IPv6Address": "",
                }),
            );
        }
        json!({
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": attached,
            "Options": if self.options.is_object() { self.options.clone() } else { json!({}) },
            "Labels": if self.labels.is_object() { self.labels.clone() } else { json!({}) },
        })
    }
}

/// Docker's rule for network names.
pub fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}
