"""Every device-zone module compiles for the boards, and the compiled bundle runs."""

import pytest

from edgestream_tools import boardbuild, bundle

SMOKE = r"""
import sys
import edgestream_shared, edgestream_agent
names = sys.argv[1:]
for n in names:
    m = __import__(n, None, None, ("x",))
    assert m.__file__.endswith(".mpy"), m.__file__
from edgestream_shared.encoder import Encoder
from edgestream_shared.frame import FrameReader, encode_frame
from edgestream_shared.decoder import decode
e = Encoder(b"d1", 3)
e.begin(b"results")
e.add_result(0, b"temp", b"w", 0, 1000, (b"count", b"avg"), (4, 1.5))
r = FrameReader()
r.feed(encode_frame(e.finish()))
m = decode(r.next())
print(len(names), m["items"][0]["aggs"]["avg"])
"""


def module_names():
    return [bundle.module_name(rel) for _, rel in bundle.sources()]


#: .mpy header byte 2: the arch of its machine code << 2 | 3, or 0 for bytecode only (mpy v6)
MPY_ARCH = {"x86": 1, "x64": 2, "armv6m": 4, "xtensawin": 10}
NATIVE = ("edgestream_agent/chain.mpy", "edgestream_agent/pipeline.mpy", "edgestream_agent/ring_window.mpy")


def mpy_arch(path):
    flags = path.read_bytes()[2]
    return flags >> 2 if flags else None


@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
def test_board_bundles_carry_machine_code_for_their_arch(tmp_path, arch):
    files = bundle.build(tmp_path / "lib", arch)
    assert len(files) == len(bundle.sources()) >= 7
    for rel in NATIVE:
        assert mpy_arch(tmp_path / "lib" / rel) == MPY_ARCH[arch], rel
    assert mpy_arch(tmp_path / "lib" / "edgestream_agent/config.mpy") is None  # bytecode: no machine code in it


def test_a_bundle_of_another_arch_is_refused_at_import(tmp_path, micropython):
    bundle.build(tmp_path / "lib", "armv6m")
    script = tmp_path / "s.py"
    script.write_text("import edgestream_agent.chain\n")
    proc = micropython.run_file(script, board="rp2040", extra_paths=[str(tmp_path / "lib")], profile="mpy", check=False)
    assert proc.returncode != 0 and b"incompatible .mpy arch" in proc.stdout + proc.stderr


def test_a_bytecode_bundle_leaves_the_native_lines_out_and_keeps_line_numbers():
    src = "import micropython\n\n\n@micropython.native  # fast\ndef f(x):\n    return x\n"
    out = bundle.bytecode_source(src)
    assert "@micropython.native" not in out and out.count("\n") == src.count("\n")
    assert "def f(x):" in out.splitlines()[4]


@pytest.mark.parametrize("arch", [boardbuild.native_arch(), None])
def test_bundle_compiles_and_runs_under_micropython(tmp_path, micropython, arch):
    # the board build's own arch (machine code it runs), and bytecode for any port
    files = bundle.build(tmp_path / "lib", arch)
    assert len(files) == len(bundle.sources()) >= 7
    assert mpy_arch(tmp_path / "lib" / NATIVE[0]) == (MPY_ARCH[arch] if arch else None)
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    names = module_names()
    # every module at once: the rp2040 heap, since this checks compilation,
    # not the agent's heap budget (tests/agent measure that per board)
    out = micropython.run_file(script, *names, board="rp2040", extra_paths=[str(tmp_path / "lib")], profile="mpy")
    assert out.stdout.decode().split() == [str(len(names)), "1.5"]


def test_a_syntax_error_names_the_module(tmp_path, monkeypatch):
    bad = tmp_path / "edgestream_agent" / "broken.py"
    bad.parent.mkdir()
    bad.write_text("def f(:\n")
    monkeypatch.setattr(bundle, "sources", lambda: [(bad, bad.relative_to(tmp_path))])
    with pytest.raises(bundle.BundleError, match="edgestream_agent/broken.py"):
        bundle.build(tmp_path / "out", "armv6m")


def test_an_unknown_arch_says_why_and_what_is_valid(capsys):
    from edgestream_tools.cli import main

    assert main(["firmware", "bundle", "--arch", "bogus", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "unknown --arch 'bogus': expected one of x86, x64, armv6, armv6m" in err
    assert "armv6m for rp2040" in err and "xtensawin for esp32" in err


def test_board_bundles_are_O3_unless_asked(tmp_path):
    bundle.build(tmp_path / "o3", "armv6m")
    bundle.build(tmp_path / "o0", "armv6m", 0)

    def size(d):
        return sum(p.stat().st_size for p in d.rglob("*.mpy"))

    assert size(tmp_path / "o3") < size(tmp_path / "o0")  # no line numbers, no asserts
    with pytest.raises(bundle.BundleError, match="unknown optimisation level -O4"):
        bundle.build(tmp_path / "o4", None, 4)


def test_a_bundled_module_names_itself_by_its_import_name(tmp_path):
    # The name a module is imported by is interned anyway; a file name in its tracebacks would be one more
    # interned string per module, for good (an MQTT agent from .mpy sat 8 names short of a new 4.5 KB pool).
    bundle.build(tmp_path / "lib")
    for _, rel in bundle.sources():
        data = (tmp_path / "lib" / rel.with_suffix(".mpy")).read_bytes()
        assert bundle.module_name(rel).encode() in data and str(rel).encode() not in data, rel


def _bundle_cli(capsys, *args):
    from edgestream_tools.cli import main

    try:
        rc: object = main(["firmware", "bundle", *args])
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    return rc, capsys.readouterr().err


def test_out_must_be_a_new_or_empty_folder_or_an_earlier_bundle(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, err = _bundle_cli(capsys, "--out", str(afile))
    assert rc == 2 and f"--out {afile}: is a file, not a folder" in err and "Traceback" not in err
    rc, err = _bundle_cli(capsys, "--out", "/proc/nope")
    assert rc == 2 and "--out /proc/nope: cannot write the bundle there" in err
    busy = tmp_path / "project"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    rc, err = _bundle_cli(capsys, "--out", str(busy))
    assert rc == 2 and "the folder holds other files (notes.txt) and no bundle was written there before" in err
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]  # nothing written
    out = tmp_path / "mpy"
    assert _bundle_cli(capsys, "--out", str(out))[0] == 0
    stale = out / "edgestream_agent" / "gone.mpy"
    stale.write_bytes(b"M")
    assert _bundle_cli(capsys, "--out", str(out))[0] == 0  # an earlier bundle's folder: replaced
    assert not stale.exists() and (out / "edgestream_agent" / "main.mpy").exists()


def test_arch_and_board_together_are_refused(tmp_path, capsys):
    rc, err = _bundle_cli(capsys, "--arch", "x64", "--board", "esp32", "--out", str(tmp_path / "o"))
    assert rc == 2 and "argument --board: not allowed with argument --arch" in err
    assert not (tmp_path / "o").exists()
