//! `crm query`: analysts' read-only SQL from the command line, over one site's `events`,
//! `sessions` and `visitors`, with the same guard, limits and store-side walls as
//! `POST /api/v1/query` (see `crm_store::sql_guard`). Prints a text table, CSV or JSON.

use std::io::Read;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use crm_store::sql_guard::{self, SqlError, SqlLimits, SqlResult};
use serde_json::Value;

use crate::config::{DataArgs, StoreArgs};

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The site whose rows the query reads (the only rows it can read).
    #[arg(long, env = "CRM_QUERY_SITE", default_value = "demo")]
    pub site: String,
    /// The SQL: one SELECT over `events`, `sessions` and `visitors`; `-` reads it from stdin.
    #[arg(env = "CRM_QUERY_SQL")]
    pub sql: String,
    /// Rows printed at most (1 to 10 000); more are cut and reported on stderr.
    #[arg(long, env = "CRM_QUERY_LIMIT", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Time limit in milliseconds (100 to 30 000).
    #[arg(long, env = "CRM_QUERY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=30_000))]
    pub timeout_ms: u64,
    #[arg(long, value_enum, env = "CRM_QUERY_FORMAT", default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// Aligned columns for a terminal.
    Table,
    Csv,
    /// `{columns, rows, truncated}`.
    Json,
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render(result: &SqlResult, format: QueryFormat) -> Result<String> {
    let names: Vec<&str> = result.columns.iter().map(|c| c.name.as_str()).collect();
    Ok(match format {
        QueryFormat::Json => format!("{}\n", serde_json::json!({ "columns": result.columns, "rows": result.rows, "truncated": result.truncated })),
        QueryFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(&names)?;
            for row in &result.rows {
                writer.write_record(row.iter().map(cell))?;
            }
            String::from_utf8(writer.into_inner().context("csv")?)?
        }
        QueryFormat::Table => {
            let rows: Vec<Vec<String>> = result.rows.iter().map(|r| r.iter().map(|v| cell(v).replace(['\n', '\t'], " ")).collect()).collect();
            let widths: Vec<usize> = names.iter().enumerate().map(|(i, n)| rows.iter().map(|r| r[i].chars().count()).chain([n.chars().count()]).max().unwrap_or(0)).collect();
            let line = |cells: Vec<&str>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned() + "\n";
            let mut out = line(names.clone());
            out += &line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
            for row in &rows {
                out += &line(row.iter().map(String::as_str).collect());
            }
            out
        }
    })
}

pub async fn run(args: QueryArgs) -> Result<()> {
    let sql = match args.sql.as_str() {
        "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading the SQL from stdin")?;
            text
        }
        _ => args.sql.clone(),
    };
    let store = crate::app::open_store(&args.data, &args.store).await?;
    let dialect = store.sql_dialect().context("this store does not run SQL: use the embedded store (the default) or ClickHouse")?;
    let checked = sql_guard::check(&sql, dialect).map_err(|e| match e {
        SqlError::Invalid(message) => anyhow::anyhow!("invalid SQL: {message}"),
        SqlError::NotAllowed(what) => anyhow::anyhow!("not allowed: {what}"),
        SqlError::TooLong => anyhow::anyhow!("{e}"),
    })?;
    if store.site(&args.site).await?.is_none() {
        anyhow::bail!("site {:?} does not exist", args.site);
    }
    let limits = SqlLimits { max_rows: args.limit as usize, timeout: std::time::Duration::from_millis(args.timeout_ms), ..SqlLimits::default() };
    let result = store.query_sql(&args.site, &checked, &limits).await?;
    print!("{}", render(&result, args.format)?);
    if result.truncated {
        eprintln!("more than {} rows matched: the rest were cut (--limit)", args.limit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::sql_guard::SqlColumn;

    fn result() -> SqlResult {
        let columns = ["path", "views"].map(|n| SqlColumn { name: n.into(), data_type: "Utf8".into() }).to_vec();
        SqlResult { columns, rows: vec![vec!["/a, b".into(), 12.into()], vec![Value::Null, 3.into()]], truncated: false }
    }

    #[test]
    fn each_format_prints_every_cell() {
        assert_eq!(render(&result(), QueryFormat::Csv).unwrap(), "path,views\n\"/a, b\",12\n,3\n");
        assert_eq!(render(&result(), QueryFormat::Table).unwrap(), "path   views\n-----  -----\n/a, b  12\n       3\n");
        let json: Value = serde_json::from_str(&render(&result(), QueryFormat::Json).unwrap()).unwrap();
        assert_eq!(json["rows"][0], serde_json::json!(["/a, b", 12]));
    }
}
