//! The confirmation prompt of `apply`.

use crate::plan::document::SavedPlan;
use std::io::{BufRead, IsTerminal, Write};

/// Asks on a terminal; refuses without one. `Err` says why nothing is sent.
pub fn confirm(doc: &SavedPlan) -> Result<(), String> {
    if !std::io::stdin().is_terminal() {
        return Err("refusing to apply without confirmation: stdin is not a terminal; pass --yes to apply non-interactively".into());
    }
    let s = doc.summary;
    let mut what = Vec::new();
    for (n, verb) in [
        (s.create, "create"),
        (s.replace, "replace"),
        (s.update, "update"),
        (s.delete, "delete"),
    ] {
        if n > 0 {
            what.push(format!("{verb} {n}"));
        }
    }
    eprint!(
        "\nApply these changes ({}) to {}? Only 'yes' will be accepted: ",
        what.join(", "),
        crate::render::target_line(doc)
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err("apply cancelled; nothing was sent".into())
    }
}
