"""The house stays as built (issue 24): no import cycle in python/gradkit, no function-local
import that dodges one, no cpp/ area including another area's files, and intrinsics only in
the SIMD layer and the GEMM micro-kernels.

Everything is read from the source text (ast for Python, `#include "..."` lines for C++):
gradkit itself is never imported here. The detectors are tested on small synthetic trees
at the end of the file.
"""
import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "gradkit"
CPP = ROOT / "cpp"

# cpp/ folders every area may include; every other folder of cpp/ is an area of its own.
SHARED_CPP = ("include", "core")
# Where x86 intrinsics may appear (paths relative to cpp/): the SIMD layer and the GEMM
# micro-kernels (their templates in gemm/*_impl.h, one instantiation per *gemm_ukernel* file).
INTRINSICS_ALLOWED = ("include/gradkit/simd*.h", "gemm/*_impl.h", "*gemm_ukernel*")
INTRINSIC = re.compile(r"\b_mm(?:256|512)?_\w+")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)
CPP_SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".in"}


# ---------------------------------------------------------------------------------------
# Python: the import graph
# ---------------------------------------------------------------------------------------

def python_modules(package):
    """{dotted name: path} of every .py file under `package` (a package is its __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_submodule(name, modules, package):
    """Whether dotted `name` is a module: a .py file, a package, or a stub/extension (_core)."""
    if name in modules:
        return True
    folder = package.parent.joinpath(*name.split(".")[:-1])
    last = name.split(".")[-1]
    return (folder / f"{last}.pyi").exists() or any(folder.glob(f"{last}.*.so"))


def _import_nodes(tree):
    """(node, local) for every import statement; local = inside a def or a lambda.

    Imports under `if TYPE_CHECKING:` never run and are left out."""
    found = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(ast.Module(body=[orelse], type_ignores=[]), local)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, local))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda)))

    visit(tree, False)
    return found


def _targets(node, module, is_package, modules, package):
    """The gradkit modules an import statement runs, as dotted names.

    `from X import n` runs X.n when that is a module, else X itself. Importing a.b.c first
    runs the packages a and a.b: those are targets too, except the importer's own enclosing
    packages, which are already being imported when the importer runs."""
    root = package.name
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        named = []
        for alias in node.names:
            sub = f"{prefix}.{alias.name}"
            named.append(sub if _is_submodule(sub, modules, package) else prefix)
    enclosing = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    if is_package:
        enclosing.add(module)
    targets = set()
    for name in named:
        if name != root and not name.startswith(root + "."):
            continue
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in enclosing:
                targets.add(parent)
        if name != module:
            targets.add(name)
    return targets


def import_graph(package):
    """(module-level edges, function-local imports) of the gradkit-internal imports.

    edges: {module: {imported module: first line}}; local: [(module, line, imported module)]."""
    modules = python_modules(package)
    edges = {name: {} for name in modules}
    local = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, is_local in _import_nodes(tree):
            for target in sorted(_targets(node, module, is_package, modules, package)):
                if is_local:
                    local.append((module, node.lineno, target))
                else:
                    edges[module].setdefault(target, node.lineno)
    return edges, local


def find_cycles(edges):
    """Every strongly connected component with more than one module (or a self-import),
    each as a list of modules in one cycle order."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, {}):
                start = min(component)
                components.append(path_between(start, start, edges, within=set(component)))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return components


def path_between(start, goal, edges, within=None):
    """A shortest import chain start -> ... -> goal, or None."""
    previous, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(edges.get(v, {})):
                if within is not None and w not in within:
                    continue
                if w == goal:
                    chain = [w, v]
                    while previous[chain[-1]] is not None:
                        chain.append(previous[chain[-1]])
                    return chain[::-1]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return None


def _where(module, modules):
    path = modules[module]
    return path.relative_to(path.parents[len(module.split(".")) - (path.name != "__init__.py")])


def _describe_chain(chain, edges, modules):
    """'gradkit/a.py:3 imports gradkit.b, gradkit/b.py:1 imports gradkit.a'."""
    return ", ".join(f"{_where(a, modules)}:{edges[a][b]} imports {b}"
                     for a, b in zip(chain, chain[1:]))


def cycle_messages(package):
    edges, _ = import_graph(package)
    modules = python_modules(package)
    return [_describe_chain(cycle, edges, modules) for cycle in find_cycles(edges)]


def dodge_messages(package):
    """Function-local gradkit imports that would close a cycle if made at module level."""
    edges, local = import_graph(package)
    modules = python_modules(package)
    messages = []
    for module, line, target in local:
        chain = path_between(target, module, edges)
        if chain is not None:
            messages.append(f"{_where(module, modules)}:{line} imports {target} inside a "
                            f"function, dodging the cycle it would close at module level: "
                            f"{_describe_chain(chain, edges, modules)}")
    return messages


def test_no_import_cycle():
    cycles = cycle_messages(PACKAGE)
    assert not cycles, "import cycles among module-level imports:\n" + "\n".join(cycles)


def test_no_local_import_dodges_a_cycle():
    # Optional extras (matplotlib, mpi4py, onnx, onnxruntime, tqdm, torch) are imported
    # inside functions on purpose; only gradkit's own modules count here.
    dodges = dodge_messages(PACKAGE)
    assert not dodges, "function-local imports that dodge a cycle:\n" + "\n".join(dodges)


def test_layers_import_downwards():
    """gk.nn sits below gk.distributed (SyncBatchNorm reaches MPI through gradkit._mpi), and the
    Trainer reaches the callbacks' base at module level."""
    edges, _ = import_graph(PACKAGE)
    nn_up = [(m, t) for m, targets in edges.items() if m.startswith("gradkit.nn")
             for t in targets if t.startswith(("gradkit.distributed", "gradkit.train", "gradkit.callbacks"))]
    assert nn_up == [], f"gk.nn imports a layer above it: {nn_up}"
    assert "gradkit._mpi" in edges["gradkit.nn.sync_batchnorm"]
    assert "gradkit.callbacks.base" in edges["gradkit.train.trainer"]


# ---------------------------------------------------------------------------------------
# C++: includes between areas, intrinsics
# ---------------------------------------------------------------------------------------

def cpp_files(cpp):
    return [p for p in sorted(cpp.rglob("*")) if p.is_file() and p.suffix in CPP_SUFFIXES]


def _resolve_include(name, source, cpp):
    """The file `#include "name"` in `source` reaches: the source's folder first, then the
    include paths of CMakeLists.txt (cpp/include, cpp)."""
    for folder in (source.parent, cpp / "include", cpp):
        candidate = (folder / name).resolve()
        if candidate.is_file():
            return candidate
    return None


def include_messages(cpp):
    """Includes that cross areas. An area (a folder of cpp/ other than include/ and core/)
    may include its own files, cpp/include and cpp/core; cpp/core may include itself and
    cpp/include; cpp/include only itself."""
    cpp = cpp.resolve()
    messages = []
    for source in cpp_files(cpp):
        area = source.relative_to(cpp).parts[0]
        allowed = {area, "include"} | ({"core"} if area != "include" else set())
        text = source.read_text()
        for match in INCLUDE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{source.relative_to(cpp.parent)}:{line}"
            target = _resolve_include(match.group(1), source, cpp)
            if target is None or cpp not in target.parents:
                messages.append(f'{where} includes "{match.group(1)}", found nowhere in cpp/')
                continue
            target_area = target.relative_to(cpp).parts[0]
            if target_area not in allowed:
                messages.append(f'{where} ({area}/) includes "{match.group(1)}" = '
                                f'{target.relative_to(cpp.parent)} of area {target_area}/')
    return messages


def _strip_comments(text):
    """C++ text with comments blanked out (line numbers kept)."""
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def intrinsic_messages(cpp, allowed=INTRINSICS_ALLOWED):
    cpp = cpp.resolve()
    messages = []
    for source in cpp_files(cpp):
        relative = source.relative_to(cpp).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in allowed):
            continue
        for number, line in enumerate(_strip_comments(source.read_text()).splitlines(), 1):
            names = sorted(set(INTRINSIC.findall(line)))
            if names:
                messages.append(f"{source.relative_to(cpp.parent)}:{number}: {', '.join(names)}")
    return messages


def test_no_include_across_areas():
    crossing = include_messages(CPP)
    assert not crossing, ("cpp/ areas include only their own files, cpp/include and "
                          "cpp/core:\n" + "\n".join(crossing))


def test_intrinsics_only_in_simd_layer_and_gemm_microkernels():
    leaks = intrinsic_messages(CPP)
    assert not leaks, (f"x86 intrinsics outside {', '.join(INTRINSICS_ALLOWED)} "
                       f"(cpp/):\n" + "\n".join(leaks))


# ---------------------------------------------------------------------------------------
# The detectors themselves, on synthetic trees
# ---------------------------------------------------------------------------------------

def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_detectors_find_python_cycles_and_dodges(tmp_path):
    package = tmp_path / "gradkit"
    _write(package, {
        "__init__.py": "from . import a, sub\nfrom .c import f\n",
        "a.py": "from .b import g\n",
        "b.py": "import gradkit.a\n",                   # a <-> b at module level
        "c.py": "def f():\n    from .d import h\n    import numpy\n",
        "d.py": "from gradkit.c import f\n",            # c's local import of d dodges c <-> d
        "e.py": "def k():\n    from . import a\n",      # local, but a never reaches e
        "sub/__init__.py": "from .leaf import x\n",
        "sub/leaf.py": "from .. import c\nfrom ..a import g\nx = 1\n",
    })
    cycles = cycle_messages(package)
    assert len(cycles) == 1, cycles
    assert cycles[0] == "gradkit/a.py:1 imports gradkit.b, gradkit/b.py:1 imports gradkit.a"
    dodges = dodge_messages(package)
    assert len(dodges) == 1, dodges
    assert dodges[0].startswith("gradkit/c.py:2 imports gradkit.d inside a function")
    assert dodges[0].endswith(": gradkit/d.py:1 imports gradkit.c")
    # Reaching the package gradkit.sub from outside runs its __init__; the package's own
    # modules importing `..` do not re-enter the package they live in.
    edges, _ = import_graph(package)
    assert set(edges["gradkit.sub.leaf"]) == {"gradkit.c", "gradkit.a"}
    assert set(edges["gradkit"]) == {"gradkit.a", "gradkit.sub", "gradkit.c"}


def test_detectors_find_cross_area_includes_and_intrinsics(tmp_path):
    cpp = tmp_path / "cpp"
    _write(cpp, {
        "include/gradkit/simd.h": "__m256 v = _mm256_setzero_ps();\n",
        "core/isa.cpp": '#include "gradkit/simd.h"\n',
        "gemm/gemm_impl.h": "x = _mm512_set1_ps(1);\n",
        "conv/conv_impl.h": '#include "gradkit/simd.h"\n#include "vec.h"\n',
        "conv/vec.h": "// _mm_add_ps is named in a comment only\n",
        "pool/pool_impl.h": '#include "../conv/vec.h"\n#include "conv/conv_impl.h"\n'
                            "y = _mm_add_ps(a, b);\n",
        "bindings/bind.cpp": '#include "gradkit/simd.h"\n#include "core/isa.cpp"\n'
                             '#include "pool/pool_impl.h"\n',
    })
    crossing = include_messages(cpp)
    assert [m.split(" ")[0] for m in crossing] == [
        "cpp/bindings/bind.cpp:3", "cpp/pool/pool_impl.h:1", "cpp/pool/pool_impl.h:2"]
    assert "cpp/conv/vec.h of area conv/" in crossing[1]
    assert intrinsic_messages(cpp) == ["cpp/pool/pool_impl.h:3: _mm_add_ps"]
