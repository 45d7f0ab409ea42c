//! Import of business data (`crm import <kind> <file>`, `POST /api/v1/import/{kind}`): the
//! header must name exactly the kind's columns (any order), every row is checked, and every
//! problem is reported with its line number. A file with any bad row imports nothing. CSV is
//! parsed here; `crm import` reads Parquet with the batch jobs' Arrow reader and feeds the
//! same [`RowParser`].

use std::collections::HashMap;

use crm_schemas::{
    CustomerAccount, ImportBatch, ImportKind, Invoice, InvoiceKind, InvoiceStatus, Priority, Relationship, Sentiment, Ticket,
};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// The most rows one import may carry (one atomic write on every store).
pub const MAX_IMPORT_ROWS: usize = 500_000;
/// The most problems reported for one file.
const MAX_REPORTED: usize = 100;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImportError {
    #[error("the header does not match the {kind} columns: {message}")]
    Header { kind: &'static str, message: String },
    #[error("{} row(s) are invalid; nothing was imported", .0.len())]
    Rows(Vec<RowError>),
    #[error("the file has no rows")]
    Empty,
    #[error("the file has more than {MAX_IMPORT_ROWS} rows; split it")]
    TooLarge,
}

/// (required, optional) columns per kind.
pub fn columns(kind: ImportKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        ImportKind::Accounts => (&["account_id", "name", "plan", "mrr"], &["seats", "contract_start", "renewal_date"]),
        ImportKind::Invoices => (&["invoice_id", "account_id", "issued_at", "amount", "status", "kind"], &["mrr"]),
        ImportKind::Tickets => (&["ticket_id", "account_id", "opened_at", "priority"], &["closed_at", "sentiment", "escalated"]),
        ImportKind::Relationships => (&["account_id", "stakeholders"], &["nps", "executive_sponsor", "reference_willing"]),
    }
}

/// One row's cells by column name, with typed accessors that record problems.
struct Row<'a> {
    cells: HashMap<&'a str, &'a str>,
    line: u64,
    errors: &'a mut Vec<RowError>,
}

impl Row<'_> {
    fn fail(&mut self, column: &str, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(RowError { line: self.line, column: Some(column.to_owned()), message: message.into() });
        }
    }

    fn opt(&self, column: &str) -> Option<&str> {
        self.cells.get(column).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn id(&mut self, column: &str) -> String {
        match self.opt(column) {
            Some(v) if v.len() <= 128 && !v.chars().any(char::is_control) => v.to_owned(),
            Some(_) => {
                self.fail(column, "must be 1-128 printable characters");
                String::new()
            }
            None => {
                self.fail(column, "is required");
                String::new()
            }
        }
    }

    fn text(&mut self, column: &str) -> String {
        match self.opt(column) {
            Some(v) if v.chars().count() <= 200 => v.to_owned(),
            Some(_) => {
                self.fail(column, "is longer than 200 characters");
                String::new()
            }
            None => {
                self.fail(column, "is required");
                String::new()
            }
        }
    }

    fn number(&mut self, column: &str, required: bool, min: f64, max: f64) -> Option<f64> {
        match self.opt(column) {
            None if required => {
                self.fail(column, "is required");
                None
            }
            None => None,
            Some(v) => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && (min..=max).contains(&n) => Some(n),
                _ => {
                    self.fail(column, format!("must be a number from {min} to {max}, got {v:?}"));
                    None
                }
            },
        }
    }

    fn count(&mut self, column: &str, required: bool) -> Option<u32> {
        self.number(column, required, 0.0, 10_000_000.0).and_then(|n| {
            if n.fract() == 0.0 {
                Some(n as u32)
            } else {
                self.fail(column, "must be a whole number");
                None
            }
        })
    }

    fn date(&mut self, column: &str, required: bool) -> Option<i64> {
        let Some(v) = self.opt(column).map(str::to_owned) else {
            if required {
                self.fail(column, "is required");
            }
            return None;
        };
        if let Ok(date) = Date::parse(&v, format_description!("[year]-[month]-[day]")) {
            return Some((PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc().unix_timestamp_nanos() / 1_000_000) as i64);
        }
        if let Ok(at) = OffsetDateTime::parse(&v, &Rfc3339) {
            return Some((at.unix_timestamp_nanos() / 1_000_000) as i64);
        }
        self.fail(column, format!("must be YYYY-MM-DD or RFC 3339, got {v:?}"));
        None
    }

    fn flag(&mut self, column: &str) -> bool {
        match self.opt(column).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "no" | "0") => false,
            Some("true" | "yes" | "1") => true,
            Some(other) => {
                self.fail(column, format!("must be true/false, got {other:?}"));
                false
            }
        }
    }

    /// A snake_case enum value through serde.
    fn choice<T: serde::de::DeserializeOwned>(&mut self, column: &str, required: bool, allowed: &str) -> Option<T> {
        let Some(v) = self.opt(column).map(str::to_ascii_lowercase) else {
            if required {
                self.fail(column, "is required");
            }
            return None;
        };
        match serde_json::from_value(serde_json::Value::String(v.clone())) {
            Ok(value) => Some(value),
            Err(_) => {
                self.fail(column, format!("must be one of {allowed}, got {v:?}"));
                None
            }
        }
    }
}

/// Checks a header (lower-cased, trimmed names): exactly the kind's required columns plus any of
/// its optional ones, no unknown names, no duplicates.
pub fn check_header(kind: ImportKind, names: &[String]) -> Result<(), ImportError> {
    let (required, optional) = columns(kind);
    let missing: Vec<&str> = required.iter().copied().filter(|c| !names.iter().any(|n| n == c)).collect();
    let unknown: Vec<&String> = names.iter().filter(|n| !required.contains(&n.as_str()) && !optional.contains(&n.as_str())).collect();
    if !missing.is_empty() || !unknown.is_empty() || names.len() != names.iter().collect::<std::collections::HashSet<_>>().len() {
        return Err(ImportError::Header {
            kind: kind.as_str(),
            message: format!("missing {missing:?}, unknown {unknown:?} (columns: {required:?} and optionally {optional:?}; no duplicates)"),
        });
    }
    Ok(())
}

/// Turns checked rows into one [`ImportBatch`], collecting every problem; the CSV and Parquet
/// readers both feed it.
pub struct RowParser {
    kind: ImportKind,
    site_id: String,
    errors: Vec<RowError>,
    rows: usize,
    accounts: Vec<CustomerAccount>,
    invoices: Vec<Invoice>,
    tickets: Vec<Ticket>,
    relationships: Vec<Relationship>,
}

impl RowParser {
    pub fn new(kind: ImportKind, site_id: &str) -> RowParser {
        RowParser {
            kind,
            site_id: site_id.to_owned(),
            errors: Vec::new(),
            rows: 0,
            accounts: Vec::new(),
            invoices: Vec::new(),
            tickets: Vec::new(),
            relationships: Vec::new(),
        }
    }

    /// Records a row that could not be read at all.
    pub fn unreadable(&mut self, line: u64, message: String) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(RowError { line, column: None, message });
        }
    }

    /// Checks and keeps one row (`cells` by column name).
    pub fn push(&mut self, line: u64, cells: HashMap<&str, &str>) -> Result<(), ImportError> {
        self.rows += 1;
        if self.rows > MAX_IMPORT_ROWS {
            return Err(ImportError::TooLarge);
        }
        let mut row = Row { cells, line, errors: &mut self.errors };
        let site = self.site_id.clone();
        match self.kind {
            ImportKind::Accounts => self.accounts.push(CustomerAccount {
                site_id: site,
                account_id: row.id("account_id"),
                name: row.text("name"),
                plan: row.text("plan"),
                seats: row.count("seats", false),
                mrr: row.number("mrr", true, 0.0, 1e12).unwrap_or(0.0),
                contract_start_ms: row.date("contract_start", false),
                renewal_ms: row.date("renewal_date", false),
            }),
            ImportKind::Invoices => self.invoices.push(Invoice {
                site_id: site,
                invoice_id: row.id("invoice_id"),
                account_id: row.id("account_id"),
                issued_ms: row.date("issued_at", true).unwrap_or(0),
                amount: row.number("amount", true, -1e12, 1e12).unwrap_or(0.0),
                mrr: row.number("mrr", false, 0.0, 1e12),
                status: row.choice("status", true, "paid, late, failed, refunded, open").unwrap_or(InvoiceStatus::Open),
                kind: row.choice("kind", true, "new, renewal, upgrade, downgrade, cancellation").unwrap_or(InvoiceKind::New),
            }),
            ImportKind::Tickets => {
                let ticket = Ticket {
                    site_id: site,
                    ticket_id: row.id("ticket_id"),
                    account_id: row.id("account_id"),
                    opened_ms: row.date("opened_at", true).unwrap_or(0),
                    closed_ms: row.date("closed_at", false),
                    priority: row.choice("priority", true, "low, normal, high, urgent").unwrap_or(Priority::Normal),
                    sentiment: row.choice::<Sentiment>("sentiment", false, "positive, neutral, negative"),
                    escalated: row.flag("escalated"),
                };
                if ticket.closed_ms.is_some_and(|c| c < ticket.opened_ms) {
                    row.fail("closed_at", "is before opened_at");
                }
                self.tickets.push(ticket);
            }
            ImportKind::Relationships => self.relationships.push(Relationship {
                site_id: site,
                account_id: row.id("account_id"),
                nps: row.number("nps", false, 0.0, 10.0),
                executive_sponsor: row.flag("executive_sponsor"),
                reference_willing: row.flag("reference_willing"),
                stakeholders: row.count("stakeholders", true).unwrap_or(0),
            }),
        }
        Ok(())
    }

    /// The batch, or every problem found (nothing is returned then).
    pub fn finish(self) -> Result<ImportBatch, ImportError> {
        if !self.errors.is_empty() {
            return Err(ImportError::Rows(self.errors));
        }
        let batch = match self.kind {
            ImportKind::Accounts => ImportBatch::Accounts(self.accounts),
            ImportKind::Invoices => ImportBatch::Invoices(self.invoices),
            ImportKind::Tickets => ImportBatch::Tickets(self.tickets),
            ImportKind::Relationships => ImportBatch::Relationships(self.relationships),
        };
        if batch.is_empty() {
            return Err(ImportError::Empty);
        }
        Ok(batch)
    }
}

/// Parses and checks a whole CSV file of `kind` for `site_id`.
pub fn parse_csv(kind: ImportKind, site_id: &str, bytes: &[u8]) -> Result<ImportBatch, ImportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let header = reader.headers().map_err(|e| ImportError::Header { kind: kind.as_str(), message: e.to_string() })?.clone();
    let names: Vec<String> = header.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).collect();
    check_header(kind, &names)?;
    let mut parser = RowParser::new(kind, site_id);
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                parser.push(line, names.iter().map(String::as_str).zip(record.iter()).collect())?;
            }
            Err(e) => parser.unreadable(e.position().map(|p| p.line()).unwrap_or(0), format!("unreadable row: {e}")),
        }
    }
    parser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_file_parses_whatever_the_column_order() {
        let csv = "name,account_id,mrr,plan,seats,renewal_date\nAcme,acme,1200.50,pro,25,2027-01-31\nGlobex,globex,0,free,,\n";
        let ImportBatch::Accounts(rows) = parse_csv(ImportKind::Accounts, "s1", csv.as_bytes()).unwrap() else { panic!("accounts") };
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].account_id.as_str(), rows[0].mrr, rows[0].seats), ("acme", 1200.5, Some(25)));
        assert_eq!(rows[0].renewal_ms, Some(1_801_353_600_000));
        assert_eq!((rows[1].seats, rows[1].renewal_ms), (None, None));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_nothing_is_returned() {
        let csv = "invoice_id,account_id,issued_at,amount,status,kind\n\
                   i1,acme,2026-01-05,100,paid,renewal\n\
                   i2,acme,yesterday,100,paid,renewal\n\
                   i3,,2026-02-05,abc,overdue,renewal\n\
                   i4,acme,2026-03-05,100,paid\n";
        let Err(ImportError::Rows(errors)) = parse_csv(ImportKind::Invoices, "s1", csv.as_bytes()) else { panic!("rows") };
        let found: Vec<(u64, Option<&str>)> = errors.iter().map(|e| (e.line, e.column.as_deref())).collect();
        assert_eq!(
            found,
            vec![(3, Some("issued_at")), (4, Some("account_id")), (4, Some("amount")), (4, Some("status")), (5, None)],
            "{errors:?}"
        );
    }

    #[test]
    fn headers_are_checked_before_any_row() {
        let missing = parse_csv(ImportKind::Tickets, "s1", b"ticket_id,account_id\nt1,a\n");
        assert!(matches!(missing, Err(ImportError::Header { .. })));
        let unknown = parse_csv(ImportKind::Relationships, "s1", b"account_id,stakeholders,password\na,1,x\n");
        assert!(matches!(unknown, Err(ImportError::Header { .. })));
        let duplicate = parse_csv(ImportKind::Relationships, "s1", b"account_id,stakeholders,stakeholders\na,1,2\n");
        assert!(matches!(duplicate, Err(ImportError::Header { .. })));
        assert_eq!(parse_csv(ImportKind::Relationships, "s1", b"account_id,stakeholders\n"), Err(ImportError::Empty));
    }

    #[test]
    fn hostile_values_are_refused() {
        let csv = "ticket_id,account_id,opened_at,closed_at,priority,escalated,sentiment\n\
                   t1,a,2026-01-02,2026-01-01,urgent,maybe,furious\n\
                   t2,\u{1b}[31m,2026-01-02,,low,no,\n";
        let Err(ImportError::Rows(errors)) = parse_csv(ImportKind::Tickets, "s1", csv.as_bytes()) else { panic!("rows") };
        let columns: Vec<&str> = errors.iter().filter_map(|e| e.column.as_deref()).collect();
        assert_eq!(columns, vec!["sentiment", "escalated", "closed_at", "account_id"]);
        let nps = parse_csv(ImportKind::Relationships, "s1", b"account_id,stakeholders,nps\na,2,11\nb,1.5,NaN\n");
        let Err(ImportError::Rows(errors)) = nps else { panic!("rows") };
        assert_eq!(errors.len(), 3);
    }
}

/// `POST /api/v1/import/{kind}?site_id=…` with the CSV as the body: 200 with the row count, or
/// 422 with every row error (line, column, message) and nothing imported.
pub async fn handle(
    axum::extract::State(state): axum::extract::State<crate::ApiState>,
    user: crate::auth::AuthUser,
    axum::extract::Path(kind): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<crate::params::Query>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, crate::ApiError> {
    user.require(crate::rbac::Permission::DataImport)?;
    use crate::ApiError;
    let site_id = crate::params::required(&query, "site_id")?;
    let kind = ImportKind::parse(&kind).ok_or_else(|| ApiError::NotFound(format!("import kind {kind} (accounts, invoices, tickets, relationships)")))?;
    state.require_site(site_id).await?;
    let batch = parse_csv(kind, site_id, &body).map_err(|e| match e {
        ImportError::Rows(rows) => ApiError::Unprocessable {
            code: "invalid_rows",
            message: format!("{} row(s) are invalid; nothing was imported", rows.len()),
            details: Some(serde_json::json!({ "rows": rows })),
        },
        other => ApiError::Validation(vec![("file".into(), other.to_string())]),
    })?;
    let rows = batch.len();
    state.store.import(site_id, &batch).await?;
    tracing::info!(site_id, kind = kind.as_str(), rows, by = %user.username, "business data imported");
    Ok(crate::reply::ok(serde_json::json!({ "kind": kind.as_str(), "imported": rows })))
}
