//! Policies and the decision they drive.
//!
//! - [`model`]: policy files (TOML) -> validated [`Policy`], with [`Category`],
//!   [`Price`] and the [`PolicyProblem`]s a malformed file yields.
//! - [`decide`](mod@decide): the pure function that answers `may_contact` from a
//!   subject's history (SPEC section 3).
//! - [`PolicySet`] (here): every policy the service knows, by name: the shipped ones,
//!   embedded in the binary, plus any loaded from a configured directory.
//!
//! This module may depend on `crate::domain`, toml, serde, chrono, uuid, sha2, hex and
//! thiserror; never on actix or diesel. The decision must stay testable without a
//! server or a database, and the same code answers live checks and auditors' `as_of`
//! questions.

pub mod decide;
pub mod keywords;
pub mod live;
pub mod model;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use decide::{
    Basis, Decision, Moment, Reason, SubjectState, Summary, Verdict, active_consent_categories,
    decide, keyword_restorable_categories,
};
pub use live::LiveState;
pub use model::{
    AllowedBy, Amount, AmountError, Category, CategoryRules, Currency, KeywordKind, Policy,
    PolicyProblem, Price, PriceTable,
};

/// The shipped policy files, embedded so that an installed binary needs no files on disk.
const SHIPPED: [(&str, &str); 3] = [
    (
        "whatsapp-eu.toml",
        include_str!("../../policies/whatsapp-eu.toml"),
    ),
    (
        "whatsapp-global.toml",
        include_str!("../../policies/whatsapp-global.toml"),
    ),
    ("sms-us.toml", include_str!("../../policies/sms-us.toml")),
];

/// Every policy the service knows, by name. Policies are shared (`Arc`) because each
/// business's checks hold on to the one they are bound to.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: BTreeMap<String, Arc<Policy>>,
}

impl PolicySet {
    /// An empty set.
    pub fn new() -> PolicySet {
        PolicySet::default()
    }

    /// The policies shipped with consentgate: `whatsapp-eu`, `whatsapp-global`, `sms-us`.
    ///
    /// # Panics
    ///
    /// If a shipped file does not validate; a unit test guarantees that they all do.
    pub fn shipped() -> PolicySet {
        let mut set = PolicySet::new();
        for (file, text) in SHIPPED {
            match Policy::from_toml_str(file, text) {
                Ok(policy) => {
                    set.insert(policy);
                }
                Err(problems) => panic!("shipped policy {file} is invalid: {problems:?}"),
            }
        }
        set
    }

    /// Loads every `*.toml` file of `dir` (not recursively). Returns the problems of
    /// all files at once, so an operator fixes a whole directory in one go.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<PolicySet, Vec<PolicyProblem>> {
        let dir = dir.as_ref();
        let unreadable = |err: std::io::Error| {
            vec![PolicyProblem {
                file: dir.display().to_string(),
                field: "(file)".into(),
                message: format!("cannot read the policy directory: {err}"),
            }]
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        // Sorted, so that problems come in the same order on every machine.
        paths.sort();
        let mut set = PolicySet::new();
        let mut problems = Vec::new();
        for path in paths {
            match Policy::from_file(&path) {
                Ok(policy) => {
                    set.insert(policy);
                }
                Err(mut found) => problems.append(&mut found),
            }
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems)
        }
    }

    /// Adds `policy`, replacing (and returning) one of the same name.
    pub fn insert(&mut self, policy: Policy) -> Option<Arc<Policy>> {
        self.policies
            .insert(policy.name().to_owned(), Arc::new(policy))
    }

    /// This set with every policy of `overrides` added, replacing same-named ones:
    /// `PolicySet::shipped().merge(PolicySet::load_dir(dir)?)`.
    pub fn merge(mut self, overrides: PolicySet) -> PolicySet {
        self.policies.extend(overrides.policies);
        self
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Policy>> {
        self.get_ref(name).cloned()
    }

    /// [`PolicySet::get`] without taking a reference count (the hot path: every
    /// worker incrementing the same count would bounce its cache line).
    pub fn get_ref(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.get(name)
    }

    /// The names of all policies, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.policies.keys().map(String::as_str)
    }

    /// All policies, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Policy>> + '_ {
        self.policies.values()
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("consentgate-policy-test-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.0.join(name), text).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn shipped_text(file: &str) -> &'static str {
        SHIPPED
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, text)| *text)
            .unwrap()
    }

    #[test]
    fn all_shipped_policies_validate() {
        for (file, text) in SHIPPED {
            if let Err(problems) = Policy::from_toml_str(file, text) {
                panic!(
                    "{file} is invalid:\n{}",
                    problems
                        .iter()
                        .map(|p| format!("  {p}\n"))
                        .collect::<String>()
                );
            }
        }
        let set = PolicySet::shipped();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["sms-us", "whatsapp-eu", "whatsapp-global"]
        );
        assert_eq!(set.len(), 3);
        assert!(!set.is_empty());
        assert!(set.get("whatsapp-eu").is_some());
        assert!(set.get("nope").is_none());
    }

    #[test]
    fn shipped_policies_hold_the_rules_the_spec_names() {
        let set = PolicySet::shipped();
        let eu = set.get("whatsapp-eu").unwrap();
        let global = set.get("whatsapp-global").unwrap();
        let us = set.get("sms-us").unwrap();

        for policy in [&eu, &global, &us] {
            let names: Vec<_> = policy.categories().map(|c| c.to_string()).collect();
            assert_eq!(
                names,
                ["authentication", "marketing", "service", "utility"],
                "{}",
                policy.name()
            );
            assert_eq!(
                policy.keyword(" stop "),
                Some(KeywordKind::OptOut),
                "{}",
                policy.name()
            );
            assert_eq!(
                policy.keyword("Start"),
                Some(KeywordKind::OptIn),
                "{}",
                policy.name()
            );
            assert_eq!(
                policy.keyword("help"),
                Some(KeywordKind::Help),
                "{}",
                policy.name()
            );
        }

        let rules = |p: &Policy, c: &str| p.rules(&p.category(c).unwrap()).unwrap().clone();
        assert_eq!(eu.max_age(), chrono::Duration::days(730));
        assert_eq!(eu.window_hours(), Some(24));
        assert_eq!(eu.entry_point_hours("click_to_chat_ad"), Some(72));
        assert_eq!(eu.clock_skew(), chrono::Duration::seconds(300));
        assert!(eu.suppress_on_erasure());
        assert!(rules(&eu, "marketing").double_opt_in());
        assert_eq!(rules(&eu, "marketing").allowed_by(), [AllowedBy::OptIn]);
        assert_eq!(
            rules(&eu, "utility").allowed_by(),
            [AllowedBy::OptIn, AllowedBy::Window]
        );
        assert!(rules(&eu, "utility").free_in_window());
        assert!(!rules(&eu, "authentication").free_in_window());
        assert_eq!(rules(&eu, "service").allowed_by(), [AllowedBy::Window]);
        assert!(rules(&eu, "service").price().is_none());
        for word in [
            "STOPP",
            "afmelden",
            "Basta",
            "ARRÊT",
            "arret",
            "désabonner",
            "baja",
        ] {
            assert_eq!(eu.keyword(word), Some(KeywordKind::OptOut), "{word}");
        }
        for word in ["anmelden", "AANMELDEN", "iscrivi", "demarrer", "alta"] {
            assert_eq!(eu.keyword(word), Some(KeywordKind::OptIn), "{word}");
        }
        for word in ["hilfe", "AIUTO", "aide", "ayuda"] {
            assert_eq!(eu.keyword(word), Some(KeywordKind::Help), "{word}");
        }

        assert!(
            global
                .categories()
                .all(|c| !rules(&global, c.as_str()).double_opt_in())
        );
        assert_eq!(
            global
                .price_for(&global.category("marketing").unwrap(), None)
                .unwrap()
                .currency()
                .as_str(),
            "USD"
        );
        assert!(global.suppress_on_erasure());

        assert!(!us.has_window());
        assert_eq!(us.window_for(None), None);
        assert_eq!(us.max_age(), chrono::Duration::days(540));
        assert!(!us.suppress_on_erasure());
        for c in us.categories() {
            assert_eq!(
                rules(&us, c.as_str()).allowed_by(),
                [AllowedBy::OptIn],
                "{c}"
            );
            assert!(!rules(&us, c.as_str()).free_in_window(), "{c}");
        }
        assert_eq!(
            us.keyword("arrêt"),
            None,
            "sms-us has English keywords only"
        );
    }

    #[test]
    fn a_directory_adds_and_overrides_policies() {
        let dir = TempDir::new();
        let custom = shipped_text("sms-us.toml").replace("name = \"sms-us\"", "name = \"sms-ca\"");
        dir.write("sms-ca.toml", &custom);
        let override_eu =
            shipped_text("whatsapp-eu.toml").replace("max_age_days = 730", "max_age_days = 365");
        dir.write("whatsapp-eu.toml", &override_eu);
        dir.write("README.md", "not a policy");
        std::fs::create_dir(dir.0.join("nested.toml")).unwrap();

        let loaded = PolicySet::load_dir(&dir.0).unwrap();
        assert_eq!(
            loaded.names().collect::<Vec<_>>(),
            ["sms-ca", "whatsapp-eu"]
        );

        let set = PolicySet::shipped().merge(loaded);
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["sms-ca", "sms-us", "whatsapp-eu", "whatsapp-global"]
        );
        assert_eq!(
            set.get("whatsapp-eu").unwrap().max_age(),
            chrono::Duration::days(365)
        );
    }

    #[test]
    fn a_directory_reports_the_problems_of_every_file() {
        let dir = TempDir::new();
        dir.write("a.toml", "name = ");
        dir.write(
            "b.toml",
            &shipped_text("sms-us.toml").replace("max_age_days = 540", "max_age_days = 0"),
        );
        dir.write("sms-us.toml", shipped_text("sms-us.toml"));
        let problems = PolicySet::load_dir(&dir.0).unwrap_err();
        let summary: Vec<(String, &str)> = problems
            .iter()
            .map(|p| {
                (
                    Path::new(&p.file)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    p.field.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a.toml".to_owned(), "(syntax)"),
                ("b.toml".to_owned(), "name"),
                ("b.toml".to_owned(), "consent.max_age_days"),
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn the_policy_layer_uses_no_web_or_database_crate() {
        let sources = [
            ("policy/mod.rs", include_str!("mod.rs")),
            ("policy/model.rs", include_str!("model.rs")),
            ("policy/decide/mod.rs", include_str!("decide/mod.rs")),
            ("policy/keywords.rs", include_str!("keywords.rs")),
            ("domain/history.rs", include_str!("../domain/history.rs")),
        ];
        // Spelled in halves so that this test does not find itself.
        let forbidden = [
            concat!("act", "ix_"),
            concat!("act", "ix::"),
            concat!("die", "sel::"),
            concat!("die", "sel_"),
        ];
        for (file, text) in sources {
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for word in forbidden {
                    assert!(
                        !line.contains(word),
                        "{file}:{}: mentions {word}: {line}",
                        n + 1
                    );
                }
            }
        }
    }

    #[test]
    fn a_missing_directory_is_a_problem() {
        let problems = PolicySet::load_dir("/nonexistent/consentgate/policies").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "(file)");
    }
}
