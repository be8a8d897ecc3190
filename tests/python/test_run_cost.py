"""test_run_cost.py — what `mpiimport run` costs by itself (issue 17, items
8 and 9): `pack --prefix` packs what is reached through symbolic links to
directories (under the link's spelling), so those paths are served; and the
preload and audit libraries add no search of their own (DT_NEEDED only
libc; the audit namespace's libc and dynamic loader opened at the first
candidate, never along the program's paths; no failed probe)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD", "")
CLI = os.path.join(BUILD, "bin", "mpiimport")
LIBS = [os.path.join(BUILD, "lib", "libmpiimport_%s.so" % n) for n in ("audit", "preload")]
PY = "/usr/bin/python3"

need_tools = pytest.mark.skipif(not (shutil.which("strace") and shutil.which("readelf") and os.path.exists(CLI)),
                                reason="needs strace, readelf and the built launcher")


def _env(tmp_path):
    env = dict(os.environ)
    env["MPIIMPORT_STAGE_DIR"] = str(tmp_path / "stage")
    os.makedirs(env["MPIIMPORT_STAGE_DIR"], exist_ok=True)
    env["PYTHONPATH"] = os.path.join(BUILD, "python")
    return env


def _pack_and_stage(tmp_path, prefix, env):
    image = str(tmp_path / "env.mpii")
    subprocess.run([PY, "-m", "mpiimport", "pack", "--prefix", prefix, "-o", image], env=env, check=True,
                   capture_output=True, timeout=60)
    subprocess.run([CLI, "stage", image], env=env, check=True, capture_output=True, timeout=60)
    return image


def _trace(tmp_path, argv, env, name):
    out = str(tmp_path / name)
    r = subprocess.run(["strace", "-f", "-qq", "-o", out, "-e", "trace=%file,%stat"] + argv, env=env,
                       capture_output=True, text=True, timeout=60)
    with open(out) as f:
        return r, f.read().splitlines()


# ---- item 9: the libraries' own dependencies ----

AUDIT_LIBS = "mpiimport-audit-libs"   # the audit library's DT_RPATH, next to it


@need_tools
def test_libraries_need_only_libc_found_without_search():
    for lib in LIBS:
        d = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", d)
        assert needed == ["libc.so.6"], (lib, needed)
        paths = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*?)\]", d)
        if lib.endswith("libmpiimport_preload.so"):
            assert paths == [], (lib, paths)   # its libc is the program's, already loaded
        else:
            # its own namespace's libc and dynamic loader: one directory of
            # links whose capability subdirectories are links to itself
            assert paths == ["$ORIGIN/" + AUDIT_LIBS], (lib, paths)
            top = os.path.join(os.path.dirname(lib), AUDIT_LIBS)
            for name in ("libc.so.6", "ld-linux-x86-64.so.2"):
                for sub in ("", "glibc-hwcaps/x86-64-v4/", "glibc-hwcaps/x86-64-v2/", "tls/x86_64/x86_64/"):
                    assert os.path.samefile(os.path.join(top, sub, name), "/lib64/" + name if "ld-" in name
                                            else os.path.join(os.path.dirname(os.path.realpath(
                                                "/lib64/ld-linux-x86-64.so.2")), name)), (sub, name)


@need_tools
def test_the_command_every_run_starts_loads_libc_alone():
    """Old code: `mpiimport` was linked to the transports (libfabric, UCX,
    PMIx: 25 libraries; UCX calibrates its clock at load): every `mpiimport
    run` of every rank of every step took 0.2 s before the program started.
    Now it needs libc alone, found at the first candidate; the transports
    live in libexec/mpiimport-collective, which it execs for a collective
    stage only."""
    d = subprocess.run(["readelf", "-d", CLI], capture_output=True, text=True, check=True).stdout
    assert re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", d) == ["libc.so.6"], d
    assert re.findall(r"\(RPATH\)\s+Library rpath: \[(.*?)\]", d) == ["$ORIGIN/../lib/" + AUDIT_LIBS], d
    collective = os.path.join(BUILD, "libexec", "mpiimport-collective")
    c = subprocess.run(["readelf", "-d", collective], capture_output=True, text=True, check=True).stdout
    assert "libpmix" in c, c
    # the whole launcher process, exec included: no failed library candidate
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=%file", CLI, "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert _search_misses(r.stderr.splitlines()) == [], r.stderr


def _search_misses(lines):
    """ld.so's failed candidates while searching for a library (a name
    tried in a directory of a search list, capability subdirectories too)."""
    return [l for l in lines if re.search(r'\.so(\.[0-9]+)*", ', l) and "= -1 E" in l]


def _ldso_opens(lines):
    return [l for l in lines if "ld-linux-x86-64.so.2" in l and "execve" not in l]


@need_tools
@pytest.mark.parametrize("argv", [["/bin/true"], ["/bin/sh", "-c", "true; /bin/true; /bin/true; true"]])
def test_run_adds_no_library_search(tmp_path, argv):
    env = _env(tmp_path)
    env.pop("LD_LIBRARY_PATH", None)
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "a.txt").write_text("a\n")
    image = _pack_and_stage(tmp_path, str(tmp_path / "env"), env)
    _, plain = _trace(tmp_path, argv, env, "plain.tr")
    r, run = _trace(tmp_path, [CLI, "run", "--image", image, "--"] + argv, env, "run.tr")
    assert r.returncode == 0, r.stderr
    assert "plainly" not in r.stderr, r.stderr  # the stage was used
    # only the program's processes (after the launcher's exec)
    for i, l in enumerate(run):
        if 'execve("%s"' % argv[0] in l:
            run = run[i:]
            break
    # not one failed library candidate more than plainly (was 17 per process)
    assert len(_search_misses(run)) - len(_search_misses(plain)) <= 0, _search_misses(run)
    # per process, the audit namespace opens its libc and the dynamic loader
    # once each, at the first candidate (ld.so then sees the loader is itself)
    execs = len([l for l in run if "execve(" in l and "= 0" in l])
    own = [l for l in run if "/%s/" % AUDIT_LIBS in l]
    assert len(own) == 2 * execs and all(l.endswith("= 3") or re.search(r"= [0-9]+$", l) for l in own), own
    assert len(_ldso_opens(run)) - len(_ldso_opens(plain)) <= execs, _ldso_opens(run)


# ---- item 8: pack --prefix through symbolic links ----

def _tree(tmp_path):
    top = tmp_path / "prefix"
    (top / "real" / "sub").mkdir(parents=True)
    (top / "real" / "a.txt").write_text("inside\n")
    (top / "real" / "sub" / "b.txt").write_text("deeper\n")
    os.symlink("real", str(top / "link"))            # inside the prefix
    out = tmp_path / "outside"
    out.mkdir()
    (out / "c.txt").write_text("outside\n")
    os.symlink(str(out), str(top / "ext"))            # to a directory outside
    os.symlink("..", str(top / "real" / "up"))        # a cycle: not followed
    os.mkfifo(str(top / "real" / "fifo"))             # must not hang pack
    return str(top), str(out)


PROBE = r'''
import os, sys
top = sys.argv[1]
out = []
for rel in ("link", "link/sub", "ext"):
    out.append(sorted(os.listdir(top + "/" + rel)))
for rel in ("link/a.txt", "link/sub/b.txt", "ext/c.txt"):
    st = os.stat(top + "/" + rel)
    out.append((st.st_size, st.st_mtime_ns))
    with open(top + "/" + rel) as f:
        out.append(f.read())
for rel in ("link", "ext"):
    out.append((os.path.islink(top + "/" + rel), os.readlink(top + "/" + rel)))
print(repr(out))
'''


@need_tools
def test_pack_prefix_serves_paths_through_links(tmp_path):
    env = _env(tmp_path)
    top, outside = _tree(tmp_path)
    image = _pack_and_stage(tmp_path, top, env)
    script = str(tmp_path / "probe.py")
    with open(script, "w") as f:
        f.write(PROBE)
    plain = subprocess.run([PY, "-S", "-I", script, top], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    r, lines = _trace(tmp_path, [CLI, "run", "--image", image, "--", PY, "-S", "-I", script, top], env, "run.tr")
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain.stdout
    # through the links' spellings, nothing reaches the original tree (the
    # links themselves: lstat/readlink answered by the original, as plain)
    through = [l for l in lines for rel in ("/link/", "/ext/") if ("\"" + top + rel) in l]
    assert through == [], through
    reached = [l for l in lines if re.search(r'"%s/(link|ext)"' % re.escape(top), l)
               and not re.search(r"(lstat|readlink|AT_SYMLINK_NOFOLLOW)", l)]
    assert reached == [], reached
    assert not [l for l in lines if ("\"" + outside) in l]
