//! The command line: `serve | migrate | business create | key create | policy check
//! | audit verify | openapi | master-key generate`. Output meant for scripts is
//! JSON on stdout; diagnostics go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use uuid::Uuid;

use crate::config::Settings;
use crate::crypto::master_key::MasterKey;
use crate::domain::{Actor, Scope, Scopes};
use crate::startup::{self, Application};
use crate::store::audit as store_audit;
use crate::store::keys::NewApiKey;
use crate::writer::Writer;

/// consentgate: the consent gate between a business and its customers' phones.
///
/// Configuration comes from CONSENTGATE_* environment variables and DATABASE_URL
/// (see README.md); with none set it runs on SQLite under ./data.
#[derive(Debug, Parser)]
#[command(name = "consentgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage businesses.
    #[command(subcommand)]
    Business(BusinessCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the OpenAPI document (or write it to openapi.yaml, with the export
    /// format's JSON Schema in schemas/ beside it).
    Openapi {
        /// Write to this file instead of stdout.
        #[arg(long, num_args = 0..=1, default_missing_value = "openapi.yaml")]
        write: Option<PathBuf>,
    },
    /// Master key utilities.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    /// Retention (policy `retention`).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Checkpoint signing key utilities.
    #[command(subcommand, name = "signing-key")]
    SigningKey(SigningKeyCommand),
    /// Import legacy opt-ins from a CSV file (see README "Importing legacy opt-ins").
    Import {
        /// The business the opt-ins belong to.
        #[arg(long)]
        business: Uuid,
        /// The CSV file.
        file: PathBuf,
        /// Where rejected rows are written (default: FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Continue an interrupted import of the same file after its last committed row.
        #[arg(long)]
        resume: bool,
        /// Validate every row without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = 2000)]
        batch_size: usize,
        /// Stop after this many committed batches (to test --resume).
        #[arg(long, hide = true)]
        stop_after_batches: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Run the retention job once (as the service does every interval) and print
    /// what was purged per business.
    Run,
}

#[derive(Debug, Subcommand)]
enum SigningKeyCommand {
    /// Print a new random Ed25519 signing key (base64 seed) for
    /// CONSENTGATE_SIGNING_KEY or a key file.
    Generate,
    /// Print the public key (PEM) of the configured signing key, for auditors.
    Public,
}

#[derive(Debug, Subcommand)]
enum BusinessCommand {
    /// Create a business; prints it and its first key (all scopes) as JSON. The
    /// key's secret is shown this once.
    Create {
        #[arg(long)]
        name: String,
        /// The policy to bind it to, e.g. whatsapp-eu.
        #[arg(long)]
        policy: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create an API key for a business; prints it as JSON, secret included once.
    Create {
        #[arg(long)]
        business: Uuid,
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, e.g. consents:write,checks:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate policy files; prints every problem with file, field and reason.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the audit chain of one business (or all) from the stored rows and
    /// check it against every signed checkpoint.
    Verify {
        #[arg(long)]
        business: Option<Uuid>,
    },
    /// Sign a checkpoint of one business's chain now.
    Checkpoint {
        #[arg(long)]
        business: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Print a new random master key (base64) for CONSENTGATE_MASTER_KEY or a key
    /// file.
    Generate,
}

impl clap::ValueEnum for Scope {
    fn value_variants<'a>() -> &'a [Self] {
        &Scope::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = execute(cli.command);
    crate::telemetry::flush();
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn settings() -> Result<Settings, String> {
    let settings = Settings::from_env().map_err(|e| e.to_string())?;
    crate::telemetry::init(settings.log_format, &settings.log_filter);
    Ok(settings)
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

fn execute(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Serve => {
            let settings = settings()?;
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings)
                    .await
                    .map_err(|e| e.to_string())?;
                app.run_until_stopped().await.map_err(|e| e.to_string())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Business(BusinessCommand::Create { name, policy }) => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            let name = crate::http::handlers::display_name("--name", &name, 200)
                .map_err(|e| format!("{}: {}", e.field, e.message))?;
            if prepared.policies.get(&policy).is_none() {
                let known: Vec<&str> = prepared.policies.names().collect();
                return Err(format!(
                    "--policy: unknown policy; known: {}",
                    known.join(", ")
                ));
            }
            let (business, key, secret) = crate::ledger::keys::new_business(
                &crate::crypto::api_key::SecretHasher::derive(&prepared.master_key),
                name,
                policy,
            );
            let mut conn = prepared.store.conn().map_err(|e| e.to_string())?;
            prepared
                .writer()
                .create_business_blocking(&mut conn, &business, &key, Actor::Cli)
                .map_err(|e| e.to_string())?;
            print_json(&json!({
                "business": {"id": business.id, "name": business.name, "policy": business.policy, "created_at": business.created_at},
                "key": key_json(&key, &secret),
            }));
            Ok(ExitCode::SUCCESS)
        }
        Command::Key(KeyCommand::Create {
            business,
            name,
            scopes,
        }) => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            let name = crate::http::handlers::display_name("--name", &name, 100)
                .map_err(|e| format!("{}: {}", e.field, e.message))?;
            let scopes = Scopes::new(scopes).ok_or("--scopes: name at least one scope")?;
            let hasher = crate::crypto::api_key::SecretHasher::derive(&prepared.master_key);
            let (key, secret) = crate::ledger::keys::mint_key(&hasher, business, name, scopes);
            let mut conn = prepared.store.conn().map_err(|e| e.to_string())?;
            prepared
                .writer()
                .create_key_blocking(&mut conn, &key, Actor::Cli)
                .map_err(|e| match e {
                    crate::store::StoreError::NotFound => "--business: no such business".to_owned(),
                    other => other.to_string(),
                })?;
            print_json(&key_json(&key, &secret));
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCommand::Check { files }) => Ok(check_policies(&files)),
        Command::Audit(AuditCommand::Verify { business }) => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            verify_chains(&prepared.writer(), business)
        }
        Command::Openapi { write } => {
            let yaml = crate::http::openapi::yaml();
            match write {
                Some(path) => {
                    std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                    // The export format's JSON Schema is generated beside it.
                    let schema = path
                        .with_file_name("schemas")
                        .join("consentgate.export.v1.json");
                    std::fs::create_dir_all(schema.parent().expect("has a parent"))
                        .and_then(|()| {
                            std::fs::write(&schema, crate::http::openapi::export_json_schema())
                        })
                        .map_err(|e| format!("{}: {e}", schema.display()))?;
                    eprintln!("wrote {}", schema.display());
                }
                None => print!("{yaml}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Checkpoint { business }) => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            let mut conn = prepared.store.conn().map_err(|e| e.to_string())?;
            let checkpoint = prepared
                .writer()
                .checkpoint_now_blocking(&mut conn, business)
                .map_err(|e| match e {
                    crate::store::StoreError::NotFound => "--business: no such business".to_owned(),
                    other => other.to_string(),
                })?;
            print_json(&json!(checkpoint.map(|c| json!({
                "business_id": c.business_id, "seq": c.seq, "hash": hex::encode(&c.hash),
                "at": crate::crypto::chain::format_at(c.at), "key_id": c.key_id,
                "signature": hex::encode(&c.signature)}))));
            Ok(ExitCode::SUCCESS)
        }
        Command::Retention(RetentionCommand::Run) => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            let ledger = crate::ledger::Ledger::new(
                prepared.writer(),
                std::sync::Arc::new(crate::ledger::Keyring::new(prepared.master_key)),
                std::sync::Arc::new(prepared.policies),
            );
            let purged = actix_web::rt::System::new()
                .block_on(ledger.run_retention())
                .map_err(|e| e.to_string())?;
            print_json(&json!(purged
                .into_iter()
                .map(|(business_id, counts)| json!({"business_id": business_id, "purged": counts}))
                .collect::<Vec<_>>()));
            Ok(ExitCode::SUCCESS)
        }
        Command::SigningKey(SigningKeyCommand::Generate) => {
            println!(
                "{}",
                crate::crypto::signing::SigningKey::generate().to_base64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::SigningKey(SigningKeyCommand::Public) => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            let key = prepared
                .writer()
                .checkpoint_public_key()
                .ok_or("no signing key configured")?;
            print!("{}", key.to_pem());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            business,
            file,
            rejects,
            resume,
            dry_run,
            batch_size,
            stop_after_batches,
        } => {
            let prepared = startup::prepare(&settings()?).map_err(|e| e.to_string())?;
            let ledger = crate::ledger::Ledger::new(
                prepared.writer(),
                std::sync::Arc::new(crate::ledger::Keyring::new(prepared.master_key)),
                std::sync::Arc::new(prepared.policies),
            );
            let options = crate::import::ImportOptions {
                business_id: business,
                file,
                rejects,
                resume,
                dry_run,
                batch_size,
                stop_after_batches,
            };
            let summary = crate::import::run(&ledger, &options)?;
            print_json(&serde_json::to_value(&summary).map_err(|e| e.to_string())?);
            Ok(if summary.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::MasterKey(MasterKeyCommand::Generate) => {
            println!("{}", MasterKey::generate().to_base64());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn key_json(key: &NewApiKey, secret: &str) -> serde_json::Value {
    json!({
        "id": key.id,
        "name": key.name,
        "scopes": key.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "created_at": key.created_at,
        "secret": secret,
    })
}

fn check_policies(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match crate::policy::Policy::from_file(file) {
            Ok(policy) => println!(
                "{}: ok ({} version {})",
                file.display(),
                policy.name(),
                policy.versioned()
            ),
            Err(problems) => {
                failed = true;
                for problem in problems {
                    println!("{problem}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn verify_chains(writer: &Writer, business: Option<Uuid>) -> Result<ExitCode, String> {
    let mut conn = writer.store().conn().map_err(|e| e.to_string())?;
    let businesses = match business {
        Some(id) => vec![id],
        None => store_audit::chained_businesses(&mut conn).map_err(|e| e.to_string())?,
    };
    let mut all_valid = true;
    for id in businesses {
        if store_audit::recorded_head(&mut conn, id)
            .map_err(|e| e.to_string())?
            .is_none()
        {
            return Err(format!("--business: no such business {id}"));
        }
        let report = writer
            .verify_chain_blocking(&mut conn, id)
            .map_err(|e| e.to_string())?;
        all_valid &= report.valid;
        println!(
            "{}",
            json!({"business_id": id, "valid": report.valid, "checked": report.checked,
                   "head": report.head.map(|(seq, hash)| json!({"seq": seq, "hash": hash})),
                   "first_invalid_seq": report.first_invalid_seq,
                   "checkpoints_checked": report.checkpoints_checked,
                   "invalid_checkpoints": report.invalid_checkpoints})
        );
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
