//! `POST /v1/checks/stream`: a campaign as NDJSON in and out, any size, bounded
//! memory (SPEC sections 5 and 9). The body is read as it arrives, a bounded
//! chunk of lines at a time; each chunk is answered (after its own freshness fence:
//! every line is a check that arrived when its line did) and written out before
//! the next is read, so the first answers leave before the last number is sent and
//! memory does not grow with the campaign.

use actix_web::http::header;
use actix_web::web::{BufMut, Bytes, BytesMut};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::Scope;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, FieldError, Problem};
use crate::http::extract::Query;
use crate::http::handlers::{caller, unknown_category};
use crate::http::responses::{ApiKeyErrors, QueryErrors};
use crate::ledger::check::StreamCounts;
use crate::ledger::{Caller, Ledger};
use crate::policy::Category;

/// The media type of both the request and the response.
pub const NDJSON: &str = "application/x-ndjson";
/// Lines answered per chunk.
const CHUNK_LINES: usize = 4096;
/// The longest line accepted (a phone number in a small JSON object).
const MAX_LINE_BYTES: usize = 1024;

/// What every number of the stream is checked for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckStreamParams {
    /// A category of the business's policy, e.g. `marketing`.
    pub category: String,
    /// Region for numbers in national form (two letters).
    pub default_region: Option<String>,
}

/// One request line: `{"phone": "+31612345678"}` (or just the JSON string).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CheckStreamLine {
    Object { phone: String },
    Bare(String),
}

/// One answer line, in input order; the last line is a [`CheckStreamSummary`].
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckStreamItem {
    /// The number as sent.
    pub phone: String,
    pub allowed: bool,
    /// The reason, `invalid_phone` for a number that could not be parsed, or
    /// `invalid_line` for a line that is not `{"phone": "..."}`.
    pub reason: String,
    pub billable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last line of a stream: counts by reason. A stream that ends without it
/// was cut short: every number without an answer line is a no.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckStreamSummary {
    pub summary: StreamCounts,
}

/// The line that ends a stream cut short: the state could not be proved fresh, so
/// every number not answered above is a no.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckStreamError {
    /// A 503 problem with `allowed: false`.
    pub error: Problem,
}

/// One line of the answer: a [`CheckStreamItem`] per number, then either a
/// [`CheckStreamSummary`] or, for a stream cut short, a [`CheckStreamError`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the schema of a line; the lines are written by their own types
pub enum CheckStreamAnswerLine {
    Item(CheckStreamItem),
    Summary(CheckStreamSummary),
    Error(CheckStreamError),
}

/// may_contact for a campaign of any size, streamed: request lines are
/// `{"phone": "..."}` (NDJSON), answer lines come back in the same order as they
/// are decided, then one summary line. Live only (no `as_of`). If the state cannot
/// be proved fresh mid-stream the stream ends with a line
/// `{"error": {...problem, "allowed": false}}`: everything not yet answered is a no.
#[utoipa::path(
    tag = "checks",
    security(("api_key" = ["checks:read"])),
    params(CheckStreamParams),
    request_body(content = CheckStreamLine, content_type = "application/x-ndjson",
        description = "one JSON object per line: {\"phone\": \"+31612345678\"}"),
    responses(
        ApiKeyErrors, QueryErrors,
        (status = 200, description = "one CheckStreamItem per line, in input order, then a CheckStreamSummary",
            body = CheckStreamAnswerLine, content_type = "application/x-ndjson"),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/x-ndjson`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "unknown category or region", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/checks/stream")]
#[tracing::instrument(skip_all)]
pub async fn check_contacts_stream(
    principal: Principal,
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    principal.require(Scope::ChecksRead)?;
    // Read after the scope check: a key without the scope learns nothing else.
    let params = Query::<CheckStreamParams>::extract(&req).await?;
    let caller = caller(&principal, &ledger).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let is_ndjson = matches!(req.mime_type(), Ok(Some(m)) if m.essence_str() == NDJSON);
    if !is_ndjson {
        return Err(ApiError::UnsupportedMediaType);
    }
    let params = params.0;
    let Some(category) = caller.policy.category(&params.category) else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "category",
            unknown_category(&caller.policy),
        )]));
    };
    if let Some(region) = &params.default_region
        && let Err(e) = crate::domain::phone::Phone::parse("+31612345678", Some(region))
    {
        return Err(ApiError::invalid("default_region", e.to_string()));
    }
    let state = Stream {
        payload,
        pending: BytesMut::new(),
        ledger: ledger.into_inner(),
        caller,
        category,
        default_region: params.default_region,
        counts: StreamCounts::default(),
        finished: false,
        ended: false,
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        let chunk = state.next_chunk().await;
        Some((Ok::<_, actix_web::Error>(chunk), state))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, NDJSON))
        .streaming(body))
}

struct Stream {
    payload: web::Payload,
    pending: BytesMut,
    ledger: std::sync::Arc<Ledger>,
    caller: Caller,
    category: Category,
    default_region: Option<String>,
    counts: StreamCounts,
    /// Nothing more to send.
    finished: bool,
    /// The request body has ended.
    ended: bool,
}

impl Stream {
    /// Reads up to a chunk of lines and answers them; at the end, the summary.
    async fn next_chunk(&mut self) -> Bytes {
        let mut lines: Vec<Result<String, &'static str>> = Vec::new();
        while lines.len() < CHUNK_LINES {
            if let Some(position) = self.pending.iter().position(|b| *b == b'\n') {
                let line = self.pending.split_to(position + 1);
                if let Some(parsed) = parse_line(&line[..position]) {
                    lines.push(parsed);
                }
                continue;
            }
            if self.pending.len() > MAX_LINE_BYTES {
                // A line too long to be a number: answer it and skip to its end.
                lines.push(Err("the line is longer than 1024 bytes"));
                self.pending.clear();
                self.skip_rest_of_line().await;
                continue;
            }
            if self.ended {
                let rest = self.pending.split();
                if let Some(parsed) = parse_line(&rest) {
                    lines.push(parsed);
                }
                break;
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.pending.extend_from_slice(&bytes),
                Some(Err(_)) | None => self.ended = true,
            }
            // Answer what has arrived rather than wait for a whole chunk when
            // the sender pauses.
            if !lines.is_empty() && !self.pending.contains(&b'\n') && !self.ended {
                break;
            }
        }
        let mut out = BytesMut::new();
        if !lines.is_empty() {
            let phones: Vec<(String, bool)> = lines
                .into_iter()
                .map(|line| match line {
                    Ok(phone) => (phone, true),
                    Err(why) => (why.to_owned(), false),
                })
                .collect();
            match self
                .ledger
                .check_stream_chunk(
                    &self.caller,
                    &self.category,
                    phones,
                    self.default_region.clone(),
                    &mut self.counts,
                )
                .await
            {
                Ok(items) => {
                    for (phone, decided) in items {
                        let item = match decided {
                            Ok(d) => CheckStreamItem {
                                phone,
                                allowed: d.allowed,
                                reason: d.reason.as_str().to_owned(),
                                billable: d.billable,
                                error: None,
                            },
                            Err((reason, error)) => CheckStreamItem {
                                phone: if reason == "invalid_line" {
                                    String::new()
                                } else {
                                    phone
                                },
                                allowed: false,
                                reason: reason.to_owned(),
                                billable: false,
                                error: Some(error),
                            },
                        };
                        write_line(&mut out, &item);
                    }
                }
                Err(_) => {
                    let mut error = ApiError::Unavailable("stream freshness".into()).problem();
                    error.detail = "the consent state could not be proved fresh: every number not \
                                    answered above is a no"
                        .to_owned();
                    write_line(&mut out, &CheckStreamError { error });
                    self.finished = true;
                    return out.freeze();
                }
            }
        }
        if self.ended && self.pending.is_empty() {
            write_line(
                &mut out,
                &CheckStreamSummary {
                    summary: std::mem::take(&mut self.counts),
                },
            );
            self.finished = true;
        }
        out.freeze()
    }

    async fn skip_rest_of_line(&mut self) {
        loop {
            match self.payload.next().await {
                Some(Ok(bytes)) => {
                    if let Some(position) = bytes.iter().position(|b| *b == b'\n') {
                        self.pending.extend_from_slice(&bytes[position + 1..]);
                        return;
                    }
                }
                Some(Err(_)) | None => {
                    self.ended = true;
                    return;
                }
            }
        }
    }
}

/// A line's number; `None` for a blank line (skipped).
fn parse_line(line: &[u8]) -> Option<Result<String, &'static str>> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    Some(match serde_json::from_slice::<CheckStreamLine>(line) {
        Ok(CheckStreamLine::Object { phone } | CheckStreamLine::Bare(phone)) => Ok(phone),
        Err(_) => Err("the line is not {\"phone\": \"...\"}"),
    })
}

fn write_line(out: &mut BytesMut, value: &impl Serialize) {
    // Serialising these plain structs into memory cannot fail.
    let _ = serde_json::to_writer(BufMut::writer(&mut *out), value);
    out.put_u8(b'\n');
}
