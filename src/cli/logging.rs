//! Log output: tracing to stderr, as text or JSON lines. stdout carries results only.
//!
//! Log fields carry untrusted text (task names, files, the server's error messages).
//! Text lines escape control and bidi characters visibly in every field and the
//! message ([`render::escape`]), so one event is one line and nothing in it reaches
//! the terminal raw. JSON lines stay exact: serde escapes control characters inside
//! strings, and the writer writes DEL, C1 controls and bidi characters as `\uXXXX`
//! escapes too ([`render::json_safe`]).

use crate::render;
use std::fmt;
use std::io;
use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{RecordFields, Visit};
use tracing_subscriber::fmt::format::{FormatFields, Writer};

/// Installs the global subscriber. `verbose` 0 = info, 1 = debug, 2+ = trace (for
/// taskform's own modules); `RUST_LOG` overrides.
///
/// `emulator_in_process`: the emulator can only run inside this command (`--emulator`
/// of apply, plan, watch...), not as `taskform emulator`. Its per-request log lines
/// would then interleave with the command's own output and break the progress bar,
/// so they are shown from `-v` on, as debug output; its warnings always are.
pub fn init(verbose: u8, json: bool, emulator_in_process: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(directives(verbose, emulator_in_process)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false);
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = if json {
        builder
            .with_writer(|| JsonSafe(io::stderr()))
            .json()
            .flatten_event(true)
            .try_init()
    } else {
        builder
            .fmt_fields(EscapedFields)
            .with_ansi(color)
            .try_init()
    };
}

/// The filter without `RUST_LOG`: see [`init`].
fn directives(verbose: u8, emulator_in_process: bool) -> String {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut d = format!("warn,taskform={level}");
    if emulator_in_process && verbose == 0 {
        d.push_str(",taskform::emulator=warn");
    }
    d
}

/// The fields of a text log line as tracing writes them by default (`message` first,
/// then `name=value`; strings recorded as values quoted), with every value escaped.
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Escaping(String::new());
        fields.record(&mut visitor);
        writer.write_str(&visitor.0)
    }
}

struct Escaping(String);

impl Escaping {
    fn push(&mut self, field: &Field, text: &str) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if name != "message" {
            self.0.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.0.push('=');
        }
        self.0.push_str(&render::escape(text));
    }
}

impl Visit for Escaping {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.push(field, value),
            _ => self.push(field, &format!("{value:?}")),
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// A writer of JSON lines that writes unsafe characters as `\uXXXX` escapes.
struct JsonSafe<W>(W);

impl<W: io::Write> io::Write for JsonSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self
                .0
                .write_all(render::json_safe(text.to_string()).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_in_process_emulator_logs_requests_from_v_on() {
        assert_eq!(directives(0, false), "warn,taskform=info");
        assert_eq!(
            directives(0, true),
            "warn,taskform=info,taskform::emulator=warn"
        );
        assert_eq!(directives(1, true), "warn,taskform=debug");
    }

    const HOSTILE: &str = "a\u{1b}[2J\u{7}\nforged line\u{202e}\u{9b}";

    #[test]
    fn text_fields_and_messages_are_escaped() {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(task = %HOSTILE, file = HOSTILE, n = 3, "refused: {HOSTILE}");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            !text.chars().any(|c| c != '\n' && render::is_unsafe_char(c)),
            "{text}"
        );
        assert!(
            text.contains(r"refused: a\u{1b}[2J\u{7}\u{a}forged line\u{202e}\u{9b} task=a\u{1b}"),
            "{text}"
        );
        assert!(
            text.contains(r#"file="a\u{1b}[2J\u{7}\nforged line\u{202e}\u{9b}" n=3"#),
            "{text}"
        );
    }

    #[test]
    fn json_lines_stay_exact_without_raw_unsafe_characters() {
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || JsonSafe(out.clone()))
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(task = %HOSTILE, "refused");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.chars().any(|c| c != '\n' && render::is_unsafe_char(c)),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["task"], HOSTILE);
    }
}
