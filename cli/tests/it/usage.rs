//! Black-box tests of the `floe` binary's command line: version, help and usage errors.

use std::process::{Command, Output};

fn floe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .output()
        .expect("the floe binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn version_prints_the_package_version() {
    let expected = format!("floe {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["version"], &["-V"]] {
        let output = floe(args);
        assert_eq!(output.status.code(), Some(0), "floe {args:?}");
        assert_eq!(stdout(&output), expected, "floe {args:?}");
    }
}

#[test]
fn help_and_no_arguments_print_usage_and_exit_0() {
    for args in [&[][..], &["--help"], &["-h"], &["help"]] {
        let output = floe(args);
        assert_eq!(output.status.code(), Some(0), "floe {args:?}");
        let out = stdout(&output);
        assert!(out.starts_with("floe: "), "floe {args:?}: {out}");
        assert!(out.contains("Usage: floe"), "floe {args:?}: {out}");
        assert!(out.contains("serve"), "floe {args:?}: {out}");
    }
    let serve = stdout(&floe(&["serve", "--help"]));
    for flag in [
        "--addr",
        "--data-dir",
        "FLOE_ADDR",
        "FLOE_DATA_DIR",
        "127.0.0.1:8181",
        "./floe-data",
    ] {
        assert!(
            serve.contains(flag),
            "floe serve --help lacks {flag}: {serve}"
        );
    }
}

#[test]
fn unknown_verbs_and_stray_arguments_exit_2_with_a_message_on_stderr() {
    for (args, message) in [
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["version", "extra"], "unexpected argument 'extra'"),
        (&["serve", "--port", "1"], "unexpected argument '--port'"),
    ] {
        let output = floe(args);
        assert_eq!(output.status.code(), Some(2), "floe {args:?}");
        assert_eq!(stdout(&output), "", "floe {args:?}");
        let err = stderr(&output);
        assert!(err.contains(message), "floe {args:?}: {err}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `floe openapi | head -c 10`: the document is larger than a pipe's buffer.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(141), "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
