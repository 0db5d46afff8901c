//! A small FleetLock server following the published protocol (coreos/airlock,
//! coreos/zincati docs/development/fleetlock/protocol.md): POST /v1/pre-reboot and
//! /v1/steady-state, header `fleet-lock-protocol: true`, body
//! `{"client_params":{"id":…,"group":…}}`, 200 or an error `{"kind":…,"value":…}`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct State {
    /// group → holders.
    pub holders: BTreeMap<String, Vec<String>>,
    pub max: usize,
    /// Requests refused for lacking the protocol header or a valid body.
    pub bad_requests: usize,
}

pub struct FleetLockServer {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl FleetLockServer {
    pub fn start(max: usize) -> FleetLockServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            max,
            ..State::default()
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || handle(conn, &st));
            }
        });
        FleetLockServer { url, state }
    }

    pub fn holders(&self, group: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .holders
            .get(group)
            .cloned()
            .unwrap_or_default()
    }
}

fn respond(mut conn: TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn handle(conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut length, mut protocol) = (0usize, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("fleet-lock-protocol:") && lower.contains("true") {
            protocol = true;
        }
    }
    let mut body = vec![0; length.min(1 << 16)];
    let _ = reader.read_exact(&mut body);
    let parts: Vec<&str> = request_line.split_whitespace().collect();
    let params: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let p = &v["client_params"];
            Some((
                p["id"].as_str()?.to_owned(),
                p["group"].as_str()?.to_owned(),
            ))
        });
    let mut st = state.lock().unwrap();
    let Some((id, group)) = params.filter(|_| protocol && parts.first() == Some(&"POST")) else {
        st.bad_requests += 1;
        drop(st);
        return respond(
            conn,
            "400 Bad Request",
            r#"{"kind":"bad_request","value":"missing header or client_params"}"#,
        );
    };
    let max = st.max;
    let holders = st.holders.entry(group).or_default();
    match parts.get(1).copied() {
        Some("/v1/pre-reboot") => {
            if holders.contains(&id) || holders.len() < max {
                if !holders.contains(&id) {
                    holders.push(id);
                }
                drop(st);
                respond(conn, "200 OK", "{}");
            } else {
                let msg = format!(
                    r#"{{"kind":"failed_lock","value":"all {max} semaphore slots are taken"}}"#
                );
                drop(st);
                respond(conn, "409 Conflict", &msg);
            }
        }
        Some("/v1/steady-state") => {
            holders.retain(|h| *h != id);
            drop(st);
            respond(conn, "200 OK", "{}");
        }
        _ => {
            drop(st);
            respond(
                conn,
                "404 Not Found",
                r#"{"kind":"not_found","value":"no such endpoint"}"#,
            );
        }
    }
}
