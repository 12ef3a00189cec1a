//! Twilio Messaging inbound webhooks: the `X-Twilio-Signature` check and the
//! form-encoded message (`From`, `To`, `Body`, `MessageSid`, and `OptOutType`
//! when Advanced Opt-Out is on).
//!
//! Twilio signs the URL it posted to (as configured on the connection, since a
//! proxy in front of this service changes what the request itself shows)
//! followed by every POST parameter, sorted by name, as name and value
//! concatenated: HMAC-SHA1 under the account's auth token, base64.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{PlatformKeyword, Signal, SignalKind};

/// The header Twilio signs the request in.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The empty TwiML answer: nothing to send back.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

/// Whether `header` signs `url` and `params` under `auth_token` (constant-time
/// comparison through `Mac::verify_slice`).
pub fn verify_signature(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&[u8]>,
) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(header.trim_ascii())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token) else {
        return false;
    };
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(&signature).is_ok()
}

/// The signal of an inbound message; `None` without `From` or `MessageSid`.
pub fn parse(params: &[(String, String)]) -> Option<Signal> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // WhatsApp through Twilio writes `whatsapp:+1...`.
    let from = get("From")?;
    let from = from.strip_prefix("whatsapp:").unwrap_or(from);
    let sid = get("MessageSid").or_else(|| get("SmsSid"))?;
    let platform_keyword = match get("OptOutType").map(str::to_ascii_uppercase).as_deref() {
        Some("STOP") => Some(PlatformKeyword::Stop),
        Some("START") => Some(PlatformKeyword::Start),
        Some("HELP") => Some(PlatformKeyword::Help),
        _ => None,
    };
    // A click-to-WhatsApp ad through Twilio carries the ad's referral.
    let from_ad = get("ReferralCtwaClid").is_some() || get("ReferralSourceType") == Some("ad");
    Some(Signal {
        from: from.to_owned(),
        at: None,
        delivery_id: format!("twilio:message:{sid}"),
        reference: sid.to_owned(),
        kind: SignalKind::Inbound {
            texts: get("Body").map(str::to_owned).into_iter().collect(),
            from_ad,
            platform_keyword,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_signature_covers_url_and_sorted_parameters() {
        let p = params(&[
            ("To", "+15005550006"),
            ("Body", "hi"),
            ("From", "+14155551234"),
        ]);
        let mut mac = Hmac::<Sha1>::new_from_slice(b"token").unwrap();
        mac.update(b"https://x.example/hook?a=1BodyhiFrom+14155551234To+15005550006");
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let url = "https://x.example/hook?a=1";
        assert!(verify_signature(b"token", url, &p, Some(sig.as_bytes())));
        assert!(!verify_signature(b"other", url, &p, Some(sig.as_bytes())));
        assert!(!verify_signature(
            b"token",
            "https://x.example/hook",
            &p,
            Some(sig.as_bytes())
        ));
        assert!(!verify_signature(
            b"token",
            url,
            &p[1..],
            Some(sig.as_bytes())
        ));
        assert!(!verify_signature(b"token", url, &p, None));
    }

    #[test]
    fn opt_out_type_and_whatsapp_numbers_are_read() {
        let signal = parse(&params(&[
            ("From", "whatsapp:+14155551234"),
            ("MessageSid", "SM1"),
            ("OptOutType", "STOP"),
        ]))
        .unwrap();
        assert_eq!(signal.from, "+14155551234");
        assert!(matches!(
            signal.kind,
            SignalKind::Inbound {
                platform_keyword: Some(PlatformKeyword::Stop),
                ..
            }
        ));
        assert!(parse(&params(&[("From", "+1")])).is_none());
    }
}
