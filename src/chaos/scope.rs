//! Which rules a connection's client is in scope of, by its source address and `client.id`.
//!
//! A rule scoped to someone else must cost no more than a rule for another topic, so the
//! regexes and CIDR blocks are not matched per request: a connection decides once per rules
//! snapshot and client id (which a client rarely changes), and each request then looks its rules
//! up by identity.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Rule, RuleSet};

/// One connection's answers to "is this client in the rule's scope?".
#[derive(Debug, Default)]
pub struct ClientScopes {
    address: Option<IpAddr>,
    /// The snapshot the answers are for; held so that the rules (and their addresses) live.
    rules: Option<Arc<RuleSet>>,
    client_id: Option<Vec<u8>>,
    /// The client-scoped rules this client is in scope of, by address.
    in_scope: Vec<*const Rule>,
}

impl ClientScopes {
    pub fn new(address: Option<IpAddr>) -> ClientScopes {
        ClientScopes { address, ..ClientScopes::default() }
    }

    /// Where the client connects from.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// Brings the answers up to date for `rules` and the `client.id` of the request at hand
    /// (only read when some rule scopes by it): a pointer comparison when nothing changed.
    pub fn refresh(&mut self, rules: &Arc<RuleSet>, client_id: impl FnOnce() -> Option<Vec<u8>>) {
        let same_rules = self.rules.as_ref().is_some_and(|known| Arc::ptr_eq(known, rules));
        let client_id = if rules.scopes_by_client_id() { client_id() } else { None };
        if same_rules && client_id == self.client_id {
            return;
        }
        let id = client_id.as_deref().and_then(|id| std::str::from_utf8(id).ok());
        self.in_scope = rules
            .rules()
            .iter()
            .filter(|rule| !rule.common.clients.is_empty() && rule.common.clients.matches(self.address, id))
            .map(Arc::as_ptr)
            .collect();
        self.rules = Some(rules.clone());
        self.client_id = client_id;
    }

    /// Whether `rule` (of the snapshot last refreshed) applies to this client.
    pub fn allows(&self, rule: &Rule) -> bool {
        rule.common.clients.is_empty() || self.in_scope.contains(&(rule as *const Rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(configs: &[&str]) -> Arc<RuleSet> {
        let rules = configs
            .iter()
            .enumerate()
            .map(|(i, config)| {
                let body = format!(r#"{{"config":{config},"apiKeys":"PRODUCE"}}"#);
                Arc::new(
                    Rule::from_request("t", &format!("user-{i}"), "slow-broker", body.as_bytes()).unwrap(),
                )
            })
            .collect();
        Arc::new(RuleSet::new(rules))
    }

    #[test]
    fn answers_follow_the_client_id_and_the_snapshot() {
        let set = rules(&[r#"{"clientIds":["billing-.*"]}"#, r#"{"clientAddresses":["127.0.0.2"]}"#, "{}"]);
        let [by_id, by_address, everyone] = [0, 1, 2].map(|i| set.rules()[i].as_ref());
        let mut scopes = ClientScopes::new(Some("127.0.0.1".parse().unwrap()));
        scopes.refresh(&set, || Some(b"billing-eu".to_vec()));
        assert!(scopes.allows(by_id) && !scopes.allows(by_address) && scopes.allows(everyone));
        scopes.refresh(&set, || Some(b"web".to_vec()));
        assert!(!scopes.allows(by_id), "a new client id is looked at again");

        let mut scopes = ClientScopes::new(Some("127.0.0.2".parse().unwrap()));
        let unscoped = rules(&[r#"{"clientAddresses":["127.0.0.2"]}"#]);
        scopes.refresh(&unscoped, || panic!("no rule scopes by client id: the id is not read"));
        assert!(scopes.allows(unscoped.rules()[0].as_ref()));
    }
}
