//! The README tells the truth about the binary: its environment-variable
//! table lists every variable `quintet serve --help` names, and no other.

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::BIN;

/// Every variable `quintet serve --help` prints as `[env: NAME=…]` (or
/// `[env: NAME]` for hidden values), and `PORT`, which `--addr` documents.
fn variables_in_help() -> BTreeSet<String> {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("run serve --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let mut names: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect();
    if help.contains("`PORT`") {
        names.insert("PORT".to_owned());
    }
    names
}

/// The names in the `env` column of README.md's `| flag | env | … |` table;
/// an entry that is not a whole variable name (`QUINTET_APPLE_…`) is kept
/// as written, so the comparison reports it.
fn variables_in_readme() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let mut lines = readme
        .lines()
        .skip_while(|line| !line.starts_with("| flag | env |"));
    assert!(
        lines.next().is_some(),
        "README.md has a `| flag | env |` table"
    );
    lines
        .skip(1) // |---|---|
        .take_while(|line| line.starts_with('|'))
        .flat_map(|row| {
            let env = row.split('|').nth(2).unwrap_or_default().to_owned();
            env.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn readme_env_table_lists_every_variable_serve_knows_and_no_other() {
    let help = variables_in_help();
    assert!(
        help.len() > 50,
        "serve --help names its variables: {help:?}"
    );
    let readme = variables_in_readme();
    let missing: Vec<_> = help.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&help).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README.md's environment table lacks {missing:?} and lists {unknown:?}, \
         which `quintet serve --help` does not name"
    );
}
