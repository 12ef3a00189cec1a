//! `embed_migrations!` reads `migrations/` at compile time, but cargo does not know
//! that: without this, a new or edited migration is not compiled in until some
//! Rust source changes (diesel_migrations' documented build script).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
