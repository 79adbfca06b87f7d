#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (opt-in; needs a nightly toolchain and
# cargo-fuzz: `rustup toolchain install nightly && cargo install cargo-fuzz`).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Each target starts from the committed seeds/<target>/ and its working corpus
# corpus/<target>/ (git-ignored), and adds what it finds to the latter; copy inputs
# worth keeping into seeds/<target>/ (the normal suite replays them:
# crates/docdb/tests/fuzz_corpora.rs).
# A crash is saved under fuzz/artifacts/<target>/ and makes the script exit non-zero;
# one summary line per target is printed at the end.
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(request_frame response_frame wal_record data_record query patch)
fi
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
  echo "fuzz/run.sh: needs nightly and cargo-fuzz (cargo install cargo-fuzz)" >&2
  exit 2
fi
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  echo "== $t: ${secs}s"
  # -jobs/-workers stay at 1: the machine is shared.
  if cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=1
    tail -n 40 "$log"
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1)"
  summary+=("$t: $status, ${runs:-?} runs, ${cov:-cov: ?}, corpus $(ls "corpus/$t" | wc -l) files")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit $failed
