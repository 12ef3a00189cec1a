//! Numbering plans compiled from the `phonenumber` crate's own metadata, to
//! validate a number that is already written in E.164 (`+31612345678`) without
//! the crate's text parser (issue 10: most of a campaign is numbers nobody opted
//! in, and each needs a verdict, `invalid_phone` or `no_consent`).
//!
//! Why not call the crate: its parse of an E.164 string costs 4-9 us quiet and
//! 20+ us loaded, most of it in its general text parser, and every one of its
//! regex matches locks one process-wide mutex (its `regex_cache` LRU, capacity
//! 100, shared by every thread; with more than 100 patterns in use it even
//! recompiles), so the two threads of a campaign take turns.
//!
//! What this is: the same decision `phonenumber::parse` + `is_valid` +
//! `format(E164)` make for `+<code><national>`, on the same metadata and the
//! same patterns (compiled here once per calling code, lazily, without the
//! shared cache), in the common case only:
//! - the national number could not have a national prefix or carrier code
//!   stripped by the parser (no region of the code has a national prefix or a
//!   `national_prefix_for_parsing` that matches at its start), so the parsed
//!   national number is the written one and its E.164 is the input itself;
//! - the national number is not all zeros (the crate fails on those).
//!
//! Anything else answers [`Validity::Unsure`] and the caller runs the crate.
//! Within the common case the crate does, and this mirrors step by step
//! (`validator::source_for` and `validator::number_type` of phonenumber 0.3):
//! pick the region (the only one; or the first whose `leading_digits` match at
//! the start, or, for a region without them, whose number types match), then
//! valid = the general descriptor matches and at least one of the ten number
//! types does (a descriptor matches when its `possible_length` is empty or holds
//! the length, and its pattern matches at the start). A property test in
//! `phone.rs` compares the verdicts with the crate's on a large random sample of
//! E.164-shaped strings over every calling code and on every example number of
//! the metadata.
//!
//! Depends on `phonenumber` (its metadata) and `regex` only.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::OnceLock;

use phonenumber::country;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};

/// What `Phone::parse` answers for `+<code><national>` written alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// `Ok`, and the E.164 form is the input itself.
    Valid,
    /// `Err(PhoneError::Invalid)`.
    Invalid,
    /// Not decided here: run the library.
    Unsure,
}

/// The longest national number an E.164 candidate can have (15 digits less a
/// one-digit calling code); lengths index `RegionPlan::types_by_length`.
const MAX_NATIONAL: usize = 14;

/// The verdict for national number `national` (ASCII digits only) under calling
/// code `code`.
pub(super) fn validity(code: u16, national: &str) -> Validity {
    debug_assert!(national.bytes().all(|b| b.is_ascii_digit()));
    let Some(plan) = plan(code) else {
        return Validity::Unsure;
    };
    if national.len() > MAX_NATIONAL
        || national.bytes().all(|b| b == b'0')
        || plan.could_strip(national)
    {
        return Validity::Unsure;
    }
    let region = match &plan.regions {
        Regions::One(region) => Some(region),
        Regions::Several(regions) => regions
            .iter()
            .find(|(leading, region)| match leading {
                Some(leading) => leading.is_match(national),
                None => region.is_valid(national),
            })
            .map(|(_, region)| region),
    };
    match region {
        Some(region) if region.is_valid(national) => Validity::Valid,
        _ => Validity::Invalid,
    }
}

/// One calling code's plan. `None` in [`plan`] when the code has no metadata,
/// or a pattern would not compile here (then every number of it is `Unsure`).
struct CodePlan {
    /// Every region's national prefix (`0`, `8`, `1`, ...).
    national_prefixes: Vec<String>,
    /// Every region's `national_prefix_for_parsing`, anchored, as one pattern.
    prefix_for_parsing: Option<Regex>,
    regions: Regions,
}

enum Regions {
    /// A code with one region (or a non-geographic `001` entry).
    One(RegionPlan),
    /// A code shared by several regions (NANP, +7, +44, ...), in the library's
    /// order, each with its anchored `leading_digits` if it has them.
    Several(Vec<(Option<Regex>, RegionPlan)>),
}

struct RegionPlan {
    general: Pattern,
    /// For each national-number length, the ten number types whose
    /// `possible_length` allows it, as one anchored alternation (`None`: no type
    /// allows that length).
    types_by_length: Vec<Option<Regex>>,
}

/// A descriptor: its lengths and its anchored pattern.
struct Pattern {
    /// Bit `n` set when length `n` is possible (all bits when the metadata lists
    /// no lengths: the library then skips the length test).
    lengths: u32,
    regex: Regex,
}

impl CodePlan {
    /// Whether the library's parser might strip a national prefix or carrier
    /// code from `national` (for any region of the code: it picks one by a rule
    /// not mirrored here).
    fn could_strip(&self, national: &str) -> bool {
        self.national_prefixes
            .iter()
            .any(|prefix| national.starts_with(prefix.as_str()))
            || self
                .prefix_for_parsing
                .as_ref()
                .is_some_and(|regex| regex.is_match(national))
    }
}

impl RegionPlan {
    /// `validator::number_type(meta, national) != Type::Unknown`.
    fn is_valid(&self, national: &str) -> bool {
        let length = national.len();
        self.general.matches(national)
            && self
                .types_by_length
                .get(length)
                .and_then(Option::as_ref)
                .is_some_and(|types| types.is_match(national))
    }
}

impl Pattern {
    /// `Descriptor::is_match`.
    fn matches(&self, national: &str) -> bool {
        let length = national.len();
        length < 32 && self.lengths & (1 << length) != 0 && self.regex.is_match(national)
    }
}

fn plan(code: u16) -> Option<&'static CodePlan> {
    static PLANS: [OnceLock<Option<CodePlan>>; 1000] = [const { OnceLock::new() }; 1000];
    PLANS
        .get(usize::from(code))?
        .get_or_init(|| CodePlan::compile(code))
        .as_ref()
}

impl CodePlan {
    fn compile(code: u16) -> Option<CodePlan> {
        let metas = DATABASE.by_code(&code)?;
        let mut national_prefixes = Vec::new();
        let mut for_parsing = Vec::new();
        for meta in &metas {
            national_prefixes.extend(meta.national_prefix().map(str::to_owned));
            for_parsing.extend(meta.national_prefix_for_parsing().map(|r| r.as_str()));
        }
        let prefix_for_parsing = if for_parsing.is_empty() {
            None
        } else {
            Some(anchored(&for_parsing)?)
        };
        let ids = DATABASE.region(&code)?;
        let mut types = TypeCache::default();
        let regions = match ids.as_slice() {
            // `source_for`: one region; `001` is looked up by code, any other by
            // its parsed id (an id that does not parse makes every number
            // invalid there: leave such a code to the library).
            [id] => {
                let meta = if *id == "001" {
                    *metas.first()?
                } else {
                    let parsed = country::Id::from_str(id).ok()?;
                    let meta = DATABASE.by_id(parsed.as_ref())?;
                    if parsed.as_ref() != *id {
                        return None;
                    }
                    meta
                };
                Regions::One(RegionPlan::compile(meta, &mut types)?)
            }
            [] => return None,
            ids => {
                let mut regions = Vec::with_capacity(ids.len());
                for id in ids {
                    // The library unwraps both of these; a code where they would
                    // fail is left to it.
                    let parsed = country::Id::from_str(id).ok()?;
                    if parsed.as_ref() != *id {
                        return None;
                    }
                    let meta = DATABASE.by_id(*id)?;
                    let leading = match meta.leading_digits() {
                        Some(leading) => Some(anchored(&[leading.as_str()])?),
                        None => None,
                    };
                    regions.push((leading, RegionPlan::compile(meta, &mut types)?));
                }
                Regions::Several(regions)
            }
        };
        Some(CodePlan {
            national_prefixes,
            prefix_for_parsing,
            regions,
        })
    }
}

/// Alternations already compiled for one code, by their sources.
#[derive(Default)]
struct TypeCache(HashMap<Vec<String>, Regex>);

impl RegionPlan {
    fn compile(meta: &Metadata, cache: &mut TypeCache) -> Option<RegionPlan> {
        let descriptors = meta.descriptors();
        let general = Pattern::compile(descriptors.general())?;
        // The types `number_type` tries, in its order (the order does not change
        // whether one matches).
        let types: Vec<&Descriptor> = [
            descriptors.premium_rate(),
            descriptors.toll_free(),
            descriptors.shared_cost(),
            descriptors.voip(),
            descriptors.personal_number(),
            descriptors.pager(),
            descriptors.uan(),
            descriptors.voicemail(),
            descriptors.fixed_line(),
            descriptors.mobile(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut types_by_length = Vec::with_capacity(MAX_NATIONAL + 1);
        for length in 0..=MAX_NATIONAL {
            let sources: Vec<String> = types
                .iter()
                .filter(|d| {
                    d.possible_length().is_empty() || d.possible_length().contains(&(length as u16))
                })
                .map(|d| d.national_number().as_str().to_owned())
                .collect();
            if sources.is_empty() {
                types_by_length.push(None);
                continue;
            }
            let regex = match cache.0.get(&sources) {
                Some(regex) => regex.clone(),
                None => {
                    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
                    let regex = anchored(&refs)?;
                    cache.0.insert(sources, regex.clone());
                    regex
                }
            };
            types_by_length.push(Some(regex));
        }
        Some(RegionPlan {
            general,
            types_by_length,
        })
    }
}

impl Pattern {
    fn compile(descriptor: &Descriptor) -> Option<Pattern> {
        let lengths = if descriptor.possible_length().is_empty() {
            u32::MAX
        } else {
            descriptor
                .possible_length()
                .iter()
                .filter(|&&n| n < 32)
                .fold(0, |mask, &n| mask | (1 << n))
        };
        Some(Pattern {
            lengths,
            regex: anchored(&[descriptor.national_number().as_str()])?,
        })
    }
}

/// One pattern that matches where any of `sources` matches at the start of the
/// text, as the library's `find(..).start() == 0` does (a leftmost match starts
/// at 0 exactly when some match does).
///
/// Compiled as the library compiles them (`ignore_whitespace`; each source in
/// its own group, ended by a newline so that a `#` comment in it cannot swallow
/// the rest), but without Unicode classes: the text is ASCII digits, on which
/// `\d` means the same either way, and the ASCII automaton is smaller.
fn anchored(sources: &[&str]) -> Option<Regex> {
    let alternation: Vec<String> = sources.iter().map(|s| format!("(?:{s}\n)")).collect();
    RegexBuilder::new(&format!("^(?:{})", alternation.join("|")))
        .ignore_whitespace(true)
        .unicode(false)
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_calling_code_compiles_to_a_plan() {
        // A code without a plan is left to the library whole: correct, but slow.
        // This says so when a metadata update brings a pattern that does not
        // compile here (for instance one that needs Unicode classes).
        let missing: Vec<u16> = (1..1000u16)
            .filter(|code| DATABASE.by_code(code).is_some() && plan(*code).is_none())
            .collect();
        assert_eq!(missing, Vec::<u16>::new());
    }
}
