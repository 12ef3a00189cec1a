//! The languages people and auditors are served in (SPEC section 11): English,
//! German, Dutch, Italian, French and Spanish, the languages of the shipped
//! policies' keywords. Chosen from an explicit choice (the page's switcher) or
//! else the browser's `Accept-Language`; English when nothing matches.

use std::fmt;

/// A language of the preference center and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    En,
    De,
    Nl,
    It,
    Fr,
    Es,
}

impl Language {
    /// Every language, in the order the switcher lists them.
    pub const ALL: [Language; 6] = [
        Language::En,
        Language::De,
        Language::Nl,
        Language::It,
        Language::Fr,
        Language::Es,
    ];

    /// The ISO 639-1 code, as in `lang="de"` and policy files.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Nl => "nl",
            Language::It => "it",
            Language::Fr => "fr",
            Language::Es => "es",
        }
    }

    /// The language's own name for itself, as the switcher shows it.
    pub fn native_name(self) -> &'static str {
        match self {
            Language::En => "English",
            Language::De => "Deutsch",
            Language::Nl => "Nederlands",
            Language::It => "Italiano",
            Language::Fr => "Français",
            Language::Es => "Español",
        }
    }

    /// The language of a code (`de`, `DE`, or a tag like `de-AT`).
    pub fn from_code(code: &str) -> Option<Language> {
        let primary = code.trim().split(['-', '_']).next()?;
        Language::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// The best of our languages for an `Accept-Language` header (RFC 9110
    /// section 12.5.4): the highest `q` wins, the earlier entry on a tie, `q=0`
    /// means "not this one". `None` when nothing we have is acceptable.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        let mut best: Option<(u16, Language)> = None;
        // Bounded: a header is client input.
        for entry in header.split(',').take(32) {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), parse_q);
            let (Some(q), Some(language)) = (q, Language::from_code(tag)) else {
                continue;
            };
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, language));
            }
        }
        best.map(|(_, l)| l)
    }
}

/// A quality value in thousandths (`0.8` -> 800); `None` when malformed.
fn parse_q(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_highest_quality_we_have() {
        let cases: &[(&str, Option<Language>, &str)] = &[
            (
                "de-DE,de;q=0.9,en;q=0.8",
                Some(Language::De),
                "first and best",
            ),
            ("en;q=0.5, nl", Some(Language::Nl), "implicit q=1 beats 0.5"),
            (
                "ja, fr;q=0.3",
                Some(Language::Fr),
                "an unknown language is skipped",
            ),
            (
                "it;q=0, es;q=0.1",
                Some(Language::Es),
                "q=0 means not this one",
            ),
            ("pt-BR, ja", None, "nothing we have"),
            ("", None, "empty header"),
            (
                "fr;q=abc, de;q=0.2",
                Some(Language::De),
                "a malformed q is skipped",
            ),
            (
                "es;q=0.7, it;q=0.7",
                Some(Language::Es),
                "the earlier wins a tie",
            ),
            ("DE-at", Some(Language::De), "tags are case-insensitive"),
            ("*", None, "a wildcard names no language"),
        ];
        for (header, expected, why) in cases {
            assert_eq!(
                Language::from_accept_language(header),
                *expected,
                "{why}: {header:?}"
            );
        }
    }

    #[test]
    fn codes_round_trip() {
        for language in Language::ALL {
            assert_eq!(Language::from_code(language.code()), Some(language));
            assert!(!language.native_name().is_empty());
        }
        assert_eq!(Language::from_code("xx"), None);
        assert_eq!(Language::from_code(""), None);
    }
}
