# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_update_agent_global_optspecs
    string join \n root= config= once bus-address= no-dbus metrics-socket= no-metrics h/help V/version
end

function __fish_update_agent_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_update_agent_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_update_agent_using_subcommand
    set -l cmd (__fish_update_agent_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c update-agent -n "__fish_update_agent_needs_command" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_needs_command" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_needs_command" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_needs_command" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_needs_command" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_needs_command" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_needs_command" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_needs_command" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_needs_command" -s V -l version -d 'Print version'
complete -c update-agent -n "__fish_update_agent_needs_command" -f -a "daemon" -d 'Run the daemon (the default)'
complete -c update-agent -n "__fish_update_agent_needs_command" -f -a "health-gate" -d 'Run the post-boot health gate once: bless the booted slot, or mark it bad and reboot into the previous one (exit 0: slot good, 1: failed)'
complete -c update-agent -n "__fish_update_agent_needs_command" -f -a "config" -d 'Inspect the configuration without starting anything'
complete -c update-agent -n "__fish_update_agent_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_using_subcommand daemon" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_using_subcommand health-gate" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -f -a "show" -d 'Print every setting\'s merged value and the file it came from (or "default")'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -f -a "check" -d 'Validate every settings file and update.conf (exit 0 ok, 1 with the file and key at fault)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -f -a "reference" -d 'Print the configuration reference (docs/configuration.md)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and not __fish_seen_subcommand_from show check reference help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l json -d 'Print JSON: {"files": [...], "keys": [{"key", "value", "origin"}]}'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l root -d 'Directory that stands for `/` (tests and the demo use a tempdir)' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l config -d 'Extra TOML settings file (host path), applied last' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l bus-address -d 'Serve D-Bus on this bus address instead of the system bus (tests)' -r
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root), instead of the setting `metrics.socket`' -r -F
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l once -d 'Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l no-dbus -d 'Do not serve D-Bus (nodes or tests without a bus)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -l no-metrics -d 'Do not serve metrics, whatever `metrics.enabled` says'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from reference" -s h -l help -d 'Print help'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print every setting\'s merged value and the file it came from (or "default")'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate every settings file and update.conf (exit 0 ok, 1 with the file and key at fault)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "reference" -d 'Print the configuration reference (docs/configuration.md)'
complete -c update-agent -n "__fish_update_agent_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and not __fish_seen_subcommand_from daemon health-gate config help" -f -a "daemon" -d 'Run the daemon (the default)'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and not __fish_seen_subcommand_from daemon health-gate config help" -f -a "health-gate" -d 'Run the post-boot health gate once: bless the booted slot, or mark it bad and reboot into the previous one (exit 0: slot good, 1: failed)'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and not __fish_seen_subcommand_from daemon health-gate config help" -f -a "config" -d 'Inspect the configuration without starting anything'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and not __fish_seen_subcommand_from daemon health-gate config help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print every setting\'s merged value and the file it came from (or "default")'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Validate every settings file and update.conf (exit 0 ok, 1 with the file and key at fault)'
complete -c update-agent -n "__fish_update_agent_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "reference" -d 'Print the configuration reference (docs/configuration.md)'
