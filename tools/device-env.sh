# device-env.sh — sourced by the scripts run on the lent GPU machine (docs/bench/*/next-session*.sh):
# the /work/main path the JIT cache and tools expect, a JIT cache outside the tree, the card,
# and run NAME TIMEOUT [VAR=VALUE ...] CMD: a test binary under a timeout, its output in
# $OUT/NAME.log, one summary line (exit status, seconds, Check's totals) and its failures.
[ -e /work/main ] || { mkdir -p /work && ln -s "$(pwd)" /work/main; }
export MOERT_CACHE_DIR=/tmp/jitc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
run() { local name=$1 to=$2; shift 2
  local s=$(date +%s); timeout $to env "$@" > $OUT/$name.log 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s $(grep -E 'Checks|ERROR SUMMARY' $OUT/$name.log | tail -1)"
  grep -E ":F:|:E:" $OUT/$name.log | head -5; }
# ab TAG STAGE MODEL TOKENS [VAR=VALUE ...]: one `moert bench --json` run of $B (build-gpu) into
# $OUT/ab.jsonl under a "# MODEL | TAG | ROUND" header ($r, the caller's round), the lines
# tools/ab-table.py tabulates; under $AB_TIMEOUT (90 s)
ab() { local tag=$1 stage=$2 model=$3 toks=$4; shift 4
  echo "# $model | $tag | ${r:-1}" >> $OUT/ab.jsonl
  env "$@" timeout "${AB_TIMEOUT:-90}" "${B:-build-gpu}/moert" bench --backend cuda --stage "$stage" \
    --model "$model" --tokens "$toks" --json >> $OUT/ab.jsonl 2>&1; }
# trace NAME MODEL T [VAR=VALUE ...]: one `moert bench --stage forward` of T tokens under the
# kernel timeline of tools/trace/cupti_trace.c ($B/tools/libmoert_trace.so: tools/build-trace.sh),
# summarised by tools/trace-summary.py into $OUT/trace-NAME.txt (and printed)
trace() { local name=$1 model=$2 toks=$3; shift 3
  env "$@" CUDA_INJECTION64_PATH="$PWD/${B:-build-gpu}/tools/libmoert_trace.so" \
    MOERT_TRACE_OUT="/tmp/trace-$name.csv" timeout 120 "${B:-build-gpu}/moert" bench \
    --backend cuda --stage forward --model "$model" --tokens "$toks" > /dev/null 2>&1
  echo "# $model T=$toks $* (exit $?)" > "$OUT/trace-$name.txt"
  python3 tools/trace-summary.py "/tmp/trace-$name.csv" >> "$OUT/trace-$name.txt" 2>&1
  cat "$OUT/trace-$name.txt"; }
