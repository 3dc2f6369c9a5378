//! The upstream cluster as kaos knows it: which brokers exist and whether the cluster answers.
//!
//! A plain thread asks the bootstrap servers for Metadata every second, logged in as kaos where
//! `--upstream-sasl-*` asks for it. It publishes the broker list through arc-swap (the shards
//! open a port for each new broker) and drives `/ready`. A cluster that wants a SASL login kaos
//! does not have (the clients' own SASL passes through) still answers ApiVersions: it counts as
//! up, and the shards learn its brokers from the clients' Metadata responses instead.

pub mod client;

use std::collections::BTreeMap;
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

/// Real broker addresses by node id, with a generation that changes whenever they do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Topology {
    pub generation: u64,
    pub brokers: BTreeMap<i32, String>,
}

pub fn spawn_watcher(
    bootstrap: Vec<String>,
    shared: Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("cluster-watcher".into()).spawn(move || {
        let mut first_attempt = true;
        let mut said_login_required = false;
        while !shared.shutting_down.load(Ordering::Relaxed) {
            let upstream = shared.upstream();
            match fetch_brokers(&bootstrap, upstream) {
                Ok(brokers) => {
                    if shared.upstream_sasl.is_some() {
                        shared.upstream_login_failure.store(None);
                    }
                    if !shared.upstream_ready.swap(true, Ordering::Relaxed) {
                        info!(?brokers, "upstream cluster answered Metadata");
                    }
                    let current = shared.topology.load();
                    if current.brokers != brokers {
                        shared
                            .topology
                            .store(Arc::new(Topology { generation: current.generation + 1, brokers }));
                    }
                }
                Err(why) if why.wants_login() => {
                    if !std::mem::replace(&mut said_login_required, true) {
                        info!(error = %why, "the cluster wants a SASL login: it is up (it answers ApiVersions), and kaos learns its brokers from the Metadata responses its clients receive (--upstream-sasl-* lets kaos log in and watch it itself)");
                    }
                    shared.upstream_ready.store(true, Ordering::Relaxed);
                }
                Err(why) => {
                    if let (Some((server, login)), Some(credentials)) = (why.login_failure(), &shared.upstream_sasl) {
                        let failure = credentials.refused_by(server, login);
                        shared.upstream_login_failure.store(Some(Arc::new(failure)));
                    }
                    if shared.upstream_ready.swap(false, Ordering::Relaxed) {
                        warn!(error = %why, "upstream cluster stopped answering Metadata");
                    } else if first_attempt {
                        warn!(error = %why, "upstream cluster not answering Metadata yet (retrying every second)");
                    }
                }
            }
            first_attempt = false;
            shared.sleep_unless_shutting_down(POLL_INTERVAL);
        }
    })
}

/// Asks each bootstrap server in turn for the broker list until one answers.
pub fn fetch_brokers(
    bootstrap: &[String],
    upstream: Upstream,
) -> Result<BTreeMap<i32, String>, UpstreamError> {
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
    let mut client = BrokerClient::connect(server, upstream, "kaos-cluster-watcher", IO_TIMEOUT)?;
    // An empty topic list asks for brokers only.
    let request = MetadataRequest::default().with_topics(Some(vec![]));
    let response: MetadataResponse = client.call(ApiKey::Metadata, METADATA_VERSION, &request)?;
    Ok(response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}
