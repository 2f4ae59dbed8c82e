#!/usr/bin/env bash
# Installs ledge on a gateway: the binary, the config and the files it names
# (function modules, replay data, certificates), the hardened systemd unit,
# the `ledge` service user and its data dir. Over SSH, or into the root file
# system of an SD card mounted on this machine.
#
#   ./flash.sh --board rpi4 --host pi@gateway            # over SSH, sudo on the host
#   ./flash.sh --board rpi4 --root /media/$USER/rootfs   # an SD card's root partition
#   ./flash.sh --host pi@gateway --rollback              # back to the previous binary
#
# It checks before it writes: the binary's architecture against the board
# (and over SSH against the host's `uname -m`), `ledge check` on the config,
# free space on the target. Each file is written under a temporary name, its
# sha256 compared with the local one, then renamed into place. A replaced
# binary is kept as /usr/local/bin/ledge.previous (`--rollback` swaps it
# back). Whatever is already as it should be is left alone and reported as
# unchanged, so a second identical run changes nothing. docs/install.md
# explains what goes where and why.
#
# Over SSH the script stages everything here, streams it to a temporary
# directory on the host with the script itself, and runs the install step
# there (`--apply-staged`), so both modes share one implementation.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$here

# Where things go on the target (relative to its root).
readonly BIN=usr/local/bin/ledge
readonly ETC=etc/ledge
readonly UNIT_DIR=etc/systemd/system
readonly UNIT=$UNIT_DIR/ledge.service
readonly DROPIN_DIR=$UNIT_DIR/ledge.service.d
readonly WANTS=$UNIT_DIR/multi-user.target.wants/ledge.service
readonly DEFAULT_DATA_DIR=/var/lib/ledge
# Groups that own the GPIO chips and I2C buses on Raspberry Pi OS; the unit
# lists them in SupplementaryGroups=, so they must exist.
readonly DEVICE_GROUPS=(gpio i2c)
# Config keys whose values are files ledge reads (docs/config.md); relative
# ones are copied next to the installed config.
readonly FILE_KEYS='module|file|ca_file|cert_file|key_file|password_file'

usage() {
    cat <<'EOF'
usage: ./flash.sh --board BOARD (--host [USER@]HOST | --root DIR) [options]
       ./flash.sh (--host [USER@]HOST | --root DIR) --rollback [options]

Installs ledge on a gateway over SSH (--host) or into a mounted root file
system such as an SD card's (--root).

Target (exactly one):
  --host [USER@]HOST  install over SSH. USER needs passwordless sudo unless it
                      is root. Runs systemctl daemon-reload, enable and
                      (re)start there.
  --root DIR          install into the root file system mounted at DIR (an SD
                      card's second partition). Never calls systemctl: the
                      unit is enabled with the multi-user.target.wants link.

What to install:
  --board BOARD       board profile from boards/BOARD.toml: its target triple
                      picks the default binary and the expected architecture.
  --binary PATH       the ledge binary (default: target/<triple>/release/ledge,
                      what `cross/build.sh BOARD` builds).
  --config FILE       the config to install as /etc/ledge/ledge.toml (default:
                      examples/quickstart/ledge.toml). Files it names with
                      module/file/ca_file/cert_file/key_file/password_file
                      are copied next to it and the paths rewritten.
  --force-config      replace an existing /etc/ledge/ledge.toml (by default an
                      existing one is kept; the modules are still updated).

How:
  --dry-run           print every action and change nothing.
  --rollback          swap /usr/local/bin/ledge and ledge.previous (kept by
                      the last upgrade) and restart; --board is not needed.
  --ssh-port PORT     SSH port (default 22).
  --ssh-opt OPTION    extra ssh option, passed as `-o OPTION`; repeatable
                      (e.g. --ssh-opt IdentityFile=~/.ssh/gateway).
  --remote-root DIR   with --host: install under DIR on the host instead of
                      its /, as --root does (no systemctl). For tests and for
                      preparing an image on the host.
  --live              with --root: the root is the running system, so run
                      systemctl as --host does (`--root / --live` installs on
                      this machine).
  -h, --help          this help.

Internal (flash.sh runs itself on the host with it over SSH):
  --apply-staged DIR  install the files staged in DIR (a manifest and a tree)
                      into --root; with --rollback, DIR is ignored.

Environment:
  CARGO_TARGET_DIR    where the default binary is looked for (default target/).
  LEDGE_FLASH_USERS   how accounts are created in a root other than /: `tools`
                      (useradd/groupadd/usermod --root, needs root) or `files`
                      (edit etc/passwd, group, shadow, gshadow directly).
                      Default: tools when root and useradd exists, else files.
                      On / (a live host) always the tools.

Examples:
  cross/build.sh rpi4 && ./flash.sh --board rpi4 --host pi@gateway --config site.toml
  ./flash.sh --board rpi4 --root /media/$USER/rootfs --dry-run
EOF
}

# ---------------------------------------------------------------------------
# Output

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
# die LINE...: an error, one argument per line, then exit 1.
die() {
    printf 'error: %s\n' "$1" >&2
    shift
    if [[ $# -gt 0 ]]; then
        printf '       %s\n' "$@" >&2
    fi
    exit 1
}
usage_error() {
    printf 'error: %s\n' "$1" >&2
    echo "run ./flash.sh --help for the options" >&2
    exit 2
}

# Number of changes made (or, with --dry-run, that would be made).
changes=0
# report VERB PATH [DETAIL]: one aligned line per action.
report() {
    local verb=$1
    if [[ $dry_run == 1 ]]; then
        case $verb in
            unchanged | kept | check) ;;
            replaced | removed | enabled | created) verb="would ${verb%d}" ;;
            installed | started | fixed | restarted) verb="would ${verb%ed}" ;;
            "rolled back") verb="would roll back" ;;
            *) verb="would $verb" ;;
        esac
    fi
    printf '%-17s %s%s\n' "$verb" "$2" "${3:+  ($3)}"
}
changed() {
    changes=$((changes + 1))
    report "$@"
}

human_size() {
    local bytes=$1
    if ((bytes >= 1048576)); then
        printf '%d.%d MiB' $((bytes / 1048576)) $((bytes % 1048576 * 10 / 1048576))
    elif ((bytes >= 1024)); then
        printf '%d KiB' $((bytes / 1024))
    else
        printf '%d B' "$bytes"
    fi
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------------------
# Arguments

board=
host=
root=
ssh_port=22
ssh_opts=()
remote_root=
binary=
config=
force_config=0
dry_run=0
rollback=0
apply_stage=
live=0

# need_value OPTION ARGS...: a usage error unless the option has a value.
need_value() {
    [[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a value"
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --board | --host | --root | --ssh-port | --ssh-opt | --remote-root | --binary | --config | --apply-staged)
                need_value "$@"
                ;;
        esac
        case $1 in
            --board) board=$2 && shift ;;
            --host) host=$2 && shift ;;
            --root) root=$2 && shift ;;
            --ssh-port) ssh_port=$2 && shift ;;
            --ssh-opt) ssh_opts+=(-o "$2") && shift ;;
            --remote-root) remote_root=$2 && shift ;;
            --binary) binary=$2 && shift ;;
            --config) config=$2 && shift ;;
            --force-config) force_config=1 ;;
            --dry-run) dry_run=1 ;;
            --rollback) rollback=1 ;;
            --apply-staged) apply_stage=$2 && shift ;;
            --live) live=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) usage_error "unknown option '$1'" ;;
        esac
        shift
    done
}

# ---------------------------------------------------------------------------
# Boards and architectures

known_boards() {
    local file names=()
    for file in "$repo"/boards/*.toml; do
        names+=("$(basename "$file" .toml)")
    done
    printf '%s' "${names[*]}"
}

# toml_string FILE KEY: the first top-level `KEY = "value"` in FILE.
toml_string() {
    sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n 1
}

# The architecture a target triple runs on, in `uname -m` terms.
triple_arch() {
    case $1 in
        aarch64-*) echo aarch64 ;;
        x86_64-*) echo x86_64 ;;
        arm* | thumb*) echo arm ;;
        *) return 1 ;;
    esac
}

# The architecture of an ELF file from its e_machine field (little endian).
elf_arch() {
    local magic machine
    magic=$(od -An -t x1 -N 4 "$1" | tr -d ' \n')
    if [[ $magic != 7f454c46 ]]; then
        echo "not an ELF executable"
        return
    fi
    machine=$(od -An -t u2 -j 18 -N 2 "$1" | tr -d ' \n')
    case $machine in
        183) echo aarch64 ;;
        40) echo arm ;;
        62) echo x86_64 ;;
        *) echo "ELF machine $machine" ;;
    esac
}

# `uname -m` output in the same terms.
uname_arch() {
    case $1 in
        aarch64 | arm64) echo aarch64 ;;
        x86_64 | amd64) echo x86_64 ;;
        arm*) echo arm ;;
        *) echo "$1" ;;
    esac
}

# Sets triple and board_data_dir from boards/$board.toml.
load_board() {
    if [[ -z $board ]]; then
        usage_error "--board is required (one of: $(known_boards))"
    fi
    local file=$repo/boards/$board.toml
    if [[ ! $board =~ ^[A-Za-z0-9._-]+$ || ! -f $file ]]; then
        die "unknown board '$board'" \
            "known boards (boards/*.toml): $(known_boards)" \
            "add a profile as boards/$board.toml to support a new one"
    fi
    triple=$(toml_string "$file" target)
    [[ -n $triple ]] || die "boards/$board.toml has no target = \"<triple>\" line"
    board_arch=$(triple_arch "$triple") ||
        die "boards/$board.toml: unsupported target '$triple' (aarch64-*, x86_64-* or arm* triples)"
    board_data_dir=$(toml_string "$file" data_dir)
}

# Checks the binary exists and is built for the board.
check_binary() {
    if [[ -z $binary ]]; then
        binary=${CARGO_TARGET_DIR:-$repo/target}/$triple/release/ledge
    fi
    if [[ ! -f $binary ]]; then
        die "no ledge binary at $binary" \
            "build it with:  cross/build.sh $board" \
            "or pass one with --binary PATH"
    fi
    local arch
    arch=$(elf_arch "$binary")
    if [[ $arch != "$board_arch" ]]; then
        die "wrong architecture: $binary is $arch, board $board needs $board_arch ($triple)" \
            "build the right one with:  cross/build.sh $board"
    fi
}

# ---------------------------------------------------------------------------
# Checking the config with a ledge that runs here

# Sets native (an array): a command that runs a ledge on this machine.
find_native_ledge() {
    local here_arch qemu candidate
    here_arch=$(uname_arch "$(uname -m)")
    if [[ $board_arch == "$here_arch" ]] && "$binary" --version >/dev/null 2>&1; then
        native=("$binary")
        return
    fi
    qemu=qemu-$board_arch-static
    if command -v "$qemu" >/dev/null && "$qemu" "$binary" --version >/dev/null 2>&1; then
        native=("$qemu" "$binary")
        return
    fi
    for candidate in "$repo/target/release/ledge" "$repo/target/debug/ledge"; do
        if [[ -x $candidate ]] && "$candidate" --version >/dev/null 2>&1; then
            say "note     checking the config with $candidate ($binary does not run here)"
            native=("$candidate")
            return
        fi
    done
    die "no ledge that runs on this machine to check the config with" \
        "install qemu-user-static ($qemu runs $board_arch binaries here)" \
        "or build a native one:  cargo build --release"
}

# run_check CONFIG LABEL: `ledge check`, its output shown when it fails.
run_check() {
    local output
    if ! output=$("${native[@]}" check --config "$1" 2>&1); then
        printf '%s\n' "$output" >&2
        die "$2 does not pass \`ledge check\` (its output is above)" \
            "fix the FILE:LINE:COL problems it lists; nothing was installed"
    fi
}

# ---------------------------------------------------------------------------
# Staging: the files to install, laid out as on the target, plus a manifest

# toml_line_value LINE KEY-REGEX: if LINE is `KEY = "value"` (or 'value'),
# sets m_indent, m_key, m_eq, m_value, m_rest and succeeds.
toml_line_value() {
    local dq="^([[:space:]]*)($2)([[:space:]]*=[[:space:]]*)\"([^\"]*)\"(.*)$"
    local sq="^([[:space:]]*)($2)([[:space:]]*=[[:space:]]*)'([^']*)'(.*)$"
    if [[ $1 =~ $dq || $1 =~ $sq ]]; then
        m_indent=${BASH_REMATCH[1]}
        m_key=${BASH_REMATCH[2]}
        m_eq=${BASH_REMATCH[3]}
        m_value=${BASH_REMATCH[4]}
        m_rest=${BASH_REMATCH[5]}
        return 0
    fi
    return 1
}

# The table a line opens (`[device]`, `[[function]]`), if it opens one.
toml_table() {
    local re='^[[:space:]]*\[\[?[[:space:]]*([A-Za-z0-9_.-]+)[[:space:]]*\]'
    [[ $1 =~ $re ]] && printf '%s' "${BASH_REMATCH[1]}"
}

# True if the config sets [device] data_dir.
config_has_data_dir() {
    local line table=
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^[[:space:]]*\[ ]]; then
            table=$(toml_table "$line") || table=
        elif [[ $table == device ]] && toml_line_value "$line" data_dir; then
            return 0
        fi
    done <"$1"
    return 1
}

# stage_config SOURCE STAGE: writes STAGE/etc/ledge/ledge.toml from SOURCE,
# copying the files it names into STAGE/etc/ledge (modules into functions/)
# and rewriting their paths relative to the installed config, so the staged
# config checks exactly as it will run. A relative data_dir would land under
# /etc/ledge, read-only for the service: it becomes the board's data dir.
stage_config() {
    local source=$1 stage=$2 base line table='' number=0 data_dir insert_data_dir=0
    base=$(cd "$(dirname "$source")" && pwd -P)
    data_dir=${board_data_dir:-$DEFAULT_DATA_DIR}
    if [[ $data_dir != "$DEFAULT_DATA_DIR" ]] && ! config_has_data_dir "$source"; then
        insert_data_dir=1
    fi
    declare -A placed=()
    mkdir -p "$stage/$ETC/functions"
    while IFS= read -r line || [[ -n $line ]]; do
        number=$((number + 1))
        if [[ $line =~ ^[[:space:]]*\[ ]]; then
            table=$(toml_table "$line") || table=
            if [[ $table == device && $insert_data_dir == 1 ]]; then
                printf '%s\ndata_dir = "%s"  # from boards/%s.toml (flash.sh)\n' "$line" "$data_dir" "$board"
                insert_data_dir=0
                continue
            fi
        elif toml_line_value "$line" "$FILE_KEYS"; then
            stage_file "$line" "$number"
            line=$staged_line
        elif [[ $table == device ]] && toml_line_value "$line" data_dir && [[ $m_value != /* ]]; then
            notes+=("$source:$number: data_dir \"$m_value\" is relative (under /$ETC, read-only for the service); installed as \"$data_dir\"")
            line="$m_indent$m_key$m_eq\"$data_dir\"$m_rest"
        fi
        printf '%s\n' "$line"
    done <"$source" >"$stage/$ETC/ledge.toml"
    if [[ $insert_data_dir == 1 ]]; then
        printf '\n[device]\ndata_dir = "%s"  # from boards/%s.toml (flash.sh)\n' "$data_dir" "$board" >>"$stage/$ETC/ledge.toml"
    fi
}

# stage_file LINE NUMBER (after toml_line_value matched): copies the file the
# line names and sets staged_line to the line with the installed path. Uses
# `placed`, `source`, `base` and `stage` of stage_config.
stage_file() {
    local line=$1 number=$2 from dest
    staged_line=$line
    if [[ $m_value == /* ]]; then
        notes+=("$source:$number: $m_key \"$m_value\" is absolute: it must exist on the target")
        return
    fi
    from=$base/$m_value
    [[ -f $from ]] || die "$source:$number: $m_key \"$m_value\" names $from, which does not exist"
    from=$(cd "$(dirname "$from")" && pwd -P)/$(basename "$from")
    dest=$(basename "$m_value")
    [[ $m_key == module ]] && dest=functions/$dest
    [[ $dest != ledge.toml ]] || die "$source:$number: a file named ledge.toml would replace the config; rename it"
    if [[ -n ${placed[$dest]:-} && ${placed[$dest]} != "$from" ]]; then
        die "$source:$number: $from and ${placed[$dest]} would both be installed as /$ETC/$dest" \
            "give them different file names"
    fi
    placed[$dest]=$from
    cp "$from" "$stage/$ETC/$dest"
    staged_line="$m_indent$m_key$m_eq\"$dest\"$m_rest"
}

# manifest_add STAGE MODE OWNER PATH: one line per file to install:
# sha256, size, mode, owner (user:group names), path relative to the root.
manifest_add() {
    local file=$1/root/$4
    printf '%s %s %s %s %s\n' "$(sha256 "$file")" "$(stat -c %s "$file")" "$2" "$3" "$4" >>"$1/MANIFEST"
}

# stage STAGE: everything to install, under STAGE/root, listed in MANIFEST.
stage() {
    local stage=$1 file
    # The drop-in folder is made here so that, over SSH, the ssh user can
    # delete the drop-ins root writes into it on the host.
    mkdir -p "$stage/root/$(dirname "$BIN")" "$stage/root/$DROPIN_DIR"
    cp "$binary" "$stage/root/$BIN"
    stage_config "$config" "$stage/root"
    cp "$repo/systemd/ledge.service" "$stage/root/$UNIT"
    cp "${BASH_SOURCE[0]}" "$stage/flash.sh"
    : >"$stage/MANIFEST"
    manifest_add "$stage" 0755 root:root "$BIN"
    manifest_add "$stage" 0640 root:ledge "$ETC/ledge.toml"
    while IFS= read -r file; do
        manifest_add "$stage" 0640 root:ledge "${file#"$stage/root/"}"
    done < <(find "$stage/root/$ETC" -type f ! -name ledge.toml | sort)
    manifest_add "$stage" 0644 root:root "$UNIT"
}

# ---------------------------------------------------------------------------
# The install step, run where the target's root is a local directory: here
# for --root, on the host for --host. Inputs: apply_stage, root, live,
# dry_run, force_config.

# Planned files, parallel arrays indexed like the manifest.
p_sum=() p_size=() p_mode=() p_owner=() p_path=() p_state=()

# config_devices CONFIG: the GPIO chips and I2C buses a config names, as
# /dev paths, one per line (comment lines skipped).
config_devices() {
    awk '!/^[[:space:]]*#/' "$1" |
        { grep -oE '(/dev/)?gpiochip[0-9]+|/dev/i2c-[0-9]+' || true; } |
        sed 's|^gpiochip|/dev/gpiochip|' | sort -u
}

# config_data_dir CONFIG: the data dir the installed config makes ledge use.
config_data_dir() {
    local line table='' dir=$DEFAULT_DATA_DIR
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line =~ ^[[:space:]]*\[ ]]; then
            table=$(toml_table "$line") || table=
        elif [[ $table == device ]] && toml_line_value "$line" data_dir; then
            dir=$m_value
            [[ $dir == /* ]] || dir=/$ETC/$dir
        fi
    done <"$1"
    printf '%s' "$dir"
}

# Writes the drop-ins that depend on the effective config into the stage and
# adds them to the manifest: devices.conf always, data-dir.conf when the data
# dir is not the unit's own.
stage_dropins() {
    local effective=$1 dir=$apply_stage/root/$DROPIN_DIR devices device
    mkdir -p "$dir"
    devices=$(config_devices "$effective")
    {
        echo "# Written by flash.sh from /$ETC/ledge.toml: the GPIO chips and I2C buses"
        echo "# the config names. ledge.service has DevicePolicy=closed, so ledge can"
        echo "# open no other device node. Re-run flash.sh after changing them."
        echo "[Service]"
        if [[ -z $devices ]]; then
            echo "# (the config names no /dev/gpiochipN, gpiochipN or /dev/i2c-N)"
        fi
        for device in $devices; do
            echo "DeviceAllow=$device rw"
        done
    } >"$dir/devices.conf"
    manifest_add "$apply_stage" 0644 root:root "$DROPIN_DIR/devices.conf"
    if [[ $data_dir != "$DEFAULT_DATA_DIR" ]]; then
        {
            echo "# Written by flash.sh: the config's data_dir, writable under ProtectSystem=strict."
            echo "[Service]"
            echo "ReadWritePaths=$data_dir"
        } >"$dir/data-dir.conf"
        manifest_add "$apply_stage" 0644 root:root "$DROPIN_DIR/data-dir.conf"
    fi
}

read_manifest() {
    local sum size mode owner path
    while read -r sum size mode owner path; do
        p_sum+=("$sum")
        p_size+=("$size")
        p_mode+=("$mode")
        p_owner+=("$owner")
        p_path+=("$path")
    done <"$apply_stage/MANIFEST"
}

# Numeric id of a user or group in the target's passwd/group, if it exists.
target_id() { awk -F: -v name="$2" '$1 == name { print $3; exit }' "$root/etc/$1"; }

# owner_ids USER:GROUP: numeric uid:gid in the target, or empty if unknown.
owner_ids() {
    local uid gid
    uid=$(target_id passwd "${1%%:*}")
    gid=$(target_id group "${1##*:}")
    if [[ -n $uid && -n $gid ]]; then
        printf '%s:%s' "$uid" "$gid"
    fi
}

# True if PATH has MODE (and, when root, OWNER).
has_attributes() {
    local path=$1 mode=$2 owner=$3 ids
    [[ $(stat -c %a "$path") == "${mode#0}" ]] || return 1
    if [[ $is_root == 1 ]]; then
        ids=$(owner_ids "$owner")
        [[ -z $ids || $(stat -c %u:%g "$path") == "$ids" ]] || return 1
    fi
}

# Decides, for each file, new / changed / unchanged / kept / attributes.
# The staged copy sits beside the target here, so cmp compares them.
plan_files() {
    local i dest same
    for i in "${!p_path[@]}"; do
        dest=$root/${p_path[i]}
        same=0
        [[ ! -f $dest ]] || ! cmp -s "$apply_stage/root/${p_path[i]}" "$dest" || same=1
        if [[ ! -e $dest ]]; then
            p_state[i]=new
        elif [[ ${p_path[i]} == "$ETC/ledge.toml" && $force_config == 0 && $same == 0 ]]; then
            p_state[i]=kept
        elif [[ $same == 0 ]]; then
            p_state[i]=changed
        elif has_attributes "$dest" "${p_mode[i]}" "${p_owner[i]}"; then
            p_state[i]=unchanged
        else
            p_state[i]=attributes
        fi
    done
}

# The nearest existing directory at or above PATH.
existing_dir() {
    local path=$1
    while [[ ! -d $path ]]; do
        path=$(dirname "$path")
    done
    printf '%s' "$path"
}

# Compares what will be written with the free space of each file system
# it goes to, before anything is written.
check_space() {
    declare -A need=() free=()
    local i dir mount avail bytes
    for i in "${!p_path[@]}"; do
        [[ ${p_state[i]} == new || ${p_state[i]} == changed ]] || continue
        dir=$(existing_dir "$(dirname "$root/${p_path[i]}")")
        read -r avail mount < <(df -Pk "$dir" | awk 'NR == 2 { print $4, $6 }')
        avail=$((avail * 1024))
        # Whole 4 KiB blocks, plus one for the directory entry.
        bytes=$(((p_size[i] + 4095) / 4096 * 4096 + 4096))
        need[$mount]=$((${need[$mount]:-0} + bytes))
        free[$mount]=$avail
    done
    for mount in "${!need[@]}"; do
        if ((need[$mount] > free[$mount])); then
            die "not enough space on the target's $mount: $(human_size "${need[$mount]}") to write, $(human_size "${free[$mount]}") free" \
                "free some space there (or use a larger SD card); nothing was written"
        fi
    done
}

# ----- accounts

# Which account tool to use: `tools` is useradd & co (with --root for a
# mounted root), `files` edits the files directly. The running system (/)
# always gets the tools.
users_backend() {
    local wanted=${LEDGE_FLASH_USERS:-}
    if [[ -z $root ]]; then
        command -v useradd >/dev/null || die "useradd is missing on the target: install the passwd package"
        echo tools
    elif [[ $wanted == tools || $wanted == files ]]; then
        echo "$wanted"
    elif [[ -n $wanted ]]; then
        die "LEDGE_FLASH_USERS must be tools or files, not '$wanted'"
    elif [[ $is_root == 1 ]] && command -v useradd >/dev/null; then
        echo tools
    else
        echo files
    fi
}

# account TOOL ARGS...: useradd/groupadd/usermod on the target.
account() {
    local tool=$1
    shift
    if [[ -z $root ]]; then
        "$tool" "$@"
    else
        "$tool" --root "$root" "$@"
    fi
}

is_member() {
    awk -F: -v g="$1" -v u="$2" '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) found = 1 } END { exit !found }' "$root/etc/group"
}

# login.defs SYS_{UID,GID}_{MIN,MAX} of the target, with Debian's defaults.
login_def() {
    local v
    v=$(awk -v k="$1" '$1 == k { print $2 }' "$root/etc/login.defs" 2>/dev/null | tail -n 1)
    printf '%s' "${v:-$2}"
}

# free_system_id UID|GID: a free system id in the target's passwd or group,
# allocated as useradd/groupadd --system do: one below the lowest system id
# in use, else the top of the range (SYS_*_MIN/MAX of login.defs), else the
# highest hole.
free_system_id() {
    local kind=$1 file=passwd id min max used lowest
    [[ $kind == UID ]] || file=group
    min=$(login_def "SYS_${kind}_MIN" 100)
    max=$(login_def "SYS_${kind}_MAX" 999)
    used=$(awk -F: '{ print $3 }' "$root/etc/$file")
    lowest=$(awk -v min="$min" -v max="$max" '$1 >= min && $1 <= max { if (low == "" || $1 < low) low = $1 } END { print low }' <<<"$used")
    if [[ -z $lowest ]]; then
        printf '%s' "$max"
        return
    fi
    if ((lowest - 1 >= min)); then
        printf '%s' $((lowest - 1))
        return
    fi
    for ((id = max; id >= min; id--)); do
        if ! grep -qx "$id" <<<"$used"; then
            printf '%s' "$id"
            return
        fi
    done
    die "no free system $kind between $min and $max in $root/etc/$file"
}

# append FILE LINE: adds a line, after a newline if the file lacks one.
append() {
    [[ -f $1 ]] || return 0
    if [[ -s $1 && $(tail -c 1 "$1" | wc -l) -eq 0 ]]; then
        printf '\n' >>"$1"
    fi
    printf '%s\n' "$2" >>"$1"
}

# add_member FILE GROUP USER: adds USER to the member list (4th field) of
# GROUP in a group or gshadow file, in place (mode and owner kept).
add_member() {
    [[ -f $1 ]] || return 0
    local edited
    edited=$(awk -F: -v OFS=: -v g="$2" -v u="$3" '$1 == g { $4 = ($4 == "" ? u : $4 "," u) } { print }' "$1")
    printf '%s\n' "$edited" >"$1"
}

files_add_group() { # NAME GID [MEMBER]
    append "$root/etc/group" "$1:x:$2:${3:-}"
    append "$root/etc/gshadow" "$1:!::${3:-}"
}

files_add_user() { # NAME UID GID SHELL
    local days=$(($(date +%s) / 86400))
    append "$root/etc/passwd" "$1:x:$2:$3:ledge edge functions:$data_dir:$4"
    append "$root/etc/shadow" "$1:!:$days::::::"
}

nologin_shell() {
    if [[ ! -e $root/usr/sbin/nologin && -e $root/sbin/nologin ]]; then
        echo /sbin/nologin
    else
        echo /usr/sbin/nologin
    fi
}

# create_ledge_user BACKEND: the ledge system user and its group, sharing
# one id when both are new.
create_ledge_user() {
    local backend=$1 gid id shell group_option=(--user-group)
    gid=$(target_id group ledge)
    shell=$(nologin_shell)
    if [[ $backend == files ]]; then
        id=$(free_system_id UID)
        if [[ -z $gid ]]; then
            # The user's group shares its id when that is free, as useradd does.
            gid=$id
            [[ -z $(awk -F: -v id="$id" '$3 == id' "$root/etc/group") ]] || gid=$(free_system_id GID)
            files_add_group ledge "$gid"
        fi
        files_add_user ledge "$id" "$gid" "$shell"
        return
    fi
    [[ -z $gid ]] || group_option=(--gid "$gid")
    account useradd --system "${group_option[@]}" --home-dir "$data_dir" --no-create-home \
        --shell "$shell" --comment "ledge edge functions" ledge
}

# add_group BACKEND NAME: a new system group.
add_group() {
    if [[ $1 == files ]]; then
        files_add_group "$2" "$(free_system_id GID)"
    else
        account groupadd --system "$2"
    fi
}

# The ledge user and group, the device groups, and ledge's membership.
ensure_accounts() {
    local backend group missing=()
    backend=$(users_backend)
    if [[ -z $(target_id passwd ledge) ]]; then
        changed "add user" ledge "system user and group, no login shell, home $data_dir; with $backend"
        [[ $dry_run == 1 ]] || create_ledge_user "$backend"
    else
        report unchanged "user ledge" "uid $(target_id passwd ledge)"
        if [[ -z $(target_id group ledge) ]]; then
            changed "add group" ledge "system group; with $backend"
            [[ $dry_run == 1 ]] || add_group "$backend" ledge
        fi
    fi
    for group in "${DEVICE_GROUPS[@]}"; do
        if [[ -z $(target_id group "$group") ]]; then
            changed "add group" "$group" "system group for device access; with $backend"
            [[ $dry_run == 1 ]] || add_group "$backend" "$group"
        fi
        if [[ -z $(target_id group "$group") ]] || ! is_member "$group" ledge; then
            changed "add member" "ledge to group $group"
            missing+=("$group")
        fi
    done
    if [[ $dry_run == 0 && ${#missing[@]} -gt 0 ]]; then
        if [[ $backend == files ]]; then
            for group in "${missing[@]}"; do
                add_member "$root/etc/group" "$group" ledge
                add_member "$root/etc/gshadow" "$group" ledge
            done
        else
            account usermod --append --groups "$(
                IFS=,
                echo "${missing[*]}"
            )" ledge
        fi
    fi
}

# ----- files and directories

warned_chown=0
# set_attributes PATH MODE OWNER
set_attributes() {
    chmod "$2" "$1"
    if [[ $is_root == 1 ]]; then
        chown "$(owner_ids "$3")" "$1"
    elif [[ $warned_chown == 0 ]]; then
        warn "not running as root: files keep your ownership instead of root/ledge (run flash.sh with sudo to set them)"
        warned_chown=1
    fi
}

# ensure_dir PATH MODE OWNER: creates (parents 0755) or fixes a directory.
ensure_dir() {
    local path=$root/$1
    if [[ ! -d $path ]]; then
        changed created "/$1/" "mode $2, $3"
        [[ $dry_run == 1 ]] && return
        mkdir -p "$path"
        set_attributes "$path" "$2" "$3"
    elif ! has_attributes "$path" "$2" "$3"; then
        changed fixed "/$1/" "mode $2, $3"
        [[ $dry_run == 1 ]] || set_attributes "$path" "$2" "$3"
    fi
}

# install_file INDEX: writes through a temporary name, compares the sha256
# with the manifest's, then renames; a replaced binary becomes .previous.
install_file() {
    local i=$1 rel=${p_path[$1]} dest tmp sum
    dest=$root/$rel
    tmp=$dest.flash-new
    mkdir -p "$(dirname "$dest")"
    cp "$apply_stage/root/$rel" "$tmp" || {
        rm -f "$tmp"
        die "cannot write /$rel.flash-new on the target" "the old file is still in place"
    }
    set_attributes "$tmp" "${p_mode[i]}" "${p_owner[i]}"
    sync "$tmp" 2>/dev/null || true
    sum=$(sha256 "$tmp")
    if [[ $sum != "${p_sum[i]}" ]]; then
        rm -f "$tmp"
        die "/$rel: sha256 on the target is $sum after the copy, expected ${p_sum[i]}" \
            "the copy is corrupt (a failing SD card or a full disk?); the old file is still in place"
    fi
    if [[ $rel == "$BIN" && -f $dest ]]; then
        ln -f "$dest" "$dest.previous" 2>/dev/null || cp -p "$dest" "$dest.previous"
    fi
    mv -f "$tmp" "$dest"
}

apply_files() {
    local i rel detail
    for i in "${!p_path[@]}"; do
        rel=${p_path[i]}
        detail="$(human_size "${p_size[i]}"), mode ${p_mode[i]}, ${p_owner[i]}, sha256 ${p_sum[i]:0:16}"
        case ${p_state[i]} in
            unchanged) report unchanged "/$rel" ;;
            kept)
                report kept "/$rel" "it differs from the config being installed; --force-config replaces it"
                if ! has_attributes "$root/$rel" "${p_mode[i]}" "${p_owner[i]}"; then
                    changed fixed "/$rel" "mode ${p_mode[i]}, ${p_owner[i]}"
                    [[ $dry_run == 1 ]] || set_attributes "$root/$rel" "${p_mode[i]}" "${p_owner[i]}"
                fi
                ;;
            attributes)
                changed fixed "/$rel" "mode ${p_mode[i]}, ${p_owner[i]}"
                [[ $dry_run == 1 ]] || set_attributes "$root/$rel" "${p_mode[i]}" "${p_owner[i]}"
                ;;
            new)
                changed installed "/$rel" "$detail"
                [[ $dry_run == 1 ]] || install_file "$i"
                ;;
            changed)
                [[ $rel == "$BIN" ]] && detail="$detail; the old one is kept as ledge.previous"
                changed replaced "/$rel" "$detail"
                [[ $dry_run == 1 ]] || install_file "$i"
                ;;
        esac
    done
    if [[ $data_dir == "$DEFAULT_DATA_DIR" && -e $root/$DROPIN_DIR/data-dir.conf ]]; then
        changed removed "/$DROPIN_DIR/data-dir.conf" "the data dir is the default again"
        [[ $dry_run == 1 ]] || rm -f "$root/$DROPIN_DIR/data-dir.conf"
    fi
}

# ----- the service

enable_offline() {
    local link=$root/$WANTS target=/$UNIT
    if [[ -L $link && $(readlink "$link") == "$target" ]]; then
        report unchanged "/$WANTS" "enabled"
        return
    fi
    changed enabled "/$WANTS" "-> $target"
    [[ $dry_run == 1 ]] && return
    mkdir -p "$(dirname "$link")"
    ln -sfn "$target" "$link"
}

# Shows why the service is not running and fails.
service_failed() {
    journalctl -u ledge.service -n 30 --no-pager >&2 || true
    die "ledge.service did not start (its journal is above: journalctl -u ledge)" \
        "fix the cause and re-run flash.sh, or go back with: ./flash.sh --host ... --rollback"
}

enable_live() {
    if [[ $dry_run == 1 ]]; then
        if [[ $changes -gt 0 ]]; then
            changed restart "ledge.service" "systemctl daemon-reload, enable --now, restart"
        else
            report unchanged "ledge.service" "$(systemctl is-active ledge.service || true)"
        fi
        return
    fi
    if [[ $changes -gt 0 ]]; then
        systemctl daemon-reload
    fi
    if ! systemctl is-enabled --quiet ledge.service; then
        systemctl enable --quiet ledge.service
        changed enabled ledge.service "systemctl enable"
    fi
    if ! systemctl is-active --quiet ledge.service; then
        changed started ledge.service "systemctl start: waits for READY=1"
        systemctl start ledge.service || service_failed
    elif [[ $changes -gt 0 ]]; then
        changed restarted ledge.service "systemctl restart"
        systemctl restart ledge.service || service_failed
    else
        report unchanged ledge.service "enabled and active"
    fi
    systemctl is-active --quiet ledge.service || service_failed
}

# With a kept config on a live host, the new binary checks it before any
# file is replaced: a config the new version rejects stops the upgrade.
check_kept_config() {
    local output
    [[ $live == 1 && -f $apply_stage/root/$BIN ]] || return 0
    if ! output=$("$apply_stage/root/$BIN" check --config "$root/$ETC/ledge.toml" 2>&1); then
        printf '%s\n' "$output" >&2
        die "the kept /$ETC/ledge.toml does not pass \`ledge check\` with the new binary (output above)" \
            "fix it on the host, or replace it with --force-config; nothing was changed"
    fi
    report check "/$ETC/ledge.toml" "kept config passes ledge check with the new binary"
}

# The binary must be of the OS's own architecture, not just the kernel's:
# the unit's SystemCallArchitectures=native admits only systemd's (a 32-bit
# Raspberry Pi OS runs a 64-bit kernel on a Pi 4, yet native is arm there).
check_os_arch() {
    local init os_arch binary_arch
    for init in "$root/lib/systemd/systemd" "$root/usr/lib/systemd/systemd"; do
        [[ -f $init ]] && break
    done
    [[ -f $init && -f $apply_stage/root/$BIN ]] || return 0
    os_arch=$(elf_arch "$init")
    binary_arch=$(elf_arch "$apply_stage/root/$BIN")
    if [[ $os_arch != "$binary_arch" ]]; then
        die "wrong architecture: the target's OS is $os_arch (${init#"$root"}), the binary is $binary_arch" \
            "the unit's SystemCallArchitectures=native lets only the OS's own architecture run;" \
            "flash the board profile for this OS (generic-armv7 for a 32-bit one) or install a $binary_arch OS"
    fi
}

apply_main() {
    umask 022
    is_root=0
    [[ $(id -u) -ne 0 ]] || is_root=1
    root=${root%/}
    if [[ ! -f $root/etc/passwd || ! -f $root/etc/group ]]; then
        die "${root:-/} does not look like a root file system (no etc/passwd or etc/group)" \
            "pass the mount point of the SD card's root partition (the second one, \`rootfs\` on Raspberry Pi OS)"
    fi
    [[ -s $apply_stage/MANIFEST ]] || die "nothing staged in $apply_stage"
    check_os_arch
    # The config ledge will run: the one installed now, unless it is replaced.
    local effective=$apply_stage/root/$ETC/ledge.toml
    if [[ -f $root/$ETC/ledge.toml && $force_config == 0 ]]; then
        effective=$root/$ETC/ledge.toml
    fi
    data_dir=$(config_data_dir "$effective")
    if [[ $data_dir == "/$ETC/"* ]]; then
        warn "the installed config's data_dir is $data_dir, read-only for the service (ProtectSystem=strict): set an absolute data_dir such as $DEFAULT_DATA_DIR"
    fi
    stage_dropins "$effective"
    read_manifest
    plan_files
    check_space
    if ! cmp -s "$effective" "$apply_stage/root/$ETC/ledge.toml"; then
        check_kept_config
    fi
    ensure_accounts
    ensure_dir "$ETC" 0750 root:ledge
    ensure_dir "$ETC/functions" 0750 root:ledge
    ensure_dir "${data_dir#/}" 0750 ledge:ledge
    apply_files
    if [[ $live == 1 ]]; then
        enable_live
    else
        enable_offline
    fi
    [[ $dry_run == 1 ]] || sync -f "$root/$ETC" 2>/dev/null || sync
    summary
}

summary() {
    if [[ $dry_run == 1 ]]; then
        say "dry run: $changes change(s) planned; nothing was changed"
    elif [[ $changes -eq 0 ]]; then
        say "nothing changed: the target already has this installation"
    else
        say "done: $changes change(s)"
    fi
}

# Swaps ledge and ledge.previous on the target.
rollback_apply() {
    root=${root%/}
    local bin=$root/$BIN prev=$root/$BIN.previous swap=$root/$BIN.flash-swap
    [[ -f $prev ]] || die "no previous binary at /$BIN.previous: nothing to roll back to" \
        "flash.sh keeps one when an install replaces a different binary"
    [[ -f $bin ]] || die "no /$BIN to roll back from"
    changed "rolled back" "/$BIN" "now sha256 $(sha256 "$prev"); the replaced one ($(sha256 "$bin")) is ledge.previous, --rollback again returns to it"
    if [[ $dry_run == 0 ]]; then
        mv -f "$prev" "$swap"
        ln -f "$bin" "$prev" 2>/dev/null || cp -p "$bin" "$prev"
        mv -f "$swap" "$bin"
        sync -f "$bin" 2>/dev/null || sync
    fi
    if [[ $live == 1 ]]; then
        changed restarted ledge.service "systemctl restart"
        if [[ $dry_run == 0 ]]; then
            systemctl restart ledge.service || service_failed
        fi
    fi
    summary
}

# ---------------------------------------------------------------------------
# Over SSH

ssh_base() {
    ssh_cmd=(ssh -o BatchMode=yes -o ConnectTimeout=5 -p "$ssh_port" "${ssh_opts[@]}" "$host")
}

# remote ARGS...: runs a command on the host (arguments quoted for its shell).
remote() {
    local quoted
    printf -v quoted '%q ' "$@"
    "${ssh_cmd[@]}" "$quoted"
}

# Reaches the host and learns its architecture, user, sudo and free /tmp.
# Sets remote_arch, sudo (an array), remote_tmp_free (KiB).
ssh_preflight() {
    local output rc=0 line
    # shellcheck disable=SC2016 # expanded on the host
    output=$("${ssh_cmd[@]}" 'echo "arch=$(uname -m)"; echo "uid=$(id -u)";
        if [ "$(id -u)" != 0 ]; then sudo -n true 2>/dev/null && echo sudo=ok || echo sudo=no; fi;
        command -v bash >/dev/null && echo bash=ok;
        echo "tmpfree=$(df -Pk "${TMPDIR:-/tmp}" | awk "NR == 2 { print \$4 }")"' 2>&1) || rc=$?
    if [[ $rc -ne 0 ]]; then
        die "cannot reach $host over SSH (port $ssh_port): ${output//$'\n'/ }" \
            "check the host name and port, that sshd runs there, and that your key is" \
            "authorized (ssh-copy-id $host); flash.sh uses BatchMode, so it never asks for a password"
    fi
    remote_arch='' sudo=() remote_tmp_free=0
    local has_bash=0 uid='' sudo_ok=''
    while IFS= read -r line; do
        case $line in
            arch=*) remote_arch=$(uname_arch "${line#arch=}") ;;
            uid=*) uid=${line#uid=} ;;
            sudo=*) sudo_ok=${line#sudo=} ;;
            bash=ok) has_bash=1 ;;
            tmpfree=*) remote_tmp_free=${line#tmpfree=} ;;
        esac
    done <<<"$output"
    [[ $has_bash == 1 ]] || die "$host has no bash; flash.sh runs its install step there with bash"
    if [[ $uid != 0 ]]; then
        [[ $sudo_ok == ok ]] || die "${host%%@*} on $host cannot run sudo without a password" \
            "allow it (Raspberry Pi OS does for pi), or connect as root@${host#*@}"
        sudo=(sudo -n)
    fi
}

check_remote_arch() {
    if [[ $remote_arch == "$board_arch" || ($board_arch == arm && $remote_arch == aarch64) ]]; then
        say "host     $host ($remote_arch)"
        return
    fi
    die "wrong architecture: $host runs $remote_arch, the binary and board $board are $board_arch" \
        "pick the board of this host (--board), or install a $board_arch OS on it"
}

# Streams the stage to a temporary directory on the host and runs the
# install step there; the directory is removed whatever happens.
ssh_apply() {
    local stage=$1 flags=() quoted_flags
    if [[ -n $remote_root ]]; then
        flags+=(--root "$remote_root")
    else
        flags+=(--root / --live)
    fi
    [[ $dry_run == 0 ]] || flags+=(--dry-run)
    [[ $force_config == 0 ]] || flags+=(--force-config)
    printf -v quoted_flags '%q ' "${flags[@]}"
    local bytes
    bytes=$(du -sk "$stage" | cut -f1)
    if ((bytes + 1024 > remote_tmp_free)); then
        die "not enough space in the host's temporary directory: $bytes KiB to upload, $remote_tmp_free KiB free" \
            "free some space on $host; nothing was written"
    fi
    # shellcheck disable=SC2016 # $d is expanded on the host
    tar -C "$stage" -cf - . | "${ssh_cmd[@]}" \
        'd=$(mktemp -d "${TMPDIR:-/tmp}/ledge-flash.XXXXXX") || exit 1
         trap '\''rm -rf "$d"'\'' EXIT
         tar -xf - -C "$d" && '"${sudo[*]:-}"' bash "$d/flash.sh" --apply-staged "$d" '"$quoted_flags"
}

ssh_rollback() {
    local flags=()
    if [[ -n $remote_root ]]; then
        flags+=(--root "$remote_root")
    else
        flags+=(--root / --live)
    fi
    [[ $dry_run == 0 ]] || flags+=(--dry-run)
    remote "${sudo[@]}" bash -s -- --rollback --apply-staged - "${flags[@]}" <"$0"
}

# ---------------------------------------------------------------------------
# Main

install_main() {
    load_board
    check_binary
    config=${config:-$repo/examples/quickstart/ledge.toml}
    [[ -f $config ]] || die "no config at $config" "pass one with --config FILE"
    find_native_ledge

    tmp=$(mktemp -d "${TMPDIR:-/tmp}/ledge-flash.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    notes=()
    stage "$tmp/stage"
    say "binary   $binary ($board_arch, $(human_size "$(stat -c %s "$binary")"), sha256 $(head -c 64 "$tmp/stage/MANIFEST"))"
    if [[ ${#notes[@]} -gt 0 ]]; then
        printf 'note     %s\n' "${notes[@]}"
    fi
    # The config as it will be installed; if that fails, the original names
    # the problems with your file's paths and lines.
    if ! "${native[@]}" check --config "$tmp/stage/root/$ETC/ledge.toml" >/dev/null 2>&1; then
        run_check "$config" "$config"
        run_check "$tmp/stage/root/$ETC/ledge.toml" "$config passes, but the copy flash.sh rewrote"
    fi
    say "check    ledge check --config $config: ok"

    if [[ -n $host ]]; then
        ssh_base
        ssh_preflight
        check_remote_arch
        ssh_apply "$tmp/stage"
    else
        say "target   $root"
        apply_stage=$tmp/stage
        apply_main
    fi
}

main() {
    parse_args "$@"
    if [[ -n $apply_stage ]]; then
        [[ -n $root ]] || usage_error "--apply-staged needs --root"
        if [[ $rollback == 1 ]]; then
            rollback_apply
        else
            apply_main
        fi
        return
    fi
    if [[ -n $host && -n $root ]] || [[ -z $host && -z $root ]]; then
        usage_error "pass exactly one of --host [USER@]HOST and --root DIR"
    fi
    [[ -z $remote_root || -n $host ]] || usage_error "--remote-root needs --host"
    [[ $ssh_port =~ ^[0-9]+$ ]] || usage_error "--ssh-port needs a number"
    if [[ -n $root ]]; then
        [[ -d $root ]] || die "--root $root is not a directory" "mount the SD card's root partition and pass its mount point"
        root=$(cd "$root" && pwd)
    fi
    if [[ $rollback == 1 ]]; then
        if [[ -n $host ]]; then
            ssh_base
            ssh_preflight
            ssh_rollback
        else
            rollback_apply
        fi
        return
    fi
    install_main
}

main "$@"
