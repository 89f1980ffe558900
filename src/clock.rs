//! Wall-clock time in the formats taskform writes.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time written as RFC 3339 (by taskform, or by the service); `None` if it is not.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Now, as RFC 3339 in UTC (`2026-11-29T08:12:50.123Z`).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
