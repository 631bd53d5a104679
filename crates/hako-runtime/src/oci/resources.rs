//! OCI `linux.resources` to hako's cgroup [`Resources`].

use serde::Deserialize;
use serde_json::Value;

use super::Error;
use crate::cgroups::{DeviceRule, DeviceType, Resources, Throttle, ThrottleKind};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Oci {
    memory: Option<Memory>,
    cpu: Option<Cpu>,
    pids: Option<Pids>,
    devices: Vec<DeviceRule>,
    #[serde(rename = "blockIO")]
    block_io: Option<BlockIo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Memory {
    limit: Option<i64>,
    swap: Option<i64>,
    reservation: Option<i64>,
    swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    disable_oom_killer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cpu {
    shares: Option<u64>,
    quota: Option<i64>,
    period: Option<u64>,
    cpus: Option<String>,
    mems: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BlockIo {
    weight: Option<u16>,
    throttle_read_bps_device: Vec<OciThrottle>,
    throttle_write_bps_device: Vec<OciThrottle>,
    throttle_read_iops_device: Vec<OciThrottle>,
    throttle_write_iops_device: Vec<OciThrottle>,
}

#[derive(Debug, Deserialize)]
struct OciThrottle {
    major: i64,
    minor: i64,
    rate: u64,
}

impl BlockIo {
    fn throttles(self) -> Vec<Throttle> {
        [
            (self.throttle_read_bps_device, ThrottleKind::ReadBps),
            (self.throttle_write_bps_device, ThrottleKind::WriteBps),
            (self.throttle_read_iops_device, ThrottleKind::ReadIops),
            (self.throttle_write_iops_device, ThrottleKind::WriteIops),
        ]
        .into_iter()
        .flat_map(|(list, kind)| {
            list.into_iter().map(move |t| Throttle {
                major: t.major,
                minor: t.minor,
                kind,
                rate: t.rate,
            })
        })
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pids {
    limit: Option<i64>,
}

pub fn from_oci(v: Option<&Value>) -> Result<Resources, Error> {
    let Some(v) = v else { return Ok(Resources::default()) };
    let o: Oci =
        serde_json::from_value(v.clone()).map_err(|e| Error::msg(format!("config.json linux.resources: {e}")))?;
    let memory = o.memory.unwrap_or_default();
    let cpu = o.cpu.unwrap_or_default();
    let block_io = o.block_io.unwrap_or_default();
    let blkio_weight = block_io.weight;
    Ok(Resources {
        memory: memory.limit,
        memory_swap: memory.swap,
        memory_reservation: memory.reservation,
        memory_swappiness: memory.swappiness,
        oom_kill_disable: memory.disable_oom_killer.unwrap_or(false),
        cpu_quota: cpu.quota,
        cpu_period: cpu.period,
        cpu_shares: cpu.shares,
        cpuset_cpus: cpu.cpus.filter(|s| !s.is_empty()),
        cpuset_mems: cpu.mems.filter(|s| !s.is_empty()),
        pids_limit: o.pids.and_then(|p| p.limit),
        devices: with_default_devices(o.devices),
        blkio_weight,
        blkio_throttle: block_io.throttles(),
        ..Default::default()
    })
}

/// Callers such as podman only say "deny all" and leave the devices every container needs
/// (null, zero, the terminals...) to the runtime: runc allows them after the config's rules,
/// and so does hako.
fn with_default_devices(mut rules: Vec<DeviceRule>) -> Vec<DeviceRule> {
    if !rules.is_empty() {
        rules.extend(
            crate::spec::DOCKER_DEVICES
                .iter()
                .map(|&(major, minor)| DeviceRule::allow(DeviceType::Char, Some(major), minor, "rwm")),
        );
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_oci_fields() {
        let v = serde_json::json!({
            "memory": {"limit": 33554432, "swap": 67108864, "reservation": 16777216, "swappiness": 10, "disableOOMKiller": true},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": ""},
            "pids": {"limit": 20},
            "blockIO": {"weight": 10, "throttleReadBpsDevice": [{"major": 253, "minor": 0, "rate": 1048576}]}
        });
        let r = from_oci(Some(&v)).unwrap();
        assert_eq!(r.memory, Some(33554432));
        assert_eq!(r.memory_swap, Some(67108864));
        assert_eq!(
            (r.memory_reservation, r.memory_swappiness, r.oom_kill_disable),
            (Some(16777216), Some(10), true)
        );
        assert_eq!(r.blkio_weight, Some(10));
        let read = Throttle {
            major: 253,
            minor: 0,
            kind: ThrottleKind::ReadBps,
            rate: 1048576,
        };
        assert_eq!(r.blkio_throttle, [read]);
        assert_eq!(
            (r.cpu_quota, r.cpu_period, r.cpu_shares),
            (Some(50000), Some(100000), Some(512))
        );
        assert_eq!(r.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(r.cpuset_mems, None);
        assert_eq!(r.pids_limit, Some(20));
        assert!(r.devices.is_empty());
        assert!(from_oci(Some(&serde_json::json!({"memory": {"limit": "lots"}}))).is_err());
        // podman's deny-all gets the standard devices after it.
        let r = from_oci(Some(
            &serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}),
        ))
        .unwrap();
        assert!(!r.devices[0].allow);
        assert!(r
            .devices
            .iter()
            .any(|d| d.allow && d.major == Some(1) && d.minor == Some(3) && d.access == "rwm"));
    }
}
