//! Topic names for requests that name topics by id (Produce v13, Fetch v13 on). kaos learns ids
//! from the Metadata responses it relays; a fault asks for a topic's name one way, whatever the
//! request version (as Kroxylicious's `FilterContext.topicNames`).

use super::frame::TopicRef;

/// What kaos knows of topic ids on one shard.
pub trait TopicNames {
    /// The name of the topic with this id, once a Metadata response showed it.
    fn name_by_id(&self, id: &[u8; 16]) -> Option<String>;

    /// The name of a topic a decoded message carries as a name, or as an id when the name is
    /// empty; `None` for an id no Metadata response showed.
    fn name_of(&self, name: &str, id: &[u8; 16]) -> Option<String> {
        if name.is_empty() { self.name_by_id(id) } else { Some(name.to_owned()) }
    }

    /// The name of a topic as a request's first bytes name it.
    fn name_of_ref(&self, topic: &TopicRef) -> Option<String> {
        match topic {
            TopicRef::Name(name) => Some(name.clone()),
            TopicRef::Id(id) => self.name_by_id(id),
        }
    }
}

/// A lookup function is a source of names (tests use closures).
impl<F: Fn(&[u8; 16]) -> Option<String>> TopicNames for F {
    fn name_by_id(&self, id: &[u8; 16]) -> Option<String> {
        self(id)
    }
}
