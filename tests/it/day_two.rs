//! Day-two commands around plan and apply (issue #19, "Files and the shell" and "First
//! impression"): `fmt`, `validate FILE...` and `--format json`, `schema`,
//! `completions`, `man`, `version`, and a quiet in-process emulator.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

// ---------------------------------------------------------------------------------
// First impression: the quick start's apply --emulator.

#[test]
fn the_in_process_emulator_logs_its_requests_only_with_v() {
    let p = Project::new();
    p.task("a").task("b");
    let out = p.run(&["apply", "--emulator", "--yes", "tasks"], &[]);
    out.succeeds()
        .stderr_has("started the built-in emulator")
        .stderr_lacks("metadata/tasks/create")
        .stderr_lacks("emulator listening");
    assert_eq!(p.state()["tasks"].as_object().unwrap().len(), 2);

    p.task("c");
    p.run(&["apply", "-v", "--emulator", "--yes", "tasks"], &[])
        .succeeds()
        .stderr_has("metadata/tasks/create");
    // The standalone emulator keeps logging every request.
    let emu = Emu::start(&[]);
    p.task("d");
    p.apply(&emu.url, &[]).succeeds();
    assert!(
        wait_until(std::time::Duration::from_secs(5), || emu
            .stderr
            .lock()
            .unwrap()
            .contains("metadata/tasks/create")),
        "{}",
        emu.stderr.lock().unwrap()
    );
}

// ---------------------------------------------------------------------------------
// fmt

/// `name → hash` of `plan --format json DIR`.
fn hashes(p: &Project, dir: &str) -> BTreeMap<String, String> {
    let plan = p
        .run(&["plan", "--format", "json", dir], &[])
        .succeeds()
        .json();
    plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A valid manifest already in the canonical style.
fn tidy(name: &str) -> String {
    format!(
        "name: {name}\nschedule_config:\n  max_time_out: 10\n  schedule_type: RUN_ONCE\ndata_source_type: DLI\ntask_config:\n  databaseName: [db1]\n"
    )
}

fn read(p: &Project, rel: &str) -> String {
    std::fs::read_to_string(p.path(rel)).unwrap()
}

const MESSY: &str = "\
# yaml-language-server: $schema=../taskform.schema.json
task_config:   # free-form attributes
    databaseName: [ sales,  'raw' ]
    alive_object_policy: '3'
    enableDataProfile: false
# the schedule
schedule_config:
    enabled: 1
    schedule_type: CRON     # or RUN_ONCE
    cron_expression: 0 30 2 * * ?
data_source_type: DLI
name: 'messy'
description: >-
    Folded text
    on two lines.
";

const CANONICAL: &str = "\
# yaml-language-server: $schema=../taskform.schema.json
name: messy
description: >-
  Folded text
  on two lines.
# the schedule
schedule_config:
  cron_expression: \"0 30 2 * * ?\"
  schedule_type: CRON  # or RUN_ONCE
  enabled: 1
data_source_type: DLI
task_config:  # free-form attributes
  databaseName: [sales, raw]
  alive_object_policy: \"3\"
  enableDataProfile: false
";

#[test]
fn fmt_rewrites_manifests_in_the_canonical_style_keeping_comments() {
    let p = Project::new();
    p.write("tasks/messy.yaml", MESSY);
    p.write("tasks/tidy.yaml", &tidy("tidy"));
    let before = hashes(&p, "tasks");

    p.run(&["fmt", "tasks"], &[])
        .succeeds()
        .stdout_is("tasks/messy.yaml\n")
        .stderr_has("1 file reformatted, 1 already formatted");
    assert_eq!(read(&p, "tasks/messy.yaml"), CANONICAL);
    assert_eq!(
        read(&p, "tasks/tidy.yaml"),
        tidy("tidy"),
        "already canonical"
    );
    assert_eq!(
        hashes(&p, "tasks"),
        before,
        "formatting never changes a hash"
    );
    // The settings file is not a manifest: left alone.
    assert!(read(&p, "tasks/taskform.yaml").contains("dir_id: \"0\""));

    p.run(&["fmt", "tasks"], &[]).succeeds().stdout_is("");
    p.run(&["fmt", "--check", "tasks"], &[])
        .succeeds()
        .stdout_is("");
}

#[test]
fn fmt_check_lists_the_files_that_would_change_and_fails() {
    let p = Project::new();
    p.write("tasks/messy.yaml", MESSY);
    p.write("tasks/sub/also.yaml", &MESSY.replace("messy", "also"));
    p.write("tasks/tidy.yaml", &tidy("tidy"));
    p.run(&["fmt", "--check", "tasks"], &[])
        .fails_with(1)
        .stdout_is("tasks/messy.yaml\ntasks/sub/also.yaml\n")
        .stderr_has("2 files would be reformatted (1 already formatted)");
    assert_eq!(
        read(&p, "tasks/messy.yaml"),
        MESSY,
        "--check writes nothing"
    );
    // Files as pre-commit passes them: only those.
    p.run(&["fmt", "tasks/sub/also.yaml"], &[])
        .succeeds()
        .stdout_is("tasks/sub/also.yaml\n");
    assert_eq!(read(&p, "tasks/messy.yaml"), MESSY);
    assert_eq!(
        read(&p, "tasks/sub/also.yaml"),
        CANONICAL.replace("messy", "also")
    );
}

#[test]
fn fmt_leaves_files_that_fail_to_load_and_reports_them_as_validate_does() {
    let p = Project::new();
    p.write("tasks/messy.yaml", MESSY);
    let broken = "name: broken\ndata_source_type: DLI\nschedule_config:\n    schedule_type: CRON\ntask_config: {}\n";
    p.write("tasks/broken.yaml", broken);
    let out = p.run(&["fmt", "tasks"], &[]);
    out.fails_with(1)
        .stdout_is("tasks/messy.yaml\n")
        .stderr_has("error: tasks/broken.yaml:3:1: `schedule_type: CRON` needs a `cron_expression`")
        .stderr_has("1 problem in 1 file; those files were not formatted");
    assert_eq!(read(&p, "tasks/broken.yaml"), broken);
    assert_eq!(read(&p, "tasks/messy.yaml"), CANONICAL);
    // The same problem lines as validate.
    let validate = p.run(&["validate", "tasks"], &[]);
    let errors = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("error: ") || l.starts_with("  hint: "))
            .map(String::from)
            .collect()
    };
    assert_eq!(errors(&out.stderr), errors(&validate.stderr));

    // A settings file that fails to load: nothing is rewritten.
    p.write("tasks/broken.yaml", &manifest("fixed", 1));
    p.write("tasks/messy.yaml", MESSY);
    p.write("tasks/taskform.yaml", "defaults: [oops]\n");
    p.run(&["fmt", "tasks"], &[]).fails_with(1).stdout_is("");
    assert_eq!(read(&p, "tasks/messy.yaml"), MESSY);
}

#[test]
fn fmt_leaves_alone_what_it_does_not_rewrite() {
    let p = Project::new();
    let anchors = "name: anchored\ndescription: &d shared text\nduty_person: *d\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n";
    p.write("tasks/anchors.yaml", anchors);
    p.run(&["validate", "tasks"], &[]).succeeds();
    p.run(&["fmt", "--check", "tasks"], &[])
        .succeeds()
        .stdout_is("")
        .stderr_has("tasks/anchors.yaml: line 2: anchors, aliases and tags");
    p.run(&["fmt", "tasks"], &[]).succeeds();
    assert_eq!(read(&p, "tasks/anchors.yaml"), anchors);
}

/// Copies a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn fmt_keeps_every_hash_of_the_examples() {
    let p = Project::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tasks");
    copy_tree(&examples, &p.path("ex/tasks"));
    let before = hashes(&p, "ex/tasks");
    assert_eq!(before.len(), 5);
    // The examples are kept in the canonical style: `fmt --check` passes on them.
    p.run(&["fmt", "--check", "ex/tasks"], &[])
        .succeeds()
        .stdout_is("");
    let out = p.run(&["fmt", "ex/tasks"], &[]);
    out.succeeds();
    assert_eq!(hashes(&p, "ex/tasks"), before);
    // Comments are kept, and the two documents of one file stay two.
    let sales = read(&p, "ex/tasks/dli/sales.yaml");
    assert!(
        sales.starts_with(
            "# Two tasks in one file: one YAML document each.\nname: dli-sales-daily\n"
        ),
        "{sales}"
    );
    assert_eq!(sales.matches("\n---\n").count(), 1);
    assert!(
        read(&p, "ex/tasks/dws/warehouse.yaml").contains(
            "  cron_expression: \"0 0 */6 ? * MON-FRI\"  # every six hours on weekdays\n"
        )
    );
    p.run(&["fmt", "--check", "ex/tasks"], &[]).succeeds();
}

/// Valid manifests written in many styles: every formatting keeps every hash, and
/// formatting twice changes nothing more.
const STYLES: &[(&str, &str)] = &[
    (
        "crlf.yaml",
        "name: crlf\r\ndata_source_type: DLI\r\nschedule_config:\r\n  schedule_type: RUN_ONCE\r\ntask_config:\r\n  a: 1\r\n",
    ),
    (
        "multi.yaml",
        "---\n# one\nname: m1\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n...\n---\nname: m2   # two\ndata_source_type: DWS\nschedule_config:\n  schedule_type: RUN_ONCE\ntask_config:\n  list:\n  - a\n  - {k: v, n: 1}\n  -   - nested\n      - 2\n",
    ),
    (
        "quoting.yaml",
        "name: \"quoting\"\ndata_source_type: 'DLI'\ndescription: \"say \\\"hi\\\" \\u00e9 \\x41\\ttab\"\nduty_person: 'it''s'\nschedule_config:\n  schedule_type: CRON\n  cron_expression: '0 0/5 * * * ?'\n  start_time: 2026-12-01T00:00:00 +08\n  max_time_out: 0x10\ntask_config:\n  s1: '0'\n  s2: \"yes\"\n  s3: '1.0'\n  s4: \"null\"\n  s5: ''\n  s6: '~'\n  s7: '#hash'\n  s8: 'a: b'\n  s9: '[x]'\n  n1: 1.5\n  n2: -7\n  b1: True\n  z: ~\n  \"quoted key\": 1\n  '1': one\n",
    ),
    (
        "multiline.yaml",
        "name: multiline\ndata_source_type: DLI\ndescription: a plain\n  scalar on\n\n  three lines\nduty_person: \"double\n  quoted \\\n  escaped\"\nuser_name: 'single\n\n  quoted'\nschedule_config:\n  schedule_type: RUN_ONCE\ntask_config:\n  literal: |\n    line 1\n      line 2\n\n    line 4\n  kept: |+\n    kept\n\n  folded: >\n    a\n    b\n  explicit: |2-\n     one space more\n    base\n  flow: [a,\n    b, \"c, d\"]\n",
    ),
    (
        "variables.yaml",
        "name: vars-${SUFFIX}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  enabled: ${ENABLED}\ntask_config:\n  password: ${secret:DB_PASSWORD}\n  literal: $${not}\n",
    ),
    (
        "comments.yaml",
        "# head\n\n# about task_config\ntask_config: # tc\n  # inside\n  a: 1 # one\n  # end of task_config\n# about name\nname: comments # n\n\n\n# about schedule\nschedule_config:\n    max_time_out: 3\n    schedule_type: RUN_ONCE\n    # last in schedule\ndata_source_type: DLI\nparameter_config:\n  # first param\n  - description: d # desc\n    type: string\n  -\n    # second\n    type: int\n# tail\n",
    ),
];

#[test]
fn fmt_keeps_every_hash_on_a_corpus_of_styles() {
    let p = Project::new();
    for (file, text) in STYLES {
        p.write(&format!("tasks/{file}"), text);
    }
    let env = [
        ("SUFFIX", "x"),
        ("ENABLED", "1"),
        ("DB_PASSWORD", "pw"),
        ("TASKFORM_SECRET_KEY", "k"),
    ];
    let plan = |p: &Project| -> BTreeMap<String, String> {
        let v = p
            .run(&["plan", "--format", "json", "tasks"], &env)
            .succeeds()
            .json();
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().into(),
                    t["hash"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let before = plan(&p);
    assert_eq!(before.len(), 7);
    let out = p.run(&["fmt", "tasks"], &env);
    out.succeeds();
    assert_eq!(out.stdout.lines().count(), STYLES.len(), "{}", out.stderr);
    assert_eq!(plan(&p), before);
    let first: Vec<String> = STYLES
        .iter()
        .map(|(f, _)| read(&p, &format!("tasks/{f}")))
        .collect();
    p.run(&["fmt", "tasks"], &env).succeeds().stdout_is("");
    let comments = &first[5];
    for c in [
        "# head",
        "# about task_config",
        "# tc",
        "# inside",
        "# one",
        "# end of task_config",
        "# about name",
        "# n",
        "# about schedule",
        "# last in schedule",
        "# first param",
        "# desc",
        "# second",
        "# tail",
    ] {
        assert_eq!(comments.matches(c).count(), 1, "{c} in\n{comments}");
    }
    assert!(
        comments.starts_with("# head\n\n# about name\nname: comments  # n\n"),
        "{comments}"
    );
    assert!(!first[0].contains('\r'));
    assert!(
        first[2].contains("  s1: \"0\"\n  s2: \"yes\"\n  s3: \"1.0\"\n  s4: \"null\"\n"),
        "{}",
        first[2]
    );
    assert!(
        first[2].contains("  cron_expression: \"0 0/5 * * * ?\"\n"),
        "{}",
        first[2]
    );
}

#[test]
fn fmt_rewrites_no_file_of_the_hostile_corpus() {
    let p = Project::new();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut originals = BTreeMap::new();
    for e in std::fs::read_dir(&corpus).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            let bytes = std::fs::read(e.path()).unwrap();
            p.write(&format!("tasks/{name}"), "");
            std::fs::write(p.path(&format!("tasks/{name}")), &bytes).unwrap();
            originals.insert(name, bytes);
        }
    }
    assert!(originals.len() > 20);
    let failing: std::collections::BTreeSet<String> = p
        .run(&["validate", "--format", "json", "tasks"], &[])
        .fails_with(1)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["file"]
                .as_str()
                .unwrap()
                .trim_start_matches("tasks/")
                .to_string()
        })
        .collect();
    assert!(failing.len() > 20);
    let out = p.run(&["fmt", "tasks"], &[]);
    out.fails_with(1);
    for (name, bytes) in &originals {
        let now = std::fs::read(p.path(&format!("tasks/{name}"))).unwrap();
        if failing.contains(name) {
            assert_eq!(&now, bytes, "{name} fails to load but was rewritten");
            assert!(!out.stdout.contains(name.as_str()));
        }
    }
    // The one that loads (no documents at all) loses its empty `---` documents.
    assert_eq!(out.stdout, "tasks/only-markers.yaml\n");
    assert_eq!(read(&p, "tasks/only-markers.yaml"), "");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Random manifests in random styles: formatting keeps every hash, keeps every
    /// comment, and is a fixed point.
    #[test]
    fn formatting_random_manifests_keeps_hashes_and_comments(
        seed in proptest::prelude::any::<u64>(),
    ) {
        let (src, comments) = random_manifest(seed);
        let out = taskform::load::format::format_source(&src)
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        proptest::prop_assert_eq!(load_hashes(&src), load_hashes(&out), "{}\n---\n{}", src, out);
        proptest::prop_assert_eq!(
            taskform::load::format::format_source(&out).unwrap(), out.clone()
        );
        for c in comments {
            proptest::prop_assert_eq!(out.matches(&c).count(), 1, "{} in\n{}", c, out);
        }
    }
}

fn load_hashes(src: &str) -> Vec<(String, String)> {
    let settings = taskform::load::settings::Settings::default();
    let (manifests, diags) = taskform::load::manifest::parse_source(
        src.as_bytes(),
        "f.yaml",
        "f.yaml",
        &settings,
        &|_| None,
    );
    assert!(diags.is_empty(), "{diags:?}\n{src}");
    manifests.into_iter().map(|m| (m.name, m.hash)).collect()
}

/// A small deterministic generator (no extra dependency): a valid manifest of one
/// or two documents with random key order, scalar styles, indentation, list styles
/// and comments (each comment unique, returned).
fn random_manifest(seed: u64) -> (String, Vec<String>) {
    let mut state = seed | 1;
    let mut next = move |n: u64| -> u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    const PLAIN: &[&str] = &[
        "dli-sales",
        "Nightly refresh",
        "sales.orders",
        "a b c",
        "x_1",
        "日本語",
        "dépôt",
        "0833a573fe",
    ];
    const TRICKY: &[&str] = &[
        "0",
        "yes",
        "1.0",
        "null",
        "",
        " lead",
        "a: b",
        "#x",
        "- x",
        "[x]",
        "{y}",
        "it's",
        "say \"hi\"",
        "tab\there",
        "2026-12-01",
        "0x1F",
        "1e3",
        "~",
        "multi\nline",
        "back\\slash",
        "trail ",
        "*star",
        "&amp",
        "!bang",
        "%pct",
        "@at",
        "`tick`",
        "\u{202e}rtl",
        "a #b",
        "x:",
        "---",
        "...",
        "true",
        "On",
        "1:30",
        "-",
        "?",
        ",",
        "é\u{85}",
        "\u{2028}",
    ];
    let mut comments = Vec::new();
    let mut docs = Vec::new();
    for d in 0..1 + next(2) {
        let indent = " ".repeat(2 + 2 * next(2) as usize);
        let scalar = |next: &mut dyn FnMut(u64) -> u64, flow: bool| -> String {
            if next(2) == 0 {
                let s = PLAIN[next(PLAIN.len() as u64) as usize];
                match next(3) {
                    0 if !flow || !s.contains(' ') => s.to_string(),
                    1 => format!("'{}'", s.replace('\'', "''")),
                    _ => serde_json::to_string(s).unwrap(),
                }
            } else {
                let s = TRICKY[next(TRICKY.len() as u64) as usize];
                if next(2) == 0 && !s.chars().any(|c| c.is_control() || c == '\u{2028}') {
                    format!("'{}'", s.replace('\'', "''"))
                } else {
                    // JSON leaves NEL and LS raw; YAML would read them as line breaks.
                    serde_json::to_string(s)
                        .unwrap()
                        .replace('\u{85}', "\\u0085")
                        .replace('\u{2028}', "\\u2028")
                }
            }
        };
        let comment = |next: &mut dyn FnMut(u64) -> u64, comments: &mut Vec<String>| -> String {
            if next(3) == 0 {
                let c = format!("c{}x{}", comments.len(), next(1000));
                comments.push(c.clone());
                format!("  # {c}")
            } else {
                String::new()
            }
        };
        let mut entries: Vec<String> = Vec::new();
        entries.push(format!("name: n{d}-{}", next(1_000_000)));
        let c = comment(&mut next, &mut comments);
        entries.push(format!("description: {}{c}", scalar(&mut next, false)));
        entries.push("data_source_type: DLI".into());
        entries.push("user_id: u".into());
        entries.push("dir_id: \"0\"".into());
        let c = comment(&mut next, &mut comments);
        entries.push(format!(
            "schedule_config:{c}\n{indent}schedule_type: CRON\n{indent}enabled: {}\n{indent}cron_expression: {}",
            next(2),
            ["\"0 0 2 * * ?\"", "0 0 2 * * ?", "'0 */5 * * * ?'"][next(3) as usize]
        ));
        let mut task = String::from("task_config:");
        task.push_str(&comment(&mut next, &mut comments));
        for i in 0..1 + next(4) {
            if next(4) == 0 {
                let c = format!("c{}x{}", comments.len(), next(1000));
                comments.push(c.clone());
                task.push_str(&format!("\n{indent}# {c}"));
            }
            let key = format!("k{i}");
            match next(4) {
                0 => {
                    let items: Vec<String> =
                        (0..next(3)).map(|_| scalar(&mut next, true)).collect();
                    task.push_str(&format!("\n{indent}{key}: [{}]", items.join(", ")));
                }
                1 => {
                    task.push_str(&format!("\n{indent}{key}:"));
                    for _ in 0..1 + next(3) {
                        let c = comment(&mut next, &mut comments);
                        task.push_str(&format!("\n{indent}- {}{c}", scalar(&mut next, false)));
                    }
                }
                2 => task.push_str(&format!(
                    "\n{indent}{key}: |\n{indent}{indent}text {}\n{indent}{indent}  more",
                    next(100)
                )),
                _ => {
                    let c = comment(&mut next, &mut comments);
                    task.push_str(&format!("\n{indent}{key}: {}{c}", scalar(&mut next, false)));
                }
            }
        }
        entries.push(task);
        // Random order, the documented one restored by fmt.
        for i in (1..entries.len()).rev() {
            entries.swap(i, next(i as u64 + 1) as usize);
        }
        docs.push(entries.join("\n"));
    }
    (docs.join("\n---\n") + "\n", comments)
}

// ---------------------------------------------------------------------------------
// validate FILE... and --format json

#[test]
fn validate_takes_files_with_the_settings_of_their_folder() {
    let p = Project::new();
    p.task("a");
    p.write("tasks/sub/b.yaml", &manifest("b", 1));
    p.write(
        "tasks/sub/c.yaml",
        "name: c\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: ten\ntask_config: {}\n",
    );
    // Manifests rely on `defaults` (user_id, dir_id) of tasks/taskform.yaml.
    p.run(&["validate", "tasks/a.yaml", "tasks/sub/b.yaml"], &[])
        .succeeds()
        .stdout_is("2 tasks in 2 files are valid.\n");
    p.run_in("tasks/sub", &["validate", "b.yaml"], &[])
        .succeeds();
    p.run(&["validate", "tasks/a.yaml", "tasks/sub/c.yaml"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/sub/c.yaml:5:17: `schedule_config.max_time_out` must be a 32-bit integer, found a string")
        .stderr_lacks("a.yaml");
    // A name another file of the target already uses.
    p.write("tasks/sub/dup.yaml", &manifest("a", 3));
    p.run(&["validate", "tasks/sub/dup.yaml"], &[])
        .fails_with(1)
        .stderr_has("error: tasks/sub/dup.yaml:1:7: duplicate task name `a`, also defined at tasks/a.yaml:1:7");
    // The settings file itself.
    p.run(&["validate", "tasks/taskform.yaml"], &[]).succeeds();
    p.write("tasks/taskform.yaml", "workspace: w\nstat: x\n");
    p.run(&["validate", "tasks/taskform.yaml"], &[])
        .fails_with(1)
        .stderr_has("tasks/taskform.yaml:2:1: unknown setting `stat`");
    p.run(&["validate", "tasks/missing.yaml"], &[])
        .fails_with(1)
        .stderr_has("error: cannot read tasks/missing.yaml");
}

#[test]
fn validate_json_lists_problems_and_warnings_for_editors() {
    let p = Project::new();
    p.task("a");
    p.write(
        "tasks/odd.yaml",
        "name: odd\ndata_source_type: dli\nschedule_config:\n  schedule_type: RUN_ONCE\ntask_config: {}\n",
    );
    // A warning alone does not fail.
    let v = p
        .run(&["validate", "--format", "json", "tasks"], &[])
        .succeeds()
        .json();
    assert_eq!(
        v,
        serde_json::json!([{
            "file": "tasks/odd.yaml", "line": 2, "column": 19,
            "message": "`data_source_type` `dli` is not a value seen in the DataArts documentation or SDKs; the service may refuse it",
            "hint": v[0]["hint"].clone(), "severity": "warning"
        }]),
        "{v:#}"
    );
    assert!(
        v[0]["hint"]
            .as_str()
            .unwrap()
            .starts_with("did you mean `DLI`?")
    );
    p.write(
        "tasks/bad.yaml",
        "name: bad\ndata_source_type: DLI\nschedule_config:\n  schedule_type: cron\ntask_config: {}\nnmae: x\n",
    );
    let out = p.run(
        &[
            "validate",
            "--format",
            "json",
            "tasks/bad.yaml",
            "tasks/odd.yaml",
        ],
        &[],
    );
    out.fails_with(1);
    let v = out.json();
    let rows: Vec<(String, Value, Value, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["file"].as_str().unwrap().to_string(),
                d["line"].clone(),
                d["column"].clone(),
                d["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("tasks/bad.yaml".into(), 4.into(), 18.into(), "error".into()),
            ("tasks/bad.yaml".into(), 6.into(), 1.into(), "error".into()),
            (
                "tasks/odd.yaml".into(),
                2.into(),
                19.into(),
                "warning".into()
            ),
        ]
    );
    assert_eq!(v[1]["message"], "unknown field `nmae`");
    assert_eq!(v[1]["hint"], "did you mean `name`?");
    // A folder that cannot be read: one entry without a position.
    let v = p
        .run(&["validate", "--format", "json", "nowhere"], &[])
        .fails_with(1)
        .json();
    assert_eq!(v[0]["file"], "nowhere");
    assert_eq!(v[0]["line"], Value::Null);
    assert_eq!(v[0]["severity"], "error");
}

#[test]
fn the_ci_example_turns_diagnostics_into_annotations() {
    let workflow = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/github-actions.yml"),
    )
    .unwrap();
    let start = workflow
        .find("jq -r '")
        .expect("a jq program in the workflow")
        + 7;
    let len = workflow[start..].find("' diagnostics.json").unwrap();
    let program = &workflow[start..start + len];
    assert!(workflow.contains("taskform validate tasks --format json > diagnostics.json"));
    if std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("jq is not installed: the annotation program is not run");
        return;
    }
    let p = Project::new();
    // A comma in a file name must not end the `file=` property.
    p.write(
        "tasks/b,ad.yaml",
        "name: bad\ndata_source_type: dli\nschedule_config:\n  schedule_type: cron\ntask_config: {}\n",
    );
    let out = p.run(&["validate", "--format", "json", "tasks"], &[]);
    out.fails_with(1);
    std::fs::write(p.path("diagnostics.json"), &out.stdout).unwrap();
    let jq = std::process::Command::new("jq")
        .args(["-r", program])
        .arg(p.path("diagnostics.json"))
        .output()
        .unwrap();
    assert!(
        jq.status.success(),
        "{}",
        String::from_utf8_lossy(&jq.stderr)
    );
    let text = String::from_utf8(jq.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("::warning file=tasks/b%2Cad.yaml,line=2,col=19::`data_source_type` `dli` is not a value seen in the DataArts documentation or SDKs; the service may refuse it (hint: did you mean `DLI`?"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("::error file=tasks/b%2Cad.yaml,line=4,col=18::"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------
// schema

fn schema_of(p: &Project, dir: Option<&str>) -> jsonschema::Validator {
    let mut args = vec!["schema"];
    args.extend(dir);
    let schema = p.run(&args, &[]).succeeds().json();
    assert!(
        jsonschema::meta::is_valid(&schema),
        "not a valid JSON Schema"
    );
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn documents(text: &str) -> Vec<Value> {
    taskform::load::yaml::parse_documents(text)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

#[test]
fn every_example_manifest_satisfies_the_schema() {
    let p = Project::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tasks");
    copy_tree(&examples, &p.path("ex"));
    let with_defaults = schema_of(&p, Some("ex"));
    let bare = schema_of(&p, None);
    let mut n = 0;
    for dir in ["dli", "dws", "hive"] {
        for e in std::fs::read_dir(p.path(&format!("ex/{dir}")))
            .unwrap()
            .flatten()
        {
            for doc in documents(&std::fs::read_to_string(e.path()).unwrap()) {
                let errors: Vec<String> = with_defaults
                    .iter_errors(&doc)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{}: {errors:?}", e.path().display());
                // Without the folder's defaults, user_id and dir_id are missing.
                assert!(!bare.is_valid(&doc));
                n += 1;
            }
        }
    }
    assert_eq!(n, 5);
}

/// Manifests (with the `defaults` of `Project::new`) and whether they are valid.
const AGREEMENT: &[(&str, bool, &str)] = &[
    (
        "good-minimal",
        true,
        "name: g1\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "good-cron",
        true,
        "name: g2\ndata_source_type: KAFKA\nschedule_config:\n  schedule_type: CRON\n  cron_expression: \"0 0 2 ? * MON-FRI\"\n  enabled: 0\n  max_time_out: 2147483647\ntask_config: {a: [1, {b: c}]}\nparameter_config:\n  - {description: d, type: string}\n",
    ),
    (
        "good-all-fields",
        true,
        "name: g3\ndescription: x\nuser_id: u\nproject_id: p\ndir_id: \"1\"\nuser_name: n\npath: /p\nstart_time: s\nend_time: e\nduty_person: d\nupdate_type: t\ndata_source_workspace_id: w\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, cron_expression: \"\", interval: 1 days, start_time: a, end_time: b}\ntask_config: {}\n",
    ),
    (
        "good-variables",
        true,
        "name: g4\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  enabled: ${ENABLED}\n  max_time_out: ${TIMEOUT}\ntask_config: {}\n",
    ),
    (
        "bad-missing-name",
        false,
        "data_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-missing-task-config",
        false,
        "name: b2\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\n",
    ),
    (
        "bad-unknown-field",
        false,
        "name: b3\nnmae: x\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-server-field",
        false,
        "name: b4\nid: x\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-job-id",
        false,
        "name: b5\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, job_id: 3}\ntask_config: {}\n",
    ),
    (
        "bad-unquoted-dir-id",
        false,
        "name: b6\ndir_id: 0\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-schedule-type",
        false,
        "name: b7\ndata_source_type: DLI\nschedule_config: {schedule_type: cron, cron_expression: \"0 0 2 * * ?\"}\ntask_config: {}\n",
    ),
    (
        "bad-enabled",
        false,
        "name: b8\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, enabled: 2}\ntask_config: {}\n",
    ),
    (
        "bad-enabled-bool",
        false,
        "name: b9\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, enabled: true}\ntask_config: {}\n",
    ),
    (
        "bad-int-range",
        false,
        "name: b10\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, max_time_out: 2147483648}\ntask_config: {}\n",
    ),
    (
        "bad-int-string",
        false,
        "name: b11\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, max_time_out: \"10\"}\ntask_config: {}\n",
    ),
    (
        "bad-cron-missing",
        false,
        "name: b12\ndata_source_type: DLI\nschedule_config: {schedule_type: CRON}\ntask_config: {}\n",
    ),
    (
        "bad-cron-empty",
        false,
        "name: b13\ndata_source_type: DLI\nschedule_config: {schedule_type: CRON, cron_expression: \" \"}\ntask_config: {}\n",
    ),
    (
        "bad-cron-unix",
        false,
        "name: b14\ndata_source_type: DLI\nschedule_config: {schedule_type: CRON, cron_expression: \"*/5 * * * *\"}\ntask_config: {}\n",
    ),
    (
        "bad-name-empty",
        false,
        "name: \"  \"\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-name-escape",
        false,
        "name: \"x\\e[2J\"\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-name-bidi",
        false,
        "name: \"x\\u202ey\"\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-task-config-list",
        false,
        "name: b18\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: [a]\n",
    ),
    (
        "bad-parameter-item",
        false,
        "name: b19\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\nparameter_config: [x]\n",
    ),
    (
        "bad-schedule-unknown",
        false,
        "name: b20\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, intervl: x}\ntask_config: {}\n",
    ),
    (
        "bad-data-source-number",
        false,
        "name: b21\ndata_source_type: 5\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "bad-variable-enum",
        false,
        "name: b22\ndata_source_type: DLI\nschedule_config: {schedule_type: \"${TYPE}x\"}\ntask_config: {}\n",
    ),
];

/// Valid to the schema, refused by validate: what only validate checks (see
/// `src/load/json_schema.rs`).
const ONLY_VALIDATE: &[(&str, &str)] = &[
    (
        "gap-cron-field",
        "name: x1\ndata_source_type: DLI\nschedule_config: {schedule_type: CRON, cron_expression: \"0 0 25 * * ?\"}\ntask_config: {}\n",
    ),
    (
        "gap-decimal",
        "name: x2\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE, max_time_out: 10.0}\ntask_config: {}\n",
    ),
    (
        "gap-duplicate-name-1",
        "name: dup\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
    (
        "gap-duplicate-name-2",
        "name: dup\ndata_source_type: DLI\nschedule_config: {schedule_type: RUN_ONCE}\ntask_config: {}\n",
    ),
];

#[test]
fn the_schema_and_the_validator_agree() {
    let p = Project::new();
    for (name, _, text) in AGREEMENT {
        p.write(&format!("tasks/{name}.yaml"), text);
    }
    for (name, text) in ONLY_VALIDATE {
        p.write(&format!("tasks/{name}.yaml"), text);
    }
    let schema = schema_of(&p, Some("tasks"));
    let out = p.run(
        &["validate", "--format", "json", "tasks"],
        &[("ENABLED", "1"), ("TIMEOUT", "5")],
    );
    out.fails_with(1);
    let refused: std::collections::BTreeSet<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| d["file"].as_str().unwrap().to_string())
        .collect();
    for (name, valid, text) in AGREEMENT {
        let file = format!("tasks/{name}.yaml");
        let by_schema = documents(text).iter().all(|d| schema.is_valid(d));
        let by_validator = !refused.contains(&file);
        assert_eq!(
            by_validator, *valid,
            "{name}: validate (refused: {refused:?})"
        );
        assert_eq!(by_schema, *valid, "{name}: schema");
    }
    for (name, text) in ONLY_VALIDATE {
        let file = format!("tasks/{name}.yaml");
        assert!(documents(text).iter().all(|d| schema.is_valid(d)), "{name}");
        assert!(refused.contains(&file), "{name}");
    }
}

// ---------------------------------------------------------------------------------
// completions, man, version

#[test]
fn completions_come_from_the_cli_definition() {
    let p = Project::new();
    let bash = p.run(&["completions", "bash"], &[]);
    bash.succeeds()
        .stdout_has("_taskform()")
        .stdout_has("fmt")
        .stdout_has("--check")
        .stdout_has("--detailed-exitcode");
    // The script is valid bash.
    std::fs::write(p.path("taskform.bash"), &bash.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(p.path("taskform.bash"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    p.run(&["completions", "zsh"], &[])
        .succeeds()
        .stdout_has("#compdef taskform")
        .stdout_has("schema");
    p.run(&["completions", "fish"], &[])
        .succeeds()
        .stdout_has("complete -c taskform")
        .stdout_has("version");
    p.run(&["completions", "powershell"], &[])
        .succeeds()
        .stdout_has("Register-ArgumentCompleter");
    p.run(&["completions", "tcsh"], &[]).fails_with(1);
}

#[test]
fn the_man_page_comes_from_the_cli_definition() {
    let p = Project::new();
    p.run(&["man"], &[])
        .succeeds()
        .stdout_has(".TH taskform")
        .stdout_has("GitOps for Huawei Cloud")
        .stdout_has("taskform\\-fmt")
        .stdout_has("taskform\\-validate")
        .stdout_has("\\-\\-verbose");
}

#[test]
fn version_names_the_build() {
    let p = Project::new();
    let v = p
        .run(&["version", "--format", "json"], &[])
        .succeeds()
        .json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let target = v["target"].as_str().unwrap();
    assert!(target.split('-').count() >= 3, "{target}");
    assert!(!v["commit"].as_str().unwrap().is_empty());
    let date = v["build_date"].as_str().unwrap();
    assert!(
        date == "unknown" || (date.len() == 10 && date.chars().filter(|c| *c == '-').count() == 2),
        "{date}"
    );
    p.run(&["version"], &[])
        .succeeds()
        .stdout_has(&format!("taskform {}", env!("CARGO_PKG_VERSION")))
        .stdout_has(target);
}
