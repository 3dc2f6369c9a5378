//! The network faults armed on one connection (see `chaos::network`): which are in force, what
//! they ask of the two lanes (pacing, a byte limit), and when they end the connection.
//!
//! A fault stays armed while its rule is in the rules snapshot and active: deleting the rule, or
//! its quiet period, gives the connection its normal network back, as removing a Toxiproxy toxic
//! does. Checking costs nothing on connections with nothing armed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chaos::network::LinkFault;
use crate::chaos::{Direction, Rule, RuleSet};

use super::pace::Shape;

#[derive(Debug)]
struct Armed {
    rule: Arc<Rule>,
    fault: LinkFault,
    since: Instant,
}

/// How one lane must be shaped now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LaneShaping {
    pub shape: Option<Shape>,
    /// `Some`: the lane's byte limit changed to this (`None`: no limit).
    pub new_limit: Option<Option<u64>>,
}

/// The network faults in force on one connection.
#[derive(Debug, Default)]
pub struct LinkFaults {
    armed: Vec<Armed>,
    /// Whether the lanes must be shaped again (`shaping`).
    changed: bool,
    /// Whether the set of byte limits changed.
    limits_changed: bool,
}

impl LinkFaults {
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Arms `fault` of `rule` at `now`, unless that rule is armed already.
    pub fn arm(&mut self, rule: Arc<Rule>, fault: LinkFault, now: Instant) {
        if self.armed.iter().any(|armed| armed.rule.key == rule.key) {
            return;
        }
        self.limits_changed |= matches!(fault, LinkFault::LimitData { .. });
        self.armed.push(Armed { rule, fault, since: now });
        self.changed = true;
    }

    /// Disarms the faults whose rule left `rules` or went quiet.
    pub fn prune(&mut self, rules: &RuleSet, now: Instant) {
        let before = self.armed.len();
        let mut limits_left = false;
        self.armed.retain(|armed| {
            let in_force = armed.rule.is_active(now)
                && rules.for_api(armed.rule.key.api_key).iter().any(|rule| Arc::ptr_eq(rule, &armed.rule));
            limits_left |= !in_force && matches!(armed.fault, LinkFault::LimitData { .. });
            in_force
        });
        self.limits_changed |= limits_left;
        self.changed |= self.armed.len() != before;
    }

    /// Whether nothing may be relayed either way (timeout).
    pub fn black_hole(&self) -> bool {
        self.armed.iter().any(|armed| matches!(armed.fault, LinkFault::BlackHole { .. }))
    }

    /// When a fault ends the connection, and whether by a reset (else a close).
    pub fn ends_at(&self) -> Option<(Instant, bool)> {
        self.armed
            .iter()
            .filter_map(|armed| match armed.fault {
                LinkFault::Reset { after } => Some((armed.since + after, true)),
                LinkFault::BlackHole { close_after: Some(after) } => Some((armed.since + after, false)),
                _ => None,
            })
            .min()
    }

    /// How long a close is delayed once one side closes (slow-close).
    pub fn close_delay(&self) -> Option<Duration> {
        self.armed
            .iter()
            .filter_map(|armed| match armed.fault {
                LinkFault::SlowClose { delay } => Some(delay),
                _ => None,
            })
            .max()
    }

    /// What the lane of `direction` (REQUEST: client to broker) must be shaped to, once after
    /// each change; `None` when nothing changed.
    pub fn take_shaping(&mut self) -> Option<[LaneShaping; 2]> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let limits_changed = std::mem::take(&mut self.limits_changed);
        Some([Direction::Request, Direction::Response].map(|direction| {
            let mine = || self.armed.iter().filter(move |armed| armed.rule.key.direction == direction);
            // The latest armed shape of the direction wins: two paces on one lane would not add up.
            let shape = mine().filter_map(|armed| shape_of(armed.fault)).next_back();
            let limit = mine()
                .filter_map(|armed| match armed.fault {
                    LinkFault::LimitData { bytes } => Some(bytes),
                    _ => None,
                })
                .min();
            LaneShaping { shape, new_limit: limits_changed.then_some(limit) }
        }))
    }
}

fn shape_of(fault: LinkFault) -> Option<Shape> {
    match fault {
        LinkFault::Bandwidth { bytes_per_second } => Some(Shape::Bandwidth { bytes_per_second }),
        LinkFault::Slices { average, variation, gap } => Some(Shape::Slices { average, variation, gap }),
        _ => None,
    }
}
