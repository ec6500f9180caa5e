"""The build's ISA check (cpp/tools/check_isa.py) fails on code that leaks out of its ISA.

Each case compiles a tiny generic translation unit and an ISA-flagged one with the
same compiler and runs the checker on the objects and on the shared library linked
from them: a helper shared between the two (outside the per-ISA namespaces) must be
reported, the same helper inside gk::generic / gk::avx512 must pass.
"""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKER = Path(__file__).resolve().parents[1] / "cpp" / "tools" / "check_isa.py"
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")

pytestmark = [
    pytest.mark.skipif(not CHECKER.exists(), reason="cpp/tools/check_isa.py is not in this checkout"),
    pytest.mark.skipif(CXX is None or shutil.which(CXX) is None, reason="no C++ compiler"),
    pytest.mark.skipif(shutil.which("objdump") is None or shutil.which("nm") is None, reason="no binutils"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 ISA flags"),
]

# A dot product used by both files; NS is the namespace it lives in.
HELPER = """
#pragma once
namespace NS {
inline float dot(const float* a, const float* b, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}
"""
GENERIC = """
#include "helper.h"
float generic_dot(const float* a, const float* b, int n) { return NS::dot(a, b, n); }
"""
ISA = """
#include "helper.h"
namespace gk::ISA {
float isa_dot(const float* a, const float* b, int n) { return NS::dot(a, b, n); }
}
"""
ISA_FLAGS = {"avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mavx2", "-mfma"]}


def build(tmp_path, generic_ns, isa_ns, isa="avx512", isa_flags=None, extra_isa_code=""):
    """Compiles the pair at -O0 (nothing inlined) and links the ISA object first, so
    that its copy of a shared weak function is the one kept. Returns (objects, module)."""
    (tmp_path / "helper.h").write_text(HELPER)
    (tmp_path / "generic.cpp").write_text(GENERIC)
    (tmp_path / "isa.cpp").write_text(ISA.replace("gk::ISA", f"gk::{isa}") + extra_isa_code)
    flags = isa_flags if isa_flags is not None else ISA_FLAGS[isa]
    # The helper's namespace NS is a macro, so that one header serves both files.
    common = [CXX, "-std=c++17", "-O0", "-fPIC", "-c"]
    subprocess.run(common + [f"-DNS={generic_ns}", "generic.cpp", "-o", "generic.o"], cwd=tmp_path, check=True)
    subprocess.run(common + [f"-DNS={isa_ns}", *flags, "isa.cpp", "-o", "isa.o"], cwd=tmp_path, check=True)
    subprocess.run([CXX, "-shared", "isa.o", "generic.o", "-o", "pair.so"], cwd=tmp_path, check=True)
    return tmp_path / "generic.o", tmp_path / "isa.o", tmp_path / "pair.so"


def run_checker(*args):
    r = subprocess.run([sys.executable, str(CHECKER), *map(str, args)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def test_shared_inline_function_is_reported(tmp_path):
    gen, isa, so = build(tmp_path, "shared", "shared")
    code, out = run_checker("--module", so, "--generic", gen, "--avx512", isa)
    assert code == 1, out
    # (b): both objects define the weak helper...
    assert "weak symbol _ZN6shared3dotEPKfS1_i" in out, out
    # (a): ...and the module kept the AVX-512 copy, outside the per-ISA namespaces.
    assert "generic function _ZN6shared3dotEPKfS1_i contains AVX code" in out, out


def test_objects_alone_report_the_weak_symbol(tmp_path):
    gen, isa, _ = build(tmp_path, "shared", "shared")
    code, out = run_checker("--generic", gen, "--avx512", isa)
    assert code == 1 and "_ZN6shared3dotEPKfS1_i" in out, out


def test_helper_inside_each_isa_namespace_passes(tmp_path):
    gen, isa, so = build(tmp_path, "gk::generic", "gk::avx512")
    code, out = run_checker("--module", so, "--generic", gen, "--avx512", isa)
    assert code == 0, out
    assert out.startswith("check_isa: ok"), out


def test_avx512_code_in_the_avx2_namespace_is_reported(tmp_path):
    # An avx2 file compiled with AVX-512 flags: its vector loop uses zmm registers or masks.
    gen, isa, so = build(tmp_path, "gk::generic", "gk::avx2", isa="avx2",
                         isa_flags=["-mavx512f", "-mavx512vl", "-O3"])
    code, out = run_checker("--module", so, "--generic", gen, "--avx2", isa)
    assert code == 1 and "contains AVX-512 code" in out, out


def test_static_initializer_in_an_isa_object_is_reported(tmp_path):
    init = "\nfloat load_value();\nstatic float g_value = load_value();\nfloat get_value() { return g_value; }\n"
    gen, isa, _ = build(tmp_path, "gk::generic", "gk::avx512", extra_isa_code=init)
    code, out = run_checker("--generic", gen, "--avx512", isa)
    assert code == 1 and "static initializers" in out, out
