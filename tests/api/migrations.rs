//! Both migration trees apply, revert and re-apply, and give exactly the tables,
//! columns, column types, nullability and primary keys that the diesel `table!`
//! declarations in `src/store/schema.rs` say (read from that file, so no list is
//! kept by hand), on each backend.

use consentgate::store::{DbConnection, Store, StoreSettings, migrations};
use diesel::RunQueryDsl;

use crate::helpers::{Backend, TestDb};

/// One column as declared or as found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    name: String,
    /// The backend's type name (SQLite: the declared type; PostgreSQL:
    /// `information_schema.columns.data_type`).
    sql_type: String,
    nullable: bool,
    /// 1-based position in the primary key, 0 when not part of it.
    primary_key: usize,
}

type Tables = Vec<(String, Vec<Column>)>;

/// The type a diesel SQL type maps to on each backend, as the database reports it.
fn backend_type(diesel_type: &str, backend: Backend) -> String {
    let (sqlite, postgres) = match diesel_type {
        "Text" => ("TEXT", "text"),
        "Timestamp" => ("TIMESTAMP", "timestamp without time zone"),
        "BigInt" => ("BIGINT", "bigint"),
        "Integer" => ("INTEGER", "integer"),
        "Binary" => ("BLOB", "bytea"),
        "Bool" => ("BOOLEAN", "boolean"),
        other => panic!("schema.rs uses diesel type {other}: add its mapping to this test"),
    };
    match backend {
        Backend::Sqlite => sqlite.to_owned(),
        Backend::Postgres => postgres.to_owned(),
    }
}

/// The `diesel::table!` declarations of `src/store/schema.rs`, for `backend`.
fn declared_tables(backend: Backend) -> Tables {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/schema.rs");
    let source = std::fs::read_to_string(path).unwrap();
    let mut tables = Vec::new();
    let mut lines = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#["));
    while let Some(line) = lines.next() {
        if line != "diesel::table! {" {
            continue;
        }
        // `name (key, ...) {`
        let header = lines.next().expect("a table name after table!");
        let (name, rest) = header.split_once(' ').expect("`name (keys) {`");
        let keys: Vec<&str> = rest
            .trim_start_matches('(')
            .split_once(')')
            .expect("a primary key list")
            .0
            .split(',')
            .map(str::trim)
            .collect();
        let mut columns = Vec::new();
        for line in lines.by_ref() {
            if line == "}" {
                break;
            }
            // `column -> Type,` or `column -> Nullable<Type>,`
            let (column, ty) = line
                .trim_end_matches(',')
                .split_once("->")
                .unwrap_or_else(|| panic!("a column declaration: {line}"));
            let (column, ty) = (column.trim(), ty.trim());
            let (nullable, ty) = match ty.strip_prefix("Nullable<") {
                Some(inner) => (true, inner.trim_end_matches('>')),
                None => (false, ty),
            };
            columns.push(Column {
                name: column.to_owned(),
                sql_type: backend_type(ty, backend),
                nullable,
                primary_key: keys.iter().position(|k| *k == column).map_or(0, |i| i + 1),
            });
        }
        assert_eq!(lines.next(), Some("}"), "table! {name} closes");
        tables.push((name.to_owned(), columns));
    }
    tables.sort();
    tables
}

#[derive(diesel::QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_type: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    nullable: bool,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    primary_key: i64,
}

/// The tables (other than diesel's bookkeeping) as the database reports them, in
/// column order.
fn actual_tables(conn: &mut DbConnection) -> Tables {
    let rows: Vec<ColumnRow> = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS column_type, \
                    p.\"notnull\" = 0 AS nullable, p.pk AS primary_key \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
               AND m.name <> '__diesel_schema_migrations' \
             ORDER BY m.name, p.cid",
        )
        .load(c),
        DbConnection::Postgres(c) => diesel::sql_query(
            "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
                    c.data_type::text AS column_type, c.is_nullable = 'YES' AS nullable, \
                    COALESCE(k.ordinal_position, 0)::bigint AS primary_key \
             FROM information_schema.columns c \
             LEFT JOIN information_schema.table_constraints t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
              AND t.constraint_type = 'PRIMARY KEY' \
             LEFT JOIN information_schema.key_column_usage k \
               ON k.constraint_name = t.constraint_name AND k.table_schema = c.table_schema \
              AND k.table_name = c.table_name AND k.column_name = c.column_name \
             WHERE c.table_schema = current_schema() \
               AND c.table_name <> '__diesel_schema_migrations' \
             ORDER BY c.table_name, c.ordinal_position",
        )
        .load(c),
    }
    .expect("the schema can be read");
    let mut tables: Tables = Vec::new();
    for row in rows {
        let column = Column {
            name: row.column_name,
            sql_type: row.column_type,
            nullable: row.nullable,
            primary_key: row.primary_key as usize,
        };
        match tables.last_mut() {
            Some((name, columns)) if *name == row.table_name => columns.push(column),
            _ => tables.push((row.table_name, vec![column])),
        }
    }
    tables.sort();
    tables
}

/// Table by table, so a failure names the table that differs.
#[track_caller]
fn assert_schema(actual: &Tables, expected: &Tables, when: &str) {
    let names = |t: &Tables| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(actual), names(expected), "{when}: the tables");
    for ((name, actual), (_, expected)) in actual.iter().zip(expected) {
        assert_eq!(actual, expected, "{when}: table {name}");
    }
}

/// A store on a fresh database of this backend with no migration applied, and
/// the database's guard (`None`: no PostgreSQL to test on).
fn empty_store(backend: Backend) -> Option<(TestDb, Store)> {
    let (db, url, _dir) = TestDb::create(backend)?;
    let store = Store::connect(&StoreSettings {
        url,
        pool_size: 1,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap();
    Some((db, store))
}

fn up_down_up(backend: Backend) {
    let Some((_db, store)) = empty_store(backend) else {
        return;
    };
    let mut conn = store.conn().unwrap();
    let expected = declared_tables(backend);
    assert!(
        expected.len() >= 10 && expected.iter().all(|(_, columns)| !columns.is_empty()),
        "schema.rs was read: {expected:?}"
    );
    assert!(!migrations::all_applied(&mut conn).unwrap());
    migrations::run_pending(&mut conn).unwrap();
    assert!(migrations::all_applied(&mut conn).unwrap());
    assert_schema(
        &actual_tables(&mut conn),
        &expected,
        &format!("{backend:?} after up"),
    );
    migrations::revert_all(&mut conn).unwrap();
    assert_eq!(actual_tables(&mut conn), vec![], "{backend:?} after down");
    migrations::run_pending(&mut conn).unwrap();
    assert_schema(
        &actual_tables(&mut conn),
        &expected,
        &format!("{backend:?} after up again"),
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

/// The plan each backend makes for `query` (placeholders `{1}`, `{2}`, ... for
/// its parameters, of PostgreSQL types `types`; `args` the literal values of a
/// PostgreSQL `EXECUTE`), without statistics: every plan line it gives, as text.
fn plan_of(backend: Backend, query: &str, types: &str, args: &str) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct SqlitePlan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    #[derive(diesel::QueryableByName)]
    struct PostgresPlan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[diesel(column_name = "QUERY PLAN")]
        plan: String,
    }
    let (_db, store) = empty_store(backend)?;
    let mut conn = store.conn().unwrap();
    migrations::run_pending(&mut conn).unwrap();
    let numbered = |prefix: &str| {
        (1..=9).fold(query.to_owned(), |q, i| {
            let to = if prefix.is_empty() {
                "?".to_owned()
            } else {
                format!("{prefix}{i}")
            };
            q.replace(&format!("{{{i}}}"), &to)
        })
    };
    Some(match backend {
        Backend::Sqlite => diesel::sql_query(format!("EXPLAIN QUERY PLAN {}", numbered("")))
            .load::<SqlitePlan>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|row| row.detail)
            .collect::<Vec<_>>()
            .join("\n"),
        Backend::Postgres => {
            use diesel::connection::SimpleConnection;
            // An empty table is read whole; the question is which index a
            // table with rows would be read through.
            conn.batch_execute("SET enable_seqscan = off").unwrap();
            conn.batch_execute(&format!(
                "PREPARE planned ({types}) AS {}; SET plan_cache_mode = force_generic_plan",
                numbered("$")
            ))
            .unwrap();
            diesel::sql_query(format!("EXPLAIN EXECUTE planned ({args})"))
                .load::<PostgresPlan>(&mut conn)
                .unwrap()
                .into_iter()
                .map(|row| row.plan)
                .collect::<Vec<_>>()
                .join("\n")
        }
    })
}

/// The plan for "this subject's events" (the statement
/// `store::audit::events_matching` sends with a subject filter).
fn subject_events_plan(backend: Backend) -> Option<String> {
    plan_of(
        backend,
        "SELECT * FROM audit_events WHERE business_id = {1} AND seq > {2} \
         AND subject_id = {3} ORDER BY seq ASC LIMIT {4}",
        "text, bigint, text, bigint",
        "'b', 0, 's', 100",
    )
}

/// A subject's events are found through `audit_events_by_subject` (subject
/// first, then business, then seq: migration `000017`), not by reading the
/// whole business's chain from `seq`.
#[test]
fn a_subjects_events_are_read_through_the_subject_index() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(plan) = subject_events_plan(backend) else {
            continue;
        };
        // Both equalities and the range are the index's own conditions.
        let conditions = match backend {
            Backend::Sqlite => "(subject_id=? AND business_id=? AND seq>?)",
            Backend::Postgres => "((subject_id = $3) AND (business_id = $1) AND (seq > $2))",
        };
        assert!(
            plan.contains("audit_events_by_subject") && plan.contains(conditions),
            "{backend:?}: {plan}"
        );
    }
}

/// A node's full load pages through a business's subjects in id order
/// (`store::projection::history_page`): each page is a range of
/// `subjects_by_business_and_id` (migration `000014`), never a sort of the whole
/// business (which took a node with 1,000,000 subjects many minutes to start),
/// and each page's facts are a range of `facts_by_subject`.
#[test]
fn a_full_load_reads_each_page_of_subjects_as_an_index_range() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(subjects) = plan_of(
            backend,
            "SELECT id, pseudonym FROM subjects WHERE business_id = {1} AND id > {2} \
             ORDER BY id ASC LIMIT {3}",
            "text, text, bigint",
            "'b', 'a', 2000",
        ) else {
            continue;
        };
        let (index, sorted) = match backend {
            Backend::Sqlite => (
                "subjects_by_business_and_id (business_id=? AND id>?)",
                "TEMP B-TREE",
            ),
            Backend::Postgres => ("subjects_by_business_and_id", "Sort"),
        };
        assert!(subjects.contains(index), "{backend:?}: {subjects}");
        assert!(!subjects.contains(sorted), "{backend:?}: {subjects}");
        let facts = plan_of(
            backend,
            "SELECT * FROM facts WHERE business_id = {1} AND subject_id >= {2} AND subject_id <= {3}",
            "text, text, text",
            "'b', 'a', 'c'",
        )
        .unwrap();
        assert!(facts.contains("facts_by_subject"), "{backend:?}: {facts}");
    }
}
