//! The update check as the daemon executes it: reload what may have
//! changed, read the prefs, POST, then apply what [`crate::decide`]
//! decided. Every step that fails ends in one `Failed` event.

use std::time::SystemTime;

use omaha::{EventErrorCode, InstallSource, Request, UpdateCheck, UpdateInfo};

use super::{Daemon, LastError, Pending};
use crate::config::NodeIdentity;
use crate::config::settings::Settings;
use crate::decide::{self, BootRecord, Offer};
use crate::denylist::DenyList;
use crate::fsm::Event;
use crate::install::{INSTALLED_BOOT_ID_PREF, INSTALLED_VERSION_PREF};
use crate::metrics::CheckResult as Checked;
use crate::omaha_client::{CheckResult, ClientOptions, OmahaClient};
use crate::prefs::{self, Prefs};

impl Daemon {
    /// One update check; returns `NoUpdate`, `UpdateFound` or `Failed`,
    /// and counts it in the metrics.
    pub(super) async fn check(&mut self, interactive: bool) -> Event {
        let (event, result) = self.check_server(interactive).await;
        let now = crate::fsutil::unix_now();
        self.handle.metrics().check_done(result, now);
        event
    }

    /// The check and how it ended for the metrics.
    async fn check_server(&mut self, interactive: bool) -> (Event, Checked) {
        let (identity, prefs) = match self.reload() {
            Ok(loaded) => loaded,
            Err(event) => return (event, Checked::Failed),
        };
        let disabled = identity.config.updates_disabled();
        self.handle.metrics().set_updates_disabled(disabled);
        // update_engine fails every scheduled check of a node with
        // SERVER=disabled and reports an error each time; the admin meant
        // "no updates", so only an explicit check says it is an error.
        if disabled && !interactive {
            tracing::info!("updates are disabled (SERVER=disabled); skipping the scheduled check");
            return (Event::NoUpdate, Checked::Disabled);
        }
        let previous = prefs.get(prefs::PREVIOUS_VERSION).ok().flatten();
        self.note_rollback(&prefs, &identity, previous.as_deref());
        let source = if interactive {
            InstallSource::OnDemandUpdate
        } else {
            InstallSource::Scheduler
        };
        let request =
            Request::update_check(self.client_info(&identity), source, previous.as_deref());
        // update_engine clears the pref once its event is built, so the
        // 3/2 (or rollback) event goes out once.
        if previous.as_deref() != Some("") {
            let _ = prefs.set(prefs::PREVIOUS_VERSION, "");
        }
        let result = match self.post_check(&identity, &request).await {
            Ok(r) => r,
            Err(event) => return (event, Checked::Failed),
        };
        self.poll_interval = result.response.poll_interval;
        let c = &identity.config;
        match result.response.outcome {
            UpdateCheck::NoUpdate => (Event::NoUpdate, Checked::NoUpdate),
            UpdateCheck::Update(info) => {
                match self.take_offer(&prefs, (c.version(), c.board()), *info, result.body) {
                    e @ Event::UpdateFound { .. } => (e, Checked::UpdateAvailable),
                    e => (e, Checked::Refused),
                }
            }
        }
    }

    /// Settings and node identity, read fresh for each check (an admin may
    /// have changed them).
    fn reload(&mut self) -> Result<(NodeIdentity, Prefs), Event> {
        let generic = EventErrorCode::new(omaha::ErrorCode::OmahaRequestError, self.flags);
        match Settings::load_with(&self.root, self.config_file.as_deref()) {
            Ok(s) => self.settings = s,
            Err(e) => return Err(self.fail(generic, e.error_kind(), &e)),
        }
        let prefs = self.settings.prefs(&self.root);
        let mut identity = NodeIdentity::load(&self.root, &prefs)
            .map_err(|e| self.fail(generic, e.error_kind(), &e))?;
        if let Err(e) = identity.ensure_aleph_version(&prefs) {
            tracing::warn!("cannot record aleph-version: {}", crate::error_chain(&e));
        }
        self.flags = identity.error_flags();
        let c = &identity.config;
        self.handle
            .metrics()
            .set_build_info(c.version(), c.board(), c.group());
        self.identity = Some(identity.clone());
        Ok((identity, prefs))
    }

    async fn post_check(
        &mut self,
        identity: &NodeIdentity,
        request: &Request,
    ) -> Result<CheckResult, Event> {
        let opts = ClientOptions::from_settings(&self.settings, &self.root);
        let client = OmahaClient::new(identity.config.server(), &opts)
            .map_err(|e| self.fail(e.event_error_code(self.flags), e.error_kind(), &e))?;
        match client.check(request).await {
            Ok(r) => {
                self.last_http_status = None;
                self.note_checked();
                Ok(r)
            }
            Err(e) => {
                self.last_http_status = e.http_status();
                Err(self.fail(e.event_error_code(self.flags), e.error_kind(), &e))
            }
        }
    }

    /// `last_checked_time`: the last successful check (update_engine's
    /// meaning), kept in the prefs so it survives a restart (update_engine
    /// starts from 0).
    fn note_checked(&self) {
        let now = crate::fsutil::unix_now() as i64;
        self.handle.set_last_checked(now);
        let prefs = self.settings.prefs(&self.root);
        if let Err(e) = prefs.set_i64(crate::prefs::LAST_CHECKED_TIME, now) {
            tracing::warn!("cannot record the check time: {e}");
        }
    }

    /// Runs [`decide::decide_offer`] on the offer and executes the verdict.
    fn take_offer(
        &mut self,
        prefs: &Prefs,
        (running, board): (&str, &str),
        info: UpdateInfo,
        body: Vec<u8>,
    ) -> Event {
        let deny = DenyList::in_dir(&self.root.join(&self.settings.state_dir));
        let entries = deny.entries().map_err(|e| {
            let e = crate::error_chain(&e);
            tracing::warn!("deny list unreadable, refusing updates: {e}");
            e
        });
        let denied = match &entries {
            Ok(list) => Ok(list.iter().find(|d| d.version == info.version)),
            Err(why) => Err(why.as_str()),
        };
        let server_https = self
            .identity
            .as_ref()
            .is_some_and(|i| i.config.server().starts_with("https://"));
        let verdict = decide::decide_offer(Offer {
            info: &info,
            server_https,
            running,
            board,
            denied,
            allow_downgrade: self.settings.allow_downgrade,
            payload_state: prefs.load_payload_state(),
            schedule: &self.settings.schedule,
            now: SystemTime::now(),
        });
        if let Some(state) = &verdict.save
            && let Err(e) = prefs.save_payload_state(state)
        {
            tracing::warn!("cannot save the payload state: {}", crate::error_chain(&e));
        }
        match verdict.result {
            Ok(accepted) => {
                self.payload_state = verdict.save.map(|s| (s, accepted.backoff_applies));
                self.pending = Some(Pending { info, body });
                Event::UpdateFound {
                    target: accepted.target,
                }
            }
            Err(refusal) => {
                let code = EventErrorCode::new(refusal.error_code(), self.flags);
                self.fail(code, refusal.error_kind(), &refusal)
            }
        }
    }

    /// A rollback ([`decide::rolled_back_from`]) deny-lists the version
    /// that failed, so it is not installed again (Flatcar#1924); the
    /// record of the staged update is then spent either way.
    fn note_rollback(&self, prefs: &Prefs, identity: &NodeIdentity, previous: Option<&str>) {
        if previous.is_none_or(str::is_empty) {
            return;
        }
        let installed = prefs.get(INSTALLED_VERSION_PREF).ok().flatten();
        let staged_on = prefs.get(INSTALLED_BOOT_ID_PREF).ok().flatten();
        let boot_id = identity.boot_id.to_string();
        let running = identity.config.version();
        let record = BootRecord {
            running,
            previous_version: previous,
            installed: installed.as_deref(),
            installed_boot_id: staged_on.as_deref(),
            boot_id: &boot_id,
        };
        if let Some(bad) = decide::rolled_back_from(record) {
            let deny = DenyList::in_dir(&self.root.join(&self.settings.state_dir));
            let reason = format!("rolled back: {running} booted again after installing {bad}");
            match deny.add(&bad, &reason, crate::fsutil::unix_now()) {
                Ok(()) => tracing::warn!("deny-listed {bad}: {reason}"),
                Err(e) => tracing::error!("cannot deny-list {bad}: {e}"),
            }
        }
        let _ = prefs.delete(INSTALLED_VERSION_PREF);
        let _ = prefs.delete(INSTALLED_BOOT_ID_PREF);
    }

    /// Records `e` as the last error and returns the `Failed` event.
    pub(super) fn fail(
        &self,
        code: EventErrorCode,
        kind: &str,
        e: &dyn std::error::Error,
    ) -> Event {
        self.handle.set_error(LastError {
            code: code.to_u32(),
            kind: kind.into(),
            message: crate::error_chain(e),
        });
        Event::Failed { code }
    }
}
