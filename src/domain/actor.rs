//! Who did something: recorded in every audit event.

use std::fmt;

use uuid::Uuid;

/// The author of a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The operator token (HTTP).
    Operator,
    /// The command line, run by whoever can read the configuration.
    Cli,
    /// The service itself (background jobs such as retention).
    System,
    /// An API key of the business.
    Key(Uuid),
    /// The person themselves, through their preference link (the link's id).
    PreferenceLink(Uuid),
    /// A messaging platform, through a channel connection's signed webhook (the
    /// connection's id).
    Channel(Uuid),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Operator => f.write_str("operator"),
            Actor::Cli => f.write_str("cli"),
            Actor::System => f.write_str("system"),
            Actor::Key(id) => write!(f, "key:{id}"),
            Actor::PreferenceLink(id) => write!(f, "link:{id}"),
            Actor::Channel(id) => write!(f, "channel:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_render_as_the_chain_documents_them() {
        let id = Uuid::nil();
        assert_eq!(Actor::Operator.to_string(), "operator");
        assert_eq!(Actor::Cli.to_string(), "cli");
        assert_eq!(Actor::System.to_string(), "system");
        assert_eq!(
            Actor::Key(id).to_string(),
            "key:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            Actor::PreferenceLink(id).to_string(),
            "link:00000000-0000-0000-0000-000000000000"
        );
    }
}
