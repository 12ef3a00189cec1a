//! The architecture's rules (STYLE.md "Layers point inward"), checked on the source:
//! `domain`, `policy` and `crypto` know neither actix nor diesel; `http` never
//! touches diesel; `store` never touches actix; `ledger` and `writer` know neither.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.starts_with("//"))
}

#[test]
fn layers_point_inward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules: &[(&str, &[&str])] = &[
        ("domain", &["actix", "diesel"]),
        ("policy", &["actix", "diesel"]),
        ("crypto", &["actix", "diesel"]),
        ("audit", &["actix", "diesel"]),
        ("ledger", &["actix", "diesel"]),
        ("channels", &["actix", "diesel"]),
        ("writer", &["actix", "diesel"]),
        ("http", &["diesel"]),
        ("store", &["actix"]),
    ];
    let mut violations = Vec::new();
    for (module, forbidden) in rules {
        let mut files = Vec::new();
        sources(&root.join(module), &mut files);
        assert!(!files.is_empty(), "src/{module} exists");
        for (file, text) in files {
            for line in code_lines(&text) {
                for word in *forbidden {
                    if line.contains(&format!("{word}::"))
                        || line.contains(&format!("{word}_")) && line.starts_with("use ")
                    {
                        violations.push(format!("{file}: uses {word}: {line}"));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layer violations:\n{}",
        violations.join("\n")
    );
}

/// `store` only runs statements over plain rows: the chain (`audit`: chaining,
/// verification, checkpoint signing) and the keys (`crypto`) belong above it, in
/// the writer (`src/writer/`: group commit, unbatched writes, checkpoints) and
/// the ledger (STYLE.md, issue 11 item 3). Nothing of either is left in it.
#[test]
fn store_imports_neither_audit_nor_crypto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root.join("store"), &mut files);
    let mut found = Vec::new();
    for (file, text) in &files {
        let uses = code_lines(text)
            .filter(|line| line.contains("crate::audit") || line.contains("crate::crypto"))
            .count();
        if uses > 0 {
            let relative = Path::new(file)
                .strip_prefix(&root)
                .unwrap()
                .display()
                .to_string();
            found.push((relative, uses));
        }
    }
    found.sort();
    assert!(
        found.is_empty(),
        "store uses crate::audit / crate::crypto (a layer violation: run the statement \
         from the writer or the ledger instead): {found:?}"
    );
}
