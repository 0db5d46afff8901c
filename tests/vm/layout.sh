# Shared by build-images.sh and run.sh: the disk layout, the releases, and
# partition offsets read back with sgdisk.
# shellcheck shell=bash

V_A=1000.0.0           # on USR-A at first boot
V_B=1001.0.0           # a good update
V_HEALTH_FAIL=1002.0.0 # its required health check fails
V_BOOT_FAIL=1003.0.0   # its kernel carries a wrong root hash: the initrd panics

DISK_GUID=00000000-0000-4000-8000-00000000d15c
USR_A_UUID=7130c94a-213a-4e5a-8e26-6cce9662f132
USR_B_UUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c
ESP_MIB=48
USR_MIB=320
USR_FS_MIB=300
OEM_MIB=16
DISK_MIB=1024

partition_offset() { # DISK N -> first byte
	echo $(($(sgdisk -i "$2" "$1" | awk '/^First sector/{print $3}') * 512))
}

partition_bytes() { # DISK N
	local first last
	first=$(sgdisk -i "$2" "$1" | awk '/^First sector/{print $3}')
	last=$(sgdisk -i "$2" "$1" | awk '/^Last sector/{print $3}')
	echo $(((last - first + 1) * 512))
}

put_partition() { # DISK N IMAGE: writes IMAGE at the partition's start
	local size
	size=$(stat -c %s "$3")
	if ((size > $(partition_bytes "$1" "$2"))); then
		echo "layout: $3 ($size bytes) does not fit partition $2" >&2
		return 1
	fi
	dd if="$3" of="$1" bs=1M seek="$(($(partition_offset "$1" "$2") / 1048576))" \
		conv=notrunc,sparse status=none
}
