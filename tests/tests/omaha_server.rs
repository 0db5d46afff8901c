//! The test server's payload side: Range requests and cut connections,
//! checked with a raw TCP client.

use e2e::OmahaServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a GET and returns (status, headers, body) as received until EOF.
async fn get(server: &OmahaServer, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", server.addr());
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(out[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, out[end + 4..].to_vec())
}

fn data() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn serves_files_with_ranges() {
    let server = OmahaServer::start().await;
    server.serve_file("p.gz", data());
    let (status, head, body) = get(&server, "/files/p.gz", None).await;
    assert_eq!(status, 200);
    assert!(head.contains("Content-Length: 10000"), "{head}");
    assert_eq!(body, data());

    let (status, head, body) = get(&server, "/files/p.gz", Some("bytes=100-199")).await;
    assert_eq!(status, 206);
    assert!(
        head.contains("Content-Range: bytes 100-199/10000"),
        "{head}"
    );
    assert_eq!(body, data()[100..200]);

    let (status, _, body) = get(&server, "/files/p.gz", Some("bytes=9000-")).await;
    assert_eq!(status, 206);
    assert_eq!(body, data()[9000..]);

    let (status, head, _) = get(&server, "/files/p.gz", Some("bytes=20000-")).await;
    assert_eq!(status, 416);
    assert!(head.contains("Content-Range: bytes */10000"), "{head}");

    let (status, _, _) = get(&server, "/files/missing", None).await;
    assert_eq!(status, 404);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[1].header("range"), Some("bytes=100-199"));
    assert!(reqs.iter().all(|r| r.method == "GET" && r.omaha.is_none()));
}

#[tokio::test]
async fn cuts_the_connection_then_recovers() {
    let server = OmahaServer::start().await;
    server.serve_file("p.gz", data());
    server.cut_file_after("p.gz", 1234, 1);
    let (status, head, body) = get(&server, "/files/p.gz", None).await;
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Length: 10000"),
        "declares the full length: {head}"
    );
    assert_eq!(body, data()[..1234], "but closes after 1234 bytes");
    // The resume gets the rest.
    let (status, _, body) = get(&server, "/files/p.gz", Some("bytes=1234-")).await;
    assert_eq!(status, 206);
    assert_eq!(body, data()[1234..]);
}
