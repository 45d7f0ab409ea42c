//! Analytics filters: `dimension:op:value` conditions an overview (and its comparison period)
//! is narrowed by, one meaning on every store.
//!
//! Dimensions are the overview's own breakdowns, with the same keys, so a row of a top list
//! becomes a filter as it reads: `page` (a pageview's path), and the session dimensions `source`
//! (referrer host, `(direct)` without one), `utm_source`, `country`, `device` and `browser`
//! (`(unknown)` when not known). Operators: `is`, `is_not`, `prefix` and `glob` (`*` any run of
//! characters). Conditions on different or equal dimensions all must hold.
//!
//! What a filtered overview counts, within the window as ever and bots left out:
//! * sessions that started in the window, match every session condition and, when there are page
//!   conditions, hold a pageview in the window on a matching page;
//! * pageviews in the window on a matching page whose session (when there are session
//!   conditions) started in the window and matches them;
//! * visitors of either.
//!
//! [`Filters::session`] and [`Filters::page`] are that meaning in Rust (the redb store and the
//! tests); [`Filters::sql`] writes it for DataFusion and ClickHouse.

use crm_schemas::Session;
use serde::Serialize;

use crate::growth::{glob_matches, glob_regex};

/// Most conditions one request may carry.
pub const MAX_FILTERS: usize = 10;
const MAX_VALUE_BYTES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Page,
    Source,
    UtmSource,
    Country,
    Device,
    Browser,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Is,
    IsNot,
    Prefix,
    Glob,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub dimension: Dimension,
    pub op: FilterOp,
    pub value: String,
}

/// Why a filter does not parse: the text to show next to the `filter` parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

impl Filter {
    /// `dimension:op:value` (the value may contain `:`).
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut parts = text.splitn(3, ':');
        let (Some(dimension), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(FilterError(format!("{text:?} is not dimension:op:value")));
        };
        let dimension = match dimension {
            "page" => Dimension::Page,
            "source" => Dimension::Source,
            "utm_source" => Dimension::UtmSource,
            "country" => Dimension::Country,
            "device" => Dimension::Device,
            "browser" => Dimension::Browser,
            other => return Err(FilterError(format!("unknown dimension {other:?} (page, source, utm_source, country, device, browser)"))),
        };
        let op = match op {
            "is" => FilterOp::Is,
            "is_not" => FilterOp::IsNot,
            "prefix" => FilterOp::Prefix,
            "glob" => FilterOp::Glob,
            other => return Err(FilterError(format!("unknown operator {other:?} (is, is_not, prefix, glob)"))),
        };
        if value.is_empty() || value.len() > MAX_VALUE_BYTES || value.chars().any(char::is_control) {
            return Err(FilterError(format!("the value must be 1 to {MAX_VALUE_BYTES} bytes without control characters")));
        }
        Ok(Filter { dimension, op, value: value.to_owned() })
    }

    /// Whether `value` (`None`: the session has no value, e.g. no UTM source) passes.
    pub fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return self.op == FilterOp::IsNot };
        match self.op {
            FilterOp::Is => value == self.value,
            FilterOp::IsNot => value != self.value,
            FilterOp::Prefix => value.starts_with(&self.value),
            FilterOp::Glob => glob_matches(&self.value, value),
        }
    }
}

/// A session's value of a session dimension, as the overview's top lists key it.
pub fn session_value(session: &Session, dimension: Dimension) -> Option<&str> {
    fn known(v: &str) -> &str {
        if v.is_empty() {
            "(unknown)"
        } else {
            v
        }
    }
    match dimension {
        Dimension::Page => None,
        Dimension::Source => Some(session.referrer_host.as_deref().unwrap_or("(direct)")),
        Dimension::UtmSource => session.utm.source.as_deref(),
        Dimension::Country => Some(session.country.as_deref().map_or("(unknown)", known)),
        Dimension::Device => Some(known(&session.device_category)),
        Dimension::Browser => Some(known(&session.browser)),
    }
}

/// The SQL dialects [`Filters::sql`] writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterDialect {
    /// The columnar store: sessions have `referrer`, `country`, `device`, `browser` already
    /// labelled as the top lists key them, and a nullable `utm_source`.
    DataFusion,
    /// ClickHouse: `referrer_host`, `country`, `device`, `browser`, `utm_source`, empty when
    /// unknown.
    ClickHouse,
}

/// The conditions of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters(pub Vec<Filter>);

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_session_conditions(&self) -> bool {
        self.0.iter().any(|f| f.dimension != Dimension::Page)
    }

    pub fn has_page_conditions(&self) -> bool {
        self.0.iter().any(|f| f.dimension == Dimension::Page)
    }

    /// Whether a session matches every session condition.
    pub fn session(&self, session: &Session) -> bool {
        self.0.iter().filter(|f| f.dimension != Dimension::Page).all(|f| f.holds(session_value(session, f.dimension)))
    }

    /// Whether a pageview's path matches every page condition.
    pub fn page(&self, path: Option<&str>) -> bool {
        let path = path.unwrap_or("/");
        self.0.iter().filter(|f| f.dimension == Dimension::Page).all(|f| f.holds(Some(path)))
    }

    /// (session condition, page condition) as SQL over the dialect's `sessions` and `events`
    /// columns, `1 = 1` for none. Values are escaped as string literals.
    pub fn sql(&self, dialect: FilterDialect) -> (String, String) {
        let mut session = Vec::new();
        let mut page = Vec::new();
        for filter in &self.0 {
            let column = match (dialect, filter.dimension) {
                (FilterDialect::DataFusion, Dimension::Page) => "coalesce(path, '/')".to_owned(),
                (FilterDialect::ClickHouse, Dimension::Page) => "if(path = '', '/', path)".to_owned(),
                (FilterDialect::DataFusion, Dimension::Source) => "referrer".into(),
                (FilterDialect::DataFusion, Dimension::UtmSource) => "utm_source".into(),
                (FilterDialect::DataFusion, d) => format!("{d:?}").to_lowercase(),
                (FilterDialect::ClickHouse, Dimension::Source) => "if(referrer_host = '', '(direct)', referrer_host)".into(),
                (FilterDialect::ClickHouse, Dimension::UtmSource) => "nullIf(utm_source, '')".into(),
                (FilterDialect::ClickHouse, Dimension::Country) => "if(country = '', '(unknown)', toString(country))".into(),
                (FilterDialect::ClickHouse, Dimension::Device) => "if(device = '', '(unknown)', toString(device))".into(),
                (FilterDialect::ClickHouse, Dimension::Browser) => "if(browser = '', '(unknown)', toString(browser))".into(),
            };
            let literal = |text: &str| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"));
            let literal = |text: &str| match dialect {
                // ClickHouse reads backslash escapes in literals; DataFusion does not.
                FilterDialect::ClickHouse => literal(text),
                FilterDialect::DataFusion => format!("'{}'", text.replace('\'', "''")),
            };
            let condition = match filter.op {
                FilterOp::Is => format!("({column} IS NOT NULL AND {column} = {})", literal(&filter.value)),
                FilterOp::IsNot => format!("({column} IS NULL OR {column} <> {})", literal(&filter.value)),
                FilterOp::Prefix => match dialect {
                    FilterDialect::DataFusion => format!("({column} IS NOT NULL AND starts_with({column}, {}))", literal(&filter.value)),
                    FilterDialect::ClickHouse => format!("({column} IS NOT NULL AND startsWith({column}, {}))", literal(&filter.value)),
                },
                FilterOp::Glob => match dialect {
                    FilterDialect::DataFusion => format!("({column} IS NOT NULL AND regexp_like({column}, {}))", literal(&glob_regex(&filter.value))),
                    FilterDialect::ClickHouse => format!("({column} IS NOT NULL AND match({column}, {}))", literal(&glob_regex(&filter.value))),
                },
            };
            match filter.dimension {
                Dimension::Page => page.push(condition),
                _ => session.push(condition),
            }
        }
        let join = |parts: Vec<String>| if parts.is_empty() { "1 = 1".to_owned() } else { parts.join(" AND ") };
        (join(session), join(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_strictly() {
        assert_eq!(Filter::parse("page:glob:/blog/*").unwrap(), Filter { dimension: Dimension::Page, op: FilterOp::Glob, value: "/blog/*".into() });
        assert_eq!(Filter::parse("source:is:news.example:8080").unwrap().value, "news.example:8080", "the value keeps its colons");
        for bad in ["page", "page:is", "page:is:", "city:is:Berlin", "page:like:/", "page:is:\u{0}", &format!("page:is:{}", "x".repeat(300))] {
            assert!(Filter::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conditions_hold_as_documented() {
        let f = |text: &str| Filter::parse(text).unwrap();
        assert!(f("page:glob:/blog/*").holds(Some("/blog/a/b")));
        assert!(!f("page:glob:/blog/*").holds(Some("/blogs")));
        assert!(f("page:glob:*pricing*").holds(Some("/en/pricing/team")));
        assert!(f("page:glob:/a*b*c").holds(Some("/a-b-c")) && !f("page:glob:/a*b*c").holds(Some("/a-c")));
        assert!(!f("page:glob:/ab*ba").holds(Some("/aba")), "the two ends may not overlap");
        assert!(f("page:prefix:/docs").holds(Some("/docs/x")));
        assert!(f("utm_source:is_not:ads").holds(None), "no UTM source is not ads");
        assert!(!f("utm_source:is:ads").holds(None));
        let session = Session { referrer_host: None, country: Some("DE".into()), device_category: String::new(), browser: "Firefox".into(), ..Session::default() };
        let filters = Filters(vec![f("source:is:(direct)"), f("country:is:DE"), f("device:is:(unknown)"), f("page:is:/")]);
        assert!(filters.session(&session));
        assert!(filters.page(None), "a pageview without a path is /");
        assert!(!Filters(vec![f("browser:is_not:Firefox")]).session(&session));
    }

    #[test]
    fn sql_escapes_values() {
        let filters = Filters(vec![Filter::parse("page:is:/it's\\").unwrap(), Filter::parse("country:is:DE").unwrap()]);
        let (session, page) = filters.sql(FilterDialect::ClickHouse);
        assert_eq!(page, r"(if(path = '', '/', path) IS NOT NULL AND if(path = '', '/', path) = '/it''s\\')");
        assert!(session.contains("= 'DE'"));
        let (_, page) = filters.sql(FilterDialect::DataFusion);
        assert_eq!(page, r"(coalesce(path, '/') IS NOT NULL AND coalesce(path, '/') = '/it''s\')");
        assert_eq!(Filters::default().sql(FilterDialect::DataFusion), ("1 = 1".to_owned(), "1 = 1".to_owned()));
    }
}
