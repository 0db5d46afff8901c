//! Starting the install pipeline on a blocking thread and folding its
//! progress and verdict back into the daemon's queue; the payload state
//! (update_engine's URL rotation and backoff) moves with the verdict.

use std::time::SystemTime;

use omaha::EventErrorCode;
use rand::rngs::StdRng;

use super::{Daemon, InstallMsg, LastError};
use crate::config::settings::Settings;
use crate::http::{self, HttpOptions};
use crate::install::{self, InstallJob};
use crate::schedule::PayloadState;

impl Daemon {
    /// The job for the accepted update, or why there is none.
    fn install_job(&self) -> Option<InstallJob> {
        let pending = self.pending.clone()?;
        let config = self.identity.as_ref().map(|i| &i.config);
        let mut info = pending.info;
        // The downloader always starts at `urls[0]` and falls back in order,
        // so rotating the list is how a restart resumes at the URL the
        // payload state reached.
        if let Some((state, _)) = &self.payload_state
            && !info.urls.is_empty()
        {
            let n = state.url_index % info.urls.len();
            info.urls.rotate_left(n);
        }
        Some(InstallJob {
            root: self.root.clone(),
            settings: self.settings.clone(),
            info,
            response_body: pending.body,
            running_version: config.map(|c| c.version().to_string()).unwrap_or_default(),
            board: config.map(|c| c.board().to_string()).unwrap_or_default(),
            boot_id: self
                .identity
                .as_ref()
                .map(|i| i.boot_id.to_string())
                .unwrap_or_default(),
            credentials: config
                .and_then(|c| c.download_credentials())
                .map(|(u, p)| (u.to_string(), p.to_string())),
            error_flags: self.flags,
        })
    }

    /// Runs [`install::run`] on a blocking thread; its events and verdict
    /// come back as [`InstallMsg`]s.
    pub(super) fn start_install(&mut self) {
        let Some(job) = self.install_job() else {
            let code = EventErrorCode::new(omaha::ErrorCode::Error, self.flags);
            let e = std::io::Error::other("install started without an update");
            let event = self.fail(code, "internal", &e);
            self.queue.push_back(event);
            return;
        };
        let client = match http::build_client(&HttpOptions {
            ca_bundle: self.settings.ca_bundle.as_ref().map(|p| self.root.join(p)),
            connect_timeout: self.settings.connect_timeout,
            request_timeout: None,
            // decide_offer refused http payload URLs of an https server;
            // this also keeps a redirect from downgrading (see http.rs).
            https_only: self
                .identity
                .as_ref()
                .is_some_and(|i| i.config.server().starts_with("https://")),
        }) {
            Ok(c) => c,
            Err(e) => {
                let code = EventErrorCode::new(omaha::ErrorCode::DownloadTransferError, self.flags);
                let event = self.fail(code, "http_setup", &e);
                self.queue.push_back(event);
                return;
            }
        };
        let net = install::Net {
            rt: tokio::runtime::Handle::current(),
            client,
            cancel: self.handle.new_cancel_flag(),
            metrics: self.handle.metrics(),
        };
        let tx = self.install_tx.clone();
        let handle = self.handle.clone();
        let flags = self.flags;
        self.installing = true;
        tokio::task::spawn_blocking(move || {
            // Progress goes straight into the daemon's queue, ahead of the
            // verdict below.
            let report = |ev| {
                let _ = tx.send(InstallMsg::Event(ev));
            };
            let started = std::time::Instant::now();
            let done = install::run(&job, &net, &report);
            let secs = started.elapsed().as_secs_f64();
            net.metrics.install_done(done.is_ok(), secs);
            let done = done
                .map(|plan| {
                    let (v, t) = (&job.info.version, plan.target);
                    tracing::info!("{v} staged in {t}; reboot to use it");
                })
                .map_err(|e| {
                    let code = EventErrorCode::new(e.error_code(), flags);
                    handle.set_error(LastError {
                        code: code.to_u32(),
                        kind: e.error_kind().into(),
                        message: crate::error_chain(&e),
                    });
                    (code, e.counts_against_payload())
                });
            let _ = tx.send(InstallMsg::Done(done));
        });
    }

    /// Updates the pending payload's state with `f` and saves it.
    fn update_payload_state(
        &mut self,
        f: impl FnOnce(&mut PayloadState, &omaha::UpdateInfo, bool, &mut StdRng, &Settings),
    ) {
        let (Some((state, backoff)), Some(pending)) = (&mut self.payload_state, &self.pending)
        else {
            return;
        };
        f(
            state,
            &pending.info,
            *backoff,
            &mut self.rng,
            &self.settings,
        );
        tracing::debug!(
            "payload state: attempt {}, URL {} ({} failures), backoff until {:?}",
            state.attempt_number,
            state.url_index,
            state.url_failure_count,
            state.backoff_expiry
        );
        if let Err(e) = self.settings.prefs(&self.root).save_payload_state(state) {
            tracing::warn!("cannot save the payload state: {}", crate::error_chain(&e));
        }
    }

    pub(super) fn note_download_complete(&mut self) {
        self.update_payload_state(|state, _, backoff, rng, settings| {
            state.on_download_complete(&settings.schedule, backoff, SystemTime::now(), rng)
        });
    }

    pub(super) fn note_install_failure(&mut self, code: EventErrorCode) {
        let omaha::BaseCode::Known(code) = code.base else {
            return;
        };
        self.update_payload_state(|state, info, backoff, rng, settings| {
            state.on_failure(
                code,
                info,
                &settings.schedule,
                backoff,
                SystemTime::now(),
                rng,
            )
        });
    }

    /// `ResetStatus` on a staged update: [`install::revert_staged`].
    pub(super) fn revert_slot_switch(&self) {
        if let Err(e) = install::revert_staged(&self.root, &self.settings, "") {
            tracing::error!(
                "cannot revert the staged update: {}",
                crate::error_chain(&e)
            );
        }
    }
}
