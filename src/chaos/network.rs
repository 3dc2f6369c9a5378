//! What the network faults share: how they change one connection (`LinkFault`), which the data
//! path carries out on its sockets, and when a matching request arms them (`Trigger`).
//!
//! They are Toxiproxy's toxics made Kafka-aware. A network fault acts on one connection to a
//! broker, armed by a request its rule matches: the rule's API, broker, client and topics scope
//! it as every rule, and `afterRequests` and `onApiKeys` say how far into the connection it
//! starts. Once armed, it lasts as long as its rule is active; deleting the rule (or its quiet
//! period) gives the connection back its normal network.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rule::ApiName;

/// What a network fault does to the connection it is armed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// Reset both sockets (RST to the client) this long after arming.
    Reset { after: Duration },
    /// Relay nothing either way and keep the sockets open; close them this long after arming
    /// when set.
    BlackHole { close_after: Option<Duration> },
    /// Write the rule's direction at most this fast.
    Bandwidth { bytes_per_second: u64 },
    /// Write the rule's direction in pieces of `average` ± `variation` bytes, `gap` apart.
    Slices { average: usize, variation: usize, gap: Duration },
    /// When one side closes, close the other this much later, relaying until then.
    SlowClose { delay: Duration },
    /// Close the connection once the rule's direction has written this many more bytes.
    LimitData { bytes: u64 },
    /// The connection was closed as it was accepted (refuse-connections).
    Refuse,
}

/// What a request sees of the connection it arrived on, for `Trigger`s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionSoFar {
    /// Requests the connection carried before this one.
    pub requests: u64,
    /// The API keys among them, one bit per key below 128.
    pub apis_seen: u128,
}

impl ConnectionSoFar {
    /// Counts a request of `api_key` once it has been judged.
    pub fn count(&mut self, api_key: i16) {
        self.requests += 1;
        if let Ok(bit) = u32::try_from(api_key) {
            self.apis_seen |= 1u128.checked_shl(bit).unwrap_or(0);
        }
    }

    fn has_seen(&self, api_key: i16) -> bool {
        u32::try_from(api_key).is_ok_and(|bit| self.apis_seen & 1u128.checked_shl(bit).unwrap_or(0) != 0)
    }
}

/// When a matching request arms a network fault: the L4 proxies' "always", narrowed by what
/// only a Kafka-aware proxy sees.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Arm only on a connection that already carried this many requests (of any API) before
    /// the matching one.
    after_requests: u64,
    /// Arm only on a connection that already carried one of these APIs (with apiKeys FETCH and
    /// onApiKeys [JOIN_GROUP]: the first Fetch after a JoinGroup); []: any connection.
    on_api_keys: Vec<ApiName>,
}

impl Trigger {
    /// The trigger fields' defaults, merged into each network fault's.
    pub fn defaults(own: Value) -> Value {
        let mut defaults = json!({"afterRequests": 0, "onApiKeys": []});
        if let (Value::Object(defaults), Value::Object(own)) = (&mut defaults, own) {
            defaults.extend(own);
        }
        defaults
    }

    /// Whether a request on a connection that carried `so_far` arms the fault.
    pub fn arms(&self, so_far: &ConnectionSoFar) -> bool {
        so_far.requests >= self.after_requests
            && (self.on_api_keys.is_empty()
                || self.on_api_keys.iter().any(|api| so_far.has_seen(api.0 as i16)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chaos::config::parse;
    use crate::chaos::{Effect, FaultConfig, FaultContext};
    use kafka_protocol::messages::ApiKey;

    /// A network fault of type `T` read from `config`: what the first request of a connection
    /// gets, and, with `afterRequests: n` added, what its n-th request gets and whether its
    /// (n+1)-th arms it.
    pub fn armed_after<T: FaultConfig>(config: Value, n: u64) -> (Option<Effect>, (Option<Effect>, bool)) {
        let (mut rng, topics) = (fastrand::Rng::with_seed(1), Default::default());
        let mut context = FaultContext::new(&mut rng, &topics, &|_: &[u8; 16]| None);
        let fields = config.as_object().cloned().unwrap_or_default();
        let first = parse::<T>(fields.clone()).unwrap().apply(&mut context);
        let mut later = fields;
        later.insert("afterRequests".into(), json!(n));
        let later = parse::<T>(later).unwrap();
        context.connection = ConnectionSoFar { requests: n - 1, apis_seen: 0 };
        let too_early = later.apply(&mut context);
        context.connection.requests = n;
        (first, (too_early, later.apply(&mut context).is_some()))
    }

    #[test]
    fn triggers_count_requests_and_remember_apis() {
        let trigger: Trigger =
            serde_json::from_value(json!({"afterRequests": 2, "onApiKeys": ["JOIN_GROUP"]})).unwrap();
        let mut so_far = ConnectionSoFar::default();
        so_far.count(ApiKey::ApiVersions as i16);
        so_far.count(ApiKey::Metadata as i16);
        assert!(!trigger.arms(&so_far), "two requests, but no JoinGroup yet");
        so_far.count(ApiKey::JoinGroup as i16);
        assert!(trigger.arms(&so_far));
        let any: Trigger = serde_json::from_value(Trigger::defaults(json!({}))).unwrap();
        assert!(any.arms(&ConnectionSoFar::default()), "by default the first matching request arms it");
        so_far.count(-3);
        so_far.count(500);
        assert_eq!(so_far.requests, 5, "keys kaos cannot index still count as requests");
    }
}
