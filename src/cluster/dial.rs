//! Where kaos dials when it needs a broker, as Kafka's own clients do once they have
//! bootstrapped: the configured bootstrap servers first, then every broker the cluster has
//! named, those known to be down last (still tried: knowledge of a broker's death can be stale);
//! a host name resolved again on every attempt, and every address it resolves to tried in turn
//! (the clients' `client.dns.lookup=use_all_dns_ips`), so that a broker that comes back at a new
//! address, as pods do, is followed.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The servers (`host:port`) to try, in order, for a connection to any broker: the configured
/// bootstrap servers starting at `first` (so that connections spread over them), then the
/// learned brokers not among them; each once, and those `is_down` says are down after the rest.
pub fn any_broker(
    configured: &[String],
    first: usize,
    learned: &BTreeMap<i32, String>,
    is_down: impl Fn(&str) -> bool,
) -> Vec<String> {
    let rotated = (0..configured.len()).map(|i| &configured[(first + i) % configured.len()]);
    let mut order: Vec<&String> = Vec::with_capacity(configured.len() + learned.len());
    for server in rotated.chain(learned.values()) {
        if !order.contains(&server) {
            order.push(server);
        }
    }
    let (up, down): (Vec<&String>, Vec<&String>) = order.into_iter().partition(|server| !is_down(server));
    up.into_iter().chain(down).cloned().collect()
}

/// Every address `server` (`host:port`) resolves to now, in the resolver's order. An IP address
/// needs no lookup. Blocks while a name is looked up: call it off the shards' reactors.
pub fn resolve(server: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(address) = server.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    let addresses: Vec<SocketAddr> = server.to_socket_addrs()?.collect();
    if addresses.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address"));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn configured_servers_come_first_then_learned_brokers_then_the_dead() {
        let configured = servers(&["a:1", "b:2"]);
        let learned: BTreeMap<i32, String> =
            [(1, "a:1".to_owned()), (2, "c:3".to_owned()), (3, "d:4".to_owned())].into();
        assert_eq!(any_broker(&configured, 0, &learned, |_| false), servers(&["a:1", "b:2", "c:3", "d:4"]));
        assert_eq!(any_broker(&configured, 1, &learned, |_| false), servers(&["b:2", "a:1", "c:3", "d:4"]));
        assert_eq!(
            any_broker(&configured, 0, &learned, |server| server == "a:1" || server == "c:3"),
            servers(&["b:2", "d:4", "a:1", "c:3"]),
            "the dead last, in the same order"
        );
        assert_eq!(any_broker(&[], 0, &learned, |_| false), servers(&["a:1", "c:3", "d:4"]));
    }

    #[test]
    fn addresses_resolve_every_time_and_all_of_them() {
        assert_eq!(resolve("127.0.0.1:9092").unwrap(), ["127.0.0.1:9092".parse().unwrap()]);
        assert_eq!(resolve("[::1]:9092").unwrap(), ["[::1]:9092".parse().unwrap()]);
        let local = resolve("localhost:9092").unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 9092), "{local:?}");
        assert!(resolve("no-such-host.invalid:9092").is_err());
        assert!(resolve("no port").is_err());
    }
}
