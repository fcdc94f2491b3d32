#!/usr/bin/env bash
# Instructions per message of the manager and of the hand-written poll loop in
# crates/core/benches/manager_vs_loop.rs, counted by callgrind (issue 18: the manager
# stays within 5% of its instructions per message at a base revision).
#
# usage: scripts/callgrind-per-message.sh [--base REV] [--messages N]
#
#   --messages N   N of the two runs at N and 2N messages (default 100000, or
#                  KTM_CALLGRIND_MESSAGES)
#   --base REV     also measure REV (in a temporary git worktree, with this tree's bench
#                  file copied in) and print the change of the manager's figure
#   env CARGO_TARGET_DIR                the working tree's build, as for cargo
#   env KTM_CALLGRIND_BASE_TARGET_DIR   REV's build (default: $CARGO_TARGET_DIR-base, or
#                                       target/callgrind-base without CARGO_TARGET_DIR)
#
# Each side runs alone (KTM_BENCH_ONLY) at N and at 2N messages, and so does the setup
# alone (the mock cluster and its fill, which grow with N too). Callgrind counts every
# thread of the process (--separate-threads=no), so the manager's consumer thread and
# the main thread waiting for it are both in the total. Instructions per message are
# ((Ir(side, 2N) - Ir(setup, 2N)) - (Ir(side, N) - Ir(setup, N))) / N: the difference
# cancels what does not grow with the message count (process start, runtime and thread
# start, the manager's start and stop).
set -euo pipefail
# Failures inside $(...) (a build, a valgrind run) stop the script too.
shopt -s inherit_errexit

repo="$(cd "$(dirname "$0")/.." && pwd)"
n="${KTM_CALLGRIND_MESSAGES:-100000}"
base=""
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="${2:?--base needs a revision}"; shift 2 ;;
    --messages) n="${2:?--messages needs a count}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "callgrind-per-message.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$n" in
  ''|*[!0-9]*|0) echo "callgrind-per-message.sh: --messages must be a positive integer" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "callgrind-per-message.sh: needs valgrind" >&2; exit 1; }

work="$(mktemp -d)"
base_tree=""
cleanup() {
  if [ -n "$base_tree" ]; then
    git -C "$repo" worktree remove --force "$base_tree" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Builds the bench in source tree $1 with target dir $2 and prints its executable.
build_bench() {
  local out
  out="$(cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p ktm-core --bench manager_vs_loop \
    --no-run --message-format=json)"
  # The bench's compiler-artifact line names the executable; build scripts' say null.
  sed -n 's/.*"executable":"\([^"]*manager_vs_loop[^"]*\)".*/\1/p' <<<"$out" | tail -n 1
}

# Total Ir of one run of executable $1 with KTM_BENCH_ONLY=$2 and $3 messages.
ir() {
  local file="$work/callgrind.out" log="$work/valgrind.log" said
  said="$(KTM_BENCH_ONLY="$2" KTM_BENCH_MESSAGES="$3" valgrind --tool=callgrind \
    --separate-threads=no --callgrind-out-file="$file" "$1" 2>"$log")" || {
    cat "$log" >&2
    exit 1
  }
  # A bench that predates KTM_BENCH_ONLY would run both sides and the stop() samples
  # instead: refuse its count rather than print a wrong figure.
  case "$said" in
    "$2: "*) ;;
    *) echo "callgrind-per-message.sh: $1 ignored KTM_BENCH_ONLY=$2" >&2; exit 1 ;;
  esac
  # `summary:` lists the events in order; Ir is the first (the only one by default).
  awk '/^summary:/ { print $2; exit }' "$file"
}

# Measures executable $1 and prints "manager_per_msg loop_per_msg" on the last line,
# after a table for a reader (label $2).
measure() {
  local bin="$1" label="$2" n2=$((2 * n))
  local s1 s2 m1 m2 l1 l2
  echo "callgrind: $label ..." >&2
  s1="$(ir "$bin" setup "$n")"; s2="$(ir "$bin" setup "$n2")"
  m1="$(ir "$bin" manager "$n")"; m2="$(ir "$bin" manager "$n2")"
  l1="$(ir "$bin" loop "$n")"; l2="$(ir "$bin" loop "$n2")"
  awk -v n="$n" -v label="$label" -v s1="$s1" -v s2="$s2" -v m1="$m1" -v m2="$m2" \
    -v l1="$l1" -v l2="$l2" 'BEGIN {
      printf "\n%s (instructions, setup subtracted)\n", label
      printf "| side    | %18s | %19s | Ir/msg at N | Ir/msg at 2N | Ir/msg (2N-N)/N |\n", "Ir, N=" n, "Ir, 2N=" 2 * n
      printf "|---------|--------------------|---------------------|-------------|--------------|-----------------|\n"
      mp = ((m2 - s2) - (m1 - s1)) / n; lp = ((l2 - s2) - (l1 - s1)) / n
      printf "| manager | %18d | %19d | %11.1f | %12.1f | %15.1f |\n", m1 - s1, m2 - s2, (m1 - s1) / n, (m2 - s2) / (2 * n), mp
      printf "| loop    | %18d | %19d | %11.1f | %12.1f | %15.1f |\n", l1 - s1, l2 - s2, (l1 - s1) / n, (l2 - s2) / (2 * n), lp
      printf "manager / loop, instructions per message: %.3f\n", mp / lp
      printf "%.3f %.3f\n", mp, lp
    }'
}

here_target="${CARGO_TARGET_DIR:-$repo/target}"
here_bin="$(build_bench "$repo" "$here_target")"
[ -x "$here_bin" ] || { echo "callgrind-per-message.sh: no bench executable" >&2; exit 1; }
here_label="working tree $(git -C "$repo" describe --always --dirty)"
here_out="$(measure "$here_bin" "$here_label")"
sed '$d' <<<"$here_out"
read -r here_mgr here_loop <<<"$(tail -n 1 <<<"$here_out")"

if [ -n "$base" ]; then
  rev="$(git -C "$repo" rev-parse --short "$base^{commit}")"
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    base_target="${KTM_CALLGRIND_BASE_TARGET_DIR:-${CARGO_TARGET_DIR%/}-base}"
  else
    base_target="${KTM_CALLGRIND_BASE_TARGET_DIR:-$repo/target/callgrind-base}"
  fi
  base_tree="$work/base"
  git -C "$repo" worktree add --detach --quiet "$base_tree" "$rev"
  # The same bench on both sides: REV's own may lack KTM_BENCH_ONLY or differ in what it
  # runs. This needs REV's ktm-core and ktm-mock API to be the one the bench uses.
  cp "$repo/crates/core/benches/manager_vs_loop.rs" "$base_tree/crates/core/benches/"
  base_bin="$(build_bench "$base_tree" "$base_target")"
  [ -x "$base_bin" ] || { echo "callgrind-per-message.sh: no bench executable at $rev" >&2; exit 1; }
  base_out="$(measure "$base_bin" "base $rev")"
  sed '$d' <<<"$base_out"
  read -r base_mgr base_loop <<<"$(tail -n 1 <<<"$base_out")"
  awk -v rev="$rev" -v bm="$base_mgr" -v hm="$here_mgr" -v bl="$base_loop" -v hl="$here_loop" 'BEGIN {
      d = (hm / bm - 1) * 100
      printf "\nmanager instructions per message: %.1f at %s, %.1f in the working tree: %+.2f%% (%s 5%%)\n", bm, rev, hm, d, (d <= 5 ? "within" : "NOT within")
      printf "hand-written loop (control, should not move): %.1f at %s, %.1f here: %+.2f%%\n", bl, rev, hl, (hl / bl - 1) * 100
    }'
fi
