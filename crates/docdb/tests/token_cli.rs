#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `docdb token`: key files private, made once, durations parsed strictly, rotation
//! replacing the key.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::run_docdb;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn kid(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap();
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .unwrap();
    let h: serde_json::Value = serde_json::from_slice(&h).unwrap();
    assert_eq!(h["alg"], "EdDSA");
    h["kid"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let c = token.split('.').nth(1).unwrap();
    let c = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .unwrap();
    serde_json::from_slice(&c).unwrap()
}

#[test]
fn issue_makes_a_private_key_once_and_rotate_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.display().to_string();
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "issue",
            "--data-dir",
            &d,
            "--db",
            "t-*",
            "--rights",
            "read",
        ];
        args.extend(extra);
        run_docdb(&args)
    };
    let out = issue(&["--expires", "15m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t1 = String::from_utf8(out.stdout).unwrap();
    assert_eq!(t1.lines().count(), 1, "one token on stdout");
    let c = claims(t1.trim());
    assert_eq!(c["db"], "t-*");
    assert_eq!(c["rights"], "read");
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 900);
    assert_eq!(mode(&data.join("keys")), 0o700);
    assert_eq!(mode(&data.join("keys/token.ed25519")), 0o600);

    let t2 = String::from_utf8(issue(&[]).stdout).unwrap();
    assert_eq!(kid(t1.trim()), kid(t2.trim()), "the key is made once");
    assert!(
        claims(t2.trim()).get("exp").is_none(),
        "no --expires: never"
    );

    for (d, secs) in [("90s", 90), ("12h", 43_200), ("30d", 2_592_000)] {
        let t = String::from_utf8(issue(&["--expires", d]).stdout).unwrap();
        let c = claims(t.trim());
        assert_eq!(
            c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
            secs,
            "{d}"
        );
    }
    for bad in ["5x", "0s", "1.5h", "d", "1 d"] {
        let out = issue(&["--expires", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("duration"),
            "{bad}"
        );
    }
    let out = run_docdb(&[
        "token",
        "issue",
        "--data-dir",
        &d,
        "--db",
        "a[",
        "--rights",
        "read",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unclosed"));
    let out = run_docdb(&[
        "token",
        "issue",
        "--data-dir",
        &d,
        "--db",
        "a",
        "--rights",
        "root",
    ]);
    assert!(!out.status.success());

    let out = run_docdb(&["token", "rotate", "--data-dir", &d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t3 = String::from_utf8(issue(&[]).stdout).unwrap();
    assert_ne!(kid(t1.trim()), kid(t3.trim()), "rotate makes a new key");
    assert_eq!(mode(&data.join("keys/token.ed25519")), 0o600);
    assert_eq!(
        std::fs::read_dir(data.join("keys")).unwrap().count(),
        1,
        "no temp files left"
    );

    let help = run_docdb(&["token", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("docdb token rotate"), "{help}");
}
