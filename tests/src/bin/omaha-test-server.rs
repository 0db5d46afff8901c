//! `omaha-test-server`: the project's Omaha test server
//! ([`e2e::OmahaServer`]) as a process. The QEMU scenarios of `tests/vm/`
//! run it inside the guest (no guest traffic leaves the machine), and
//! `update-agent/README.md`'s walkthrough runs it next to a test root. It
//! prints its update URL and one `VMTEST omaha ...` line per request it
//! sees (in a guest the journal forwards them to the serial console, where
//! the harness reads them).
//!
//! ```text
//! omaha-test-server [--listen ADDR] [--url-file FILE] [--offer VERSION=PAYLOAD]
//!                   [--stall-at BYTES]
//! ```
//!
//! `--listen` defaults to `127.0.0.1:0` (a free port). `--offer` answers
//! every update check with an update to `VERSION` served from the file
//! `PAYLOAD`; without it every check gets `noupdate`. `--stall-at` sends the
//! payload up to that offset and then goes silent (the harness cuts the
//! power while the agent waits for more).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use e2e::{OmahaServer, RecordedRequest, Reply, UpdateSpec};

/// Scripted answers queued for an offer: more update checks than one
/// scenario boot makes.
const OFFERED_CHECKS: usize = 50;

#[derive(Debug, Default)]
struct Args {
    listen: Option<SocketAddr>,
    url_file: Option<PathBuf>,
    offer: Option<(String, PathBuf)>,
    stall_at: Option<u64>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = Some(value.parse().context("--listen takes IP:PORT")?),
            "--url-file" => args.url_file = Some(value.into()),
            "--offer" => {
                let (v, p) = value
                    .split_once('=')
                    .context("--offer takes VERSION=PAYLOAD")?;
                args.offer = Some((v.to_string(), p.into()));
            }
            "--stall-at" => args.stall_at = Some(value.parse().context("--stall-at")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

/// One line per request: `check[ event=3/0/44]`, `event=3/2`, `ping`, or
/// `get=/files/x range=...`.
fn describe(r: &RecordedRequest) -> String {
    if r.method != "POST" {
        let range = r.header("range").unwrap_or("-");
        return format!("get={} range={range}", r.path);
    }
    let Some(Ok(req)) = &r.omaha else {
        return format!("bad-post={}", r.path);
    };
    let event = |e: &omaha::Event| {
        let base = format!("{}/{}", e.event_type.code(), e.result.code());
        if e.result == omaha::EventResult::Success {
            base
        } else {
            format!("{base}/{}", e.error_code.to_u32())
        }
    };
    let version = &req.client.version;
    match &req.kind {
        omaha::RequestKind::UpdateCheck { event: e } => {
            format!("check version={version} event={}", event(e))
        }
        omaha::RequestKind::Ping => format!("ping version={version}"),
        omaha::RequestKind::Event(e) => format!("event={} version={version}", event(e)),
    }
}

async fn serve(args: Args) -> Result<()> {
    let addr = args.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = OmahaServer::start_on(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let mut payload_name = None;
    if let Some((version, path)) = &args.offer {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .context("payload file name")?
            .to_string_lossy()
            .into_owned();
        let spec = UpdateSpec::for_payload(version, &server.files_url(), &name, &data);
        server.serve_file(&name, data);
        if let Some(n) = args.stall_at {
            server.stall_file_after(&name, n);
        }
        for _ in 0..OFFERED_CHECKS {
            server.push(Reply::Update(spec.clone()));
        }
        payload_name = Some(name);
    }
    if let Some(file) = &args.url_file {
        std::fs::write(file, server.update_url())
            .with_context(|| format!("writing {}", file.display()))?;
    }
    println!("VMTEST omaha ready url={}", server.update_url());
    let mut seen = 0;
    let mut stalled_reported = HashSet::new();
    loop {
        let requests = server.requests();
        for r in &requests[seen..] {
            println!("VMTEST omaha {}", describe(r));
        }
        seen = requests.len();
        if let Some(name) = &payload_name {
            let n = server.stalled_responses(name);
            if n > 0 && stalled_reported.insert(n) {
                println!("VMTEST omaha stalled={n}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}
