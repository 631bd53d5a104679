//! `network connect` and `network disconnect`: one more (or one fewer) network for a
//! container, plumbed at once into its namespace when it runs.

use std::sync::Arc;

use serde_json::Value;

use super::Containers;
use crate::error::ApiError;
use crate::networks::attach::mode_network;

impl Containers {
    pub async fn connect(self: &Arc<Self>, network: &str, container: &str, cfg: &Value) -> Result<(), ApiError> {
        let e = self.get(container)?;
        let _op = e.op.lock().await;
        let net = self.networks.get(network)?;
        let rec = e.rec.lock().unwrap().clone(); // unwrap: no code panics holding a record lock
        let mode = rec.host_config.get("NetworkMode").and_then(Value::as_str).unwrap_or("");
        if mode_network(mode).is_none() {
            return Err(ApiError::bad_request(
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ));
        }
        if net.driver != "bridge" {
            return Err(ApiError::bad_request(format!(
                "container cannot be disconnected from host network or connected to host network: {} is not a bridge network",
                net.name
            )));
        }
        if rec.networks.contains_key(&net.name) {
            return Err(ApiError::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name.trim_start_matches('/'),
                net.name
            )));
        }
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !rec.networks.values().any(|ep| &ep.ifname == n))
            .expect("an unused interface name");
        let ep = self.networks.lease(&rec.id, &net.id, cfg, &ifname)?;
        if rec.state.running {
            let (nets, ep2, pid) = (self.networks.clone(), ep.clone(), rec.state.pid);
            let plumbed = tokio::task::spawn_blocking(move || nets.plumb(pid, &[&ep2]))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(why) = plumbed {
                let _ = self.networks.release(&rec.id, &[(net.name.clone(), ep)].into());
                return Err(ApiError::internal(format!("connecting to network {}: {why}", net.name)));
            }
            self.networks.add_names(&rec.id, &rec.name, &ep);
        }
        let snapshot = {
            let mut r = e.rec.lock().unwrap(); // unwrap: see above
            r.networks.insert(net.name.clone(), ep);
            r.clone()
        };
        self.save_durable(&snapshot)
    }

    pub async fn disconnect(self: &Arc<Self>, network: &str, container: &str) -> Result<(), ApiError> {
        let e = self.get(container)?;
        let _op = e.op.lock().await;
        let net = self.networks.get(network)?;
        let rec = e.rec.lock().unwrap().clone(); // unwrap: see connect
        let Some(ep) = rec.networks.get(&net.name).cloned() else {
            return Err(ApiError::bad_request(format!(
                "container {} is not connected to network {}",
                rec.id, net.name
            )));
        };
        if rec.state.running {
            self.networks.unplug(&ep)?;
            self.networks.remove_names(&rec.id, &ep);
        }
        self.networks.release(&rec.id, &[(net.name.clone(), ep)].into())?;
        let snapshot = {
            let mut r = e.rec.lock().unwrap(); // unwrap: see connect
            r.networks.remove(&net.name);
            r.clone()
        };
        self.save_durable(&snapshot)
    }

    /// Containers on a network: (ID, name, endpoint), for `network inspect`.
    pub fn on_network(&self, network_id: &str) -> Vec<(String, String, crate::networks::Endpoint)> {
        self.all()
            .iter()
            .filter_map(|e| {
                let r = e.rec.lock().ok()?;
                let ep = r.networks.values().find(|ep| ep.network_id == network_id)?.clone();
                Some((r.id.clone(), r.name.clone(), ep))
            })
            .collect()
    }
}
