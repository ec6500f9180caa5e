#!/usr/bin/env bash
# CI step: build the module with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DGK_SANITIZE=ON, its own build dir) and run a representative part of the suite
# under it. Any ASan or UBSan report stops the process, which fails the run.
# Usage: .ci/sanitize.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
build=build/sanitize

# The build tools, in the active environment (CI's test venv has only gradkit and its test extras).
python -m pip install -q "pybind11>=2.12" cmake ninja
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# No LTO: pybind11 adds it by default, and its link step takes minutes with ASan.
cmake -S . -B "$build" -G Ninja -DGK_SANITIZE=ON -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF "${launcher[@]}" >/dev/null
cmake --build "$build"

# The Python sources next to the sanitized module (which CMake puts in $build/python/gradkit).
tar -C python --exclude='*.so' --exclude=__pycache__ -cf - gradkit | tar -C "$build/python" -xf -

# ASan must come first in the process, before Python's own libraries; CPython keeps
# memory until exit by design, so leak checking is off.
# libstdc++ is preloaded too: python does not link it, and ASan's __cxa_throw interceptor
# must find it at start-up (otherwise the first C++ exception aborts).
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so.6)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONPATH="$build/python"
export GK_FUZZ_SCALE=0.2   # a fifth of the fuzz cases: each runs ~5x slower under ASan

# Every op and layer through the fuzz tests (a fifth of their cases), plus the kernel tests
# that are quick under ASan and the reliability tests. --capture=sys: a sanitizer report
# (written to fd 2 by C code) reaches the log instead of dying with pytest's capture file.
# (Not the tests that start Python under qemu: ASan's shadow memory does not run emulated.)
python -m pytest -q -p no:cacheprovider --capture=sys -k "not emulated" \
  tests/test_fuzz_ops.py tests/test_fuzz_layers.py tests/test_nn_loss.py tests/test_nn_pooling.py tests/test_nn_dropout.py \
  tests/test_serialization.py tests/test_fork.py tests/test_config.py tests/test_size_overflow.py \
  tests/test_module_threads.py \
  "$@"

echo "sanitize: done in $(( $(date +%s) - start )) s"
