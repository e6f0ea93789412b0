#!/usr/bin/env bash
# Fuzzing KVLab's parsers of untrusted input with libFuzzer + AddressSanitizer (issue 16).
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Built with -O (bounds and overflow checks kept; 20x the executions of -Onone). Targets (fuzz/Sources/*): FuzzSafeTensors, FuzzGGUF, FuzzTokenizer (tokenizer.json loading,
# encoding, decoding), FuzzConfigJSON, FuzzYAMLConfig, FuzzResultsHDF5 (as compare and merge read: the integrity
# stamp is required) and FuzzResultsHDF5-raw (KVLAB_IGNORE_CHECKSUM=1: every input reaches HDF5).
# Each target runs alone (one core) for the given time, from seeds taken from the test fixtures
# (fuzz/corpus/<target>, kept between runs); crashes go to fuzz/artifacts/<target>. The script
# prints executions, coverage (libFuzzer's edge count) and crashes per target, and exits 1 if any
# target crashed. The fuzz package is separate: `swift build` of KVLab needs no fuzzing flags.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
all=(FuzzSafeTensors FuzzGGUF FuzzTokenizer FuzzConfigJSON FuzzYAMLConfig FuzzResultsHDF5 FuzzResultsHDF5-raw)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

echo "building fuzz targets (debug, -sanitize=fuzzer,address)..." >&2
swift build --package-path fuzz -c debug --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer -Xswiftc -O 2>&1 \
    | grep -E "error|Compiling|Build complete" | grep -v "warning" | tail -3 >&2
bin=$(swift build --package-path fuzz -c debug --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer -Xswiftc -O --show-bin-path)

# Seeds from the fixtures (copied on every run: new fixtures join the corpus).
seed() {
    local target=$1 dir=fuzz/corpus/$1
    mkdir -p "$dir"
    case $target in
        FuzzSafeTensors)
            python3 fuzz/seeds/make_safetensors_seeds.py "$dir" >/dev/null
            cp Tests/KVModelTests/Fixtures/hf/llama_sharded/model-00001-of-00004.safetensors "$dir/sharded-1.safetensors";;
        FuzzGGUF)
            python3 fuzz/seeds/make_gguf_seeds.py "$dir" >/dev/null;;
        FuzzTokenizer)
            # Small tokenizers with every component type (fuzz/seeds/tokenizer, 0.5-1.5 KB): the
            # fixtures' 10-40 KB vocabularies cost ~60 ms per input (17 executions/s); inputs are
            # capped at 4 KB (TOKENIZER_MAX_LEN) to keep ~500/s.
            cp fuzz/seeds/tokenizer/*.json "$dir/";;
        FuzzConfigJSON)
            for f in Tests/KVModelTests/Fixtures/hf/*/config.json models/kvlab-retrieval/config.json; do
                cp "$f" "$dir/$(basename "$(dirname "$f")").json"
            done;;
        FuzzYAMLConfig)
            cp experiments/*.yaml fuzz/seeds/yaml/*.yaml "$dir/";;
        FuzzResultsHDF5|FuzzResultsHDF5-raw)
            cp fuzz/seeds/hdf5/*.h5 "$dir/";;
    esac
}

printf '%-22s %12s %10s %10s %8s  %s\n' target executions "exec/s" coverage crashes "corpus" > fuzz/last-run.txt
status=0
for t in "${targets[@]}"; do
    exe=$t; env=(); maxlen=65536
    [ "$t" = FuzzTokenizer ] && maxlen=${TOKENIZER_MAX_LEN:-4096}
    if [ "$t" = FuzzResultsHDF5-raw ]; then exe=FuzzResultsHDF5; env=(KVLAB_IGNORE_CHECKSUM=1); fi
    seed "$t"
    mkdir -p "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/last.log"
    before=$(ls "fuzz/artifacts/$t" | grep -cE '^(crash|leak|timeout|oom)-' || true)
    echo "fuzzing $t for ${seconds}s..." >&2
    set +e
    env "${env[@]}" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$bin/$exe" "fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len="$maxlen" -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" -close_fd_mask=1 > "$log" 2>&1
    set -e
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
    rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    corpus=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | awk '{print $2}')
    after=$(ls "fuzz/artifacts/$t" | grep -cE '^(crash|leak|timeout|oom)-' || true)
    crashes=$((after - before))
    [ "$crashes" -gt 0 ] && status=1
    printf '%-22s %12s %10s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$crashes" "${corpus:-?}" | tee -a fuzz/last-run.txt
done
echo "table: fuzz/last-run.txt; logs and crashing inputs: fuzz/artifacts/<target>/" >&2
exit $status
