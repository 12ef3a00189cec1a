//! How an inbound message is compared with a policy's keywords (SPEC section 2).
//!
//! Matching is asymmetric, because a missed opt-out is a breach (a message sent to
//! someone who said stop) and a missed opt-in is only a lost message:
//! - every keyword and every message is Unicode-normalised (NFKC, so full-width
//!   `ＳＴＯＰ` and a decomposed `ARRÊT` become plain letters), case-folded (full
//!   folding, so `STRASSE` and `straße` agree), its inner runs of white space made
//!   one space and its surrounding white space ignored ([`common_form`]);
//! - for opt-out keywords also invisible characters (Unicode's default-ignorable
//!   code points: zero-width spaces and joiners, format controls, variation
//!   selectors), trailing `.` and `!`, and accents (nonspacing marks) are ignored
//!   ([`opt_out_form`]): `Stop!`, `stop.`, `STOP` followed by a zero-width space
//!   and `ARRET` for `ARRÊT` all opt out.
//!
//! The Unicode data comes from ICU4X (`icu_normalizer`, `icu_casemap`,
//! `icu_properties`), never from a hand-made table. Policy keyword lists are put in
//! the same forms when the policy loads, so spellings that only differ in the
//! ignored ways collapse into one keyword.

use icu_casemap::CaseMapper;
use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// The form every keyword comparison starts from: NFKC, full case folding, NFKC
/// again (folding can denormalise), inner white space collapsed, trimmed.
pub fn common_form(text: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let folded = CaseMapper::new()
        .fold_string(&nfkc.normalize(text))
        .into_owned();
    collapse_white_space(&nfkc.normalize(&folded))
}

/// The form opt-out keywords are compared in: [`common_form`] without invisible
/// characters, accents, or trailing `.`/`!`.
pub fn opt_out_form(text: &str) -> String {
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let visible: String = text.chars().filter(|c| !ignorable.contains(*c)).collect();
    let common = common_form(&visible);
    let category = CodePointMapData::<GeneralCategory>::new();
    let unaccented: String = DecomposingNormalizerBorrowed::new_nfd()
        .normalize(&common)
        .chars()
        .filter(|c| category.get(*c) != GeneralCategory::NonspacingMark)
        .collect();
    let composed = ComposingNormalizerBorrowed::new_nfc()
        .normalize(&unaccented)
        .into_owned();
    // Collapsed again: removing accents can leave white space at the start
    // (`῝΄"` became ` "`, which is no fixed point; found by tests/fuzz.rs).
    collapse_white_space(&composed)
        .trim_end_matches(|c: char| c == '.' || c == '!' || c.is_whitespace())
        .to_owned()
}

/// Runs of white space become one space; leading and trailing ones go.
fn collapse_white_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_out_form_is_a_fixed_point_even_after_removing_accents() {
        for text in ["῝΄\"", "΄ STOP", "῝ stop!"] {
            let form = opt_out_form(text);
            assert_eq!(opt_out_form(&form), form, "{text:?}");
            assert_eq!(form.trim(), form, "{text:?}");
        }
        assert_eq!(opt_out_form("΄ STOP"), "stop");
    }

    #[test]
    fn the_common_form_normalises_folds_and_trims() {
        for (text, want) in [
            ("STOP", "stop"),
            ("  Stop\t\n", "stop"),
            ("ＳＴＯＰ", "stop"),
            ("ARRE\u{0302}T", "arrêt"),
            ("ARRÊT", "arrêt"),
            ("STRASSE", "strasse"),
            ("straße", "strasse"),
            ("stop   all", "stop all"),
        ] {
            assert_eq!(common_form(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_opt_out_form_also_ignores_invisibles_punctuation_and_accents() {
        for (text, want) in [
            ("Stop!", "stop"),
            ("stop.", "stop"),
            ("STOP!!! ", "stop"),
            ("STOP\u{200B}", "stop"),
            ("S\u{200B}T\u{200D}O\u{2060}P", "stop"),
            ("\u{FEFF}STOP", "stop"),
            ("ARRE\u{0302}T", "arret"),
            ("ARRÊT", "arret"),
            ("Désabonner", "desabonner"),
            ("ＳＴＯＰ！", "stop"),
        ] {
            assert_eq!(opt_out_form(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_opt_out_form_keeps_what_is_not_ignored() {
        assert_eq!(opt_out_form("please stop"), "please stop");
        assert_eq!(
            opt_out_form("stop?"),
            "stop?",
            "a question is not a keyword"
        );
        assert_eq!(
            opt_out_form("!stop"),
            "!stop",
            "only trailing punctuation goes"
        );
    }
}
