//! Quartz cron expressions (seconds first, optional year), checked as Quartz's
//! `CronExpression` reads them: what `schedule_config.cron_expression` must be. Used by
//! the manifest schema ([`super::schema`]).

use crate::load::diagnostic;

/// Why a cron expression is not valid Quartz: the message (naming the field at fault
/// and its value) and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub message: String,
    pub hint: String,
}

/// The layout every field-level hint starts with.
const QUARTZ_LAYOUT: &str =
    "Quartz fields, seconds first: seconds minutes hours day-of-month month day-of-week [year]";

/// Checks a Quartz cron expression (seconds first, optional year), as Quartz's
/// `CronExpression` reads it: every field's values, ranges, steps and special forms
/// (`L`, `W`, `#`), and `?` in exactly one of day-of-month and day-of-week.
/// Results are cached per thread: repos repeat a few expressions many times.
pub fn parse_cron(expr: &str) -> Result<(), CronError> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Result<(), CronError>>> = Default::default();
    }
    if let Some(hit) = CACHE.with(|c| c.borrow().get(expr).cloned()) {
        return hit;
    }
    let result = check_quartz(expr);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 4096 {
            c.clear();
        }
        c.insert(expr.to_string(), result.clone());
    });
    result
}

/// The fields of a Quartz expression, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CronField {
    Seconds,
    Minutes,
    Hours,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

const CRON_FIELDS: [CronField; 7] = [
    CronField::Seconds,
    CronField::Minutes,
    CronField::Hours,
    CronField::DayOfMonth,
    CronField::Month,
    CronField::DayOfWeek,
    CronField::Year,
];

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronField {
    fn name(self) -> &'static str {
        match self {
            CronField::Seconds => "seconds",
            CronField::Minutes => "minutes",
            CronField::Hours => "hours",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
            CronField::Year => "year",
        }
    }

    fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Seconds | CronField::Minutes => (0, 59),
            CronField::Hours => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (1, 7),
            CronField::Year => (1970, 2099),
        }
    }

    /// The range as a message shows it.
    fn range_text(self) -> String {
        let (lo, hi) = self.bounds();
        match self {
            CronField::DayOfWeek => format!("{lo}-{hi} (1 = Sunday) or SUN-SAT"),
            CronField::Month => format!("{lo}-{hi} or JAN-DEC"),
            _ => format!("{lo}-{hi}"),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => MONTHS,
            CronField::DayOfWeek => WEEKDAYS,
            _ => &[],
        }
    }

    /// The largest step Quartz accepts after `/` (none for the year).
    fn max_step(self) -> Option<u32> {
        match self {
            CronField::Seconds | CronField::Minutes => Some(59),
            CronField::Hours => Some(23),
            CronField::DayOfMonth => Some(31),
            CronField::Month => Some(12),
            CronField::DayOfWeek => Some(7),
            CronField::Year => None,
        }
    }
}

fn check_quartz(expr: &str) -> Result<(), CronError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        let hint = if fields.len() == 5 {
            // A Unix cron line: add the seconds and the `?`.
            let (dom, dow) = match (fields[2], fields[4]) {
                (dom, "*") => (dom, "?"),
                ("*", dow) => ("?", dow),
                other => other,
            };
            format!(
                "{QUARTZ_LAYOUT}. A five-field Unix line has no seconds: `{}` is \"0 {} {} {dom} {} {dow}\" in Quartz (day-of-week there counts 1-7 from Sunday)",
                diagnostic::escape(expr),
                fields[0],
                fields[1],
                fields[3]
            )
        } else {
            format!("{QUARTZ_LAYOUT}, e.g. \"0 30 2 * * ?\" (02:30 every day)")
        };
        return Err(CronError {
            message: format!(
                "expected 6 or 7 fields (seconds first), found {}",
                fields.len()
            ),
            hint,
        });
    }
    for (field, text) in CRON_FIELDS.iter().zip(&fields) {
        if let Err(detail) = check_cron_field(*field, &text.to_ascii_uppercase()) {
            return Err(CronError {
                message: format!(
                    "{} field `{}`: {detail}",
                    field.name(),
                    diagnostic::escape(text)
                ),
                hint: match field {
                    CronField::DayOfWeek => format!(
                        "{QUARTZ_LAYOUT}; day-of-week is 1-7 from Sunday (not 0-6) or SUN-SAT"
                    ),
                    _ => QUARTZ_LAYOUT.to_string(),
                },
            });
        }
    }
    let (dom, dow) = (fields[3], fields[5]);
    let with_days = |d: &str, w: &str| {
        let mut f = fields.clone();
        f[3] = d;
        f[5] = w;
        f.join(" ")
    };
    let problem = |hint: String| CronError {
        message: format!(
            "day-of-month `{}` and day-of-week `{}`: Quartz needs `?` in exactly one of them",
            diagnostic::escape(dom),
            diagnostic::escape(dow)
        ),
        hint,
    };
    match (dom == "?", dow == "?") {
        (true, false) | (false, true) => Ok(()),
        (true, true) => Err(problem(format!(
            "put `*` in one of them, e.g. \"{}\" (every day)",
            diagnostic::escape(&with_days("*", "?"))
        ))),
        (false, false) if dow == "*" => Err(problem(format!(
            "put `?` in the one you do not use, e.g. \"{}\"",
            diagnostic::escape(&with_days(dom, "?"))
        ))),
        (false, false) if dom == "*" => Err(problem(format!(
            "put `?` in the one you do not use, e.g. \"{}\"",
            diagnostic::escape(&with_days("?", dow))
        ))),
        (false, false) => Err(problem(
            "Quartz cannot combine a day of the month with a day of the week: keep one and put `?` in the other".into(),
        )),
    }
}

/// Checks one field (upper-cased); the error is the detail after `{field} field `{text}`: `.
fn check_cron_field(field: CronField, text: &str) -> Result<(), String> {
    if text.contains('?') {
        return match field {
            CronField::DayOfMonth | CronField::DayOfWeek if text == "?" => Ok(()),
            CronField::DayOfMonth | CronField::DayOfWeek => Err("`?` must stand alone".to_string()),
            _ => Err("`?` is allowed only in day-of-month and day-of-week".to_string()),
        };
    }
    if field == CronField::DayOfMonth && (text.contains('L') || text.contains('W')) {
        return check_last_or_weekday(text);
    }
    if field == CronField::DayOfWeek && (text.contains('L') || text.contains('#')) {
        return check_last_or_nth_weekday(text);
    }
    for item in text.split(',') {
        if item.is_empty() {
            return Err("an empty item in the list (two commas, or one at an end)".to_string());
        }
        check_cron_item(field, item)?;
    }
    Ok(())
}

/// `*`, `a`, `a-b`, each optionally followed by `/step`.
fn check_cron_item(field: CronField, item: &str) -> Result<(), String> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        let n: u32 = step.parse().map_err(|_| {
            format!(
                "the step after `/` must be a number, not `{}`",
                diagnostic::escape(step)
            )
        })?;
        if n == 0 {
            return Err("the step after `/` must be 1 or more".to_string());
        }
        if let Some(max) = field.max_step()
            && n > max
        {
            return Err(format!("the step /{n} is larger than the field's {max}"));
        }
        if base.is_empty() {
            return Err("a step needs a start: `*/n` or `a/n`".to_string());
        }
    }
    if base == "*" {
        return Ok(());
    }
    match base.split_once('-') {
        Some((a, b)) => {
            let start = cron_value(field, a)?;
            let end = cron_value(field, b)?;
            if field == CronField::Year && end < start {
                return Err(format!("the range {start}-{end} ends before it starts"));
            }
            // Quartz wraps other reversed ranges (hours 22-2 is 22, 23, 0, 1, 2).
            Ok(())
        }
        None => cron_value(field, base).map(|_| ()),
    }
}

/// A number or (month, day-of-week) a name, within the field's bounds.
fn cron_value(field: CronField, text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("a range needs a value on both sides of `-`".to_string());
    }
    if let Some(i) = field.names().iter().position(|n| *n == text) {
        return Ok(i as u32 + 1);
    }
    let Ok(n) = text.parse::<u32>() else {
        return Err(match field {
            CronField::Month => {
                format!(
                    "`{}` is not a number or a month name (JAN-DEC)",
                    diagnostic::escape(text)
                )
            }
            CronField::DayOfWeek => format!(
                "`{}` is not a number or a day name (SUN-SAT)",
                diagnostic::escape(text)
            ),
            _ => format!("`{}` is not a number", diagnostic::escape(text)),
        });
    };
    let (lo, hi) = field.bounds();
    if !(lo..=hi).contains(&n) {
        return Err(format!("{n} is out of range {}", field.range_text()));
    }
    Ok(n)
}

/// Day-of-month `L`, `L-n` (n 0-30), `LW`, `nW` (n 1-31): alone, never in a list.
fn check_last_or_weekday(text: &str) -> Result<(), String> {
    let misuse = || {
        "the special forms are `L` (last day), `L-3` (third-to-last day), `LW` (last weekday) and `15W` (weekday nearest the 15th), each alone".to_string()
    };
    if text == "L" || text == "LW" {
        return Ok(());
    }
    if let Some(offset) = text.strip_prefix("L-") {
        return match offset.parse::<u32>() {
            Ok(n) if n <= 30 => Ok(()),
            Ok(n) => Err(format!("the offset L-{n} is over 30")),
            Err(_) => Err(misuse()),
        };
    }
    if let Some(day) = text.strip_suffix('W') {
        return match day.parse::<u32>() {
            Ok(n) if (1..=31).contains(&n) => Ok(()),
            Ok(n) => Err(format!("{n} is out of range 1-31")),
            Err(_) => Err(misuse()),
        };
    }
    Err(misuse())
}

/// Day-of-week `L` (Saturday), `nL` (last n-day of the month), `n#k` (k-th n-day,
/// k 1-5): alone, never in a list.
fn check_last_or_nth_weekday(text: &str) -> Result<(), String> {
    let misuse = || {
        "the special forms are `L` (Saturday), `6L` (the month's last Friday) and `6#3` (its third Friday), each alone".to_string()
    };
    if text == "L" {
        return Ok(());
    }
    if let Some(day) = text.strip_suffix('L') {
        if day.contains([',', '-', '/', 'L', '#']) {
            return Err(misuse());
        }
        return cron_value(CronField::DayOfWeek, day).map(|_| ());
    }
    if let Some((day, nth)) = text.split_once('#') {
        if day.contains([',', '-', '/']) {
            return Err(misuse());
        }
        cron_value(CronField::DayOfWeek, day)?;
        return match nth.parse::<u32>() {
            Ok(k) if (1..=5).contains(&k) => Ok(()),
            _ => Err("the week after `#` must be 1-5".to_string()),
        };
    }
    Err(misuse())
}
