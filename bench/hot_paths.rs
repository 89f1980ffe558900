//! Criterion benchmarks of the hot paths: one manifest's load + validate + canonical
//! hash, the plan diff of 10,000 tasks, and durable journal appends.
//!
//! cargo bench --bench hot_paths

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use taskform::load::manifest::{Manifest, parse_source};
use taskform::load::settings::Settings;
use taskform::plan::{PlanOptions, plan};
use taskform::state::journal::{Record, Writer};
use taskform::state::{State, TaskRecord};

const MANIFEST: &str = r#"# a typical 1 KB manifest
name: bench-task-00042
description: Benchmark task 42, collects the metadata of six tables from the DLI source, with profiling on every 7th run.
user_id: 0833a573fe80d5401f6dc010a775569a
dir_id: "0"
duty_person: data-platform
data_source_type: DLI
schedule_config:
  schedule_type: CRON
  cron_expression: "0 42 18 * * ?"
  interval: 1 days
  start_time: "2026-12-01T00:00:00 +08"
  max_time_out: 52
  enabled: 1
task_config:
  data_connection_name: dli_conn_02
  data_connection_id: 14bb947454e64de784eadaab759081e8
  databaseName: [db0]
  tableName: [db0.table_042, db0.table_043, db0.table_044, db0.table_045, db0.table_046, db0.table_047]
  alive_object_policy: "3"
  deleted_object_policy: "3"
  enableDataProfile: true
  enableDataClassification: false
  enable_table_filter_by_regex: false
  queue: default
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_validate_hash(c: &mut Criterion) {
    let settings = Settings::default();
    let mut g = c.benchmark_group("manifest");
    g.throughput(Throughput::Bytes(MANIFEST.len() as u64));
    g.bench_function("load_validate_hash_1kb", |b| {
        b.iter(|| {
            let (m, d) = parse_source(
                black_box(MANIFEST.as_bytes()),
                "a.yaml",
                "a.yaml",
                &settings,
                &no_env,
            );
            assert!(d.is_empty());
            m
        })
    });
    g.finish();
}

fn plan_diff(c: &mut Criterion) {
    let settings = Settings::default();
    let (base, _) = parse_source(MANIFEST.as_bytes(), "a.yaml", "a.yaml", &settings, &no_env);
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut state = State::new();
    for i in 0..10_000 {
        let mut m = base[0].clone();
        m.name = format!("task-{i:05}");
        if i % 10 != 0 {
            state.tasks.insert(
                m.name.clone(),
                TaskRecord {
                    task_id: format!("{i:032x}"),
                    hash: m.hash.clone(),
                    file: None,
                    applied_at: None,
                    body: None,
                    superseded: vec![],
                },
            );
        }
        manifests.push(m);
    }
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("diff_10000_tasks", |b| {
        b.iter(|| {
            plan(
                black_box(&manifests),
                black_box(&state),
                PlanOptions::default(),
            )
        })
    });
    g.finish();
}

fn journal_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json.journal");
    let state = State::new();
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(256));
    g.sample_size(20);
    g.bench_function("append_256_durable_16_concurrent", |b| {
        b.iter(|| {
            let w = std::sync::Arc::new(Writer::create(&path, &state, "t".into()).unwrap());
            rt.block_on(async {
                let mut tasks = Vec::new();
                for lane in 0..16 {
                    let w = w.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0..16 {
                            let r = Record::Intent {
                                name: format!("task-{lane}-{i}"),
                                hash: "sha256:00".into(),
                                file: None,
                                at: "t".into(),
                                body: None,
                            };
                            w.append(&r).await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
            w.close();
        })
    });
    g.finish();
}

criterion_group!(benches, load_validate_hash, plan_diff, journal_append);
criterion_main!(benches);
