//! `GET /metrics` parsed by a real exposition-format parser, in both formats: the
//! classic Prometheus text (0.0.4) for a scraper that does not ask for OpenMetrics,
//! and OpenMetrics 1.0 when `Accept` asks for it the way Prometheus does. Counters
//! (operations, worker panics, group-commit batches and records) are counters with
//! samples in both; live documents are the gauge `docdb_documents`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Server;

/// (content type, body) of `GET /metrics` with the `Accept` header given.
fn scrape(port: u16, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap();
    (ctype, body.to_owned())
}

#[test]
fn both_exposition_formats_parse_with_the_right_types() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Server::start(&["--http", &format!("127.0.0.1:{port}")]);
    let mut c = s.connect();
    let db = c.open_db("scraped");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);

    // Classic: what a plain `curl` or an old scraper gets.
    let (ctype, body) = scrape(port, None);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!body.contains("# EOF"), "{body}");
    let classic = openmetrics_parser::prometheus::parse_prometheus(&body)
        .unwrap_or_else(|e| panic!("classic format does not parse: {e:?}\n{body}"));
    let kind = |name: &str| {
        let f = classic
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in\n{body}"));
        assert!(f.iter_samples().next().is_some(), "{name} has no samples");
        format!("{:?}", f.family_type)
    };
    for counter in [
        "docdb_operations_total",
        "docdb_worker_panics_total",
        "docdb_wal_group_commit_batches_total",
        "docdb_wal_group_commit_records_total",
    ] {
        assert_eq!(kind(counter), "Counter", "{counter}");
    }
    assert_eq!(kind("docdb_documents"), "Gauge");
    assert!(!classic.families.contains_key("docdb_documents_total"));
    for (name, f) in &classic.families {
        assert_ne!(format!("{:?}", f.family_type), "Unknown", "{name}");
    }

    // OpenMetrics: what Prometheus asks for.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (ctype, body) = scrape(port, Some(prometheus_accept));
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("OpenMetrics does not parse: {e:?}\n{body}"));
    let kind = |name: &str| {
        let f = om
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in\n{body}"));
        assert!(f.iter_samples().next().is_some(), "{name} has no samples");
        format!("{:?}", f.family_type)
    };
    for counter in [
        "docdb_operations",
        "docdb_worker_panics",
        "docdb_wal_group_commit_batches",
        "docdb_wal_group_commit_records",
    ] {
        assert_eq!(kind(counter), "Counter", "{counter}");
    }
    assert_eq!(kind("docdb_documents"), "Gauge");
}
