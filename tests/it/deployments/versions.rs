//! Versions: every published version is invocable, `$LATEST` is the last
//! draft deployed, a version an alias needs cannot be deleted, modules no
//! version uses are collected, and the deployment commands name what is
//! wrong.

use super::*;

#[test]
fn a_replaced_draft_module_is_collected_once_nothing_uses_it() {
    let gateway = gateway("tag");
    let config = gateway.write();
    let modules = gateway.dir().join("data/functions/modules");
    let count = || std::fs::read_dir(&modules).unwrap().count();
    let mut ledge = gateway.start();
    let client = gateway.client("gc-client", &["out/#"]);
    assert_eq!(serving(&client, 1), "v0");
    let a = tagged(gateway.dir(), "va", false);
    let b = tagged(gateway.dir(), "vb", false);
    cli(&config, &["deploy", "tag", a.to_str().unwrap()]);
    assert_eq!(serving(&client, 2), "va");
    assert_eq!(count(), 1);
    cli(
        &config,
        &["deploy", "tag", b.to_str().unwrap(), "--publish"],
    );
    assert_eq!(serving(&client, 3), "vb");
    assert_eq!(count(), 1, "the replaced draft's module is still there");
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn an_unused_version_is_deleted_and_its_module_collected_a_needed_one_is_refused() {
    let gateway = gateway("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2", "v3"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "1", "--no-watch"]);
    cli(&config, &["alias", "set", "tag", "live", "2", "--no-watch"]);
    let mut ledge = gateway.start();
    let client = gateway.client("delete-client", &["out/#"]);
    let err = cli_fails(&config, &["versions", "tag", "--delete", "1"]);
    assert!(err.contains("in use by alias `live`"), "{err}");
    let modules = gateway.dir().join("data/functions/modules");
    let count = || std::fs::read_dir(&modules).unwrap().count();
    assert_eq!(count(), 3);
    // v3 is also $LATEST (the last deployed): its module stays.
    cli(
        &config,
        &[
            "deploy",
            "tag",
            tagged(gateway.dir(), "v1", false).to_str().unwrap(),
        ],
    );
    let out = cli(&config, &["versions", "tag", "--delete", "3"]);
    assert!(out.contains("deleted tag:3"), "{out}");
    assert!(out.contains("applied by the running ledge"), "{out}");
    assert_eq!(
        count(),
        2,
        "v3's module should be gone (v1 is $LATEST and 1, v2 is 2)"
    );
    let state = cli(&config, &["versions", "tag", "--json"]);
    let state: serde_json::Value = serde_json::from_str(state.trim()).unwrap();
    let versions: Vec<&String> = state["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(state["highest"], 3);
    assert_eq!(serving(&client, 1), "v2", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

/// `ledge invoke --json` of `name`: its exit code and report.
fn invoke_json(config: &Path, name: &str) -> (Option<i32>, serde_json::Value) {
    let output = ledge(&[
        "invoke",
        name,
        "--json",
        "--event",
        "e1",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "ledge invoke {name}: not one JSON object ({e}):\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn published_topics(report: &serde_json::Value) -> Vec<String> {
    report["publishes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["topic"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn invoking_latest_runs_the_draft_even_with_a_default_alias() {
    let dir = tempfile::tempdir().unwrap();
    let v0 = tagged(dir.path(), "v0", false);
    let config = common::write_config(
        dir.path(),
        &format!(
            "[device]\nid = \"gw\"\ndata_dir = \"data\"\n\
             [[function]]\nname = \"tag\"\nmodule = \"{}\"\nallow_publish = [\"out/#\"]\n\
             default_alias = \"live\"\n",
            v0.display()
        ),
    );
    let good = tagged(dir.path(), "v1", false);
    cli(
        &config,
        &[
            "deploy",
            "tag",
            good.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
            "--no-watch",
        ],
    );
    // A broken draft: deployed as $LATEST, not published.
    let broken = tagged(dir.path(), "draft", true);
    cli(&config, &["deploy", "tag", broken.to_str().unwrap()]);

    let (code, report) = invoke_json(&config, "tag:$LATEST");
    assert_eq!(code, Some(1), "the broken draft must fail: {report}");
    assert_eq!(report["version"], "$LATEST", "{report}");
    assert_eq!(report["status"], "error", "{report}");
    assert_eq!(published_topics(&report), ["out/draft"], "{report}");
    // The bare name follows default_alias, and says where it went.
    let (code, report) = invoke_json(&config, "tag");
    assert_eq!(
        (code, &report["version"]),
        (Some(0), &"1".into()),
        "{report}"
    );
    assert_eq!(published_topics(&report), ["out/v1"], "{report}");
    let (code, report) = invoke_json(&config, "tag:live");
    assert_eq!(
        (code, &report["version"]),
        (Some(0), &"1".into()),
        "{report}"
    );
    // The text output names the version too, and so does the failure.
    let output = ledge(&[
        "invoke",
        "tag:$LATEST",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("function  tag ($LATEST)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("function tag version $LATEST request "),
        "{stderr}"
    );
}

#[test]
fn every_published_version_is_invocable_not_only_those_an_alias_names() {
    let gateway = offline("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2", "v3"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "3", "--no-watch"]);
    for version in ["1", "2", "3"] {
        let (code, report) = invoke_json(&config, &format!("tag:{version}"));
        assert_eq!(code, Some(0), "tag:{version}: {report}");
        assert_eq!(report["version"], version, "{report}");
        assert_eq!(
            published_topics(&report),
            [format!("out/v{version}")],
            "{report}"
        );
    }
    let err = cli_fails(&config, &["invoke", "tag:9"]);
    assert!(
        err.contains("function `tag` has no published version 9"),
        "{err}"
    );
}

#[test]
fn cli_errors_name_what_is_wrong() {
    let gateway = offline("tag");
    let config = gateway.write();
    let err = cli_fails(&config, &["deploy", "nope", "x.wasm"]);
    assert!(err.contains("no function `nope`"), "{err}");
    let not_wasm = gateway.dir().join("ledge.toml");
    let err = cli_fails(&config, &["deploy", "tag", not_wasm.to_str().unwrap()]);
    assert!(err.contains("not valid WebAssembly"), "{err}");
    let err = cli_fails(&config, &["alias", "set", "tag", "live", "4"]);
    assert!(err.contains("no published version 4"), "{err}");
    let err = cli_fails(&config, &["rollback", "tag", "live"]);
    assert!(err.contains("no alias `live`"), "{err}");
    let v1 = tagged(gateway.dir(), "v1", false);
    cli(
        &config,
        &["deploy", "tag", v1.to_str().unwrap(), "--publish"],
    );
    let err = cli_fails(
        &config,
        &["alias", "set", "tag", "live", "1", "--weight", "1=x"],
    );
    assert!(err.contains("VERSION=PERCENT"), "{err}");
    // A malformed qualifier is a config error with its place.
    let bad = gateway.dir().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("function = \"tag\"", "function = \"tag:0\""),
    )
    .unwrap();
    let output = ledge(&["check", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("bad.toml:") && err.contains("numbered from 1"),
        "{err}"
    );
}
