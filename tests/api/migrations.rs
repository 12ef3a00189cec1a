//! Both migration trees apply, revert and re-apply, and give the tables and
//! columns that `schema.rs` declares.

use consentgate::store::schema::TABLES;
use consentgate::store::{Store, StoreSettings, migrations};

use crate::helpers::{Backend, TestDb};

fn up_down_up(backend: Backend) {
    let Some((_db, url, _dir)) = TestDb::create(backend) else {
        return;
    };
    let store = Store::connect(&StoreSettings {
        url,
        pool_size: 1,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap();
    let mut conn = store.conn().unwrap();
    let expected: Vec<(String, Vec<String>)> = {
        let mut t: Vec<_> = TABLES
            .iter()
            .map(|(name, cols)| {
                (
                    name.to_string(),
                    cols.iter().map(|c| c.to_string()).collect(),
                )
            })
            .collect();
        t.sort();
        t
    };
    assert!(!migrations::all_applied(&mut conn).unwrap());
    migrations::run_pending(&mut conn).unwrap();
    assert!(migrations::all_applied(&mut conn).unwrap());
    assert_eq!(
        migrations::actual_tables(&mut conn).unwrap(),
        expected,
        "{backend:?} after up"
    );
    migrations::revert_all(&mut conn).unwrap();
    assert_eq!(
        migrations::actual_tables(&mut conn).unwrap(),
        vec![],
        "{backend:?} after down"
    );
    migrations::run_pending(&mut conn).unwrap();
    assert_eq!(
        migrations::actual_tables(&mut conn).unwrap(),
        expected,
        "{backend:?} after up again"
    );
    assert!(
        migrations::run_pending(&mut conn).unwrap().is_empty(),
        "nothing pending twice"
    );
}

#[test]
fn sqlite_migrations_apply_revert_and_reapply() {
    up_down_up(Backend::Sqlite);
}

#[test]
fn postgres_migrations_apply_revert_and_reapply() {
    up_down_up(Backend::Postgres);
}

#[test]
fn both_trees_have_the_same_migration_names() {
    let names = |dir: &str| {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    let root = env!("CARGO_MANIFEST_DIR");
    assert_eq!(
        names(&format!("{root}/migrations/sqlite")),
        names(&format!("{root}/migrations/postgres"))
    );
}
