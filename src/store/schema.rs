//! Diesel's view of the tables. Written to match `migrations/`; the migration tests
//! compare it with what each backend actually has after migrating.

diesel::table! {
    meta (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    businesses (id) {
        id -> Text,
        name -> Text,
        policy -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        business_id -> Text,
        name -> Text,
        scopes -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_heads (business_id) {
        business_id -> Text,
        seq -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    audit_events (business_id, seq) {
        business_id -> Text,
        seq -> BigInt,
        id -> Text,
        at -> Timestamp,
        event_type -> Text,
        actor -> Text,
        subject_id -> Nullable<Text>,
        data -> Text,
        prev_hash -> Binary,
        hash -> Binary,
    }
}

diesel::joinable!(api_keys -> businesses (business_id));
diesel::joinable!(audit_events -> businesses (business_id));
diesel::joinable!(audit_heads -> businesses (business_id));

/// Every table and its columns, in declaration order: what the migration tests
/// expect each backend to have.
pub const TABLES: &[(&str, &[&str])] = &[
    ("meta", &["key", "value"]),
    ("businesses", &["id", "name", "policy", "created_at"]),
    (
        "api_keys",
        &[
            "id",
            "business_id",
            "name",
            "scopes",
            "secret_hash",
            "created_at",
            "revoked_at",
        ],
    ),
    ("audit_heads", &["business_id", "seq", "hash"]),
    (
        "audit_checkpoints",
        &["business_id", "seq", "hash", "at", "key_id", "signature"],
    ),
    (
        "subjects",
        &[
            "id",
            "business_id",
            "pseudonym",
            "wrapped_key",
            "phone",
            "created_at",
        ],
    ),
    (
        "facts",
        &[
            "id",
            "business_id",
            "subject_id",
            "kind",
            "effective_at",
            "recorded_at",
            "categories",
            "opt_in_id",
            "channel",
            "entry_point",
            "by_keyword",
            "evidence",
        ],
    ),
    (
        "erasures",
        &[
            "id",
            "business_id",
            "pseudonym",
            "subject_id",
            "erased_at",
            "request_reference",
            "suppress",
        ],
    ),
    (
        "idempotency_keys",
        &[
            "business_id",
            "key",
            "request_hash",
            "status",
            "response",
            "created_at",
        ],
    ),
    (
        "preference_links",
        &[
            "id",
            "business_id",
            "subject_id",
            "token_hash",
            "created_at",
            "expires_at",
            "revoked_at",
        ],
    ),
    (
        "console_sessions",
        &[
            "session_hash",
            "business_id",
            "key_id",
            "created_at",
            "expires_at",
        ],
    ),
    (
        "audit_events",
        &[
            "business_id",
            "seq",
            "id",
            "at",
            "event_type",
            "actor",
            "subject_id",
            "data",
            "prev_hash",
            "hash",
        ],
    ),
];

diesel::table! {
    subjects (id) {
        id -> Text,
        business_id -> Text,
        pseudonym -> Binary,
        wrapped_key -> Nullable<Binary>,
        phone -> Nullable<Binary>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    facts (id) {
        id -> Text,
        business_id -> Text,
        subject_id -> Text,
        kind -> Text,
        effective_at -> Timestamp,
        recorded_at -> Timestamp,
        categories -> Nullable<Text>,
        opt_in_id -> Nullable<Text>,
        channel -> Nullable<Text>,
        entry_point -> Nullable<Text>,
        by_keyword -> Bool,
        evidence -> Nullable<Binary>,
    }
}

diesel::table! {
    idempotency_keys (business_id, key) {
        business_id -> Text,
        key -> Text,
        request_hash -> Binary,
        status -> Integer,
        response -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(facts -> subjects (subject_id));
diesel::joinable!(subjects -> businesses (business_id));

diesel::allow_tables_to_appear_in_same_query!(
    meta,
    businesses,
    api_keys,
    audit_heads,
    audit_events,
    audit_checkpoints,
    erasures,
    subjects,
    facts,
    idempotency_keys,
    preference_links,
    console_sessions,
);

diesel::table! {
    audit_checkpoints (business_id, seq) {
        business_id -> Text,
        seq -> BigInt,
        hash -> Binary,
        at -> Timestamp,
        key_id -> Text,
        signature -> Binary,
    }
}

diesel::table! {
    erasures (id) {
        id -> Text,
        business_id -> Text,
        pseudonym -> Binary,
        subject_id -> Text,
        erased_at -> Timestamp,
        request_reference -> Nullable<Text>,
        suppress -> Bool,
    }
}

diesel::table! {
    preference_links (id) {
        id -> Text,
        business_id -> Text,
        subject_id -> Text,
        token_hash -> Binary,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    console_sessions (session_hash) {
        session_hash -> Binary,
        business_id -> Text,
        key_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(preference_links -> subjects (subject_id));
diesel::joinable!(preference_links -> businesses (business_id));
