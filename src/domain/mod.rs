//! Domain types: parsed at the edge, trusted inside. No actix, no diesel here.

pub mod actor;
pub mod evidence;
pub mod history;
pub mod language;
pub mod phone;
pub mod scope;
pub mod time;

pub use actor::Actor;
pub use scope::{Scope, Scopes};

/// A new UUIDv7 for the hot path (request and decision ids). Like
/// [`uuid::Uuid::now_v7`], but drawn from a context of the calling thread's own
/// rather than the process-wide one, which every worker would contend for on
/// every check. Ids stay unique (under each millisecond, 74 bits of counter and
/// randomness); they are ordered within a thread, not across threads.
pub fn hot_v7() -> uuid::Uuid {
    use uuid::timestamp::{Timestamp, context::ContextV7};
    thread_local! {
        static CONTEXT: ContextV7 = const { ContextV7::new() };
    }
    CONTEXT.with(|context| uuid::Uuid::new_v7(Timestamp::now(context)))
}

#[cfg(test)]
mod tests {
    use super::hot_v7;

    #[test]
    fn hot_v7_ids_are_version_7_unique_and_ordered_within_a_thread() {
        let ids: Vec<uuid::Uuid> = (0..10_000).map(|_| hot_v7()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered");
        let other: Vec<uuid::Uuid> = std::thread::spawn(|| (0..10_000).map(|_| hot_v7()).collect())
            .join()
            .unwrap();
        let all: std::collections::HashSet<_> = ids.iter().chain(&other).collect();
        assert_eq!(all.len(), 20_000, "unique across threads");
    }
}
