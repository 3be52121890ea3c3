//! The crates' layering, checked over `cargo metadata`: core <- store <- {stripe, alerts} <-
//! {server, tui} <- meterline (the binary). The compiler already refuses circles between
//! crates; this refuses an arrow that runs back up, or sideways within a layer, and a new
//! crate that has no place in the table.

use serde_json::Value;

/// Each workspace crate's layer: a crate may depend only on crates of lower layers.
const LAYERS: [(&str, u8); 7] = [
    ("meterline-core", 0),
    ("meterline-store", 1),
    ("meterline-stripe", 2),
    ("meterline-alerts", 2),
    ("meterline-server", 3),
    ("meterline-tui", 3),
    ("meterline", 4),
];

fn layer(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

/// Every dependency (of any kind) between workspace crates that does not point down.
fn violations(metadata: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(own) = layer(name) else {
            found.push(format!("{name} has no layer in tests/testsuite/layers.rs"));
            continue;
        };
        for dep in package["dependencies"].as_array().unwrap() {
            let target = dep["name"].as_str().unwrap();
            if !target.starts_with("meterline") {
                continue;
            }
            // A crate's tests may turn on its own features: the store's build its PostgreSQL
            // half, so that they run on both engines however they are started.
            if target == name && dep["kind"] == "dev" {
                continue;
            }
            match layer(target) {
                Some(l) if l < own => {}
                _ => found.push(format!("{name} (layer {own}) depends on {target}")),
            }
        }
    }
    found
}

fn metadata() -> Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_dependency_between_crates_points_down() {
    let metadata = metadata();
    assert_eq!(
        metadata["packages"].as_array().unwrap().len(),
        LAYERS.len(),
        "every workspace crate is in LAYERS"
    );
    assert_eq!(violations(&metadata), Vec::<String>::new());
}

#[test]
fn an_upward_or_sideways_arrow_is_found() {
    let mut metadata = metadata();
    let packages = metadata["packages"].as_array_mut().unwrap();
    let store = packages
        .iter_mut()
        .find(|p| p["name"] == "meterline-store")
        .unwrap();
    store["dependencies"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "meterline-stripe", "kind": null}));
    let server = packages
        .iter_mut()
        .find(|p| p["name"] == "meterline-server")
        .unwrap();
    server["dependencies"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "meterline-tui", "kind": "dev"}));
    assert_eq!(
        violations(&metadata),
        [
            "meterline-store (layer 1) depends on meterline-stripe",
            "meterline-server (layer 3) depends on meterline-tui"
        ]
    );
}

/// The crates `package` builds on, of every kind (normal, build, dev), each once.
fn dependency_tree(package: &str) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "--no-dedupe"])
        .args(["--edges", "normal,build,dev", "--package", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The core holds rules and types, no database: SQLite (and its C code) is the store's, whose
/// `db/sqlite/error.rs` turns rusqlite's errors into the core's.
#[test]
fn the_core_does_not_build_sqlite() {
    let tree = dependency_tree("meterline-core");
    assert!(tree.iter().any(|name| name == "serde"), "{tree:?}");
    for sqlite in ["rusqlite", "libsqlite3-sys"] {
        assert!(
            !tree.iter().any(|name| name == sqlite),
            "core builds {sqlite}"
        );
    }
    assert!(
        dependency_tree("meterline-store")
            .iter()
            .any(|n| n == "rusqlite")
    );
}
