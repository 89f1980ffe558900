//! The manifest loader, validator and canonical hash over arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use taskform::load::settings::Settings;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    let (manifests, diags) = taskform::load::manifest::parse_source(data, "f.yaml", "f.yaml", &Settings::default(), &env);
    for m in &manifests {
        // What is sent must hash to what was planned.
        assert_eq!(taskform::hash::content_hash(&m.body()), m.hash);
    }
    for d in &diags {
        let _ = d.to_string();
    }
});
