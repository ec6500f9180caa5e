#!/usr/bin/env python3
"""Checks that no ISA-specific code can run outside its ISA (docs/design.md, "Dispatch").

The build runs it on the linked module and on the object files of each ISA group:

    check_isa.py --module _core.so --generic a.o b.o --avx2 c.o --avx512 d.o

It fails (exit status 1, one line per problem) when
  (a) a function of the module outside the per-ISA namespaces gk::avx2 and gk::avx512
      contains AVX instructions (VEX/EVEX-encoded ops, ymm/zmm or mask registers), or a
      function of gk::avx2 contains AVX-512 ones;
  (b) object files of two ISA groups (generic, avx2, avx512) define the same weak
      symbol: the linker keeps one copy for every caller, possibly the AVX-512 one;
  (c) an ISA object file has static initializers, which run at load, before any CPU check.
A function belongs to an ISA when its mangled name names the ISA's namespace (its own
functions, lambdas, OpenMP regions and templates instantiated with its types).
Without objdump or nm it prints why and passes.
"""
import argparse
import re
import shutil
import subprocess
import sys

ISAS = ("generic", "avx2", "avx512")
# The per-ISA namespaces as they appear in Itanium-mangled names (gk::avx2, gk::avx512).
ISA_MANGLED = {"avx512": "2gk6avx512", "avx2": "2gk4avx2"}

FUNC_RE = re.compile(r"^[0-9a-f]+ <(.+)>:$")
# objdump -d line: "  addr:\tmnemonic operands".
INSN_RE = re.compile(r"^\s*[0-9a-f]+:\s+(\S+)\s*(.*)$")
VEC256_RE = re.compile(r"%ymm|%zmm|%k[0-7]\b")
AVX512_RE = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|\{%k")
# VMX instructions also start with "v" but never appear in user code; "vzeroupper" is AVX.
NOT_AVX = ("vmcall", "vmlaunch", "vmresume", "vmxoff", "vmxon", "vmread", "vmwrite", "vmptrld", "vmptrst",
           "vmclear", "verr", "verw")


def function_isa(name):
    """The ISA a (mangled) function name belongs to: the richest ISA namespace it names."""
    for isa in ("avx512", "avx2"):
        if ISA_MANGLED[isa] in name:
            return isa
    return "generic"


def is_avx(mnemonic, operands):
    if mnemonic.startswith("v") and not mnemonic.startswith(NOT_AVX):
        return True
    if mnemonic.startswith("k"):  # AVX-512 mask instructions (kmovw, kortestw, ...)
        return True
    return bool(VEC256_RE.search(operands))


def is_avx512(mnemonic, operands):
    return mnemonic.startswith("k") or bool(AVX512_RE.search(operands))


def check_module(path, objdump):
    """(a): AVX in functions outside the ISA namespaces, AVX-512 in gk::avx2 functions."""
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", path], check=True, capture_output=True,
                         text=True).stdout
    problems, seen = [], {}
    func = None
    nfunc = 0
    for line in out.splitlines():
        m = FUNC_RE.match(line)
        if m:
            func = m.group(1)
            nfunc += 1
            continue
        m = INSN_RE.match(line)
        if func is None or not m or func in seen:
            continue
        mnemonic, operands = m.group(1), m.group(2)
        isa = function_isa(func)
        bad = (isa == "generic" and is_avx(mnemonic, operands)) or (isa == "avx2" and is_avx512(mnemonic, operands))
        if bad:
            seen[func] = True
            what = "AVX-512" if isa == "avx2" else "AVX"
            problems.append(f"{path}: {isa} function {func} contains {what} code: {mnemonic} {operands}".rstrip())
    return problems, nfunc


def defined_symbols(path, nm):
    """{symbol: nm type letter} of the symbols an object file defines."""
    out = subprocess.run([nm, "--defined-only", "-P", path], check=True, capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            syms[parts[0]] = parts[1]
    return syms


def check_objects(groups, nm, objdump):
    """(b): weak symbols defined by objects of two ISA groups; (c): ISA objects with static initializers."""
    problems = []
    owners = {}  # weak function symbol -> {isa: object}
    for isa, objects in groups.items():
        for obj in objects:
            for sym, kind in defined_symbols(obj, nm).items():
                if kind == "W":
                    owners.setdefault(sym, {}).setdefault(isa, obj)
            if isa != "generic":
                headers = subprocess.run([objdump, "-h", obj], check=True, capture_output=True, text=True).stdout
                if re.search(r"\s\.(init_array|ctors)\b", headers):
                    problems.append(f"{obj}: {isa} object has static initializers (they run at load, "
                                    "before the CPU check)")
    for sym, by_isa in sorted(owners.items()):
        if len(by_isa) > 1:
            where = ", ".join(f"{isa} {obj}" for isa, obj in by_isa.items())
            problems.append(f"weak symbol {sym} is defined with the flags of several ISAs ({where}): "
                            "the linker keeps one copy for all callers")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", help="the linked module (.so) to disassemble")
    for isa in ISAS:
        parser.add_argument(f"--{isa}", nargs="*", default=[], metavar="OBJ",
                            help=f"object files compiled with the {isa} flags")
    args = parser.parse_args(argv)
    objdump, nm = shutil.which("objdump"), shutil.which("nm")
    if objdump is None or nm is None:
        print("check_isa: skipped: objdump or nm (binutils) not found")
        return 0
    groups = {isa: getattr(args, isa) for isa in ISAS}
    problems = check_objects(groups, nm, objdump)
    nfunc = 0
    if args.module and not subprocess.run([nm, args.module], capture_output=True, text=True).stdout:
        print(f"check_isa: {args.module} is stripped: its functions cannot be told apart; checking the objects only")
    elif args.module:
        module_problems, nfunc = check_module(args.module, objdump)
        problems += module_problems
    if problems:
        print("check_isa: ISA code can run outside its ISA (docs/design.md, Dispatch):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    nobj = sum(len(v) for v in groups.values())
    print(f"check_isa: ok ({nfunc} functions, {nobj} object files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
