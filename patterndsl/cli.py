"""The `patterndsl` command.

Exit codes: 0 success, 1 an error in the input (diagnostics on stderr),
2 a usage error, 3 (check, verify) a condition that fails or is undecided, or a
certificate claim that fails, 4 (verify) no claim fails but some were too costly to
re-check within --budget (they are listed; raise --budget to check them), 70 an
internal error (a bug in patterndsl: the input should have been answered; please
report it).

Every file the command writes is written to a temporary file in the output's
folder and renamed into place, so a reader never sees a partial file, and an
output that is one of the command's input files is refused.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from . import ast as A
from .blocksize import block_size_problem
from .compiled import compile as compile_pattern
from .compiled import load_source, parse, read_stream
from .errors import Diagnostic, Source, SpatError, warning
from .formatter import format as format_module
from .reference import budget_scope, parse_size
from .targets import get_target, target_names

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70
DEFAULT_TARGET = "torch"
DEFAULT_CHECK_BUDGET = 10.0  # seconds of CPU for check's searches
MAX_GRID_SIDE = 256  # `layout --grid` draws layouts up to this many blocks per side


class UsageError(Exception):
    pass


# each option as typed, by its argparse name: to name the options a refusal is about
FLAGS = {"file": "FILE", "n": "--n", "m": "--m", "memory_budget": "--memory-budget", "target": "--target",
         "output": "-o", "emit": "--emit", "no_simplify": "--no-simplify", "block_size": "--block-size",
         "width": "--width", "grid": "--grid", "budget": "--budget"}


class Once(argparse.Action):
    """Store an option's value (or True, for a flag), refusing it a second time: the value
    given first would do nothing (argparse keeps the last one, silently)."""

    def __init__(self, option_strings, dest, flag=False, **kwargs):
        if flag:
            kwargs.update(nargs=0, const=True, default=False)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if self.dest in vars(namespace).setdefault("given_options", set()):
            parser.error(f"{option_string} given twice: give it once")
        namespace.given_options.add(self.dest)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


class OnceFlag(Once):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, flag=True, **kwargs)


def refuse_unused(args, names, why: str) -> None:
    """A usage error naming those of ``names`` that were given, where they would do nothing
    (``why``): an option given is used, never silently ignored (so options that have a
    default are None until resolved: given or not is then known)."""
    given = [FLAGS[name] for name in names if getattr(args, name, None) not in (None, False)]
    if given:
        raise UsageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} nothing {why}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _block_size(text: str) -> "int | tuple[int, int]":
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"a block size is B or BQxBK, got {text!r}")
    sizes = []
    for part in parts:
        try:
            sizes.append(int(part.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {part.strip()!r}") from None
        problem = block_size_problem(sizes[-1])
        if problem:
            raise argparse.ArgumentTypeError(problem)
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def _path(text: str) -> str:
    """A file name: an empty one would read as the current folder, or as no output at all."""
    if not text:
        raise argparse.ArgumentTypeError("an empty file name")
    return text


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds ≥ 0, got {text}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("patterndsl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patterndsl",
        description="Compile sparse attention patterns written in the .spat language.",
        epilog="Exit codes: 0 success, 1 an error in the input, 2 a usage error, "
               "3 (check, verify) a condition or claim that fails or is undecided, "
               "4 (verify) claims left unchecked within --budget, "
               "70 an internal error (a bug: please report it).")
    parser.add_argument("--version", action="version", version=f"patterndsl {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help, many=False, optional=False):
        sub = commands.add_parser(name, help=help, description=help)
        sub.register("action", None, Once)  # an option given twice is refused, not overwritten
        sub.register("action", "store_true", OnceFlag)
        if many:
            sub.add_argument("files", nargs="+", metavar="FILE", type=_path, help=".spat files, or - for standard input")
        else:
            sub.add_argument("file", metavar="FILE", type=_path, nargs="?" if optional else None,
                             help="a .spat file, or - for standard input")
        return sub

    def with_n(sub, required=True):
        sub.add_argument("--n", type=_positive_int, required=required, metavar="N", help="the sequence length")
        sub.add_argument("--m", type=_positive_int, metavar="M",
                         help="a cross file's number of queries, for its `queries m` (n is then the keys)")
        sub.add_argument("--memory-budget", type=_size, metavar="SIZE",
                         help="largest dense mask to build, e.g. 4G (default 2G, or PATTERNDSL_MEMORY_BUDGET)")

    mask = command("mask", "write the dense mask as a numpy array [layers, heads, n, n]")
    with_n(mask)
    mask.add_argument("-o", "--output", metavar="OUT", type=_path,
                      help="output file, in numpy's .npy format whatever its name (default: FILE's name with .npy)")

    comp = command("compile", "compile for a target (see --list-targets), or print the AST or IR", optional=True)
    with_n(comp, required=False)
    comp.add_argument("--target", metavar="NAME", help=f"the target (default: {DEFAULT_TARGET})")
    comp.add_argument("-o", "--output", metavar="OUT", type=_path,
                      help="output file (default: FILE's name with the target's suffix; with --emit, standard output)")
    comp.add_argument("--emit", choices=["ast", "ir"], help="print the AST, or the IR for --n, instead of compiling")
    comp.add_argument("--no-simplify", action="store_true", help="with --emit ir: the IR before simplification")
    comp.add_argument("--block-size", type=_block_size, metavar="B",
                      help="for a block-sparse target (flex, triton): B or BQxBK (default: the file's `block`, else 128)")
    comp.add_argument("--list-targets", action="store_true", help="list the targets and exit (no FILE needed)")

    show = command("show", "draw the mask in the terminal, one panel per layer and head")
    with_n(show)
    show.add_argument("--width", type=_positive_int, metavar="COLUMNS",
                      help="width of the drawing (default: the terminal's)")
    show.add_argument("--png", metavar="OUT.png", type=_path,
                      help="draw a picture instead (matplotlib): the block layout and, for n up to 4096, every pair")
    show.add_argument("--block-size", type=_block_size, metavar="B",
                      help="with --png: the block size, B or BQxBK (default: the file's `block`, else 128)")

    layout = command("layout", "print the block layout of every layer and head: blocks computed, "
                               "full and partial, block efficiency, with a warning where it is low")
    with_n(layout)
    layout.add_argument("--block-size", type=_block_size, metavar="B",
                        help="the block size, B or BQxBK (default: the file's `block`, else 128)")
    layout.add_argument("--grid", action="store_true",
                        help="also draw each layout's grid: '#' full, '+' partial, '.' empty")
    layout.add_argument("--json", action="store_true", help="print the layouts' numbers as JSON")

    check = command("check", "prove facts about the pattern: counts, growth, conditions, certificate "
                              "(without --n: the growth as a formula in n)")
    with_n(check, required=False)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--certificate", metavar="CERT", type=_path, help="write the certificate (JSON) to this file")
    check.add_argument("--budget", type=_seconds, metavar="SECONDS",
                       help=f"CPU time for searches that may be undecided (default {DEFAULT_CHECK_BUDGET:g})")

    verify = command("verify", "re-check a certificate with an independent checker")
    verify.add_argument("certificate", metavar="CERT", type=_path, help="a certificate written by `check --certificate`")
    verify.add_argument("--budget", type=_positive_int, default=DEFAULT_VERIFY_BUDGET, metavar="UNITS",
                        help="work allowed per claim, in key intervals and pairs touched (default "
                             f"{DEFAULT_VERIFY_BUDGET:,}); a claim that needs more is listed as unchecked, exit 4")

    fmt = command("fmt", "print a file in canonical form, or check or rewrite several", many=True)
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is not in canonical form")
    mode.add_argument("--write", action="store_true", help="rewrite the file in place")

    from . import experiments

    experiment = commands.add_parser("experiment", help="run one of the seed papers' experiments",
                                     description="run one of the seed papers' experiments")
    experiments.add_parsers(experiment)
    return parser


def _read(path: str) -> Source:
    if path == "-":
        return read_stream(sys.stdin.buffer, "<stdin>")
    return load_source(Path(path))


def _output_path(args, suffix: str) -> Path:
    if args.output:
        return Path(args.output)
    stem = "stdin" if args.file == "-" else Path(args.file).stem
    if suffix.endswith(".py"):  # a module: its name must be importable (my-pattern.v2 → my_pattern_v2)
        stem = _module_name(stem)
    return Path(stem + suffix)


def _module_name(stem: str) -> str:
    """``stem`` made a Python name: each character that cannot be in one becomes '_'."""
    name = re.sub(r"\W", "_", stem)
    return "_" + name if not name or name[0].isdigit() else name


def _input_paths(args) -> list[str]:
    """The files this command reads: an output may be none of them."""
    names = [getattr(args, "file", None), getattr(args, "certificate", None) if args.command == "verify" else None]
    return [name for name in names if name and name != "-"]


def _write(path: Path, write, args, replaces_input: bool = False) -> None:
    """Write an output through ``write(target_path)``: refused when it is one of the command's
    inputs (the same file, however named: ./p.spat, a symlink, a hard link), written to a
    temporary file in the same folder and renamed into place, so that the output is whole
    or absent and a reader never sees a partial file."""
    if not replaces_input:
        for name in _input_paths(args):
            if _same_file(path, Path(name)):
                raise SpatError(Diagnostic(f"refusing to write {path}: it is the input file {name}",
                                           help="choose another output file (-o OUT)"))
    try:
        _write_atomically(path, write)
    except OSError as exc:
        raise SpatError(Diagnostic(f"cannot write {path}: {exc.strerror or exc}")) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return False


def _write_atomically(path: Path, write) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "it is a directory")
    if mode is not None and not stat.S_ISREG(mode):
        # A device or pipe (-o /dev/null, /dev/stdout): written in place, never replaced.
        if stat.S_ISFIFO(mode):  # fails at once (ENXIO) when nobody reads it, instead of waiting
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        write(path)
        return
    final = Path(os.path.realpath(path))  # through symlinks: replace the file, keep the link
    handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
        os.replace(temporary, final)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _umask() -> int:
    """The process's umask (mkstemp makes files 0600; a new output gets the usual mode)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _save_npy(path: Path, array) -> None:
    import numpy as np

    with open(path, "wb") as out:  # a file object: np.save would add .npy to a name without it
        np.save(out, array)


def run_mask(args) -> int:
    compiled = compile_pattern(_read(args.file), args.n, memory_budget=args.memory_budget, m=args.m)
    masks = compiled.dense_all()
    out = _output_path(args, ".npy")
    _write(out, lambda path: _save_npy(path, masks), args)
    print(f"wrote {out}: bool {list(masks.shape)} (layers, heads, n, n), "
          f"{int(masks.sum()):,} connections", file=sys.stderr)
    return EXIT_OK


def _emit_text(text: str, args) -> None:
    """--emit's text: on standard output, or written to -o like every other output."""
    if args.output is None:
        print(text)
        return
    _write(Path(args.output), lambda path: path.write_text(text + "\n", encoding="utf-8"), args)
    print(f"wrote {args.output}: the {args.emit.upper()}", file=sys.stderr)


def run_compile(args) -> int:
    if args.list_targets:
        from .targets import TARGETS

        refuse_unused(args, ("file", "n", "m", "memory_budget", "target", "output", "emit", "no_simplify",
                             "block_size"), "with --list-targets (it lists the targets and exits)")

        for name in target_names():
            print(f"{name:10} {TARGETS[name].description}")
        return EXIT_OK
    if args.file is None:
        raise UsageError("the following arguments are required: FILE (only --list-targets goes without one)")
    if args.no_simplify and args.emit != "ir":
        raise UsageError("--no-simplify goes with --emit ir")
    if args.emit == "ast":
        refuse_unused(args, ("n", "m", "memory_budget", "target", "block_size"),
                      "with --emit ast (it prints the syntax tree, which is the same at every n: nothing is compiled)")
    elif args.emit == "ir":
        refuse_unused(args, ("memory_budget", "target", "block_size"),
                      "with --emit ir (it prints the IR instead of compiling: no mask, layout or module is built)")
    source = _read(args.file)
    if args.emit == "ast":
        _emit_text(dump_ast(parse(source)), args)
        return EXIT_OK
    if args.n is None:
        raise UsageError("--n is required" + (" with --emit ir" if args.emit else ""))
    try:
        target = None if args.emit else get_target(args.target or DEFAULT_TARGET)
        if target is not None and args.block_size is not None:
            sizes = args.block_size if isinstance(args.block_size, tuple) else (args.block_size,)
            target.check_block_sizes(sizes)
    except SpatError as exc:
        raise UsageError(str(exc).removeprefix("error: ")) from None
    compiled = compile_pattern(source, args.n, simplify=not args.no_simplify, memory_budget=args.memory_budget, m=args.m)
    if args.emit == "ir":
        _emit_text(dump_ir(compiled), args)
        return EXIT_OK
    if compiled.cross and target.name not in ("torch", "flex"):
        raise SpatError(Diagnostic(f"the {target.name} target writes n × n kernels, and this is a cross file "
                                   f"(`queries`: m × n)", help="--target torch or flex; in Python, "
                                   "patterndsl.attention(q, k, v, compiled) runs a cross file on every backend"))
    out = _output_path(args, target.suffix)
    written = None

    def emit(path):
        nonlocal written
        written = target.emit(compiled, path, args.block_size)

    _write(out, emit, args)
    print(f"wrote {out}: {written}", file=sys.stderr)
    warnings = []
    if out.suffix == ".py" and not out.stem.isidentifier():
        warnings.append(warning(f"{out} cannot be imported as a module: {out.stem!r} is not a Python name",
                                help=f"name it e.g. {_module_name(out.stem)}.py"))
    if target.block_sparse:  # warn where the kernels would do mostly wasted work
        from .layout import describe_layouts

        warnings.extend(describe_layouts(compiled, args.block_size)[1])
    _print_warnings(warnings)
    return EXIT_OK


def run_show(args) -> int:
    from .show import render, render_png

    if args.png and not args.png.lower().endswith(".png") and not _is_device(args.png):
        raise UsageError(f"--png writes a PNG picture: name it OUT.png, not {args.png}")
    if args.block_size is not None and not args.png:
        raise UsageError("--block-size goes with --png")
    if args.png:
        refuse_unused(args, ("width",), "with --png (it sets the width of the drawing in the terminal)")
    compiled = compile_pattern(_read(args.file), args.n, memory_budget=args.memory_budget, m=args.m)
    if compiled.cross:
        raise SpatError(Diagnostic("show draws n × n patterns, and this is a cross file (`queries`: m × n)",
                                   help="write its mask with `patterndsl mask FILE --n N` ([layers, heads, m, n]) "
                                        "or see its blocks with `patterndsl layout`"))
    if args.png:
        drawn = None

        def draw(path):
            nonlocal drawn
            drawn = render_png(compiled, path, block_size=args.block_size)

        _write(Path(args.png), draw, args)
        print(f"wrote {args.png}: {drawn}", file=sys.stderr)
        return EXIT_OK
    width = args.width or shutil.get_terminal_size((80, 24)).columns
    sys.stdout.write(render(compiled, width=max(20, width)))
    return EXIT_OK


def _is_device(name: str) -> bool:
    try:
        return not stat.S_ISREG(os.stat(name).st_mode)
    except OSError:
        return False


def _print_warnings(warnings) -> None:
    for found in warnings:
        print(found.render(None), file=sys.stderr)


def run_layout(args) -> int:
    import json

    from .layout import describe_layouts, efficiency_warning

    if args.json:
        refuse_unused(args, ("grid",), "with --json (the JSON holds the layouts' numbers; --grid draws them in "
                                       "the text report)")
    compiled = compile_pattern(_read(args.file), args.n, memory_budget=args.memory_budget, m=args.m)
    if args.grid:
        block_q, block_k = compiled.block_sizes(args.block_size)
        rows, columns = -(-compiled.n // block_q), -(-compiled.n // block_k)
        if max(rows, columns) > MAX_GRID_SIDE:
            raise SpatError(Diagnostic(
                f"--grid draws layouts up to {MAX_GRID_SIDE} × {MAX_GRID_SIDE} blocks; this one is "
                f"{rows:,} × {columns:,} (n = {compiled.n:,}, blocks of {block_q} × {block_k})",
                help="use larger blocks (--block-size) or a smaller --n, or `patterndsl show --png` for a picture"))
    if args.json:
        report = []
        for layer in range(compiled.layers):
            for head, layout in enumerate(compiled.layouts(layer, args.block_size)):
                found = efficiency_warning(compiled.pattern(layer, head), layout)
                report.append({
                    "layer": layer, "head": head, "block_q": layout.block_q, "block_k": layout.block_k,
                    "query_blocks": layout.num_q_blocks, "key_blocks": layout.num_k_blocks,
                    "full": layout.num_full, "partial": layout.num_partial,
                    "connections": layout.connections, "computed_pairs": layout.computed_pairs(),
                    "efficiency": layout.efficiency(), "sparsity": layout.sparsity(),
                    "warning": None if found is None else found.to_json()})
        print(json.dumps(report, indent=1))
        return EXIT_OK
    text, warnings = describe_layouts(compiled, args.block_size, grid=args.grid)
    print(text)
    _print_warnings(warnings)
    return EXIT_OK


EXIT_CLAIM_FAILS = 3
EXIT_UNCHECKED = 4
DEFAULT_VERIFY_BUDGET = 1 << 31  # patterndsl.verify.DEFAULT_BUDGET, without importing it at startup


def run_check(args) -> int:
    import json

    from .analysis.check import CHECK_MEMORY, all_hold, check, render
    from .reference import format_bytes

    source = _read(args.file)
    if args.n is None:
        from .analysis.check import render_growth
        from .analysis.growth import growth_formula

        if args.certificate:
            raise UsageError("--certificate needs --n: certificates are about one sequence length")
        from . import ast as A
        from .compiled import parse

        if any(isinstance(stmt, A.Queries) for stmt in parse(source).statements):
            raise UsageError("a cross file (`queries`: m queries × n keys) is checked at one size: give --n "
                             "(and --m for `queries m`)")
        refuse_unused(args, ("m", "memory_budget", "budget"),
                      "without --n (the growth formula in n is read from the file: nothing is built or searched)")
        report = growth_formula(source)
        sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else render_growth(report, source.name))
        return EXIT_OK
    compiled = compile_pattern(source, args.n, memory_budget=args.memory_budget, m=args.m)
    if compiled.cross:  # m queries × n keys: counts and growth; C1–C3 are about square patterns
        from .cross_check import check_report, render_report

        if args.certificate:
            raise UsageError("--certificate is about C1–C3, which do not apply to a cross file (`queries`)")
        refuse_unused(args, ("budget",), "for a cross file (it bounds the searches for C1–C3, which do not "
                                         "apply to `queries`)")
        report = check_report(compiled)
        print(json.dumps(report, indent=1)) if args.json else sys.stdout.write(render_report(report, source.name))
        return EXIT_OK
    if args.memory_budget is not None and args.memory_budget <= CHECK_MEMORY:
        raise UsageError(f"--memory-budget {format_bytes(args.memory_budget)} does nothing for check: it always "
                         f"allows itself {format_bytes(CHECK_MEMORY)}; a budget above that raises it")
    report, cert = check(compiled, budget_seconds=DEFAULT_CHECK_BUDGET if args.budget is None else args.budget)
    if args.certificate:
        text = json.dumps(cert, indent=1)
        _write(Path(args.certificate), lambda path: path.write_text(text + "\n", encoding="utf-8"), args)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        sys.stdout.write(render(report, source.name))
    return EXIT_OK if all_hold(report) else EXIT_CLAIM_FAILS


MAX_CERTIFICATE_BYTES = 1 << 28  # a certificate lists a few numbers per head and layer


def run_verify(args) -> int:
    import json

    from .compiled import read_bounded
    from .verify import verify_report

    from .verify import certificate_shape_problem

    source = _read(args.file)
    try:
        text = read_bounded(Path(args.certificate), MAX_CERTIFICATE_BYTES).decode("utf-8")
        cert = json.loads(text)
    except json.JSONDecodeError as exc:  # where the JSON breaks, as FILE:LINE:COL with a caret
        raise SpatError(Diagnostic(f"cannot read the certificate: {exc.msg}", _json_span(text, exc.pos)),
                        Source(text, args.certificate)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpatError(Diagnostic(f"cannot read the certificate {args.certificate}: {exc}")) from None
    except RecursionError:
        raise SpatError(Diagnostic(f"cannot read the certificate {args.certificate}: JSON nested too deeply",
                                   help="a certificate written by `check --certificate` nests 5 levels")) from None
    problem = certificate_shape_problem(cert)
    n = cert.get("n") if isinstance(cert, dict) else None
    if problem is None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        problem = f"n: {n!r} is not a positive integer"
    if problem:  # pointed at the top-level value: the object that lacks the fields
        raise SpatError(Diagnostic(f"not a patterndsl certificate: {problem.removeprefix('certificate: ')}",
                                   _json_span(text, len(text) - len(text.lstrip()))),
                        Source(text, args.certificate))
    compiled = compile_pattern(source, n)
    result = verify_report(compiled, cert, max_work=args.budget)
    for failure in result["failures"]:
        print(f"FAILED: {failure}")
    for unchecked in result["unchecked"]:
        print(f"unchecked: {unchecked}")
    if result["failures"]:
        print(f"{args.certificate}: {len(result['failures'])} claim(s) fail")
        return EXIT_CLAIM_FAILS
    if result["unchecked"]:
        print(f"{args.certificate}: no claim fails, but {len(result['unchecked'])} claim(s) were not checked "
              f"within the budget (raise --budget)")
        return EXIT_UNCHECKED
    print(f"{args.certificate}: every claim was checked and holds")
    return EXIT_OK


def _json_span(text: str, pos: int):
    """The 1-based Span of the character at offset ``pos`` of a JSON text."""
    from .errors import Span

    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(line, column, line, column + 1)


def run_fmt(args) -> int:
    if not (args.check or args.write) and len(args.files) > 1:
        raise UsageError("printing takes one file; use --check or --write for several")
    status = EXIT_OK
    errors: list[SpatError] = []
    for name in args.files:
        try:
            source = _read(name)
            formatted = format_module(parse(source))
        except SpatError as exc:  # report every file's errors, then fail
            errors.append(exc)
            continue
        if args.check:
            if formatted != source.text:
                print(f"{source.name}: not in canonical form (run `patterndsl fmt --write {source.name}`)",
                      file=sys.stderr)
                status = EXIT_INPUT
        elif args.write:
            if name == "-":
                raise UsageError("--write needs files, not standard input")
            if formatted != source.text:
                _write(Path(name), lambda path: path.write_text(formatted, encoding="utf-8"), args,
                       replaces_input=True)
                print(f"reformatted {name}", file=sys.stderr)
        else:
            sys.stdout.write(formatted)
    for exc in errors:
        print(exc, file=sys.stderr)
    return EXIT_INPUT if errors else status


def dump_ast(node, indent: str = "") -> str:
    """The AST as an indented tree, one node per line, with each node's position."""
    lines = []
    stack = [(node, indent, "")]
    while stack:
        current, pad, label = stack.pop()
        if not isinstance(current, A.Node):
            lines.append(f"{pad}{label}{current!r}")
            continue
        fields = {k: v for k, v in vars(current).items() if k not in ("span", "comments", "blank_lines")}
        scalars = {k: v for k, v in fields.items() if not isinstance(v, (A.Node, tuple)) or v == ()}
        where = f"  @{current.span.line}:{current.span.column}" if getattr(current, "span", None) else ""
        head = ", ".join(f"{k}={v!r}" for k, v in scalars.items())
        lines.append(f"{pad}{label}{type(current).__name__}({head}){where}")
        children = []
        for key, value in fields.items():
            if isinstance(value, A.Node):
                children.append((value, pad + "  ", f"{key}: "))
            elif isinstance(value, tuple) and value and key not in scalars:
                for k, item in enumerate(value):
                    children.append((item, pad + "  ", f"{key}[{k}]: "))
        stack.extend(reversed(children))
    return "\n".join(lines)


def dump_ir(compiled) -> str:
    """Each layer's patterns in .spat syntax, heads with the same pattern grouped."""
    from .show import head_ranges

    lines = [f"# n = {compiled.n}, {compiled.layers} layer(s), {compiled.heads} head(s), prob {compiled.prob}"
             + (f", block {compiled.block_size[0]}x{compiled.block_size[1]}" if compiled.block_size else "")]
    for layer, patterns in enumerate(compiled.patterns):
        groups: dict = {}
        for head, pattern in enumerate(patterns):
            groups.setdefault(pattern, []).append(head)
        for pattern, heads in groups.items():
            which = f"heads {head_ranges(heads)}" if len(heads) > 1 else f"head {heads[0]}"
            lines.append(f"layer {layer}, {which}: {pattern}")
    return "\n".join(lines)


def run_experiment(args) -> int:
    from . import experiments

    return experiments.run(args)


COMMANDS = {"mask": run_mask, "compile": run_compile, "show": run_show, "layout": run_layout, "check": run_check,
            "verify": run_verify, "fmt": run_fmt, "experiment": run_experiment}


def _out_of_memory(args) -> str:
    from .reference import format_bytes, memory_budget

    try:
        budget = f"the memory budget of {format_bytes(memory_budget(getattr(args, 'memory_budget', None)))}"
    except SpatError:
        budget = "the memory budget"
    return str(SpatError(Diagnostic(
        f"out of memory: this machine could not provide what {budget} allows",
        help="lower the budget to the memory this machine has (--memory-budget, or PATTERNDSL_MEMORY_BUDGET), "
             "and what needs more is refused up front with its size")))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        with budget_scope(getattr(args, "memory_budget", None)):  # every refusal reads --memory-budget
            return COMMANDS[args.command](args)
    except SpatError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INPUT
    except UsageError as exc:
        print(f"patterndsl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        # Everything patterndsl builds is checked against the memory budget first; a MemoryError
        # means the machine could not provide what the budget allows (a budget raised beyond it).
        print(_out_of_memory(args), file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug in patterndsl, never the user's input: say so, briefly
        print(f"patterndsl: internal error ({type(exc).__name__}: {exc}); please report it with the input file",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
