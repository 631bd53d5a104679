//! hako's networks: bridges and veth pairs (rtnetlink), address management, NAT and port
//! publishing (nftables), and the embedded DNS resolver of user networks.

pub mod dns;
pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod ports;
