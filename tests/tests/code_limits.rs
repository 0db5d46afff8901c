//! The size limits of the developers' guide, kept by CI: no production
//! source file over 600 lines, no production function over 80 lines.
//! Tests (`tests/` directories, `tests.rs`, everything after `#[cfg(test)]`),
//! fuzz targets and the test crate itself are exempt.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;
const CRATES: [&str; 6] = [
    "cgpt",
    "payload",
    "omaha",
    "coordinator",
    "update-agent",
    "node",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The production part of a file: everything before its first `#[cfg(test)]`.
fn production(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .collect()
}

/// (name, first line, length) of each function, found by the `fn` keyword
/// at the start of a line and the braces that follow it. Braces inside
/// strings or comments could mislead it; our sources have none that do.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let words: Vec<&str> = lines[i].split_whitespace().collect();
        let at = words.iter().position(|w| *w == "fn");
        let prefix_ok = at.is_some_and(|k| {
            words[..k].iter().all(|w| {
                w.starts_with("pub") || ["async", "const", "unsafe", "extern", "\"C\""].contains(w)
            })
        });
        let Some(k) = at.filter(|_| prefix_ok) else {
            i += 1;
            continue;
        };
        let name = words
            .get(k + 1)
            .map_or("?", |w| w.split(['(', '<']).next().unwrap_or("?"));
        let (mut depth, mut opened, mut j) = (0i64, false, i);
        while j < lines.len() {
            let l = lines[j];
            if !opened && l.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
            opened |= l.contains('{');
            if opened && depth <= 0 {
                break;
            }
            j += 1;
        }
        found.push((name.to_string(), i + 1, j - i + 1));
        i = j + 1;
    }
    found
}

#[test]
fn production_files_and_functions_stay_within_the_limits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in CRATES {
        sources(&root.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 50, "only {} source files found", files.len());
    let mut over = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = production(&text);
        let shown = file.strip_prefix(root).unwrap().display();
        if lines.len() > MAX_FILE_LINES {
            over.push(format!("{shown}: {} lines", lines.len()));
        }
        for (name, line, len) in functions(&lines) {
            if len > MAX_FN_LINES {
                over.push(format!("{shown}:{line}: fn {name} is {len} lines"));
            }
        }
    }
    assert!(over.is_empty(), "over the limits:\n{}", over.join("\n"));
}

#[test]
fn the_counter_sees_a_long_function() {
    let body: Vec<String> = (0..90).map(|i| format!("    let x{i} = {i};")).collect();
    let text = format!(
        "/// doc\npub(crate) async fn long() {{\n{}\n}}\nfn short() {{ }}\n",
        body.join("\n")
    );
    let lines: Vec<&str> = text.lines().collect();
    let fns = functions(&lines);
    assert_eq!(
        fns,
        vec![("long".to_string(), 2, 92), ("short".to_string(), 94, 1)]
    );
}
