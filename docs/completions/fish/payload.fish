# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_payload_global_optspecs
    string join \n h/help V/version
end

function __fish_payload_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_payload_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_payload_using_subcommand
    set -l cmd (__fish_payload_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c payload -n "__fish_payload_needs_command" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_needs_command" -s V -l version -d 'Print version'
complete -c payload -n "__fish_payload_needs_command" -f -a "keygen" -d 'Create a key pair: OUT.key (PKCS#8 PEM, keep secret) and OUT.pub'
complete -c payload -n "__fish_payload_needs_command" -f -a "generate" -d 'Build a payload from images (full, or delta with --source)'
complete -c payload -n "__fish_payload_needs_command" -f -a "release" -d 'A release for an Omaha server: the full payload and a delta from each earlier release, and the `<package>` lines to paste'
complete -c payload -n "__fish_payload_needs_command" -f -a "sign" -d '(Re-)sign a payload with local keys'
complete -c payload -n "__fish_payload_needs_command" -f -a "hash" -d 'HSM step 1: print the digests to sign for the given signature sizes'
complete -c payload -n "__fish_payload_needs_command" -f -a "insert-signature" -d 'HSM step 2: insert raw signatures (files) over the digests of `hash`'
complete -c payload -n "__fish_payload_needs_command" -f -a "verify" -d 'Check signatures, every blob hash and the size; writes nothing'
complete -c payload -n "__fish_payload_needs_command" -f -a "inspect" -d 'Show partitions, operations, signatures and versions'
complete -c payload -n "__fish_payload_needs_command" -f -a "apply" -d 'Apply a payload (file or - for stdin) to images or devices'
complete -c payload -n "__fish_payload_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c payload -n "__fish_payload_using_subcommand keygen" -l type -d 'The key type' -r -f -a "ed25519\t''
rsa2048\t''
rsa4096\t''"
complete -c payload -n "__fish_payload_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand generate" -l target -d 'New USR image' -r -F
complete -c payload -n "__fish_payload_using_subcommand generate" -l source -d 'Old USR image: makes a delta payload' -r -F
complete -c payload -n "__fish_payload_using_subcommand generate" -l kernel -d 'Kernel image' -r -F
complete -c payload -n "__fish_payload_using_subcommand generate" -l old-kernel -d 'Old kernel image (delta)' -r -F
complete -c payload -n "__fish_payload_using_subcommand generate" -l image -d 'Extra image NAME=PATH (system extensions), repeatable' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l major -d 'Payload major version: 2 (default) or 1 (stock Flatcar, RSA only)' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l compressors -d 'Compressors to try, comma separated (xz,bzip2,zstd); default zstd (v2) or bzip2 (v1, Flatcar)' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l zstd-level -d 'zstd level when zstd is tried' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l key -d 'Signing key (repeatable). Without any, the payload is written unsigned' -r -F
complete -c payload -n "__fish_payload_using_subcommand generate" -l version -d 'The release version, e.g. 3600.0.0 (signed into the payload)' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l app-id -d 'The Omaha app id signed into the payload' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l board -d 'The board signed into the payload, e.g. amd64-usr (the agent refuses another board\'s payload)' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l channel -d 'The channel signed into the payload' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -l timestamp -d 'Build timestamp (seconds), for downgrade protection' -r
complete -c payload -n "__fish_payload_using_subcommand generate" -s o -l output -d 'Where to write the result' -r -F
complete -c payload -n "__fish_payload_using_subcommand generate" -l zstd -d 'Also try zstd (project minor version 64; AOSP tools cannot read it). zstd is already the v2 default; this adds it to --compressors / --aosp'
complete -c payload -n "__fish_payload_using_subcommand generate" -l aosp -d 'AOSP-compatible v2 payload: xz + bzip2 (minor 0 full / 4 delta) instead of the default zstd (minor 64)'
complete -c payload -n "__fish_payload_using_subcommand generate" -l thorough-diff -d 'Delta: also bsdiff changed data against the old data at the same position, not only against content-matched old blocks (slower)'
complete -c payload -n "__fish_payload_using_subcommand generate" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand release" -l target -d 'New USR image' -r -F
complete -c payload -n "__fish_payload_using_subcommand release" -l kernel -d 'New kernel image' -r -F
complete -c payload -n "__fish_payload_using_subcommand release" -l from -d 'An earlier release to make a delta from, VERSION=USR[,KERNEL] (repeatable): written as `delta-VERSION.gz`' -r
complete -c payload -n "__fish_payload_using_subcommand release" -l out -d 'Directory to write the payloads to' -r -F
complete -c payload -n "__fish_payload_using_subcommand release" -l name -d 'The full payload\'s file name' -r
complete -c payload -n "__fish_payload_using_subcommand release" -l key -d 'Signing key (repeatable; at least one)' -r -F
complete -c payload -n "__fish_payload_using_subcommand release" -l version -d 'The release version, e.g. 3600.0.0 (signed into the payload)' -r
complete -c payload -n "__fish_payload_using_subcommand release" -l app-id -d 'The Omaha app id signed into the payload' -r
complete -c payload -n "__fish_payload_using_subcommand release" -l board -d 'The board signed into the payload, e.g. amd64-usr (the agent refuses another board\'s payload)' -r
complete -c payload -n "__fish_payload_using_subcommand release" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand sign" -l key -d 'Signing key (repeatable; at least one)' -r -F
complete -c payload -n "__fish_payload_using_subcommand sign" -s o -l output -d 'Where to write the result' -r -F
complete -c payload -n "__fish_payload_using_subcommand sign" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand hash" -l sig-size -d 'Size of each signature in bytes (64 Ed25519, 256 RSA-2048, 512 RSA-4096)' -r
complete -c payload -n "__fish_payload_using_subcommand hash" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand insert-signature" -l metadata-signature -d 'Raw signature over the metadata digest, one per --sig-size, in order (v2)' -r -F
complete -c payload -n "__fish_payload_using_subcommand insert-signature" -l payload-signature -d 'Raw signature over the payload digest, one per --sig-size, in order' -r -F
complete -c payload -n "__fish_payload_using_subcommand insert-signature" -s o -l output -d 'Where to write the result' -r -F
complete -c payload -n "__fish_payload_using_subcommand insert-signature" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand verify" -l keys -d 'Directory of trusted public keys (`*.pub`, `*.pem`)' -r -F
complete -c payload -n "__fish_payload_using_subcommand verify" -l sha256 -d 'Expected SHA-256 (hex) of the whole file' -r
complete -c payload -n "__fish_payload_using_subcommand verify" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand inspect" -l keys -d 'Verify the metadata signature with this keyring' -r -F
complete -c payload -n "__fish_payload_using_subcommand inspect" -l json -d 'Print JSON'
complete -c payload -n "__fish_payload_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand apply" -l keys -d 'Directory of trusted public keys (`*.pub`, `*.pem`)' -r -F
complete -c payload -n "__fish_payload_using_subcommand apply" -l target -d 'USR target (file or block device)' -r -F
complete -c payload -n "__fish_payload_using_subcommand apply" -l source -d 'Old USR slot, for delta payloads' -r -F
complete -c payload -n "__fish_payload_using_subcommand apply" -l kernel -d 'Kernel target file (truncated to the kernel\'s size)' -r -F
complete -c payload -n "__fish_payload_using_subcommand apply" -l partition -d 'Other partitions NAME=PATH, repeatable' -r
complete -c payload -n "__fish_payload_using_subcommand apply" -l sha256 -d 'Expected SHA-256 (hex) of the whole file' -r
complete -c payload -n "__fish_payload_using_subcommand apply" -l checkpoint -d 'Write a JSON checkpoint here after every operation' -r -F
complete -c payload -n "__fish_payload_using_subcommand apply" -l skip-missing -d 'Verify but do not write partitions that have no target'
complete -c payload -n "__fish_payload_using_subcommand apply" -l no-progress -d 'No progress bar'
complete -c payload -n "__fish_payload_using_subcommand apply" -s h -l help -d 'Print help'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "keygen" -d 'Create a key pair: OUT.key (PKCS#8 PEM, keep secret) and OUT.pub'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "generate" -d 'Build a payload from images (full, or delta with --source)'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "release" -d 'A release for an Omaha server: the full payload and a delta from each earlier release, and the `<package>` lines to paste'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "sign" -d '(Re-)sign a payload with local keys'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "hash" -d 'HSM step 1: print the digests to sign for the given signature sizes'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "insert-signature" -d 'HSM step 2: insert raw signatures (files) over the digests of `hash`'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "verify" -d 'Check signatures, every blob hash and the size; writes nothing'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "inspect" -d 'Show partitions, operations, signatures and versions'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "apply" -d 'Apply a payload (file or - for stdin) to images or devices'
complete -c payload -n "__fish_payload_using_subcommand help; and not __fish_seen_subcommand_from keygen generate release sign hash insert-signature verify inspect apply help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
