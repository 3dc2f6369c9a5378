//! refuse-connections: kaos closes new connections to the broker's port as soon as it accepts
//! them, as a broker whose listener is down while its host is up: the client's connect succeeds
//! and the connection ends before any request, so it backs off and tries another broker. Scoped
//! by `brokerIds` and `clientAddresses`; a new connection has sent no request yet, so the rule's
//! `apiKeys` only names the rule (any API), and client ids, users and topics cannot narrow it.
//! Connections already open keep working.

use kafka_protocol::messages::ApiKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::Configurable;
use super::{Effect, Fault, FaultConfig, FaultContext};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefuseConnections {}

impl Configurable for RefuseConnections {
    fn defaults() -> Value {
        json!({})
    }
}

impl FaultConfig for RefuseConnections {
    const NAME: &'static str = "refuse-connections";
    const SUMMARY: &'static str = "Closes new connections to the broker's port as soon as they are accepted.";
    const API_KEYS: &'static [ApiKey] = &[];
}

impl Fault for RefuseConnections {
    /// It acts when a connection is accepted, before any request.
    fn apply(&self, _context: &mut FaultContext<'_>) -> Option<Effect> {
        None
    }

    fn refuses_connections(&self) -> bool {
        true
    }
}
