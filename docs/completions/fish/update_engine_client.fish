complete -c update_engine_client -l channel -d 'Switch the release channel (GROUP in /etc/flatcar/update.conf); may be combined with an action, which then runs after it.' -r
complete -c update_engine_client -l undeny -d 'Allow VERSION again (remove it from the deny list).' -r
complete -c update_engine_client -l reset_status -d 'Forget an update waiting for reboot; the next boot stays on the current slot.'
complete -c update_engine_client -l status -d 'Print the status as five KEY=VALUE lines.'
complete -c update_engine_client -l check_for_update -d 'Ask for an update check and return at once.'
complete -c update_engine_client -l update -d 'Check, wait for the update to finish, printing the status every 5 s (a progress bar on a terminal). Exit status is 0 if the update succeeded or there was none, and 1 if it failed.'
complete -c update_engine_client -l watch_for_updates -d 'Log every StatusUpdate signal to stderr; never returns.'
complete -c update_engine_client -l json -d 'Print the status as JSON (alone, or with -status/-deny_list).'
complete -c update_engine_client -l rollback -d 'Boot the previous slot next (once; falls back if it fails).'
complete -c update_engine_client -l cancel -d 'Stop a running update check or download.'
complete -c update_engine_client -l deny_list -d 'Print the versions that will never be installed.'
complete -c update_engine_client -l clear_deny_list -d 'Empty the deny list.'
complete -c update_engine_client -l help -d 'Print this help.'
complete -c update_engine_client -l version -d 'Print the version.'
