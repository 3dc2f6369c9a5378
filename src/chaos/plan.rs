//! Chaos for one request, in two steps. `Plan::decide` runs on every request of an API that has
//! rules, from the header alone: scope, broker, schedule and rate. Only when a rule fires and
//! needs the body does `Plan::carry_out` decode the request, check its topics and let the faults
//! act. An API with no rules costs one index lookup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::{Direction, Effect, FaultContext, Feature, Rule, RuleSet, respond};
use crate::proxy::frame::RequestPrefix;
use crate::proxy::rewrite::encode_frame;

/// Who a connection is and where it goes, as far as kaos knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The SASL/PLAIN username, once the client authenticated.
    pub user: Option<&'a str>,
    /// The upstream broker's node id, when known.
    pub node: Option<i32>,
}

/// The rules that fired for one request.
#[derive(Debug)]
pub struct Plan {
    rules: Vec<Arc<Rule>>,
    pub needs_body: bool,
}

/// What the connection must do with a request after the faults acted.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Answer locally instead of forwarding: the response frame and how long to wait first.
    pub answer: Option<(BytesMut, Duration)>,
    /// Deliver the request to the broker twice.
    pub duplicate: bool,
    /// Hold the request this long before forwarding it.
    pub request_delay: Duration,
    /// Hold its response this long before returning it.
    pub response_delay: Duration,
    /// The re-encoded request (length prefix included) when records changed.
    pub rewritten: Option<BytesMut>,
    /// Each fault that acted, for the metrics.
    pub applied: Vec<(Feature, Effect)>,
}

/// A request version kaos cannot decode: it passes through untouched.
#[derive(Debug)]
pub struct Undecodable(pub String);

enum Decoded {
    Produce(RequestHeader, ProduceRequest),
    Fetch(FetchRequest),
}

impl Plan {
    pub fn decide(rules: &RuleSet, api_key: i16, scope: Scope<'_>, rng: &mut fastrand::Rng) -> Option<Plan> {
        let candidates = rules.for_api(api_key);
        if candidates.is_empty() {
            return None;
        }
        let now = Instant::now();
        let fired: Vec<_> = candidates
            .iter()
            .filter(|rule| rule.applies_to(scope.user, scope.node) && rule.is_active(now) && rule.fires(rng))
            .cloned()
            .collect();
        if fired.is_empty() {
            return None;
        }
        let needs_body = fired.iter().any(|rule| rule.needs_body());
        Some(Plan { rules: fired, needs_body })
    }

    /// Lets the fired faults act on one request. `body` is the frame after its length prefix;
    /// `topic_by_id` names the topics of request versions that use topic ids.
    pub fn carry_out(
        &self,
        request: RequestPrefix,
        body: &[u8],
        topic_by_id: &dyn Fn(&[u8; 16]) -> Option<String>,
        rng: &mut fastrand::Rng,
    ) -> Result<Outcome, Undecodable> {
        let mut decoded = if self.needs_body { Some(decode(request, body)?) } else { None };
        let topics = decoded.as_ref().map(|d| topic_names(d, topic_by_id)).unwrap_or_default();
        let produce_topic_name = |topic: &TopicProduceData| -> Option<String> {
            if topic.name.0.is_empty() {
                topic_by_id(topic.topic_id.as_bytes())
            } else {
                Some(topic.name.0.to_string())
            }
        };
        let mut outcome = Outcome::default();
        let mut rewrote = false;
        for rule in &self.rules {
            if !rule.topics.is_empty() && !topics.iter().any(|topic| rule.topics.matches(topic)) {
                continue;
            }
            let produce = match &mut decoded {
                Some(Decoded::Produce(_, produce)) => Some(produce),
                _ => None,
            };
            let mut context =
                FaultContext { rng, topics: &rule.topics, produce, topic_name: &produce_topic_name };
            let Some(effect) = rule.fault.apply(&mut context) else { continue };
            match &effect {
                Effect::Delay(delay) => match rule.key.direction {
                    Direction::Request => outcome.request_delay = outcome.request_delay.max(*delay),
                    Direction::Response => outcome.response_delay = outcome.response_delay.max(*delay),
                },
                Effect::Fail { error, after } if outcome.answer.is_none() => {
                    let frame = match &decoded {
                        Some(Decoded::Produce(_, produce)) => respond::failed_produce(
                            produce,
                            request.api_version,
                            request.correlation_id,
                            *error,
                        ),
                        Some(Decoded::Fetch(fetch)) => {
                            respond::failed_fetch(fetch, request.api_version, request.correlation_id, *error)
                        }
                        None => Err("a failure needs the decoded request".into()),
                    }
                    .map_err(Undecodable)?;
                    outcome.answer = Some((frame, *after));
                }
                Effect::Fail { .. } => {}
                Effect::Duplicate => outcome.duplicate = true,
                Effect::Rewrote(_) => rewrote = true,
            }
            outcome.applied.push((rule.feature(), effect));
        }
        if let Some(Decoded::Produce(header, produce)) =
            decoded.as_ref().filter(|_| rewrote && outcome.answer.is_none())
        {
            let header_version = ApiKey::Produce.request_header_version(request.api_version);
            let frame =
                encode_frame(header, header_version, produce, request.api_version).map_err(Undecodable)?;
            outcome.rewritten = Some(frame);
        }
        Ok(outcome)
    }
}

fn decode(request: RequestPrefix, body: &[u8]) -> Result<Decoded, Undecodable> {
    let api =
        ApiKey::try_from(request.api_key).map_err(|_| Undecodable(format!("API key {}", request.api_key)))?;
    let range = api.valid_versions();
    if !(range.min..=range.max).contains(&request.api_version)
        || !matches!(api, ApiKey::Produce | ApiKey::Fetch)
    {
        return Err(Undecodable(format!("{api:?} v{}", request.api_version)));
    }
    let version = request.api_version;
    let mut bytes = Bytes::copy_from_slice(body);
    let undecodable = undecodable(api, version);
    let header =
        RequestHeader::decode(&mut bytes, api.request_header_version(version)).map_err(undecodable)?;
    Ok(match api {
        ApiKey::Produce => {
            Decoded::Produce(header, ProduceRequest::decode(&mut bytes, version).map_err(undecodable)?)
        }
        _ => Decoded::Fetch(FetchRequest::decode(&mut bytes, version).map_err(undecodable)?),
    })
}

fn undecodable<E: std::fmt::Display>(api: ApiKey, version: i16) -> impl Fn(E) -> Undecodable + Copy {
    move |e| Undecodable(format!("{api:?} v{version}: {e}"))
}

/// The topic names a request touches; topics known only by an unknown id are left out.
fn topic_names(decoded: &Decoded, topic_by_id: &dyn Fn(&[u8; 16]) -> Option<String>) -> Vec<String> {
    let name_or_id =
        |name: &str, id: &[u8; 16]| if name.is_empty() { topic_by_id(id) } else { Some(name.to_owned()) };
    match decoded {
        Decoded::Produce(_, produce) => produce
            .topic_data
            .iter()
            .filter_map(|t| name_or_id(t.name.0.as_str(), t.topic_id.as_bytes()))
            .collect(),
        Decoded::Fetch(fetch) => fetch
            .topics
            .iter()
            .filter_map(|t| name_or_id(t.topic.0.as_str(), t.topic_id.as_bytes()))
            .collect(),
    }
}
