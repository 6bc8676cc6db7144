#!/bin/bash
# Interleaved timings of `unpack` beside its floors, for issue 12's entries/s and ratio targets.
# bench/run.mjs reports the targets; this says how far the machine itself allows them.
#
#   bench/unpack-floors.sh ROUNDS WORKDIR REF [label=checkout ...]
#
# Per round, in this order: `pull -o x.tar` of REF (this checkout), `unpack` of REF with each
# labelled checkout (dist/ built, native/ addons built), GNU `tar -xpf` of the pulled tar, and
# bench/fs-replay.py of it. Every line has /usr/bin/time's wall, user, sys and max RSS (KiB)
# and the 1-minute load average at its start. Outputs are kept until the end: on an ext4
# without a journal, removing a big tree makes the next file creations in those block groups
# slow for a minute or more (ext4 skips recently deleted inodes one by one), which would
# penalise whichever run comes next. WORKDIR on tmpfs measures the CPU side alone.
set -euo pipefail
rounds=$1; work=$2; ref=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
run() {
  local label=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -o "$work/.time" -f '%e s wall, %U user, %S sys, %M KiB max RSS' "$@" > "$work/.out" 2>&1 || { cat "$work/.out" >&2; return 1; }
  echo "$label: $(cat "$work/.time"), load $load $(grep -o 'entries in .*' "$work/.out" || true)"
}
for r in $(seq 1 "$rounds"); do
  run "round $r pull -o x.tar" node "$here/dist/cli/main.js" pull --plain-http --progress none "$ref" -o "$work/pull-$r.tar"
  for spec in "$@"; do
    run "round $r unpack (${spec%%=*})" node "${spec#*=}/dist/cli/main.js" unpack --plain-http --progress none "$ref" "$work/unpack-${spec%%=*}-$r"
  done
  mkdir "$work/tar-$r"
  run "round $r GNU tar -xpf" tar -xpf "$work/pull-$r.tar" -C "$work/tar-$r"
  run "round $r fs-replay.py" python3 "$here/bench/fs-replay.py" "$work/pull-$r.tar" "$work/replay-$r"
done
echo "outputs are in $work; remove them when done (and wait a minute before timing file creation on the same ext4)"
