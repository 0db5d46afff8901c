complete -c update-coordinator -l root -d 'Root directory for every path read or written (tests use a temporary directory)' -r -F
complete -c update-coordinator -l metrics-socket -d 'Serve Prometheus metrics on this unix socket (a node path, under --root)' -r -F
complete -c update-coordinator -l no-metrics -d 'Do not serve metrics'
complete -c update-coordinator -s h -l help -d 'Print help'
complete -c update-coordinator -s V -l version -d 'Print version'
