#!/usr/bin/env bash
# test.sh: the one test command (CI runs it too). Installs what is missing, builds every
# tree, then runs the unit tests, the integration tests under ASan/UBSan, the fuzzers for a
# bounded time and the benchmark smoke test. Stops at the first failing step.
#
#   scripts/test.sh          the full run (what CI runs)
#   scripts/test.sh --quick  a developer's loop: the same builds and tests, fuzzing for 5 s
#                            per target instead of 60, no benchmark smoke test
#   FUZZ_SECONDS=N   time per fuzz target (default 60)
#   PYTEST_ARGS=...  extra arguments for the integration tests (e.g. "-k foundation -x")
set -euo pipefail

QUICK=0
for arg in "$@"; do
    case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "test.sh: unknown argument '$arg' (expected --quick)" >&2
        exit 2
        ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ "$QUICK" -eq 1 ]; then
    FUZZ_SECONDS=${FUZZ_SECONDS:-5}
else
    FUZZ_SECONDS=${FUZZ_SECONDS:-60}
fi
STEP=""
STEP_START=0
SUMMARY=()
PASSED=0

step() {
    STEP=$1
    STEP_START=$SECONDS
    echo
    echo "==> [$(date -u +%H:%M:%S)] $STEP"
}

step_done() {
    local took=$((SECONDS - STEP_START))
    SUMMARY+=("  ok   ${took}s  $STEP")
    PASSED=$((PASSED + 1))
    echo "==> ok: $STEP (${took}s)"
}

FUZZ_TMP=""
PKG_TMP=""
on_exit() {
    local rc=$?
    [ -z "$FUZZ_TMP" ] || rm -rf "$FUZZ_TMP"
    [ -z "$PKG_TMP" ] || rm -rf "$PKG_TMP"
    if [ $rc -ne 0 ] && [ -n "$STEP" ]; then
        echo
        echo "==> FAILED: $STEP (exit $rc, after $((SECONDS - STEP_START))s)" >&2
        printf '%s\n' "${SUMMARY[@]}" >&2
        echo "steps: $PASSED passed, 1 failed" >&2
    fi
}
trap on_exit EXIT

step "setup: system and npm packages (scripts/setup.sh)"
scripts/setup.sh
step_done

step "tree: clang-format clean, layering and includes (scripts/check_tree.py)"
mapfile -t csources < <(git ls-files '*.c' '*.h')
clang-format --dry-run -Werror "${csources[@]}"
python3 scripts/check_tree.py
echo "tree: ${#csources[@]} C files formatted, layers and includes in order"
step_done

step "build: build/, build-asan/, build-release/, build-fuzz/ (scripts/build.sh all)"
scripts/build.sh all
step_done

step "unit tests under ASan/UBSan (ctest --test-dir build-asan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --no-tests=error
step_done

step "unit tests, optimised builds (ctest --test-dir build, then build-release)"
ctest --test-dir build --output-on-failure --no-tests=error
ctest --test-dir build-release --output-on-failure --no-tests=error
step_done

step "install and package: cmake --install into a prefix, cpack -G DEB, dpkg -x, --version, man -l"
PKG_TMP=$(mktemp -d)
version=$(sed -n 's/^project(mongotap VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
cmake --install build-release --prefix "$PKG_TMP/prefix" >/dev/null
[ "$("$PKG_TMP/prefix/bin/mongotap" --version)" = "mongotap $version" ]
[ -f "$PKG_TMP/prefix/share/man/man1/mongotap.1" ] || { echo "install: no man page" >&2; exit 1; }
(cd build-release && cpack -G DEB -B "$PKG_TMP/deb" >"$PKG_TMP/cpack.log" 2>&1) || {
    cat "$PKG_TMP/cpack.log" >&2
    exit 1
}
deb="$PKG_TMP/deb/mongotap_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "cpack made no $deb" >&2; ls "$PKG_TMP/deb" >&2; exit 1; }
echo "package: $(basename "$deb"): $(dpkg-deb --field "$deb" Depends)"
dpkg-deb --field "$deb" Depends | grep -q 'libuv1' || { echo "package: no libuv1 dependency" >&2; exit 1; }
dpkg -x "$deb" "$PKG_TMP/root"
"$PKG_TMP/root/usr/bin/mongotap" --version
[ "$("$PKG_TMP/root/usr/bin/mongotap" --version)" = "mongotap $version" ]
# the page renders without a groff warning and says what --help says
MANWIDTH=100 man --warnings -l "$PKG_TMP/root/usr/share/man/man1/mongotap.1" \
    >"$PKG_TMP/man.txt" 2>"$PKG_TMP/man.err"
if [ -s "$PKG_TMP/man.err" ]; then
    cat "$PKG_TMP/man.err" >&2
    exit 1
fi
for section in NAME USAGE "PROXY OPTIONS" "RUN OPTIONS" "EXIT STATUS OF MONGOTAP RUN" SIGNALS; do
    grep -q "^$section" "$PKG_TMP/man.txt" || { echo "man page: no $section section" >&2; exit 1; }
done
echo "man -l: $(wc -l <"$PKG_TMP/man.txt") lines, sections: $(grep -c '^[A-Z]' "$PKG_TMP/man.txt")"
step_done

step "integration tests under ASan/UBSan (pytest tests/integration)"
[ -x build-asan/proxy/mongotap ] || { echo "build-asan/proxy/mongotap was not built" >&2; exit 1; }
# pytest prints its own summary line; exit 5 (nothing collected) is a failure here too.
# shellcheck disable=SC2086
MONGOTAP_BIN=build-asan/proxy/mongotap \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration ${PYTEST_ARGS:-} || {
    rc=$?
    [ $rc -eq 5 ] && echo "pytest collected no tests" >&2
    exit $rc
}
step_done

step "fuzz: each build-fuzz/tests/fuzz_* for ${FUZZ_SECONDS}s over a copy of tests/fuzz/corpus"
FUZZ_TMP=$(mktemp -d)
nfuzz=0
for bin in build-fuzz/tests/fuzz_*; do
    [ -x "$bin" ] && [ -f "$bin" ] || continue
    name=$(basename "$bin")
    mkdir -p "$FUZZ_TMP/$name/corpus" "$FUZZ_TMP/$name/artifacts"
    # a per-target corpus folder if there is one, else the shared seeds
    if [ -d "tests/fuzz/corpus/$name" ]; then
        cp -r "tests/fuzz/corpus/$name/." "$FUZZ_TMP/$name/corpus/"
    elif [ -d tests/fuzz/corpus ]; then
        find tests/fuzz/corpus -maxdepth 1 -type f -exec cp {} "$FUZZ_TMP/$name/corpus/" \;
    fi
    echo "fuzz: $name: $(find "$FUZZ_TMP/$name/corpus" -type f | wc -l) seed(s), ${FUZZ_SECONDS}s"
    if ! "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$FUZZ_TMP/$name/artifacts/" "$FUZZ_TMP/$name/corpus" \
        >"$FUZZ_TMP/$name/log" 2>&1; then
        tail -n 60 "$FUZZ_TMP/$name/log" >&2
        echo "fuzz: $name found a crash; inputs:" >&2
        for a in "$FUZZ_TMP/$name/artifacts"/*; do
            [ -f "$a" ] && { echo "  $(basename "$a"): $(od -An -tx1 -v "$a" | head -c 600 | tr -s ' \n' ' ')" >&2; }
        done
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$FUZZ_TMP/$name/log" | sed "s/^/fuzz: $name: /" || true
    nfuzz=$((nfuzz + 1))
done
if [ "$nfuzz" -eq 0 ]; then
    echo "no fuzz targets were built in build-fuzz/tests" >&2
    exit 1
fi
echo "fuzz: $nfuzz target(s), 0 crashes"
step_done

step "bench smoke (bench/smoke.sh)"
if [ "$QUICK" -eq 1 ]; then
    echo "bench smoke: skipped (--quick)"
elif [ -x bench/smoke.sh ]; then
    bench/smoke.sh
else
    echo "bench/smoke.sh not present yet: nothing to run"
fi
step_done

echo
echo "==> summary"
printf '%s\n' "${SUMMARY[@]}"
echo "steps: $PASSED passed, 0 failed"
