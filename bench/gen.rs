//! Generates N realistic task manifests (~1 KB each, like examples/tasks) for
//! benchmarks, and optionally the equivalent Terraform configuration.
//!
//! cargo run --release --example gen-manifests -- DIR N [--terraform TFDIR]

use std::fmt::Write as _;
use std::path::PathBuf;

const SOURCES: &[&str] = &["DLI", "DWS", "HIVE"];

fn body(i: usize) -> (String, serde_json::Value) {
    let name = format!("bench-task-{i:05}");
    let source = SOURCES[i % SOURCES.len()];
    let cron = i.is_multiple_of(2);
    let tables: Vec<String> = (0..6)
        .map(|t| format!("db{}.table_{:03}", i % 7, (i + t) % 500))
        .collect();
    let mut schedule = serde_json::json!({"schedule_type": if cron { "CRON" } else { "RUN_ONCE" }, "max_time_out": 10 + (i % 50) as i64});
    if cron {
        schedule["cron_expression"] = format!("0 {} {} * * ?", i % 60, i % 24).into();
        schedule["interval"] = "1 days".into();
        schedule["start_time"] = "2026-12-01T00:00:00 +08".into();
        schedule["enabled"] = 1.into();
    }
    let v = serde_json::json!({
        "name": name,
        "description": format!("Benchmark task {i}: collects the metadata of {} tables from the {source} source, with profiling on every {}th run.", tables.len(), 1 + i % 9),
        "user_id": "0833a573fe80d5401f6dc010a775569a",
        "dir_id": "0",
        "duty_person": "data-platform",
        "data_source_type": source,
        "schedule_config": schedule,
        "task_config": {
            "data_connection_name": format!("{}_conn_{:02}", source.to_lowercase(), i % 20),
            "data_connection_id": format!("{:032x}", (i as u128) * 0x9e3779b97f4a7c15),
            "databaseName": [format!("db{}", i % 7)],
            "tableName": tables,
            "alive_object_policy": "3",
            "deleted_object_policy": "3",
            "enableDataProfile": i.is_multiple_of(3),
            "enableDataClassification": i.is_multiple_of(5),
            "enable_table_filter_by_regex": false,
            "queue": "default"
        }
    });
    (name, v)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: gen-manifests DIR N [--terraform TFDIR]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let n: usize = args[1].parse().expect("N");
    let tf = args
        .iter()
        .position(|a| a == "--terraform")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("taskform.yaml"),
        "project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d\nworkspace: demo-workspace\n",
    )
    .unwrap();
    let mut tf_text = String::from("terraform {\n  required_version = \">= 1.4\"\n}\n\n");
    for i in 0..n {
        let (name, v) = body(i);
        let folder = dir.join(format!("group-{:03}", i / 100));
        std::fs::create_dir_all(&folder).unwrap();
        let yaml = serde_yaml::to_string(&v).unwrap();
        std::fs::write(
            folder.join(format!("{name}.yaml")),
            format!("# generated benchmark task {i}\n{yaml}"),
        )
        .unwrap();
        if tf.is_some() {
            let _ = writeln!(
                tf_text,
                "resource \"terraform_data\" \"t{i:05}\" {{\n  input = jsondecode({:?})\n}}\n",
                v.to_string()
            );
        }
    }
    if let Some(tf) = tf {
        let _ = std::fs::remove_dir_all(&tf);
        std::fs::create_dir_all(&tf).unwrap();
        std::fs::write(tf.join("main.tf"), tf_text).unwrap();
    }
}
