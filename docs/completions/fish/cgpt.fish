# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cgpt_global_optspecs
    string join \n
end

function __fish_cgpt_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cgpt_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cgpt_using_subcommand
    set -l cmd (__fish_cgpt_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "create" -d 'Create or reset GPT headers and tables'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "add" -d 'Add, edit or remove a partition entry'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "boot" -d 'Edit the PMBR sector for legacy BIOSes'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "show" -d 'Show partition table and entries'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "repair" -d 'Repair damaged GPT headers and tables'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "find" -d 'Locate a partition by its GUID'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "prioritize" -d 'Reorder the priority of all USR (or kernel) partitions'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "legacy" -d 'Switch between GPT and Legacy GPT'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "next" -d 'Choose the next USR partition to boot, as GRUB\'s gptprio.next'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "resize" -d 'Grow a partition into free space (after the disk grew)'
complete -c cgpt -n "__fish_cgpt_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cgpt -n "__fish_cgpt_using_subcommand create" -s p -d 'Size (in blocks) of the disk to pad between the primary GPT header and its entries, default 0' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand create" -s z -d 'Zero the sectors of the GPT table and entries'
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s i -d 'Specify partition (default is next available)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s b -d 'First block (a.k.a. start of partition)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s s -d 'Size (in blocks)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s t -d 'Partition Type GUID' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s u -d 'Partition Unique ID' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s l -d 'Label' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s S -d 'set Successful flag (0|1)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s T -d 'set Tries flag (0-15)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s P -d 'set Priority flag (0-15)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s R -d 'set Required flag (0|1)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s B -d 'set Legacy Boot flag (0|1)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand add" -s A -d 'set raw 16-bit attribute value (bits 48-63)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand boot" -s i -d 'Set bootable partition' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand boot" -s b -d 'Install bootloader code in the PMBR' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand boot" -s p -d 'Create legacy PMBR partition table'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s i -d 'Show specified partition only, with format:' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s n -d 'Numeric output only.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s v -d 'Verbose output.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s q -d 'Quick output.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s b -d 'With -i: print only the beginning sector.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s s -d 'With -i: print only the partition size (in sectors).'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s t -d 'With -i: print only the type GUID.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s u -d 'With -i: print only the unique GUID.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s l -d 'With -i: print only the label.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s S -d 'With -i: print only the Successful flag.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s T -d 'With -i: print only the Tries flag.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s P -d 'With -i: print only the Priority flag.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s R -d 'With -i: print only the Required flag.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s B -d 'With -i: print only the Legacy Boot flag.'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s A -d 'With -i: print only the raw 16-bit attribute value (bits 48-63).'
complete -c cgpt -n "__fish_cgpt_using_subcommand show" -s d -d 'Debug output (including invalid headers)'
complete -c cgpt -n "__fish_cgpt_using_subcommand repair" -s v -d 'Verbose'
complete -c cgpt -n "__fish_cgpt_using_subcommand find" -s t -d 'Search for partitions of this type (or alias)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand find" -s u -d 'Search for a partition with this unique ID' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand find" -s l -d 'Search for a label' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand find" -s n -d 'Print only the partition number'
complete -c cgpt -n "__fish_cgpt_using_subcommand find" -s 1 -d 'Fail unless there is exactly one match'
complete -c cgpt -n "__fish_cgpt_using_subcommand find" -s v -d 'Be verbose'
complete -c cgpt -n "__fish_cgpt_using_subcommand prioritize" -s i -d 'Highest priority to partition NUM (default none)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand prioritize" -s P -d 'Highest priority value to use (default: number of groups)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand prioritize" -s f -d 'Friends of the -i partition get the same priority'
complete -c cgpt -n "__fish_cgpt_using_subcommand legacy" -s e -d 'Switch GPT header signature back to "EFI PART"'
complete -c cgpt -n "__fish_cgpt_using_subcommand legacy" -s p -d 'Switch primary GPT header signature to "IGNOREME"'
complete -c cgpt -n "__fish_cgpt_using_subcommand resize" -s m -d 'Do nothing unless partition can grow by NUM bytes' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand resize" -s i -d 'Partition number (for disk images)' -r
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "create" -d 'Create or reset GPT headers and tables'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "add" -d 'Add, edit or remove a partition entry'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "boot" -d 'Edit the PMBR sector for legacy BIOSes'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "show" -d 'Show partition table and entries'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "repair" -d 'Repair damaged GPT headers and tables'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "find" -d 'Locate a partition by its GUID'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "prioritize" -d 'Reorder the priority of all USR (or kernel) partitions'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "legacy" -d 'Switch between GPT and Legacy GPT'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "next" -d 'Choose the next USR partition to boot, as GRUB\'s gptprio.next'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "resize" -d 'Grow a partition into free space (after the disk grew)'
complete -c cgpt -n "__fish_cgpt_using_subcommand help; and not __fish_seen_subcommand_from create add boot show repair find prioritize legacy next resize help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
