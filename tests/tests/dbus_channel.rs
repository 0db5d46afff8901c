//! Channel switch end to end: the CLI (and D-Bus) switch the channel, the
//! service writes `GROUP=` atomically keeping the admin's other lines, and
//! the next check — a real Omaha request over HTTP on 127.0.0.1 — carries
//! the new track.

#[path = "dbus_common.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, Setup};
use e2e::dbus_bus::{client, gdbus_call, output, stderr};
use e2e::sim::CheckFn;
use e2e::{OmahaServer, Reply};
use omaha::{InstallSource, Request, UpdateCheck};
use update_agent::config::{NodeIdentity, Root, Settings};
use update_agent::fsm::{Event, Operation, Target};
use update_agent::omaha_client::{ClientOptions, OmahaClient};

/// The update check as the daemon makes it: config re-read, real HTTP.
fn omaha_check(root: &Root) -> CheckFn {
    let root = root.clone();
    Arc::new(move || {
        let root = root.clone();
        Box::pin(async move {
            let settings = Settings::load(&root).map_err(|e| e.to_string())?;
            let prefs = settings.prefs(&root);
            let mut id = NodeIdentity::load(&root, &prefs).map_err(|e| e.to_string())?;
            id.ensure_aleph_version(&prefs).map_err(|e| e.to_string())?;
            let client = OmahaClient::new(
                id.config.server(),
                &ClientOptions::from_settings(&settings, &root),
            )
            .map_err(|e| e.to_string())?;
            let request =
                Request::update_check(id.client_info(), InstallSource::OnDemandUpdate, None);
            let result = client.check(&request).await.map_err(|e| e.to_string())?;
            Ok(match result.response.outcome {
                UpdateCheck::NoUpdate => Event::NoUpdate,
                UpdateCheck::Update(info) => Event::UpdateFound {
                    target: Target {
                        version: info.version.clone(),
                        size: info.payload.size,
                    },
                },
            })
        })
    })
}

/// The Omaha server on its own runtime thread.
fn start_server() -> (
    OmahaServer,
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tx.send(OmahaServer::start().await).unwrap();
            let _ = stop_rx.await;
        });
    });
    (rx.recv().unwrap(), t, stop)
}

#[test]
fn switch_then_check_sends_the_new_track() {
    let (server, thread, stop) = start_server();
    let f = Fixture::start(Setup {
        check: Some(Box::new(omaha_check)),
        script: Vec::new(),
        ..Setup::default()
    });
    let conf = f.path("/etc/flatcar/update.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    let admin_lines = format!(
        "SERVER={}\n# keep me\nMACHINE_ALIAS=\"web 1\"\nGROUP=stable\n",
        server.update_url()
    );
    std::fs::write(&conf, &admin_lines).unwrap();

    let mut expected_tracks = Vec::new();
    for (how, channel) in [
        ("cli", "beta"),
        ("dbus", "alpha"),
        ("cli+check", "lts-2024"),
    ] {
        server.push(Reply::NoUpdate);
        match how {
            "cli" => {
                let o = output(&mut client(f.address(), &["-channel", channel]));
                assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
                assert!(
                    stderr(&o).contains(&format!("Channel set to {channel}")),
                    "{}",
                    stderr(&o)
                );
                let o = output(&mut client(f.address(), &["-check_for_update"]));
                assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            }
            "dbus" => {
                let o = output(&mut gdbus_call(
                    f.address(),
                    "org.ab_update_engine.Agent1.SetChannel",
                    &[channel],
                ));
                assert!(o.status.success(), "{}", stderr(&o));
                let o = output(&mut gdbus_call(
                    f.address(),
                    "com.coreos.update1.Manager.AttemptUpdate",
                    &[],
                ));
                assert!(o.status.success(), "{}", stderr(&o));
            }
            _ => {
                // Both in one call: the switch applies before the check.
                let o = output(&mut client(
                    f.address(),
                    &["--channel", channel, "--update"],
                ));
                assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
                assert!(stderr(&o).contains("No update available"), "{}", stderr(&o));
            }
        }
        expected_tracks.push(channel.to_string());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while server.requests().len() < expected_tracks.len()
            || f.engine.state().operation() != Operation::Idle
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no check reached the server"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&conf).unwrap();
        assert_eq!(
            text,
            admin_lines.replace("GROUP=stable", &format!("GROUP={channel}"))
        );
    }
    let tracks: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.omaha_request().client.track.clone())
        .collect();
    assert_eq!(tracks, expected_tracks);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| String::from_utf8_lossy(&r.body).contains("installsource=\"ondemandupdate\""))
    );
    drop(f);
    let _ = stop.send(());
    thread.join().unwrap();
}
