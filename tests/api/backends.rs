//! Running one test body on both backends when it needs settings of its own, and
//! reaching the service's database behind its back.
//!
//! `backend_tests!` (in `helpers`) covers bodies that run on the default test
//! settings. A body that needs others (a larger body limit, one argon2 permit,
//! checkpoints every few events) uses `backend_test_with!(name, |s| ...)`, which
//! makes `<module>::<name>::sqlite` and `<module>::<name>::postgres`, so a failure
//! still says which backend, and it can sit beside `backend_tests!` in one file.

use consentgate::store::{DatabaseUrl, DbConnection};
use diesel::Connection;
use diesel::connection::SimpleConnection;

use crate::helpers::{Backend, TestApp};

/// One test body, spawned on each backend with adjusted settings.
#[macro_export]
macro_rules! backend_test_with {
    ($name:ident, $adjust:expr) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                let app =
                    $crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, $adjust)
                        .await
                        .unwrap();
                super::$name(app).await;
            }

            #[actix_web::test]
            async fn postgres() {
                if let Some(app) =
                    $crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, $adjust)
                        .await
                {
                    super::$name(app).await;
                }
            }
        }
    };
}

/// Which backend a test app runs on.
pub fn backend(app: &TestApp) -> Backend {
    match app.settings.database {
        DatabaseUrl::Sqlite(_) => Backend::Sqlite,
        DatabaseUrl::Postgres(_) => Backend::Postgres,
    }
}

/// A connection to the service's database that is not one of the service's own:
/// what an operator (or a failing disk, or a DBA) does behind the service's back.
/// Blocking; PostgreSQL connects as the test user, a superuser.
pub fn side_connection(app: &TestApp) -> DbConnection {
    match &app.settings.database {
        DatabaseUrl::Sqlite(path) => {
            let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
                .expect("the test database file opens");
            conn.batch_execute("PRAGMA busy_timeout = 5000;").unwrap();
            DbConnection::Sqlite(conn)
        }
        DatabaseUrl::Postgres(url) => DbConnection::Postgres(
            diesel::PgConnection::establish(url).expect("the test database accepts connections"),
        ),
    }
}

/// Runs SQL on a side connection; panics naming the statement if it fails.
pub fn side_sql(app: &TestApp, sql: &str) {
    side_connection(app)
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A POST with an `Idempotency-Key` header.
pub async fn post_idempotent(
    app: &TestApp,
    path: &str,
    token: &str,
    idempotency_key: &str,
    body: &serde_json::Value,
) -> crate::helpers::Resp {
    let mut res = app
        .client()
        .post(format!("{}{path}", app.address))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("idempotency-key", idempotency_key))
        .send_json(body)
        .await
        .expect("the request reaches the server");
    let bytes = res.body().await.expect("the response body is readable");
    crate::helpers::Resp {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }),
    }
}
