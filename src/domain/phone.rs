//! `Phone`: a subject's phone number, normalised to E.164 (`+31612345678`).
//!
//! This is the only way a phone number enters the domain: parse at the edge
//! (HTTP body, CSV import, webhook), trust inside. Normalising is what makes
//! "+31 6 1234 5678", "0031612345678" and "06 12345678" (region NL) the same
//! subject; without it one person could hold three independent consent
//! histories, and a STOP recorded under one spelling would not stop a send to
//! another.
//!
//! Depends only on the `phonenumber` crate (a port of Google's libphonenumber
//! with its metadata), `regex` and `thiserror`: no actix, no diesel, no crypto.
//! The keyed hash used for lookups is computed from [`Phone::as_e164`] in
//! `crate::crypto::pseudonym`.
//!
//! Input already in E.164 skips the library's text parser: `plan` makes the
//! library's decision from its own metadata (about 70x cheaper in `cargo bench
//! --bench hot_path -- phone`) and hands anything it cannot decide exactly back
//! to the library; tests below prove the two agree
//! (`Phone::parse_with_library` is the reference).
//!
//! A phone number is personal data (GDPR Art. 4(1)). To keep it out of logs
//! (SPEC section 6, Art. 5(1)(f) and Art. 32), `Debug` and `Display` print
//! `Phone([redacted])`, errors never echo the input, and there is deliberately
//! no `AsRef<str>`, `Deref` or `Serialize`: reading the number takes an explicit
//! call to [`Phone::as_e164`], which is easy to find in review.

use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr as _;

use phonenumber::country;
use phonenumber::metadata::DATABASE;

mod plan;

pub use plan::Validity;

/// Longest input accepted, in characters. The longest E.164 number has 15
/// digits; 64 leaves room for spaces, punctuation and a `tel:` prefix while
/// bounding the work spent on hostile input before the library sees it.
const MAX_INPUT_CHARS: usize = 64;

/// A phone number normalised to E.164 and validated against the numbering
/// plan of its country.
///
/// Only constructible through [`Phone::parse`]. `Debug` and `Display` never
/// print the number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    /// `+` followed by the country calling code and the national number.
    e164: String,
    /// The country calling code (`31` for the Netherlands, `1` for NANP).
    calling_code: u16,
}

/// Why an input is not an acceptable phone number.
///
/// Messages say what is wrong, never what the input was, so that an error can
/// be logged or returned in a 422 body without leaking the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// The input is empty or only whitespace.
    #[error("phone number is empty")]
    Empty,
    /// The input is longer than any written phone number.
    #[error("phone number is longer than {MAX_INPUT_CHARS} characters")]
    TooLong,
    /// The number is in national form but no `default_region` was given.
    #[error(
        "phone number has no country code: use the +<country code> form or give a default_region"
    )]
    MissingRegion,
    /// The default region is not two ASCII letters.
    #[error("default_region must be a two-letter ISO 3166-1 region code")]
    MalformedRegion,
    /// The default region is two letters but not a region with a numbering plan.
    #[error("default_region is not a known region")]
    UnknownRegion,
    /// The input does not look like a phone number at all.
    #[error("phone number could not be parsed")]
    Unparseable,
    /// The input parses but is not a valid number in its country's numbering
    /// plan (too short, too long, unassigned range, unknown country code).
    #[error("phone number is not a valid number")]
    Invalid,
    /// The input carries an extension, which cannot receive messages.
    #[error("phone number has an extension, which cannot receive messages")]
    HasExtension,
}

impl Phone {
    /// Parses a phone number written in any common form and normalises it to
    /// E.164.
    ///
    /// `default_region` is a two-letter region code (ISO 3166-1 alpha-2, any
    /// case) used for national forms such as `06 12345678` (NL) or
    /// `(415) 555-2671` (US); with it the library also strips that region's
    /// international prefix (`00` in most of Europe, `011` in NANP). Without
    /// it, the input must be international: `+31…`, or `0031…`, whose leading
    /// `00` is taken as `+` (the international prefix of most countries).
    ///
    /// # Errors
    ///
    /// A [`PhoneError`] for empty, overlong, unparseable or invalid input and
    /// for a missing, malformed or unknown region. The number is checked with
    /// `is_valid`, so a number that merely parses (too short, unassigned
    /// range) is rejected.
    pub fn parse(input: &str, default_region: Option<&str>) -> Result<Phone, PhoneError> {
        // The library's own checks, in its order, so that the errors are the same.
        if input.chars().nth(MAX_INPUT_CHARS).is_some() {
            return Err(PhoneError::TooLong);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        default_region.map(parse_region).transpose()?;
        // Input already in E.164 (most of what a campaign sends): the library's
        // verdict from its metadata, without its text parser (see `plan`).
        if let Some(candidate) = E164Candidate::recognise(trimmed) {
            match candidate.validity() {
                Validity::Valid => {
                    return Ok(Phone {
                        e164: trimmed.to_owned(),
                        calling_code: candidate.calling_code,
                    });
                }
                Validity::Invalid => return Err(PhoneError::Invalid),
                Validity::Unsure => {}
            }
        }
        Phone::parse_with_library(input, default_region)
    }

    /// [`Phone::parse`] by the library alone, without the E.164 shortcut: the
    /// reference the shortcut is tested against (and benchmarked against). Use
    /// [`Phone::parse`].
    #[doc(hidden)]
    pub fn parse_with_library(
        input: &str,
        default_region: Option<&str>,
    ) -> Result<Phone, PhoneError> {
        let phone = Phone::parse_once(input, default_region)?;
        // Every number we keep must be enterable again in its E.164 form: a STOP
        // sent as `+7811...` must find the number an opt-in wrote as
        // `00 7811...` with region GB. The library strips a national prefix from
        // some international forms (Russia's `8`) and not from others, so an
        // E.164 form that does not parse back to itself is refused as invalid
        // rather than stored (found by tests/fuzz.rs). Input already in that
        // form is its own check.
        if input.trim() != phone.e164 && Phone::parse_once(&phone.e164, None).as_ref() != Ok(&phone)
        {
            return Err(PhoneError::Invalid);
        }
        Ok(phone)
    }

    fn parse_once(input: &str, default_region: Option<&str>) -> Result<Phone, PhoneError> {
        // Cheap checks first: bounded, before the library sees the input.
        if input.chars().nth(MAX_INPUT_CHARS).is_some() {
            return Err(PhoneError::TooLong);
        }
        let input = input.trim();
        if input.is_empty() {
            return Err(PhoneError::Empty);
        }
        let region = default_region.map(parse_region).transpose()?;
        // A number in international form names its own country: the region
        // must not change how it parses (`+39 057100` was valid without a region
        // and invalid with `NL`; found by tests/fuzz.rs).
        let region = region.filter(|_| !input.starts_with('+'));

        let parsed = match region {
            Some(region) => phonenumber::parse(Some(region), input),
            None => {
                // Without a region the library knows no international prefix,
                // so "0031..." would not parse: rewrite the leading 00 as "+".
                let international = match input.strip_prefix("00") {
                    Some(rest) => format!("+{rest}"),
                    None if input.contains('+') => input.to_owned(),
                    None => return Err(PhoneError::MissingRegion),
                };
                phonenumber::parse(None, international)
            }
        };
        let number = parsed.map_err(|error| match error {
            phonenumber::ParseError::NoNumber | phonenumber::ParseError::MalformedInteger(_) => {
                PhoneError::Unparseable
            }
            // Too short or too long after prefixes, or an unassigned country code.
            phonenumber::ParseError::InvalidCountryCode
            | phonenumber::ParseError::TooShortAfterIdd
            | phonenumber::ParseError::TooShortNsn
            | phonenumber::ParseError::TooLong => PhoneError::Invalid,
        })?;

        if number.extension().is_some() {
            return Err(PhoneError::HasExtension);
        }
        // Parsing only checks the shape; this checks the country's numbering
        // plan (length and assigned ranges).
        if !number.is_valid() {
            return Err(PhoneError::Invalid);
        }

        let mut e164 = String::with_capacity(16);
        // The formatter fails only for a calling code without metadata, which
        // `is_valid` has ruled out; map it anyway rather than panic.
        write!(e164, "{}", number.format().mode(phonenumber::Mode::E164))
            .map_err(|_| PhoneError::Invalid)?;
        // E.164 allows at most 15 digits. The library's metadata accepts longer
        // national numbers for some countries (German extensions, e.g.
        // `+49 201 00000000000`: 16 digits; found by tests/fuzz.rs), which are
        // not E.164 and which the check path's E.164 recogniser would never see.
        if e164.len() > 16 {
            return Err(PhoneError::Invalid);
        }
        Ok(Phone {
            e164,
            calling_code: number.code().value(),
        })
    }

    /// The number in E.164 form, e.g. `+31612345678`.
    ///
    /// This is personal data: never log it, never put it in a URL, store it
    /// only encrypted (SPEC section 6).
    #[must_use]
    pub fn as_e164(&self) -> &str {
        &self.e164
    }

    /// The country calling code, e.g. `31` for the Netherlands or `1` for
    /// NANP. Not personal on its own; policies price messages by it.
    #[must_use]
    pub fn calling_code(&self) -> u16 {
        self.calling_code
    }
}

/// Input that is already written exactly as E.164 (`+`, then 8 to 15 digits of
/// which a prefix is a known country calling code): the shape every valid stored
/// number has. The check path hashes it as it is and looks it up (issue 10's fast
/// path); the parse runs only when it is not found, to tell an invalid number
/// from an unknown one ([`E164Candidate::validity`], usually without the
/// library's parser). A hit proves validity: the pseudonym equals that of a
/// number validated when it was stored. It is not a [`Phone`]: nothing is stored
/// from it.
#[derive(Clone, Copy)]
pub struct E164Candidate<'a> {
    text: &'a str,
    calling_code: u16,
}

impl<'a> E164Candidate<'a> {
    /// `Some` when `input` has exactly the E.164 shape.
    pub fn recognise(input: &'a str) -> Option<E164Candidate<'a>> {
        let digits = input.strip_prefix('+')?;
        if !(8..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return None;
        }
        // Country calling codes are prefix-free: at most one prefix is one.
        let calling_code = (1..=3)
            .filter_map(|n| digits[..n].parse::<u16>().ok())
            .find(|code| is_calling_code(*code))?;
        Some(E164Candidate {
            text: input,
            calling_code,
        })
    }

    /// The input, which is personal data (see [`Phone::as_e164`]).
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The country calling code.
    pub fn calling_code(&self) -> u16 {
        self.calling_code
    }

    /// What [`Phone::parse`] answers for this number written alone, when the
    /// numbering plan tells it without the library's parser (see `plan`).
    pub fn validity(&self) -> Validity {
        plan::validity(
            self.calling_code,
            &self.text[1 + digits(self.calling_code)..],
        )
    }
}

/// How many decimal digits `code` has.
fn digits(code: u16) -> usize {
    match code {
        0..=9 => 1,
        10..=99 => 2,
        _ => 3,
    }
}

impl fmt::Debug for E164Candidate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("E164Candidate([redacted])")
    }
}

/// Whether `code` is a country calling code with numbering-plan metadata.
fn is_calling_code(code: u16) -> bool {
    static KNOWN: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            (0..1000u16)
                .map(|code| DATABASE.by_code(&code).is_some_and(|m| !m.is_empty()))
                .collect()
        })
        .get(usize::from(code))
        .copied()
        .unwrap_or(false)
}

/// Validates a region code before the library sees it: the library indexes
/// its metadata by region and would panic on a region it has no metadata for.
fn parse_region(region: &str) -> Result<country::Id, PhoneError> {
    let bytes = region.as_bytes();
    if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
        return Err(PhoneError::MalformedRegion);
    }
    let upper = region.to_ascii_uppercase();
    let id = country::Id::from_str(&upper).map_err(|_| PhoneError::UnknownRegion)?;
    if DATABASE.by_id(id.as_ref()).is_none() {
        return Err(PhoneError::UnknownRegion);
    }
    Ok(id)
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone([redacted])")
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_e164_candidate_is_exactly_the_stored_form_of_a_valid_number() {
        for input in [
            "+31612345678",
            "+14155552671",
            "+4915112345678",
            "+358401234567",
        ] {
            let candidate = E164Candidate::recognise(input).expect(input);
            let phone = Phone::parse(input, None).unwrap();
            assert_eq!(candidate.as_str(), phone.as_e164(), "{input}");
            assert_eq!(candidate.calling_code(), phone.calling_code(), "{input}");
        }
        for input in [
            "31612345678",
            "+31 6 12345678",
            "+0612345678",
            "+3161",
            "0031612345678",
            "+31612345678x",
        ] {
            assert!(E164Candidate::recognise(input).is_none(), "{input}");
        }
    }

    fn parse_ok(input: &str, region: Option<&str>) -> Phone {
        match Phone::parse(input, region) {
            Ok(phone) => phone,
            Err(error) => panic!("{input:?} with region {region:?} was rejected: {error}"),
        }
    }

    /// (input, `default_region`, expected E.164, why this case matters)
    #[rustfmt::skip]
    const ACCEPTED: &[(&str, Option<&str>, &str, &str)] = &[
        // Netherlands
        ("+31 6 1234 5678", None, "+31612345678", "NL international with spaces"),
        ("+31-6-1234-5678", None, "+31612345678", "NL international with dashes"),
        ("0031612345678", None, "+31612345678", "NL with 00 prefix and no region"),
        ("0031612345678", Some("NL"), "+31612345678", "NL with 00 prefix stripped by the library"),
        ("06 12345678", Some("NL"), "+31612345678", "NL national mobile, trunk 0 dropped"),
        ("06-12345678", Some("nl"), "+31612345678", "NL national, lower-case region"),
        ("020 123 4567", Some("NL"), "+31201234567", "NL national landline"),
        ("+31 (0)6 12345678", None, "+31612345678", "NL with the (0) trunk prefix in brackets"),
        ("  +31612345678  ", None, "+31612345678", "surrounding whitespace is trimmed"),
        ("tel:+31-6-1234-5678", None, "+31612345678", "RFC 3966 tel URI"),
        // Germany
        ("+49 151 23456789", None, "+4915123456789", "DE mobile"),
        ("0151 23456789", Some("DE"), "+4915123456789", "DE national mobile"),
        ("030 123456", Some("DE"), "+4930123456", "DE national landline, Berlin"),
        ("0049 30 123456", None, "+4930123456", "DE with 00 prefix"),
        // United States
        ("(415) 555-2671", Some("US"), "+14155552671", "US national with brackets"),
        ("+1 415 555 2671", None, "+14155552671", "US international"),
        ("415.555.2671", Some("US"), "+14155552671", "US with dots"),
        ("1 (415) 555-2671", Some("US"), "+14155552671", "US national with leading 1"),
        ("011 31 6 12345678", Some("US"), "+31612345678", "NL number dialled from the US (011 IDD)"),
        // United Kingdom
        ("+44 7400 123456", None, "+447400123456", "GB mobile"),
        ("07400 123456", Some("GB"), "+447400123456", "GB national mobile"),
        ("0121 234 5678", Some("GB"), "+441212345678", "GB national landline"),
        ("+44 (0)7400 123456", None, "+447400123456", "GB with the (0) trunk prefix in brackets"),
        // Italy: fixed-line numbers keep their leading 0 in E.164.
        ("+39 312 345 6789", None, "+393123456789", "IT mobile"),
        ("312 345 6789", Some("IT"), "+393123456789", "IT national mobile"),
        ("02 1234 5678", Some("IT"), "+390212345678", "IT landline keeps its leading 0"),
        ("+39 02 1234 5678", None, "+390212345678", "IT landline international"),
        // France
        ("+33 6 12 34 56 78", None, "+33612345678", "FR mobile"),
        ("06 12 34 56 78", Some("FR"), "+33612345678", "FR national mobile"),
        ("01 23 45 67 89", Some("FR"), "+33123456789", "FR national landline"),
        ("0033 6 12 34 56 78", None, "+33612345678", "FR with 00 prefix"),
        // Spain: no trunk prefix.
        ("+34 612 34 56 78", None, "+34612345678", "ES mobile"),
        ("612 34 56 78", Some("ES"), "+34612345678", "ES national mobile"),
        ("810 12 34 56", Some("ES"), "+34810123456", "ES national landline"),
        ("0034 612345678", Some("ES"), "+34612345678", "ES with 00 prefix and region"),
    ];

    /// (input, `default_region`, expected error, why this case matters)
    #[rustfmt::skip]
    const REJECTED: &[(&str, Option<&str>, PhoneError, &str)] = &[
        ("", None, PhoneError::Empty, "empty"),
        ("   \t ", Some("NL"), PhoneError::Empty, "only whitespace"),
        ("hello", Some("NL"), PhoneError::Unparseable, "letters"),
        ("+", None, PhoneError::Unparseable, "a lone plus"),
        ("06 12345678", None, PhoneError::MissingRegion, "national form without a region"),
        ("612345678", None, PhoneError::MissingRegion, "bare digits without a region"),
        ("06 12345678", Some("N"), PhoneError::MalformedRegion, "one-letter region"),
        ("06 12345678", Some("NLD"), PhoneError::MalformedRegion, "three-letter region"),
        ("06 12345678", Some("1A"), PhoneError::MalformedRegion, "digit in region"),
        ("06 12345678", Some(""), PhoneError::MalformedRegion, "empty region"),
        ("06 12345678", Some("ÑL"), PhoneError::MalformedRegion, "non-ASCII region"),
        ("06 12345678", Some("ZZ"), PhoneError::UnknownRegion, "unknown region ZZ"),
        ("06 12345678", Some("QQ"), PhoneError::UnknownRegion, "unknown region QQ"),
        ("+31 6 1234 567", None, PhoneError::Invalid, "NL mobile one digit short"),
        ("+31 6 1234 56789", None, PhoneError::Invalid, "NL mobile one digit long"),
        ("06 1234", Some("NL"), PhoneError::Invalid, "NL national too short"),
        ("+49 123", None, PhoneError::Invalid, "DE too short"),
        ("+49 151 2", None, PhoneError::Invalid, "DE mobile too short"),
        ("(415) 555-267", Some("US"), PhoneError::Invalid, "US one digit short"),
        ("+1 123 456 7890", None, PhoneError::Invalid, "US area code cannot start with 1"),
        ("+44 7400 12345", None, PhoneError::Invalid, "GB mobile one digit short"),
        ("+39 1", None, PhoneError::Invalid, "IT too short"),
        ("+33 6 12 34 56 7", None, PhoneError::Invalid, "FR mobile one digit short"),
        ("+33 6 12 34 56 789", None, PhoneError::Invalid, "FR mobile one digit long"),
        ("+34 612 34 56", None, PhoneError::Invalid, "ES too short"),
        ("+999 612345678", None, PhoneError::Invalid, "unassigned calling code"),
        ("112", Some("NL"), PhoneError::Invalid, "emergency short code"),
        ("0000000000", Some("NL"), PhoneError::Unparseable, "all zeros"),
        ("+31 6 12345678 ext. 12", None, PhoneError::HasExtension, "extension"),
    ];

    #[test]
    fn parse_accepts_common_written_forms_of_several_countries() {
        for &(input, region, expected, why) in ACCEPTED {
            let phone = parse_ok(input, region);
            assert_eq!(
                phone.as_e164(),
                expected,
                "{why}: {input:?} with {region:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_empty_malformed_and_impossible_forms_with_the_reason() {
        for &(input, region, expected, why) in REJECTED {
            assert_eq!(
                Phone::parse(input, region),
                Err(expected),
                "{why}: {input:?} with {region:?}"
            );
        }
    }

    #[test]
    fn parse_accepts_double_zero_prefix_without_region() {
        assert_eq!(parse_ok("0031612345678", None).as_e164(), "+31612345678");
    }

    #[test]
    fn parse_accepts_national_form_with_default_region() {
        assert_eq!(
            parse_ok("06 12345678", Some("NL")).as_e164(),
            "+31612345678"
        );
        assert_eq!(
            parse_ok("(415) 555-2671", Some("US")).as_e164(),
            "+14155552671"
        );
    }

    #[test]
    fn parse_prefers_the_number_country_code_over_the_default_region() {
        let phone = parse_ok("+31 6 12345678", Some("DE"));
        assert_eq!(phone.as_e164(), "+31612345678");
        assert_eq!(phone.calling_code(), 31);
    }

    #[test]
    fn parse_rejects_input_longer_than_64_characters() {
        let padded = format!("+31612345678{}", " ".repeat(MAX_INPUT_CHARS - 12));
        assert_eq!(padded.chars().count(), MAX_INPUT_CHARS);
        assert!(
            Phone::parse(&padded, None).is_ok(),
            "64 characters is still fine"
        );

        let too_long = format!("{padded} ");
        assert_eq!(Phone::parse(&too_long, None), Err(PhoneError::TooLong));
        assert_eq!(
            Phone::parse(&"9".repeat(10_000), None),
            Err(PhoneError::TooLong)
        );
    }

    #[test]
    fn parse_counts_length_in_characters_not_bytes() {
        // 16 non-breaking spaces are 32 bytes but 16 characters.
        let input = format!("+31612345678{}", "\u{a0}".repeat(16));
        assert_ne!(Phone::parse(&input, None), Err(PhoneError::TooLong));
    }

    #[test]
    fn parse_yields_the_same_phone_for_every_spelling_of_one_number() {
        let spellings = [
            Phone::parse("+31 6 1234 5678", None),
            Phone::parse("0031612345678", None),
            Phone::parse("06 12345678", Some("NL")),
            Phone::parse("+31612345678", Some("US")),
        ];
        for spelling in &spellings {
            assert_eq!(spelling, &spellings[0]);
        }
    }

    #[test]
    fn calling_code_is_the_country_code_of_the_number() {
        assert_eq!(parse_ok("+31612345678", None).calling_code(), 31);
        assert_eq!(parse_ok("(415) 555-2671", Some("US")).calling_code(), 1);
        assert_eq!(parse_ok("+44 7400 123456", None).calling_code(), 44);
        assert_eq!(parse_ok("+39 312 345 6789", None).calling_code(), 39);
    }

    #[test]
    fn debug_and_display_never_print_the_number() {
        let phone = parse_ok("+31 6 1234 5678", None);
        assert_eq!(format!("{phone:?}"), "Phone([redacted])");
        assert_eq!(format!("{phone}"), "Phone([redacted])");
        assert_eq!(format!("{phone:#?}"), "Phone([redacted])");
        assert_eq!(format!("{:?}", Some(&phone)), "Some(Phone([redacted]))");
    }

    #[test]
    fn errors_never_echo_the_input() {
        for &(input, region, _, why) in REJECTED {
            let Err(error) = Phone::parse(input, region) else {
                panic!("{why}: expected an error");
            };
            let digits: String = input.chars().filter(char::is_ascii_digit).collect();
            for shown in [error.to_string(), format!("{error:?}")] {
                if digits.len() >= 3 {
                    assert!(
                        !shown.contains(&digits),
                        "{why}: {shown:?} leaks the number"
                    );
                }
                assert!(
                    !shown.contains(input.trim()) || input.trim().is_empty(),
                    "{why}: {shown:?}"
                );
            }
        }
    }

    #[test]
    fn parse_never_panics_for_any_two_letter_region() {
        // The library unwraps its metadata lookup for the region; a region
        // code it knows by name but has no metadata for must not reach it.
        for first in b'A'..=b'Z' {
            for second in b'A'..=b'Z' {
                let region = String::from_utf8(vec![first, second]).expect("ASCII");
                for input in ["06 12345678", "+31612345678", "0031612345678", "12"] {
                    let result = Phone::parse(input, Some(&region));
                    assert_ne!(result, Err(PhoneError::MalformedRegion), "{region}");
                }
            }
        }
    }

    #[test]
    fn a_number_longer_than_e164_allows_is_invalid() {
        assert_eq!(
            Phone::parse("+4920100000000000", None),
            Err(PhoneError::Invalid)
        );
        assert_eq!(
            Phone::parse("020100000000000", Some("DE")),
            Err(PhoneError::Invalid)
        );
        assert!(Phone::parse("+49 30 123456", None).is_ok());
    }

    #[test]
    fn every_accepted_number_parses_back_from_its_e164_form() {
        // Found by tests/fuzz.rs: `0078110000000` with GB became `+78110000000`,
        // which does not parse (the library strips Russia's national prefix 8).
        assert_eq!(Phone::parse("+78110000000", None), Err(PhoneError::Invalid));
        assert_eq!(
            Phone::parse("0078110000000", Some("GB")),
            Err(PhoneError::Invalid)
        );
        let moscow = Phone::parse("8 495 123 45 67", Some("RU")).unwrap();
        assert_eq!(Phone::parse(moscow.as_e164(), None), Ok(moscow));
    }

    #[test]
    fn a_number_in_international_form_parses_the_same_with_any_region() {
        // Found by tests/fuzz.rs: valid without a region, invalid with `NL`.
        let without = Phone::parse("+39 057100", None);
        assert!(without.is_ok());
        for region in ["NL", "IT", "US", "DE"] {
            assert_eq!(
                Phone::parse("+39 057100", Some(region)),
                without,
                "{region}"
            );
        }
        assert_eq!(
            Phone::parse("+39 057100", Some("N1")),
            Err(PhoneError::MalformedRegion),
            "a malformed region is still refused"
        );
    }

    /// Every calling code with metadata.
    fn calling_codes() -> Vec<u16> {
        (1..1000u16).filter(|code| is_calling_code(*code)).collect()
    }

    /// Every example national number of the metadata, with its calling code.
    fn example_numbers() -> Vec<(u16, String)> {
        let mut examples = Vec::new();
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            for descriptor in [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.emergency(),
                d.voicemail(),
                d.short_code(),
                d.standard_rate(),
                d.carrier(),
                d.no_international(),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(example) = descriptor.example() {
                    examples.push((meta.country_code(), example.to_owned()));
                }
            }
        }
        examples.sort();
        examples.dedup();
        examples
    }

    /// The E.164 shortcut of [`Phone::parse`] says what the library says: a
    /// `Valid` is the library's `Ok` with the input as its E.164 and the same
    /// calling code, an `Invalid` its `Err(Invalid)`, and `Phone::parse` as a
    /// whole answers what the library answers, with or without a region.
    fn shortcut_agrees_with_library(input: &str) -> Result<Validity, String> {
        let library = Phone::parse_with_library(input, None);
        let validity = match E164Candidate::recognise(input) {
            Some(candidate) => {
                let validity = candidate.validity();
                let agrees = match (validity, &library) {
                    (Validity::Valid, Ok(phone)) => {
                        phone.as_e164() == input && phone.calling_code() == candidate.calling_code()
                    }
                    (Validity::Invalid, Err(PhoneError::Invalid)) | (Validity::Unsure, _) => true,
                    _ => false,
                };
                if !agrees {
                    return Err(format!(
                        "{input}: shortcut {validity:?}, library {library:?}"
                    ));
                }
                validity
            }
            None => Validity::Unsure,
        };
        for region in [None, Some("NL"), Some("US")] {
            let expected = Phone::parse_with_library(input, region);
            let fast = Phone::parse(input, region);
            if fast != expected {
                return Err(format!(
                    "{input} with {region:?}: parse {fast:?}, library {expected:?}"
                ));
            }
            // `Phone`'s Debug hides the number: compare the E.164 too.
            if fast.as_ref().map(Phone::as_e164) != expected.as_ref().map(Phone::as_e164) {
                return Err(format!("{input} with {region:?}: another E.164"));
            }
        }
        Ok(validity)
    }

    #[test]
    fn the_e164_shortcut_agrees_with_the_library_on_every_example_number() {
        let examples = example_numbers();
        assert!(examples.len() > 500, "{} examples", examples.len());
        let mut decided = 0;
        let mut valid = 0;
        let mut checked = 0;
        for (code, national) in &examples {
            // The example, and the example with its last digit changed, one
            // digit more and one digit less.
            let mut variants = vec![national.clone(), format!("{national}0")];
            if let Some(last) = national.bytes().last() {
                let changed = char::from(b'0' + (last - b'0' + 1) % 10);
                variants.push(format!("{}{changed}", &national[..national.len() - 1]));
                variants.push(national[..national.len() - 1].to_owned());
            }
            for variant in variants {
                let input = format!("+{code}{variant}");
                let validity = shortcut_agrees_with_library(&input).unwrap();
                checked += 1;
                decided += usize::from(validity != Validity::Unsure);
                valid += usize::from(validity == Validity::Valid);
            }
        }
        eprintln!(
            "{checked} example-based numbers: {decided} decided by the shortcut, {valid} valid"
        );
        assert!(
            valid > 500,
            "the shortcut decides the examples: {valid} valid"
        );
    }

    #[test]
    fn the_e164_shortcut_decides_the_common_cases_itself() {
        for (input, expected) in [
            ("+31612345678", Validity::Valid),
            ("+31621234567", Validity::Valid),
            ("+14155552671", Validity::Valid),
            ("+447400123456", Validity::Valid),
            ("+4915123456789", Validity::Valid),
            ("+3161234567", Validity::Invalid),
            ("+1212555012", Validity::Invalid),
            // A national prefix after the calling code: the library strips it
            // (Russia's 8, the Netherlands' 0), so it is left to the library.
            ("+78110000000", Validity::Unsure),
            ("+310612345678", Validity::Unsure),
        ] {
            let candidate = E164Candidate::recognise(input).expect(input);
            assert_eq!(candidate.validity(), expected, "{input}");
            assert_eq!(shortcut_agrees_with_library(input), Ok(expected), "{input}");
        }
    }

    /// An E.164-shaped string: a calling code with metadata, then digits, 8 to
    /// 15 in all; half of them built on an example number of that code (kept
    /// whole, cut, extended or with digits changed) so that valid numbers are
    /// common, the rest random digits.
    fn e164_shaped() -> impl Strategy<Value = String> {
        let codes = calling_codes();
        let examples = example_numbers();
        let random = (
            proptest::sample::select(codes),
            8usize..=15,
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(code, total, a, b)| {
                let code = code.to_string();
                let digits = format!("{a:020}{b:020}");
                let national = &digits[..total.saturating_sub(code.len()).max(1)];
                format!("+{code}{national}")
            });
        let from_example = (
            proptest::sample::select(examples),
            0usize..4,
            proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..10), 0..3),
            "[0-9]{0,3}",
        )
            .prop_map(|((code, national), cut, changes, tail)| {
                let mut digits: Vec<u8> = national.into_bytes();
                for (at, digit) in changes {
                    if !digits.is_empty() {
                        let at = at.index(digits.len());
                        digits[at] = b'0' + digit;
                    }
                }
                let keep = digits.len().saturating_sub(cut % 2);
                digits.truncate(keep);
                let national = String::from_utf8(digits).expect("digits");
                format!("+{code}{national}{tail}")
            });
        prop_oneof![random, from_example]
    }

    proptest! {
        // At least 2,000 cases (about 4 s in a dev build), more with PROPTEST_CASES.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|cases| cases.parse().ok())
                .unwrap_or(0u32)
                .max(2_000),
            ..ProptestConfig::default()
        })]

        #[test]
        fn the_e164_shortcut_agrees_with_the_library_on_random_e164_shaped_input(
            input in e164_shaped(),
        ) {
            if let Err(disagreement) = shortcut_agrees_with_library(&input) {
                return Err(TestCaseError::fail(disagreement));
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_input(
            input in "\\PC{0,80}",
            region in proptest::option::of("[A-Za-z]{2}"),
        ) {
            let _ = Phone::parse(&input, region.as_deref());
        }

        #[test]
        fn parse_never_panics_on_phone_like_input(
            // ASCII, Arabic-Indic and full-width digits: the library maps the
            // latter two to ASCII, and byte slicing on them must not panic.
            input in "[+0-9\u{660}-\u{669}\u{ff10}-\u{ff19} ()./x-]{0,40}",
            region in proptest::option::of("(NL|DE|US|GB|IT|FR|ES|ZZ|nl)"),
        ) {
            let _ = Phone::parse(&input, region.as_deref());
        }

        #[test]
        fn parse_of_an_e164_result_is_the_identity(
            national in "[1-9][0-9]{6,12}",
            region in "(NL|DE|US|GB|IT|FR|ES)",
        ) {
            if let Ok(phone) = Phone::parse(&national, Some(&region)) {
                let again = Phone::parse(phone.as_e164(), None);
                prop_assert_eq!(again.as_ref(), Ok(&phone));
                prop_assert!(phone.as_e164().starts_with('+'));
                prop_assert!(phone.as_e164()[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(phone.as_e164().len() <= 16, "E.164 allows at most 15 digits");
            }
        }
    }
}
