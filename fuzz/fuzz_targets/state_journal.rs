//! The state file and journal readers (and folding) over arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut state) = taskform::state::State::from_bytes(data, "s.json") {
        let _ = serde_json_roundtrip(&state);
        let records = taskform::state::journal::parse(data, "j").unwrap_or_default();
        let _ = taskform::state::journal::fold(&mut state, &records, "j");
    }
    if let Ok(records) = taskform::state::journal::parse(data, "j") {
        let mut state = taskform::state::State::new();
        taskform::state::journal::replay(&mut state, &records);
    }
});

fn serde_json_roundtrip(state: &taskform::state::State) -> Option<()> {
    let mut copy = state.clone();
    let dir = std::env::temp_dir().join(format!("taskform-fuzz-{}", std::process::id()));
    let path = dir.join("s.json");
    copy.save(&path).ok()?;
    taskform::state::State::load(&path).ok()?;
    Some(())
}
