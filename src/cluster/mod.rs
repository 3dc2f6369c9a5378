//! The upstream cluster as kaos knows it: which brokers exist, which of them kaos can reach,
//! and whether the cluster answers.
//!
//! A plain thread keeps a connection to every broker the cluster names and asks each for
//! Metadata every second, logged in as kaos where `--upstream-sasl-*` asks for it. When none of
//! them answers (or none is known yet) it asks the configured bootstrap servers, at every address
//! their names resolve to (`dial`). So kaos goes on knowing the cluster while any broker is up,
//! whichever it was given. It publishes the broker list and the brokers it could not reach
//! through arc-swap (the shards open a port for each new broker and dial reachable brokers
//! first) and drives `/ready`. A cluster that wants a SASL login kaos does not have (the
//! clients' own SASL passes through) still answers ApiVersions: it counts as up, and the shards
//! learn its brokers from the Metadata responses their clients receive instead.

pub mod client;
pub mod dial;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

pub use client::{BrokerClient, Upstream, UpstreamError};

use crate::shared::Shared;
use tracing::{info, warn};

const METADATA_VERSION: i16 = 1;
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const CLIENT_ID: &str = "kaos-cluster-watcher";

/// Real broker addresses by node id, with a generation that changes whenever they do, and the
/// brokers kaos could not reach at its last look.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Topology {
    pub generation: u64,
    pub brokers: BTreeMap<i32, String>,
    /// Brokers the cluster names that did not answer kaos at its last look, and why.
    pub unreachable: BTreeMap<i32, String>,
}

impl Topology {
    /// Whether `server` is the address of a broker kaos could not reach at its last look.
    pub fn is_unreachable(&self, server: &str) -> bool {
        self.unreachable.keys().any(|node| self.brokers.get(node).is_some_and(|address| address == server))
    }
}

pub fn spawn_watcher(
    bootstrap: Vec<String>,
    shared: Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("cluster-watcher".into()).spawn(move || {
        let mut watcher = Watcher {
            bootstrap,
            shared: shared.clone(),
            connections: BTreeMap::new(),
            first_look: true,
            said_login_required: false,
        };
        while !shared.shutting_down.load(Ordering::Relaxed) {
            watcher.look();
            shared.sleep_unless_shutting_down(POLL_INTERVAL);
        }
    })
}

/// The watcher thread's state between looks.
struct Watcher {
    bootstrap: Vec<String>,
    shared: Arc<Shared>,
    /// A connection to each broker that answered, kept open: asking over it costs one request.
    connections: BTreeMap<i32, BrokerClient>,
    first_look: bool,
    said_login_required: bool,
}

impl Watcher {
    /// Asks every broker the cluster names, or the bootstrap servers when none of them answers,
    /// and publishes what it learned.
    fn look(&mut self) {
        let known = self.shared.topology.load_full();
        let mut answer = None;
        let mut unreachable = BTreeMap::new();
        for (&node, address) in &known.brokers {
            match self.ask(node, address) {
                Ok(brokers) => {
                    answer.get_or_insert(brokers);
                }
                Err(why) => {
                    unreachable.insert(node, why.to_string());
                }
            }
        }
        self.connections.retain(|node, _| known.brokers.contains_key(node));
        let result = match answer {
            Some(brokers) => Ok(brokers),
            None => fetch_brokers(&self.bootstrap, self.shared.upstream()),
        };
        match result {
            Ok(brokers) => {
                if self.shared.upstream_sasl.is_some() {
                    self.shared.upstream_login_failure.store(None);
                }
                if !self.shared.upstream_ready.swap(true, Ordering::Relaxed) {
                    info!(?brokers, "upstream cluster answered Metadata");
                }
                // A broker the cluster no longer names is gone, not unreachable.
                unreachable.retain(|node, _| brokers.contains_key(node));
                self.publish(&known, brokers, unreachable);
            }
            Err(why) if why.wants_login() => {
                if !std::mem::replace(&mut self.said_login_required, true) {
                    info!(error = %why, "the cluster wants a SASL login: it is up (it answers ApiVersions), and kaos learns its brokers from the Metadata responses its clients receive (--upstream-sasl-* lets kaos log in and watch it itself)");
                }
                self.shared.upstream_ready.store(true, Ordering::Relaxed);
            }
            Err(why) => {
                if let (Some((server, login)), Some(credentials)) =
                    (why.login_failure(), &self.shared.upstream_sasl)
                {
                    let failure = credentials.refused_by(server, login);
                    self.shared.upstream_login_failure.store(Some(Arc::new(failure)));
                }
                if self.shared.upstream_ready.swap(false, Ordering::Relaxed) {
                    warn!(error = %why, "upstream cluster stopped answering Metadata: no broker answers");
                } else if self.first_look {
                    warn!(error = %why, "upstream cluster not answering Metadata yet (retrying every second)");
                }
                self.publish(&known, known.brokers.clone(), unreachable);
            }
        }
        self.first_look = false;
    }

    /// Metadata from broker `node`, over the connection kept to it, opened (again) as needed.
    fn ask(&mut self, node: i32, address: &str) -> Result<BTreeMap<i32, String>, UpstreamError> {
        if self.connections.get(&node).is_some_and(|client| client.server() != address) {
            self.connections.remove(&node);
        }
        let client = match self.connections.entry(node) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(closed) => {
                closed.insert(BrokerClient::connect(address, self.shared.upstream(), CLIENT_ID, IO_TIMEOUT)?)
            }
        };
        let answer = brokers_from(client);
        if answer.is_err() {
            self.connections.remove(&node);
        }
        answer
    }

    /// Publishes a new topology where anything changed, and logs brokers that went out of reach
    /// or came back.
    fn publish(&self, known: &Topology, brokers: BTreeMap<i32, String>, unreachable: BTreeMap<i32, String>) {
        for (node, why) in &unreachable {
            if !known.unreachable.contains_key(node) {
                warn!(node, error = %why, "broker {node} does not answer kaos");
            }
        }
        for node in known.unreachable.keys() {
            if brokers.contains_key(node) && !unreachable.contains_key(node) {
                info!(node, "broker {node} answers kaos again");
            }
        }
        if known.brokers == brokers && known.unreachable == unreachable {
            return;
        }
        let generation = if known.brokers == brokers { known.generation } else { known.generation + 1 };
        self.shared.topology.store(Arc::new(Topology { generation, brokers, unreachable }));
    }
}

/// Asks each bootstrap server in turn for the broker list until one answers.
fn fetch_brokers(bootstrap: &[String], upstream: Upstream) -> Result<BTreeMap<i32, String>, UpstreamError> {
    let mut failures = Vec::new();
    for server in bootstrap {
        match metadata_from(server, upstream) {
            Ok(brokers) => return Ok(brokers),
            Err(why) => failures.push(why),
        }
    }
    Err(UpstreamError::NoneAnswered(failures))
}

fn metadata_from(server: &str, upstream: Upstream) -> Result<BTreeMap<i32, String>, UpstreamError> {
    brokers_from(&mut BrokerClient::connect(server, upstream, CLIENT_ID, IO_TIMEOUT)?)
}

/// The brokers a connected broker names (Metadata with an empty topic list asks for brokers only).
fn brokers_from(client: &mut BrokerClient) -> Result<BTreeMap<i32, String>, UpstreamError> {
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let response: MetadataResponse = client.call(ApiKey::Metadata, METADATA_VERSION, &request)?;
    Ok(response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_unreachable_only_as_the_address_of_an_unreachable_broker() {
        let topology = Topology {
            generation: 1,
            brokers: [(1, "a:1".to_owned()), (2, "b:2".to_owned())].into(),
            unreachable: [(2, "b:2: refused".to_owned()), (7, "gone".to_owned())].into(),
        };
        assert!(topology.is_unreachable("b:2"));
        assert!(!topology.is_unreachable("a:1"));
        assert!(!topology.is_unreachable("c:3"), "an address the cluster does not name");
    }
}
