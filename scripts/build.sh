#!/usr/bin/env bash
# build.sh: configures and builds mongotap's build trees; the Dockerfile uses it too, so it
# only configures and compiles (no tests, no installs).
#
#   scripts/build.sh                  build/ (RelWithDebInfo) and build-asan/ (ASan + UBSan)
#   scripts/build.sh normal|asan|release|fuzz
#                                     the named trees only, in the order given; release is a
#                                     plain -DCMAKE_BUILD_TYPE=Release tree in build-release/
#                                     (-O3: warnings the other trees do not show fail it)
#   scripts/build.sh all              all four; fuzz needs clang and builds only the fuzz targets
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${MT_BUILD_JOBS:-2}

configure_and_build() {
    local dir=$1
    shift
    echo "build: $dir: configure"
    mkdir -p "$dir"
    cmake -S . -B "$dir" -G "Unix Makefiles" "$@" >"$dir/configure.log" 2>&1 || {
        cat "$dir/configure.log" >&2
        echo "build: $dir: cmake configure failed" >&2
        exit 1
    }
}

build_normal() {
    configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
    echo "build: build: make -j$JOBS"
    make -C build -j"$JOBS" --no-print-directory
}

build_asan() {
    configure_and_build build-asan -DCMAKE_BUILD_TYPE=Debug -DMT_SANITIZE=ON
    echo "build: build-asan: make -j$JOBS"
    make -C build-asan -j"$JOBS" --no-print-directory
}

build_release() {
    configure_and_build build-release -DCMAKE_BUILD_TYPE=Release
    echo "build: build-release: make -j$JOBS"
    make -C build-release -j"$JOBS" --no-print-directory
}

build_fuzz() {
    local targets=() src
    CC=clang configure_and_build build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMT_FUZZ=ON -DMT_BENCH=OFF \
        "-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link,address,undefined"
    for src in tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        targets+=("$(basename "$src" .c)")
    done
    if [ ${#targets[@]} -eq 0 ]; then
        echo "build: build-fuzz: no tests/fuzz/fuzz_*.c targets yet"
        return 0
    fi
    echo "build: build-fuzz: make -j$JOBS ${targets[*]}"
    make -C build-fuzz -j"$JOBS" --no-print-directory "${targets[@]}"
}

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(normal asan)
for v in "${variants[@]}"; do
    case "$v" in
    normal) build_normal ;;
    asan) build_asan ;;
    release) build_release ;;
    fuzz) build_fuzz ;;
    all) build_normal; build_asan; build_release; build_fuzz ;;
    *)
        echo "build: unknown variant '$v' (expected normal, asan, release, fuzz or all)" >&2
        exit 2
        ;;
    esac
done
echo "build: done (${variants[*]})"
