//! The pages' templates (`templates/web/*.html`) and the values they show. Every
//! string a template prints is escaped by askama; what is computed (texts with
//! their placeholders filled, states in words) is computed here, in Rust, so the
//! templates stay plain markup.

use askama::Template;

use super::i18n::Texts;
use crate::domain::language::Language;

/// One entry of the language switcher.
pub struct LanguageLink {
    pub code: &'static str,
    pub name: &'static str,
    pub href: String,
    pub current: bool,
}

/// What the page frame needs.
pub struct Layout {
    pub lang: &'static str,
    pub title: String,
    pub t: &'static Texts,
    pub languages: Vec<LanguageLink>,
    /// The console's tables want the width; the preference page reads best narrow.
    pub wide: bool,
}

impl Layout {
    /// The frame for `language`; the switcher links to `path` in each language
    /// (`path` has no query string).
    pub fn new(language: Language, title: &str, path: &str) -> Layout {
        Layout {
            lang: language.code(),
            title: title.to_owned(),
            t: Texts::of(language),
            languages: Language::ALL
                .into_iter()
                .map(|l| LanguageLink {
                    code: l.code(),
                    name: l.native_name(),
                    href: format!("{path}?lang={}", l.code()),
                    current: l == language,
                })
                .collect(),
            wide: false,
        }
    }

    /// The frame of a console page.
    pub fn console(language: Language, title: &str, path: &str) -> Layout {
        Layout {
            wide: true,
            ..Layout::new(language, title, path)
        }
    }
}

/// One category on the preference page.
pub struct CategoryRow {
    pub name: String,
    pub title: String,
    pub description: String,
    pub on: bool,
    pub reason: String,
    /// The one control: "no, stop these" while they are on (or waiting for
    /// confirmation)...
    pub can_opt_out: bool,
    /// ...else "yes, send me these"; neither where no choice applies.
    pub can_opt_in: bool,
    pub hint: String,
}

#[derive(Template)]
#[template(path = "web/preferences.html")]
pub struct PreferencesPage {
    pub layout: Layout,
    pub business: String,
    pub intro: String,
    pub notice: Option<String>,
    pub blocked: bool,
    pub blocked_state: String,
    pub block_explain: String,
    pub export_explain: String,
    pub erase_explain: String,
    pub valid_until: String,
    pub categories: Vec<CategoryRow>,
    /// `/p/<token>`: where the forms post.
    pub base: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "web/erase.html")]
pub struct ErasePage {
    pub layout: Layout,
    pub business: String,
    pub suppress: bool,
    pub after: String,
    pub base: String,
    pub csrf: String,
}

/// A page with a heading and a sentence: expired links, refused forms, results.
#[derive(Template)]
#[template(path = "web/message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub body: String,
    pub back: Option<String>,
}

/// The signed-in part of the console's frame.
pub struct SessionHeader {
    pub signed_in_as: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "web/console_sign_in.html")]
pub struct SignInPage {
    pub layout: Layout,
    pub session: Option<SessionHeader>,
    pub section: &'static str,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub csrf: String,
}

/// The console's event filters as typed (shown back in the form).
#[derive(Default)]
pub struct FilterValues {
    pub event_type: String,
    pub subject_id: String,
    pub from: String,
    pub to: String,
    pub after: String,
    pub limit: String,
}

/// One event row.
pub struct EventRow {
    pub seq: i64,
    pub at: String,
    pub event_type: String,
    pub actor: String,
    pub subject_id: String,
    pub data: String,
}

#[derive(Template)]
#[template(path = "web/console_events.html")]
pub struct EventsPage {
    pub layout: Layout,
    pub session: Option<SessionHeader>,
    pub section: &'static str,
    pub filters: FilterValues,
    /// `(input id, message)`.
    pub errors: Vec<(&'static str, String)>,
    pub event_types: &'static [&'static str],
    pub events: Vec<EventRow>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

impl EventsPage {
    /// Whether the filter with this input id was refused.
    pub fn is_invalid(&self, id: &str) -> bool {
        self.errors.iter().any(|(field, _)| *field == id)
    }
}

#[derive(Template)]
#[template(path = "web/console_verify.html")]
pub struct VerifyPage {
    pub layout: Layout,
    pub session: Option<SessionHeader>,
    pub section: &'static str,
    pub result: Option<Vec<String>>,
    pub valid: bool,
    pub csrf: String,
}

/// One checkpoint row.
pub struct CheckpointRow {
    pub seq: i64,
    pub at: String,
    pub hash: String,
    pub signature: String,
}

#[derive(Template)]
#[template(path = "web/console_checkpoints.html")]
pub struct CheckpointsPage {
    pub layout: Layout,
    pub session: Option<SessionHeader>,
    pub section: &'static str,
    pub algorithm: &'static str,
    pub key_id: String,
    pub public_key_pem: String,
    pub checkpoints: Vec<CheckpointRow>,
}

#[derive(Template)]
#[template(path = "web/console_export.html")]
pub struct ExportPage {
    pub layout: Layout,
    pub session: Option<SessionHeader>,
    pub section: &'static str,
    pub errors: Vec<(&'static str, String)>,
    pub from: String,
    pub to: String,
    pub csrf: String,
}
