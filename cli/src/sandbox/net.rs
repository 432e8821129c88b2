//! Network: bridge `hostctl0` (10.231.0.1/24) in the root namespace, one
//! network namespace per sandbox and one for the AWS stand-in, joined to the
//! bridge by veth pairs. Nobody gets a default route: traffic only goes to
//! loopback and to the namespaces we created.

use std::net::Ipv4Addr;

use tracing::info;

use super::SandboxError;
use super::cmd::{Cmd, command_failed};

pub(crate) const BRIDGE: &str = "hostctl0";
const BRIDGE_CIDR: &str = "10.231.0.1/24";
pub(crate) const AWS_NETNS_NAME: &str = "aws";
pub(crate) const AWS_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 2);
const FIRST_HOST: u32 = 10;
const LAST_HOST: u32 = 250;

/// `hostctl-NAME`.
pub(crate) fn netns(name: &str) -> String {
    format!("hostctl-{name}")
}

/// Host side of the veth pair (`hs-NAME`, at most 15 characters).
fn host_if(name: &str) -> String {
    format!("hs-{name}")
}

/// Namespace side of the veth pair.
fn peer_if(name: &str) -> String {
    format!("hp-{name}")
}

/// Lowest index not in `used` whose address is in range.
pub(crate) fn lowest_free_index(used: &[u32]) -> Option<u32> {
    (0..=LAST_HOST - FIRST_HOST).find(|i| !used.contains(i))
}

pub(crate) fn address_for(index: u32) -> Option<Ipv4Addr> {
    let host = FIRST_HOST.checked_add(index).filter(|h| *h <= LAST_HOST)?;
    Some(Ipv4Addr::new(10, 231, 0, u8::try_from(host).ok()?))
}

async fn link_exists(dev: &str) -> bool {
    Cmd::new("ip")
        .args(["link", "show", "dev", dev])
        .succeeds()
        .await
}

pub(crate) async fn netns_exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// Create the bridge if it is missing (idempotent).
pub(crate) async fn ensure_bridge() -> Result<(), SandboxError> {
    if !link_exists(BRIDGE).await {
        info!("creating bridge {BRIDGE} ({BRIDGE_CIDR})");
        Cmd::new("ip")
            .args(["link", "add", BRIDGE, "type", "bridge"])
            .run("create the sandbox bridge")
            .await?;
    }
    let addrs = Cmd::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", BRIDGE])
        .run("read the bridge address")
        .await?;
    if !addrs.contains(" 10.231.0.1/24 ") {
        Cmd::new("ip")
            .args(["addr", "add", BRIDGE_CIDR, "dev", BRIDGE])
            .run("address the sandbox bridge")
            .await?;
    }
    Cmd::new("ip")
        .args(["link", "set", BRIDGE, "up"])
        .run("bring the sandbox bridge up")
        .await?;
    Ok(())
}

pub(crate) async fn delete_bridge() -> Result<(), SandboxError> {
    if link_exists(BRIDGE).await {
        info!("deleting bridge {BRIDGE}");
        Cmd::new("ip")
            .args(["link", "del", BRIDGE])
            .run("delete the sandbox bridge")
            .await?;
    }
    Ok(())
}

/// Network namespace `hostctl-NAME` with `lo` up and a veth to the bridge
/// carrying `address/24`. No default route. Idempotent.
pub(crate) async fn ensure_namespace(name: &str, address: Ipv4Addr) -> Result<(), SandboxError> {
    let ns = netns(name);
    let (hs, hp) = (host_if(name), peer_if(name));
    if !netns_exists(&ns).await {
        info!("creating network namespace {ns} ({address})");
        Cmd::new("ip")
            .args(["netns", "add", &ns])
            .run("create a network namespace")
            .await?;
    }
    if !link_exists(&hs).await {
        Cmd::new("ip")
            .args([
                "link", "add", &hs, "type", "veth", "peer", "name", &hp, "netns", &ns,
            ])
            .run("create a veth pair")
            .await?;
    }
    Cmd::new("ip")
        .args(["link", "set", &hs, "master", BRIDGE, "up"])
        .run("attach the veth to the bridge")
        .await?;
    let in_ns = |args: &[&str]| Cmd::new("ip").args(["-n", ns.as_str()]).args(args.to_vec());
    in_ns(&["link", "set", "lo", "up"])
        .run("bring loopback up in the namespace")
        .await?;
    let cidr = format!("{address}/24");
    let addrs = in_ns(&["-4", "-o", "addr", "show", "dev", &hp])
        .run("read the namespace address")
        .await?;
    if !addrs.contains(&format!(" {cidr} ")) {
        in_ns(&["addr", "add", &cidr, "dev", &hp])
            .run("address the namespace")
            .await?;
    }
    in_ns(&["link", "set", &hp, "up"])
        .run("bring the namespace veth up")
        .await?;
    Ok(())
}

/// Delete the namespace (which destroys the veth pair with it) and any host
/// side veth left over. Idempotent.
pub(crate) async fn delete_namespace(name: &str) -> Result<(), SandboxError> {
    let ns = netns(name);
    if netns_exists(&ns).await {
        info!("deleting network namespace {ns}");
        Cmd::new("ip")
            .args(["netns", "del", &ns])
            .run("delete a network namespace")
            .await?;
    }
    let hs = host_if(name);
    if link_exists(&hs).await {
        // The kernel destroys the peer asynchronously after `netns del`, so
        // the link may vanish between the check and the delete: only a link
        // that is still there afterwards is an error.
        let out = Cmd::new("ip")
            .args(["link", "del", &hs])
            .run_unchecked("delete a veth")
            .await?;
        if !out.status.success() && link_exists(&hs).await {
            return Err(command_failed(
                "delete a veth",
                &format!("ip link del {hs}"),
                &out,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_takes_lowest_free() {
        assert_eq!(lowest_free_index(&[]), Some(0));
        assert_eq!(lowest_free_index(&[0, 1, 3]), Some(2));
        assert_eq!(lowest_free_index(&[1]), Some(0));
        let full: Vec<u32> = (0..=240).collect();
        assert_eq!(lowest_free_index(&full), None);
    }

    #[test]
    fn addresses() {
        assert_eq!(address_for(0), Some(Ipv4Addr::new(10, 231, 0, 10)));
        assert_eq!(address_for(240), Some(Ipv4Addr::new(10, 231, 0, 250)));
        assert_eq!(address_for(241), None);
        assert_eq!(address_for(u32::MAX), None);
    }

    #[test]
    fn interface_names_fit() {
        assert!(host_if("abcdefghijkl").len() <= 15);
        assert!(peer_if("abcdefghijkl").len() <= 15);
    }
}
