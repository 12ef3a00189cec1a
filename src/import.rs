//! `consentgate import --business ID FILE`: legacy opt-ins from a CSV file
//! (SPEC section 8), the reading side. The file is streamed (one row at a time,
//! a bounded number of batches in flight: constant memory for any file size);
//! each row is validated exactly as `POST /v1/opt-ins` validates a request (the
//! same phone, category and evidence parsers, channel `import` with the
//! original channel's evidence) and written through the same ledger path, many
//! rows to a transaction (`ledger::import`). A reading thread reads, validates and
//! prepares each valid row (its pseudonym, the subject it would create, its
//! sealed evidence: everything that needs no database) while the calling
//! thread writes the previous batch.
//!
//! Rejected rows go to a rejects file (line number, reason, the fields at
//! fault: never a value, so never the number). `--resume` continues after the
//! last committed row: the progress is committed with each batch, keyed by the
//! file's SHA-256, so re-running never duplicates. `--dry-run` validates only
//! (without the erasure check, which needs the store).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::evidence::{Channel, Evidence, Limits, Strictness};
use crate::http::error::FieldError;
use crate::http::handlers::{evidence_errors, parse_categories, parse_phone};
use crate::ledger::Ledger;
use crate::ledger::import::{COLLECTED_BEFORE_ERASURE, ImportBatch, ImportPreparer, PreparedOptIn};
use crate::ledger::record::RecordOptIn;
use crate::policy::Policy;
use crate::store::channels::ImportProgress;

/// Required columns.
pub const REQUIRED: &[&str] = &[
    "phone",
    "categories",
    "channel",
    "collected_at",
    "consent_text_version",
    "source_system",
];

/// Optional columns: the region for national numbers, and the evidence fields of
/// the original channel (see README "Importing legacy opt-ins").
pub const OPTIONAL: &[&str] = &[
    "default_region",
    "source_url",
    "form_id",
    "ip",
    "user_agent",
    "app_id",
    "app_version",
    "store_id",
    "staff_id",
    "form_reference",
    "message_reference",
    "ticket_reference",
];

/// How the import is run.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub business_id: Uuid,
    pub file: PathBuf,
    pub rejects: Option<PathBuf>,
    pub resume: bool,
    pub dry_run: bool,
    pub batch_size: usize,
    /// Stop after committing this many batches (tests simulate an interruption).
    pub stop_after_batches: Option<u64>,
}

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportSummary {
    pub business_id: Uuid,
    pub file_sha256: String,
    pub dry_run: bool,
    /// The last line committed before this run (with `--resume`).
    pub resumed_after_line: u64,
    /// The last line committed (or validated, in a dry run) by now.
    pub last_line: u64,
    /// Imported rows, this run and before.
    pub imported: u64,
    /// Rejected rows, this run and before.
    pub rejected: u64,
    /// This run's rejects by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub rejects_file: PathBuf,
    /// Whether every row of the file was processed.
    pub complete: bool,
    pub seconds: f64,
}

/// A row after validation. Nearly every row is valid: boxing it would cost an
/// allocation per row for nothing.
#[allow(clippy::large_enum_variant)]
enum Row {
    /// Valid, and prepared for the write.
    Prepared(PreparedOptIn),
    /// Valid (a dry run prepares nothing).
    Valid,
    Rejected(u64, String, String),
}

/// A batch handed from the reading thread to the writer.
struct Batch {
    rows: Vec<Row>,
    last_line: u64,
    bytes_read: u64,
}

/// The file's SHA-256 (read once, streaming).
fn file_hash(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The reason of a field error, for the summary: the field without indexes.
fn reason_of(errors: &[FieldError]) -> String {
    let field = errors
        .first()
        .map(|e| e.field.split('[').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    format!("invalid_{}", field.replace('.', "_"))
}

/// Validates one record as `POST /v1/opt-ins` would validate it.
fn validate(
    policy: &Policy,
    limits: &Limits,
    columns: &[(usize, &'static str)],
    record: &csv::StringRecord,
) -> Result<RecordOptIn, Vec<FieldError>> {
    let field = |name: &str| {
        columns
            .iter()
            .find(|(_, n)| *n == name)
            .and_then(|(i, _)| record.get(*i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut errors = Vec::new();
    let phone = match field("phone") {
        Some(phone) => parse_phone("phone", phone, field("default_region"), &mut errors),
        None => {
            errors.push(FieldError::new("phone", "is required"));
            None
        }
    };
    let names: Vec<String> = field("categories")
        .map(|c| {
            c.split([';', '|', ','])
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let categories = parse_categories(policy, "categories", &names, &mut errors);
    let mut evidence = Map::new();
    if let Some(channel) = field("channel") {
        evidence.insert("original_channel".into(), Value::String(channel.to_owned()));
    } else {
        errors.push(FieldError::new(
            "channel",
            "is required (the original channel)",
        ));
    }
    for (_, name) in columns {
        if matches!(*name, "phone" | "categories" | "channel" | "default_region") {
            continue;
        }
        if let Some(value) = field(name) {
            evidence.insert((*name).to_owned(), Value::String(value.to_owned()));
        }
    }
    let evidence = Evidence::parse(
        Channel::Import,
        Some(&Value::Object(evidence)),
        Strictness::OptIn,
        limits,
    )
    .map_err(|problems| {
        // The evidence parser names fields `evidence.<name>`; here they are columns.
        errors.extend(evidence_errors(problems).map(|mut e| {
            e.field = match e.field.strip_prefix("evidence.") {
                Some("original_channel") => "channel".to_owned(),
                Some(column) => column.to_owned(),
                None => e.field,
            };
            e
        }))
    })
    .ok();
    match (phone, categories, evidence, errors.is_empty()) {
        (Some(phone), Some(categories), Some(evidence), true) => Ok(RecordOptIn {
            phone,
            categories,
            channel: Channel::Import,
            evidence,
        }),
        _ => Err(errors),
    }
}

/// Reads and validates the file on its own thread, batch by batch, and
/// prepares each valid row for the write (`preparer`: everything that needs no
/// database, so the writing thread only writes; `None` in a dry run).
fn read_batches(
    path: PathBuf,
    policy: std::sync::Arc<Policy>,
    clock: crate::domain::time::Clock,
    preparer: Option<ImportPreparer>,
    skip_through: u64,
    batch_size: usize,
    out: mpsc::SyncSender<Result<Batch, String>>,
) {
    let send_err = |out: &mpsc::SyncSender<Result<Batch, String>>, e: String| {
        let _ = out.send(Err(e));
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => return send_err(&out, format!("{}: {e}", path.display())),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return send_err(&out, format!("{}: header: {e}", path.display())),
    };
    let mut columns: Vec<(usize, &'static str)> = Vec::new();
    for (i, name) in headers.iter().enumerate() {
        let name = name.trim();
        match REQUIRED.iter().chain(OPTIONAL).find(|c| **c == name) {
            Some(known) => columns.push((i, known)),
            None => {
                return send_err(
                    &out,
                    format!(
                        "{}: unknown column {name:?}; known: {}",
                        path.display(),
                        REQUIRED
                            .iter()
                            .chain(OPTIONAL)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !columns.iter().any(|(_, c)| c == r))
        .collect();
    if !missing.is_empty() {
        return send_err(
            &out,
            format!(
                "{}: missing columns: {}",
                path.display(),
                missing.join(", ")
            ),
        );
    }
    let mut batch = Batch {
        rows: Vec::with_capacity(batch_size),
        last_line: skip_through,
        bytes_read: 0,
    };
    let mut limits = Limits {
        now: clock.now(),
        clock_skew: policy.clock_skew(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                if line <= skip_through {
                    continue;
                }
                batch.last_line = line;
                batch
                    .rows
                    .push(match validate(&policy, &limits, &columns, &record) {
                        Ok(command) => match &preparer {
                            Some(preparer) => match preparer.prepare(line, command) {
                                Ok(prepared) => Row::Prepared(prepared),
                                Err(e) => return send_err(&out, format!("line {line}: {e}")),
                            },
                            None => Row::Valid,
                        },
                        Err(errors) => {
                            let detail = errors
                                .iter()
                                .map(|e| format!("{}: {}", e.field, e.message))
                                .collect::<Vec<_>>()
                                .join("; ");
                            Row::Rejected(line, reason_of(&errors), detail)
                        }
                    });
            }
            Err(e) => {
                let line = e.position().map_or(line + 1, |p| p.line());
                if line > skip_through {
                    batch.last_line = line;
                    let reason = match e.kind() {
                        csv::ErrorKind::Utf8 { .. } => "not UTF-8",
                        _ => "not a CSV row",
                    };
                    batch
                        .rows
                        .push(Row::Rejected(line, "malformed_row".into(), reason.into()));
                }
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) && e.is_io_error() {
                    return send_err(&out, format!("{}: {e}", path.display()));
                }
            }
        }
        if batch.rows.len() >= batch_size {
            batch.bytes_read = reader.position().byte();
            let next_last = batch.last_line;
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    rows: Vec::with_capacity(batch_size),
                    last_line: next_last,
                    bytes_read: 0,
                },
            );
            if out.send(Ok(full)).is_err() {
                return;
            }
            limits.now = clock.now();
        }
    }
    batch.bytes_read = reader.position().byte();
    let _ = out.send(Ok(batch));
}

/// Progress: a bar on a terminal, plain lines otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                last: Instant::now(),
            }
        }
    }

    fn update(&mut self, bytes: u64, line: u64, imported: u64, rejected: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("imported {imported}, rejected {rejected}"));
            }
            Progress::Lines { last } => {
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    eprintln!("import: line {line}, imported {imported}, rejected {rejected}");
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Runs an import.
pub fn run(ledger: &Ledger, options: &ImportOptions) -> Result<ImportSummary, String> {
    let started = Instant::now();
    let store = ledger.store();
    let mut conn = store.conn().map_err(|e| e.to_string())?;
    let business = crate::store::Store::business_blocking(&mut conn, options.business_id).map_err(
        |e| match e {
            crate::store::StoreError::NotFound => "--business: no such business".to_owned(),
            other => other.to_string(),
        },
    )?;
    let policy = ledger
        .policy(&business.policy)
        .ok_or_else(|| format!("policy {} is not loaded", business.policy))?;
    let hash = file_hash(&options.file)?;
    let committed = ledger
        .import_progress_blocking(&mut conn, options.business_id, &hash)
        .map_err(|e| e.to_string())?;
    let start = match (committed, options.resume, options.dry_run) {
        (_, _, true) => ImportProgress::default(),
        (Some(progress), true, false) => progress,
        (None, _, false) => ImportProgress::default(),
        (Some(progress), false, false) => {
            return Err(format!(
                "this file was imported before (up to line {}, {} imported): use --resume to \
                 continue it; importing it again from the start would record every row twice",
                progress.last_line, progress.imported
            ));
        }
    };
    let rejects_path = options.rejects.clone().unwrap_or_else(|| {
        let mut name = options.file.clone().into_os_string();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let appending = start.last_line > 0 && rejects_path.exists();
    let rejects_file = std::fs::OpenOptions::new()
        .create(true)
        .append(appending)
        .write(true)
        .truncate(!appending)
        .open(&rejects_path)
        .map_err(|e| format!("{}: {e}", rejects_path.display()))?;
    let mut rejects = BufWriter::new(rejects_file);
    if !appending {
        writeln!(rejects, "line,reason,detail")
            .map_err(|e| format!("{}: {e}", rejects_path.display()))?;
    }
    let total_bytes = std::fs::metadata(&options.file).map_or(0, |m| m.len());
    if !options.dry_run {
        store.begin_bulk(&mut conn).map_err(|e| e.to_string())?;
    }
    let mut progress_view = Progress::new(total_bytes);

    let (tx, rx) = mpsc::sync_channel(2);
    let reader = {
        let path = options.file.clone();
        let policy = policy.clone();
        let clock = ledger.clock();
        let preparer = (!options.dry_run).then(|| ledger.import_preparer(options.business_id));
        let skip = start.last_line;
        let batch_size = options.batch_size.max(1);
        std::thread::spawn(move || {
            read_batches(path, policy, clock, preparer, skip, batch_size, tx)
        })
    };

    let mut progress = start;
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut complete = true;
    let mut failure = None;
    for (index, batch) in rx.iter().enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let mut valid = Vec::with_capacity(batch.rows.len());
        let mut valid_unprepared = 0u64;
        let mut rejected: Vec<(u64, String, String)> = Vec::new();
        for row in batch.rows {
            match row {
                Row::Prepared(prepared) => valid.push(prepared),
                Row::Valid => valid_unprepared += 1,
                Row::Rejected(line, reason, detail) => rejected.push((line, reason, detail)),
            }
        }
        let validated = ImportProgress {
            last_line: batch.last_line,
            imported: progress.imported,
            rejected: progress.rejected + rejected.len() as u64,
        };
        if options.dry_run {
            progress = ImportProgress {
                imported: progress.imported + valid_unprepared,
                ..validated
            };
        } else if valid.is_empty() {
            ledger
                .save_import_progress_blocking(&mut conn, options.business_id, &hash, validated)
                .map_err(|e| e.to_string())?;
            progress = validated;
        } else {
            let (refused, committed) = ledger
                .import_batch_blocking(
                    &mut conn,
                    ImportBatch {
                        business_id: options.business_id,
                        policy: &policy,
                        file_hash: &hash,
                        rows: valid,
                        progress: validated,
                    },
                )
                .map_err(|e| format!("a batch could not be committed: {e}"))?;
            for line in refused {
                rejected.push((
                    line,
                    COLLECTED_BEFORE_ERASURE.to_owned(),
                    "the number was erased after this consent was collected".to_owned(),
                ));
            }
            // Counted like the writer's rows: on PostgreSQL the planner statistics
            // are refreshed as the tables grow (`store::statistics`; a plan made
            // while `subjects` looked empty made each batch's lookup cost as much
            // as the table had rows: 100,000 rows took 57 s, 5 s with them).
            store.wrote(committed.imported.saturating_sub(progress.imported));
            progress = committed;
        }
        rejected.sort_by_key(|(line, _, _)| *line);
        for (line, reason, detail) in rejected {
            *by_reason.entry(reason.clone()).or_default() += 1;
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record([line.to_string(), reason, detail]);
            let bytes = w.into_inner().unwrap_or_default();
            rejects
                .write_all(&bytes)
                .map_err(|e| format!("{}: {e}", rejects_path.display()))?;
        }
        rejects
            .flush()
            .map_err(|e| format!("{}: {e}", rejects_path.display()))?;
        progress_view.update(
            batch.bytes_read,
            progress.last_line,
            progress.imported,
            progress.rejected,
        );
        if options
            .stop_after_batches
            .is_some_and(|n| index as u64 + 1 >= n)
        {
            complete = false;
            break;
        }
    }
    drop(rx);
    let _ = reader.join();
    let _ = store.end_bulk(&mut conn);
    progress_view.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ImportSummary {
        business_id: options.business_id,
        file_sha256: hash,
        dry_run: options.dry_run,
        resumed_after_line: start.last_line,
        last_line: progress.last_line,
        imported: progress.imported,
        rejected: progress.rejected,
        rejected_by_reason: by_reason,
        rejects_file: rejects_path,
        complete,
        seconds: started.elapsed().as_secs_f64(),
    })
}
