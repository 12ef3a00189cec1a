//! Diesel's view of the tables. Written to match `migrations/`; the migration tests
//! read the `table!` declarations of this file and compare every table, column,
//! type, nullability and primary key with what each backend has after migrating
//! (keep one `table!` block per table, in the shape `rustfmt` leaves it).

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
        last_recorded_at -> Nullable<Timestamp>,
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
    channels,
    import_progress,
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

diesel::table! {
    channels (id) {
        id -> Text,
        business_id -> Text,
        kind -> Text,
        name -> Text,
        config -> Text,
        wrapped_key -> Binary,
        secrets -> Binary,
        fingerprint -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    import_progress (business_id, file_hash) {
        business_id -> Text,
        file_hash -> Text,
        last_line -> BigInt,
        imported -> BigInt,
        rejected -> BigInt,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(channels -> businesses (business_id));
diesel::joinable!(import_progress -> businesses (business_id));

diesel::table! {
    consentgate_nodes (node_id) {
        node_id -> Text,
        lease_until -> BigInt,
        fenced -> Bool,
    }
}
