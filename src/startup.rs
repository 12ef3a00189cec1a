//! Building the service: `Application::build(settings)` is used by `main` and by the
//! tests alike, so tests run exactly what production runs.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use secrecy::{ExposeSecret, SecretString};
use utoipa_actix_web::AppExt;

use crate::audit::checkpoint::Checkpointer;
use crate::config::{
    ConfigError, MasterKeySource, OperatorTokenSource, Settings, SigningKeySource,
};
use crate::crypto::master_key::{self, MasterKey, MasterKeyError, NewFileError};
use crate::crypto::signing::SigningKey;
use crate::domain::time::Clock;
use crate::http::auth::{AuthLimits, Authenticator, OperatorToken};
use crate::http::extract::{self, BodyLimit};
use crate::http::handlers::ops::openapi::OpenApiYaml;
use crate::http::observe::{self, Metrics};
use crate::http::throttle::{self, Throttle};
use crate::http::{self, RouteTable, openapi};
use crate::ledger::{Keyring, Ledger};
use crate::policy::{PolicyProblem, PolicySet};
use crate::store::{Store, StoreError, StoreSettings, migrations};
use crate::writer::Writer;
use std::sync::Arc;

/// Why the service did not start. Each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("configuration: {setting}: {source}")]
    Secret {
        setting: &'static str,
        source: MasterKeyError,
    },
    #[error(
        "the master key does not match the one this database was initialised with \
         (check CONSENTGATE_MASTER_KEY / CONSENTGATE_MASTER_KEY_FILE)"
    )]
    WrongMasterKey,
    #[error("database ({url:?}): {source}")]
    Store {
        url: crate::store::DatabaseUrl,
        source: StoreError,
    },
    #[error("policies:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<PolicyProblem>),
    #[error(
        "another consentgate serve already uses the SQLite database {0}: one server per \
         SQLite file (several nodes need PostgreSQL, DATABASE_URL=postgres://...)"
    )]
    SqliteInUse(std::path::PathBuf),
    #[error("configuration: CONSENTGATE_BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Everything the service needs besides the HTTP server: a migrated store, keys
/// and policies. The CLI commands use this too.
pub struct Prepared {
    pub store: Store,
    /// Signs the chains' checkpoints (see [`Prepared::writer`]).
    pub checkpointer: Arc<Checkpointer>,
    pub master_key: MasterKey,
    pub operator_token: SecretString,
    pub policies: PolicySet,
}

impl Prepared {
    /// The writer every change of this store goes through, signing checkpoints.
    pub fn writer(&self) -> Writer {
        Writer::signing(self.store.clone(), Some(self.checkpointer.clone()))
    }
}

/// Opens and migrates the store, loads (or creates) the master key and the
/// operator token, loads the policies. Blocking: call it off the executor.
pub fn prepare(settings: &Settings) -> Result<Prepared, StartupError> {
    create_private_dir(&settings.data_dir)?;
    let policies = load_policies(settings)?;
    let master_key = load_master_key(&settings.master_key)?;
    let operator_token = load_operator_token(&settings.operator_token)?;
    let signing_key = load_signing_key(&settings.signing_key)?;
    let store_error = |source| StartupError::Store {
        url: settings.database.clone(),
        source,
    };
    let store = Store::connect(&StoreSettings {
        url: settings.database.clone(),
        pool_size: settings.pool_size,
        acquire_timeout: std::time::Duration::from_secs(5),
    })
    .map_err(store_error)?;
    let checkpointer = Arc::new(Checkpointer::new(
        signing_key,
        settings.checkpoint_every_events,
    ));
    for warning in store.durability_warnings().map_err(store_error)? {
        tracing::warn!("{warning}");
    }
    let mut conn = store.conn().map_err(store_error)?;
    let applied = migrations::run_pending(&mut conn).map_err(store_error)?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    let stored = Store::meta_set_once(&mut conn, "master_key_check", &master_key.check_value())
        .map_err(store_error)?;
    if stored != master_key.check_value() {
        return Err(StartupError::WrongMasterKey);
    }
    drop(conn);
    Ok(Prepared {
        store,
        checkpointer,
        master_key,
        operator_token,
        policies,
    })
}

/// The data directory holds the database, the master key and the operator token:
/// created owner-only (0700) when it does not exist yet.
fn create_private_dir(dir: &std::path::Path) -> Result<(), StartupError> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StartupError::Secret {
        setting: "CONSENTGATE_DATA_DIR",
        source: MasterKeyError::Create {
            path: dir.display().to_string(),
            source,
        },
    })
}

fn load_policies(settings: &Settings) -> Result<PolicySet, StartupError> {
    let shipped = PolicySet::shipped();
    match &settings.policies_dir {
        None => Ok(shipped),
        Some(dir) => PolicySet::load_dir(dir)
            .map(|extra| shipped.merge(extra))
            .map_err(StartupError::Policies),
    }
}

fn load_master_key(source: &MasterKeySource) -> Result<MasterKey, StartupError> {
    match source {
        MasterKeySource::Inline(text) => {
            MasterKey::from_base64(text.expose_secret()).map_err(|source| StartupError::Secret {
                setting: "CONSENTGATE_MASTER_KEY",
                source,
            })
        }
        MasterKeySource::File(path) => {
            MasterKey::read_file(path).map_err(|source| StartupError::Secret {
                setting: "CONSENTGATE_MASTER_KEY_FILE",
                source,
            })
        }
        MasterKeySource::Generated(path) => {
            let existed = path.exists();
            let key = MasterKey::load_or_create(path).map_err(|source| StartupError::Secret {
                setting: "CONSENTGATE_DATA_DIR",
                source,
            })?;
            if !existed {
                tracing::info!(path = %path.display(), "generated a new master key; back it up: without it the personal data in this database cannot be read");
            }
            Ok(key)
        }
    }
}

fn load_signing_key(source: &SigningKeySource) -> Result<SigningKey, StartupError> {
    match source {
        SigningKeySource::Inline(text) => {
            SigningKey::from_base64(text.expose_secret()).map_err(|source| StartupError::Secret {
                setting: "CONSENTGATE_SIGNING_KEY",
                source,
            })
        }
        SigningKeySource::File(path) => {
            SigningKey::read_file(path).map_err(|source| StartupError::Secret {
                setting: "CONSENTGATE_SIGNING_KEY_FILE",
                source,
            })
        }
        SigningKeySource::Generated(path) => {
            SigningKey::load_or_create(path).map_err(|source| StartupError::Secret {
                setting: "CONSENTGATE_DATA_DIR",
                source,
            })
        }
    }
}

fn load_operator_token(source: &OperatorTokenSource) -> Result<SecretString, StartupError> {
    let secret_error = |source| StartupError::Secret {
        setting: "CONSENTGATE_DATA_DIR",
        source,
    };
    match source {
        OperatorTokenSource::Inline(token) => Ok(token.clone()),
        OperatorTokenSource::Generated(path) => {
            let created = master_key::write_new_secret_file(path, || {
                use base64::Engine;
                let bytes: [u8; 32] = crate::crypto::random_bytes();
                format!(
                    "cgop_{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                )
            });
            match created {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated the operator token (read it from this file)")
                }
                Err(NewFileError::Exists) => {}
                Err(NewFileError::Io(source)) => {
                    return Err(secret_error(MasterKeyError::Create {
                        path: path.display().to_string(),
                        source,
                    }));
                }
            }
            master_key::check_owner_only(path).map_err(secret_error)?;
            let text = std::fs::read_to_string(path).map_err(|source| {
                secret_error(MasterKeyError::Read {
                    path: path.display().to_string(),
                    source,
                })
            })?;
            Ok(SecretString::from(text.trim().to_owned()))
        }
    }
}

/// Every `interval`, a signed checkpoint for each chain that moved since its last
/// one, so the window in which a cut-off tail goes unnoticed is short.
fn spawn_checkpoints(writer: Writer, interval: std::time::Duration) {
    actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match writer.checkpoint_moved_chains().await {
                Ok(0) => {}
                Ok(made) => tracing::info!(made, "signed audit checkpoints"),
                Err(e) => {
                    tracing::warn!(error = %e, "periodic checkpoints failed; retrying next interval")
                }
            }
        }
    });
}

/// Every `interval`, the retention job (each purge audited as `retention.purge`).
fn spawn_retention(ledger: std::sync::Arc<Ledger>, interval: std::time::Duration) {
    actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match ledger.run_retention().await {
                Ok(purged) if purged.is_empty() => {}
                Ok(purged) => {
                    tracing::info!(businesses = purged.len(), "retention purged expired data")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention run failed; retrying next interval")
                }
            }
        }
    });
}

/// The running service.
pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    writer: crate::writer::Writer,
    /// SQLite: held while this server runs (see [`lock_sqlite`]).
    _sqlite_lock: Option<std::fs::File>,
}

/// SQLite: one server per database file. Its checks trust this process's own
/// commits to know what is fresh (`store::fence`), which holds only if no other
/// server writes withdrawals to the same file; the exclusive lock on
/// `<database>.serve-lock` makes a second `serve` refuse to start instead. The
/// lock goes with the process, however it ends (`kill -9` included). CLI commands
/// do not take it: what they write may show up a little later (`store::fence`).
fn lock_sqlite(url: &crate::store::DatabaseUrl) -> Result<Option<std::fs::File>, StartupError> {
    let crate::store::DatabaseUrl::Sqlite(path) = url else {
        return Ok(None);
    };
    let mut lock_path = path.clone().into_os_string();
    lock_path.push(".serve-lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StartupError::Store {
            url: url.clone(),
            source: StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display())),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartupError::SqliteInUse(path.clone())),
        Err(std::fs::TryLockError::Error(e)) => Err(StartupError::Store {
            url: url.clone(),
            source: StoreError::Unavailable(format!("cannot lock {}: {e}", lock_path.display())),
        }),
    }
}

impl Application {
    /// Prepares everything and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        Application::build_with_clock(settings, Clock::system()).await
    }

    /// [`Application::build`] reading `clock` instead of the system clock: tests
    /// run several nodes on one database with clocks seconds apart.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Clock,
    ) -> Result<Application, StartupError> {
        let prepared = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || prepare(&settings))
                .await
                .expect("start-up task does not panic")?
        };
        let Prepared {
            store,
            checkpointer,
            operator_token,
            policies,
            master_key,
        } = prepared;
        // After `prepare`, which created the database's directory.
        let sqlite_lock = lock_sqlite(&settings.database)?;
        let store = store.with_clock(clock);
        let policies = std::sync::Arc::new(policies);
        let csrf = crate::crypto::web::CsrfKey::derive(&master_key);
        let hasher = crate::crypto::api_key::SecretHasher::derive(&master_key);
        let ledger = web::Data::new(Ledger::new(
            Writer::signing(store.clone(), Some(checkpointer)),
            std::sync::Arc::new(Keyring::new(master_key)),
            policies.clone(),
        ));
        // Live checks are answered from memory: load every business's state before
        // serving (a check that finds a business not loaded yet loads it first).
        let started = std::time::Instant::now();
        let subjects =
            ledger
                .projection()
                .load_all()
                .await
                .map_err(|source| StartupError::Store {
                    url: settings.database.clone(),
                    source,
                })?;
        tracing::info!(
            subjects,
            seconds = started.elapsed().as_secs_f64(),
            "consent state loaded into memory"
        );
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: settings.bind,
                source,
            })?
            .port();

        let api = openapi::document();
        let yaml = web::Data::new(OpenApiYaml(
            api.to_yaml().expect("the OpenAPI document serialises"),
        ));
        let route_table = web::Data::new(RouteTable::from_openapi(&api));
        let limits = AuthLimits {
            permits: settings.argon2_concurrency,
            max_waiting: settings.argon2_concurrency * 16,
        };
        let authenticator = web::Data::new(Authenticator::new(
            store.clone(),
            ledger.projection().clone(),
            hasher,
            limits,
        ));
        let throttle = web::Data::new(Throttle::new(&settings.rate_limits));
        let store_data = web::Data::new(store.clone());
        let operator = web::Data::new(OperatorToken::new(&operator_token));
        let policies = web::Data::from(policies);
        let metrics = web::Data::new(Metrics::default());
        let body_limit = BodyLimit(settings.max_body_bytes);
        // Preference links are built on the public address; without one
        // configured, the address this listener is bound to.
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{port}", settings.bind.ip()));
        let web_state = web::Data::new(http::browser::WebState::new(
            csrf,
            public_url,
            settings.preference_posts_per_minute,
        ));

        let retention_ledger = ledger.clone().into_inner();
        let writer = ledger.writer().clone();
        throttle::spawn_housekeeping(throttle.clone().into_inner());
        let mut server = HttpServer::new(move || {
            let (app, _) = App::new()
                .into_utoipa_app()
                .configure(http::routes)
                .split_for_parts();
            app.app_data(store_data.clone())
                .app_data(authenticator.clone())
                .app_data(throttle.clone())
                .app_data(operator.clone())
                .app_data(policies.clone())
                // A ledger handle of this worker's own (the ledger is cheap to
                // clone): handlers take it per request, and a shared one's
                // reference count would be written by every worker each time.
                .app_data(web::Data::new(ledger.as_ref().clone()))
                .app_data(metrics.clone())
                .app_data(yaml.clone())
                .app_data(route_table.clone())
                .app_data(body_limit)
                .app_data(web_state.clone())
                .app_data(extract::path_config())
                .configure(http::browser::routes)
                .default_service(web::to(http::fallback))
                .wrap(ErrorHandlers::new().default_handler(observe::ensure_problem))
                .wrap(from_fn(observe::observe))
        })
        .shutdown_timeout(10);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: settings.bind,
                source,
            })?
            .run();
        spawn_checkpoints(
            writer.clone(),
            std::time::Duration::from_secs(settings.checkpoint_interval_secs),
        );
        spawn_retention(
            retention_ledger,
            std::time::Duration::from_secs(settings.retention_interval_secs),
        );
        tracing::info!(port, backend = ?store.backend(), "consentgate listening");
        Ok(Application {
            port,
            server,
            store,
            writer,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// The port the service listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store the service uses (tests inspect it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The group-commit writer the service's ledger writes through (tests queue
    /// writes beside the service's own).
    pub fn writer(&self) -> &crate::writer::Writer {
        &self.writer
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the process is told to stop (SIGINT/SIGTERM: graceful).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
