//! WhatsApp Business Platform (Cloud API) webhooks: the `X-Hub-Signature-256`
//! check and the payload as Meta sends it (`object: whatsapp_business_account`,
//! `entry[].changes[]` with `field` and `value`).
//!
//! Parsing is lenient by design: Meta adds fields and change types, so unknown
//! ones are ignored, and one malformed item is skipped without dropping the
//! others. Only the signature is strict, and it is checked on the raw bytes
//! before anything is parsed.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Parsed, Signal, SignalKind, Skipped};

/// The header Meta signs the body in.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// The error code Meta returns on a marketing send to a person who stopped
/// marketing messages.
pub const MARKETING_STOPPED_CODE: i64 = 131050;

/// Whether `header` (`sha256=` + hex) is the HMAC-SHA256 of `body` under
/// `app_secret`. Compared in constant time (`Mac::verify_slice`).
pub fn verify_signature(app_secret: &[u8], body: &[u8], header: Option<&[u8]>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix(b"sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_sig.trim_ascii()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The status-error codes counted by their own label; any other is `other`.
/// (A closed set: a metric label must never take a value a client chose.)
const KNOWN_STATUS_CODES: &[(i64, &str)] = &[
    (131050, "131050"),
    (131049, "131049"),
    (131026, "131026"),
    (131047, "131047"),
    (131021, "131021"),
    (131051, "131051"),
    (131000, "131000"),
    (131048, "131048"),
    (131053, "131053"),
    (130472, "130472"),
    (130429, "130429"),
    (131056, "131056"),
    (368, "368"),
    (470, "470"),
];

/// The metric label of a status error code.
pub fn status_code_label(code: Option<i64>) -> &'static str {
    match code {
        None => "none",
        Some(code) => KNOWN_STATUS_CODES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, label)| *label)
            .unwrap_or("other"),
    }
}

/// Parses a verified payload. `serves` says whether the connection serves a
/// phone-number id. A body that is not JSON is `None` (the caller answers 400:
/// Meta never sends one, so it is not Meta).
pub fn parse(body: &[u8], serves: impl Fn(&str) -> bool) -> Option<Parsed> {
    let payload: Value = serde_json::from_slice(body).ok()?;
    let mut parsed = Parsed::default();
    if payload.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        parsed.skipped.push(Skipped::UnknownChange);
        return Some(parsed);
    }
    let entries = payload.get("entry").and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let changes = entry.get("changes").and_then(Value::as_array);
        let Some(changes) = changes else {
            parsed.skipped.push(Skipped::Malformed);
            continue;
        };
        for change in changes {
            parse_change(change, &serves, &mut parsed);
        }
    }
    Some(parsed)
}

fn parse_change(change: &Value, serves: &impl Fn(&str) -> bool, parsed: &mut Parsed) {
    let field = change.get("field").and_then(Value::as_str);
    let value = change.get("value");
    let (Some(field), Some(value)) = (field, value) else {
        parsed.skipped.push(Skipped::Malformed);
        return;
    };
    if !matches!(field, "messages" | "user_preferences") {
        parsed.skipped.push(Skipped::UnknownChange);
        return;
    }
    let phone_number_id = value
        .get("metadata")
        .and_then(|m| m.get("phone_number_id"))
        .and_then(Value::as_str);
    match phone_number_id {
        Some(id) if serves(id) => {}
        Some(_) => {
            parsed.skipped.push(Skipped::UnservedNumber);
            return;
        }
        None => {
            parsed.skipped.push(Skipped::Malformed);
            return;
        }
    }
    for message in array(value, "messages") {
        match message_signal(message) {
            Some(signal) => parsed.signals.push(signal),
            None => parsed.skipped.push(Skipped::Malformed),
        }
    }
    for status in array(value, "statuses") {
        match status_signal(status) {
            Ok(signal) => parsed.signals.push(signal),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
    for preference in array(value, "user_preferences") {
        match preference_signal(preference) {
            Ok(signal) => parsed.signals.push(signal),
            Err(skipped) => parsed.skipped.push(skipped),
        }
    }
}

fn array<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Meta's timestamps are Unix seconds, as a string (or a number).
fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = match value.get("timestamp")? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Utc.timestamp_opt(seconds, 0).single()
}

/// A user message: `from`, `id`, `timestamp`, and by `type` its text: `text.body`,
/// `button.text` / `button.payload` (a template's quick reply),
/// `interactive.button_reply` / `interactive.list_reply` (`title`, `id`).
fn message_signal(message: &Value) -> Option<Signal> {
    let from = str_of(message, "from")?;
    let id = str_of(message, "id")?;
    let mut texts = Vec::new();
    let mut push = |text: Option<&str>| {
        if let Some(text) = text {
            texts.push(text.to_owned());
        }
    };
    if let Some(text) = message.get("text") {
        push(str_of(text, "body"));
    }
    if let Some(button) = message.get("button") {
        push(str_of(button, "text"));
        push(str_of(button, "payload"));
    }
    if let Some(interactive) = message.get("interactive") {
        for reply in ["button_reply", "list_reply"] {
            if let Some(reply) = interactive.get(reply) {
                push(str_of(reply, "title"));
                push(str_of(reply, "id"));
            }
        }
    }
    // A conversation started from a click-to-chat ad carries a referral whose
    // source is the ad (`source_type: ad`, with Meta's click id).
    let from_ad = message.get("referral").is_some_and(|referral| {
        str_of(referral, "source_type") == Some("ad") || referral.get("ctwa_clid").is_some()
    });
    Some(Signal {
        from: from.to_owned(),
        at: timestamp(message),
        delivery_id: format!("wa:message:{id}"),
        reference: id.to_owned(),
        kind: SignalKind::Inbound {
            texts,
            from_ad,
            platform_keyword: None,
        },
    })
}

/// A delivery status: only a failure with error 131050 says something about
/// consent (the person stopped marketing messages).
fn status_signal(status: &Value) -> Result<Signal, Skipped> {
    let codes: Vec<i64> = array(status, "errors")
        .filter_map(|e| e.get("code").and_then(Value::as_i64))
        .collect();
    if !codes.contains(&MARKETING_STOPPED_CODE) {
        return Err(Skipped::Status(status_code_label(codes.first().copied())));
    }
    let (Some(id), Some(recipient)) = (str_of(status, "id"), str_of(status, "recipient_id")) else {
        return Err(Skipped::Malformed);
    };
    let state = str_of(status, "status").unwrap_or("failed");
    Ok(Signal {
        from: recipient.to_owned(),
        at: timestamp(status),
        delivery_id: format!("wa:status:{id}:{state}:{MARKETING_STOPPED_CODE}"),
        reference: id.to_owned(),
        kind: SignalKind::MarketingStopped,
    })
}

/// A marketing-messages preference: `stop` or `resume`. It has no id of its
/// own, so the person, the value and the time identify it.
fn preference_signal(preference: &Value) -> Result<Signal, Skipped> {
    if str_of(preference, "category") != Some("marketing_messages") {
        return Err(Skipped::OtherPreference);
    }
    let kind = match str_of(preference, "value") {
        Some("stop") => SignalKind::MarketingStopped,
        Some("resume") => SignalKind::MarketingResumed,
        _ => return Err(Skipped::Malformed),
    };
    let Some(wa_id) = str_of(preference, "wa_id") else {
        return Err(Skipped::Malformed);
    };
    let at = timestamp(preference);
    let value = str_of(preference, "value").unwrap_or_default();
    let when = at.map(|t| t.timestamp().to_string()).unwrap_or_default();
    Ok(Signal {
        from: wa_id.to_owned(),
        at,
        delivery_id: format!("wa:preference:{wa_id}:{value}:{when}"),
        reference: format!("user_preferences:{value}:{when}"),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_signature_is_checked_over_the_raw_bytes() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let good = sign(b"secret", body);
        assert!(verify_signature(b"secret", body, Some(good.as_bytes())));
        assert!(!verify_signature(b"other", body, Some(good.as_bytes())));
        assert!(!verify_signature(b"secret", b"{}", Some(good.as_bytes())));
        assert!(!verify_signature(b"secret", body, None));
        assert!(!verify_signature(
            b"secret",
            body,
            Some(&good.as_bytes()[7..])
        ));
        assert!(!verify_signature(b"secret", body, Some(b"sha256=zz")));
    }

    #[test]
    fn status_labels_are_a_closed_set() {
        assert_eq!(status_code_label(Some(131050)), "131050");
        assert_eq!(status_code_label(Some(987654321)), "other");
        assert_eq!(status_code_label(None), "none");
    }

    #[test]
    fn unknown_fields_and_changes_are_ignored_and_bad_items_do_not_drop_others() {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "new_top_level": true,
            "entry": [{"id": "1", "changes": [
                {"field": "account_update", "value": {"x": 1}},
                {"field": "messages", "value": {
                    "metadata": {"phone_number_id": "PN1", "new": 1},
                    "messages": [
                        {"from": "16315551181", "id": "wamid.A", "timestamp": "1700000000",
                         "type": "text", "text": {"body": "STOP"}, "brand_new": {}},
                        {"id": "wamid.B"}
                    ]}},
                {"field": "messages", "value": {"metadata": {"phone_number_id": "PN9"},
                    "messages": [{"from": "1", "id": "x", "timestamp": "1"}]}}
            ]}]
        });
        let parsed = parse(body.to_string().as_bytes(), |id| id == "PN1").unwrap();
        assert_eq!(parsed.signals.len(), 1);
        assert_eq!(parsed.signals[0].at.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(
            parsed.skipped,
            vec![
                Skipped::UnknownChange,
                Skipped::Malformed,
                Skipped::UnservedNumber
            ]
        );
    }
}
