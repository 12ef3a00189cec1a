//! Writes that go in one transaction of their own instead of a batch: business
//! and key management, preference links, channels, subject exports, retention
//! purges, the CLI and the bulk import. They are rare (or, for the import, their
//! own batch), so they skip the queue, but they keep the chain exactly as a
//! batch does.
//!
//! # How, top to bottom ([`Writer::write_unbatched_blocking`])
//! 1. Open a transaction (on SQLite behind this process's writer mutex, which
//!    the batches take too).
//! 2. Lock the business's chain head: the first statement is a write, so on
//!    PostgreSQL concurrent writers of the business queue on the head row (no
//!    forked or gapped sequence numbers), and on SQLite the write lock is taken
//!    before anything is read.
//! 3. Run the change with its recorded time (the node's clock, but after the
//!    chain's last write: [`Head::next_recorded_at`]); it returns its value and
//!    its audit events (at least one: every state change is audited).
//! 4. Chain the events after the head (`audit::head`), insert them, store the
//!    moved head, and sign a checkpoint when one is due, all in the same
//!    transaction.
//! 5. Commit; then tell the store the business's chain moved
//!    ([`Store::committed`]: on SQLite the freshness fence of every check), and
//!    only then return (acknowledge).

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{Writer, chain_events};
use crate::audit::head::Head;
use crate::audit::{EventType, NewEvent};
use crate::domain::Actor;
use crate::store::audit as chain;
use crate::store::businesses::Business;
use crate::store::keys::{self, ApiKey, NewApiKey};
use crate::store::{DbConnection, Store, StoreError};

impl Writer {
    /// A write in a transaction of its own (see the module docs): `change` runs
    /// under the business's head lock with the write's recorded time and returns
    /// its value and audit events. Answers after the commit.
    pub async fn write_unbatched<T, F>(
        &self,
        business_id: Uuid,
        actor: Actor,
        change: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, DateTime<Utc>) -> Result<(T, Vec<NewEvent>), StoreError>
            + Send
            + 'static,
    {
        let this = self.clone();
        let (value, seq) = self
            .store()
            .run(move |conn| this.write_unbatched_at(conn, business_id, actor, change))
            .await?;
        // Acknowledged once every node knows it (`store::lease`).
        self.store().propagate(business_id, Some(seq)).await?;
        Ok(value)
    }

    /// [`Writer::write_unbatched`] for blocking callers (the CLI, the import).
    pub fn write_unbatched_blocking<T, F>(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
        actor: Actor,
        change: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(&mut DbConnection, DateTime<Utc>) -> Result<(T, Vec<NewEvent>), StoreError>,
    {
        self.write_unbatched_at(conn, business_id, actor, change)
            .map(|(value, _)| value)
    }

    /// [`Writer::write_unbatched_blocking`], also answering the chain head the
    /// write committed.
    fn write_unbatched_at<T, F>(
        &self,
        conn: &mut DbConnection,
        business_id: Uuid,
        actor: Actor,
        change: F,
    ) -> Result<(T, i64), StoreError>
    where
        F: FnOnce(&mut DbConnection, DateTime<Utc>) -> Result<(T, Vec<NewEvent>), StoreError>,
    {
        let store = self.store();
        let (value, head) = store.transaction(conn, |conn| {
            let mut head = Head::from(chain::lock_head(conn, business_id)?);
            let recorded_at = head.next_recorded_at(store.clock().now());
            let (value, events) = change(conn, recorded_at)?;
            self.append(conn, &mut head, actor, recorded_at, events)?;
            Ok((value, head))
        })?;
        store.committed(business_id, head.seq());
        Ok((value, head.seq()))
    }

    /// Chains `events` after `head` (moving it), inserts them, stores the head
    /// and signs a checkpoint when one is due. In the transaction that holds the
    /// head's lock and made the change the events record.
    fn append(
        &self,
        conn: &mut DbConnection,
        head: &mut Head,
        actor: Actor,
        at: DateTime<Utc>,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let events = chain_events(head, actor, at, events)?;
        chain::insert_events(conn, &events)?;
        chain::save_head(conn, &head.to_row())?;
        self.checkpoint_if_due_in(conn, head)
    }

    /// Creates a business with its first key, and starts its chain with
    /// `business.created` and `key.created`, all in one transaction.
    pub fn create_business_blocking(
        &self,
        conn: &mut DbConnection,
        business: &Business,
        first_key: &NewApiKey,
        actor: Actor,
    ) -> Result<(), StoreError> {
        let store = self.store();
        // A new chain, not a moved one: [`Store::committed`] is not told. This
        // process knows nothing of the business yet, so its first check reads
        // the head from the database (`store::fence`).
        store.transaction(conn, |conn| {
            Store::insert_business(conn, business)?;
            let mut head = Head::genesis(business.id);
            chain::insert_head(conn, &head.to_row())?;
            keys::insert_key(conn, first_key)?;
            let events = vec![
                NewEvent::new(
                    EventType::BusinessCreated,
                    json!({"business_id": business.id, "name": business.name, "policy": business.policy}),
                ),
                key_created(first_key),
            ];
            let at = head.next_recorded_at(store.clock().now());
            self.append(conn, &mut head, actor, at, events)
        })
    }

    /// [`Writer::create_business_blocking`] on the blocking pool.
    pub async fn create_business(
        &self,
        business: Business,
        first_key: NewApiKey,
        actor: Actor,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        self.store()
            .run(move |conn| this.create_business_blocking(conn, &business, &first_key, actor))
            .await
    }

    /// Stores a new key of an existing business, audited.
    pub async fn create_key(&self, key: NewApiKey, actor: Actor) -> Result<ApiKey, StoreError> {
        let this = self.clone();
        self.store()
            .run(move |conn| {
                this.create_key_blocking(conn, &key, actor)?;
                Ok(ApiKey::from(key))
            })
            .await
    }

    /// [`Writer::create_key`] for blocking callers (the CLI).
    pub fn create_key_blocking(
        &self,
        conn: &mut DbConnection,
        key: &NewApiKey,
        actor: Actor,
    ) -> Result<(), StoreError> {
        self.write_unbatched_blocking(conn, key.business_id, actor, |conn, _recorded_at| {
            keys::insert_key(conn, key)?;
            Ok(((), vec![key_created(key)]))
        })
    }

    /// Revokes a key of this business, effective at once. Revoking a revoked key
    /// changes nothing and records nothing; another business's key is `NotFound`.
    pub async fn revoke_key(
        &self,
        business_id: Uuid,
        key_id: Uuid,
        at: DateTime<Utc>,
        actor: Actor,
    ) -> Result<ApiKey, StoreError> {
        let this = self.clone();
        let revoked = self
            .store()
            .run(move |conn| {
                let current = keys::find_key(conn, business_id, key_id)?;
                if current.revoked_at.is_some() {
                    return Ok(current);
                }
                this.write_unbatched_blocking(conn, business_id, actor, |conn, _recorded_at| {
                    if !keys::revoke_key(conn, business_id, key_id, at)? {
                        // Revoked by a concurrent request between our read and our lock.
                        return Err(StoreError::Conflict("already_revoked"));
                    }
                    let event = NewEvent::new(EventType::KeyRevoked, json!({"key_id": key_id}));
                    Ok((keys::find_key(conn, business_id, key_id)?, vec![event]))
                })
                .or_else(|e| match e {
                    StoreError::Conflict("already_revoked") => {
                        keys::find_key(conn, business_id, key_id)
                    }
                    other => Err(other),
                })
            })
            .await?;
        // Refused by every node's next request: acknowledged once every node
        // knows it (also when it was revoked before: that revocation may still
        // be on its way).
        self.store().propagate(business_id, None).await?;
        Ok(revoked)
    }
}

/// The `key.created` event of a key (never its secret or hash).
fn key_created(key: &NewApiKey) -> NewEvent {
    NewEvent::new(
        EventType::KeyCreated,
        json!({"key_id": key.id, "name": key.name, "scopes": key.scopes.to_stored()}),
    )
}
