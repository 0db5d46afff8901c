# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_locksmithctl_global_optspecs
    string join \n root= endpoint= etcd-cafile= etcd-certfile= etcd-keyfile= etcd-username= etcd-password= group= h/help V/version
end

function __fish_locksmithctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_locksmithctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_locksmithctl_using_subcommand
    set -l cmd (__fish_locksmithctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l root -d 'Root directory for update.conf and machine-id' -r -F
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l endpoint -d 'etcd endpoints, comma-separated' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l etcd-cafile -d 'CA certificate file for etcd\'s TLS (update.conf: LOCKSMITHD_ETCD_CAFILE)' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l etcd-certfile -d 'Client certificate file for etcd (LOCKSMITHD_ETCD_CERTFILE)' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l etcd-keyfile -d 'Client key file for etcd (LOCKSMITHD_ETCD_KEYFILE)' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l etcd-username -d 'etcd user name (LOCKSMITHD_ETCD_USERNAME)' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l etcd-password -d 'etcd password (LOCKSMITHD_ETCD_PASSWORD)' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -l group -d 'Reboot group (a separate semaphore)' -r
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -s h -l help -d 'Print help'
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -s V -l version -d 'Print version'
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -f -a "status" -d 'Show free slots, max and the holders'
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -f -a "lock" -d 'Take a slot for this machine (or ID)'
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -f -a "unlock" -d 'Release the slot of this machine or of ID (force-release a dead holder)'
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -f -a "set-max" -d 'Set the number of nodes that may reboot at once'
complete -c locksmithctl -n "__fish_locksmithctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand lock" -s h -l help -d 'Print help'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand unlock" -s h -l help -d 'Print help'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand set-max" -s h -l help -d 'Print help'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand help; and not __fish_seen_subcommand_from status lock unlock set-max help" -f -a "status" -d 'Show free slots, max and the holders'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand help; and not __fish_seen_subcommand_from status lock unlock set-max help" -f -a "lock" -d 'Take a slot for this machine (or ID)'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand help; and not __fish_seen_subcommand_from status lock unlock set-max help" -f -a "unlock" -d 'Release the slot of this machine or of ID (force-release a dead holder)'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand help; and not __fish_seen_subcommand_from status lock unlock set-max help" -f -a "set-max" -d 'Set the number of nodes that may reboot at once'
complete -c locksmithctl -n "__fish_locksmithctl_using_subcommand help; and not __fish_seen_subcommand_from status lock unlock set-max help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
