"""The node image: rank 0 sends to one leader per node; a leader stages the
bytes and writes the facts to its node's index; the node's other ranks read
from there and receive nothing over the transport (nodes simulated with
MPIIMPORT_RANKS_PER_NODE). A corrupt index record or staged file is refused
(plain import, never wrong bytes); a node whose stage cannot be made is
relayed whole."""
import json
import os
import subprocess

import pytest

from conftest import PYTHON, job_env, run_mpi

RANKS, PER_NODE = 6, 2   # nodes {0,1} {2,3} {4,5}; leaders 0, 2, 4

JOB = r"""
import json, os, sys, time
import mpiimport
mpiimport.install()
import numpy, numpy.linalg, json as _j, pkg_a.sub
st = mpiimport.stats()
print('NODE', json.dumps({
    'rank': st['rank'], 'received': st['received_bytes'], 'sent': st['bcast_bytes'],
    'records': st['index_records'], 'known': st['known_bytes'], 'fallbacks': st['fallbacks'],
    'replayed': bool(st.get('replayed')),
    'norm': float(numpy.linalg.norm(numpy.ones(4))), 'value': pkg_a.sub.VALUE,
    'data': pkg_a.sub.data(), 'numpy': numpy.__file__}), flush=True)
"""


def site_tree(tmp_path):
    site = tmp_path / "site"
    (site / "pkg_a").mkdir(parents=True)
    (site / "pkg_a" / "__init__.py").write_text("")
    (site / "pkg_a" / "payload.txt").write_text("payload bytes\n" * 100)
    (site / "pkg_a" / "sub.py").write_text(
        "import os\nVALUE = 'sub of pkg_a'\n"
        "def data():\n    return len(open(os.path.join(os.path.dirname(__file__), 'payload.txt')).read())\n")
    (tmp_path / "job.py").write_text(JOB)
    return site


def env_for(site, extra=None):
    e = {"MPIIMPORT_RANKS_PER_NODE": str(PER_NODE), "MPIIMPORT_TIMEOUT": "60",
         "PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "MPIIMPORT_SHARED_PREFIXES": str(site) + ":/usr/lib/python3"}
    e.update(extra or {})
    return e


def ranks_of(p, n=RANKS):
    got = {}
    for line in p.stdout.splitlines():
        if line.startswith("NODE "):
            r = json.loads(line[5:])
            got[r["rank"]] = r
    assert sorted(got) == list(range(n)), p.stdout + p.stderr
    return got


def plain_numpy_file():
    return subprocess.run([PYTHON, "-c", "import numpy; print(numpy.__file__)"], env=job_env(),
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("mode", ["lockstep", "image"])
def test_only_the_leaders_receive_over_the_transport(tmp_path, mode):
    site = site_tree(tmp_path)
    extra = {}
    if mode == "image":
        image = tmp_path / "job.mpii"
        env = job_env(env_for(site))
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(site)], check=True)
        p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--",
                            str(tmp_path / "job.py")], env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        extra = {"MPIIMPORT_IMAGE": str(image)}
    p = run_mpi(RANKS, [str(tmp_path / "job.py")], extra_env=env_for(site, extra), timeout=400)
    got = ranks_of(p)
    numpy_file = plain_numpy_file()
    sent = got[0]["sent"]
    assert sent > 5 << 20, got[0]    # numpy's bytes went out
    for r, g in got.items():
        assert g["fallbacks"] == 0, (r, g, p.stderr)
        assert g["norm"] == 2.0 and g["value"] == "sub of pkg_a" and g["data"] == 1400, g
        assert g["numpy"] == numpy_file
        assert g["replayed"] == (mode == "image"), g
        assert g["known"] < 0.05 * sent, (r, g, sent)   # facts only: the bytes are staged
        if r == 0:
            assert g["received"] == 0
        elif r % PER_NODE == 0:
            # a leader receives every message once over the transport
            assert g["received"] == sent, (r, g, sent)
        else:
            # the others: nothing over the transport; every message from the node's index
            assert g["received"] == 0, (r, g)
            assert g["records"] > 0 and g["sent"] < 0.05 * sent, (r, g, sent)
    assert "mpiimport:" not in p.stderr, p.stderr


CORRUPT_JOB = r"""
import json, os, sys, time
import mpiimport
mpiimport.install()
st = mpiimport.stats()
rank = st['rank']
index = os.path.join(st['stage_root'], '.mpiimport')
if rank == 1:
    # Wait until the leader has written the record of victim's message (rank 0
    # imports it below: the code it compiled holds VALUE), then flip one byte
    # of it, before this rank reads it.
    deadline, path = time.time() + 60, None
    while path is None and time.time() < deadline:
        for n in sorted(os.listdir(index)) if os.path.isdir(index) else ():
            if not n.endswith(('.part', '.failed')):
                with open(os.path.join(index, n), 'rb') as f:
                    if b'right bytes' in f.read():
                        path = os.path.join(index, n)
        time.sleep(0.005)
    if path is None:
        raise SystemExit('no index record for victim')
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xff]))
import victim
print('NODE', json.dumps({'rank': rank, 'value': victim.VALUE, 'fallbacks': mpiimport.stats()['fallbacks']}), flush=True)
"""


def test_a_corrupt_index_record_is_refused_and_the_module_imported_plainly(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "victim.py").write_text("VALUE = %r\n" % ("right bytes " * 50))
    (tmp_path / "job.py").write_text(CORRUPT_JOB)
    p = run_mpi(2, [str(tmp_path / "job.py")], extra_env=env_for(site), timeout=300)
    got = ranks_of(p, 2)
    assert got[0]["value"] == got[1]["value"] == "right bytes " * 50
    assert got[0]["fallbacks"] == 0 and got[1]["fallbacks"] >= 1, got
    warned = [l for l in p.stderr.splitlines() if l.startswith("mpiimport: rank 1:")]
    assert warned and "importing it normally" in warned[0], p.stderr


def test_a_node_whose_stage_cannot_be_made_is_relayed_whole(tmp_path):
    site = site_tree(tmp_path)
    afile = tmp_path / "a-file"
    afile.write_text("not a directory\n")
    p = run_mpi(4, [str(tmp_path / "job.py")],
                extra_env=env_for(site, {"MPIIMPORT_STAGE_DIR": str(afile / "under")}), timeout=400)
    got = ranks_of(p, 4)
    for r, g in got.items():
        assert g["norm"] == 2.0 and g["value"] == "sub of pkg_a" and g["data"] == 1400, g
        if r != 0:
            # no index: every rank but the root receives the messages whole
            assert g["received"] > 1 << 20, (r, g)


STAGED_JOB = r"""
import json, os, sys
import mpiimport
try:
    os.stat('/mpiimport-test-mark')   # in the trace: what follows is install() and the imports
except OSError:
    pass
ok = mpiimport.install()
import numpy, numpy.linalg, pkg_a.sub
st = mpiimport.stats()
print('NODE', json.dumps({
    'rank': st['rank'], 'ok': ok, 'replayed': bool(st.get('replayed')), 'transport': st['transport'],
    'messages': st['bcast_count'], 'received': st['received_bytes'], 'fs_calls': st['fs_calls'],
    'norm': float(numpy.linalg.norm(numpy.ones(4))), 'value': pkg_a.sub.VALUE,
    'data': pkg_a.sub.data(), 'numpy': numpy.__file__}), flush=True)
"""


def mpiimport_cli(args, env):
    return subprocess.run([PYTHON, "-m", "mpiimport"] + args, env=job_env(env), capture_output=True,
                          text=True, timeout=300)


def staged_setup(tmp_path):
    site = site_tree(tmp_path)
    job = tmp_path / "staged_job.py"
    job.write_text(STAGED_JOB)
    stage_dir = tmp_path / "shm"
    stage_dir.mkdir(mode=0o700)
    image = tmp_path / "app.mpii"
    env = env_for(site, {"MPIIMPORT_STAGE_DIR": str(stage_dir)})
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(site)], check=True)
    p = mpiimport_cli(["pack", "-o", str(image), "--", str(job)], env)
    assert p.returncode == 0, p.stderr
    return site, job, stage_dir, image, env


def test_a_staged_image_serves_later_job_steps_with_no_collective_and_no_shared_file_system_call(tmp_path):
    site, job, stage_dir, image, env = staged_setup(tmp_path)
    p = mpiimport_cli(["stage", str(image)], env)
    assert p.returncode == 0 and "staged" in p.stdout and "MPIIMPORT_STAGED=1" in p.stdout, p.stdout + p.stderr
    p = mpiimport_cli(["stage", str(image)], env)
    assert p.returncode == 0 and "staged already" in p.stdout, p.stdout
    roots = os.listdir(stage_dir)
    assert len(roots) == 1 and "-image-" in roots[0], roots
    # Two job steps; the second under strace: not one call into the site tree.
    step = dict(env, MPIIMPORT_IMAGE=str(image), MPIIMPORT_STAGED="1")
    numpy_file = plain_numpy_file()
    for traced in (False, True):
        trace = tmp_path / ("trace%d" % traced)
        trace.mkdir()
        args = ["-ff", "-qq", "-e", "trace=%file,read,readlink", "-o", str(trace / "t"), PYTHON, str(job)]
        p = run_mpi(4, ["-c", "import os, sys; os.execvp('strace', ['strace'] + sys.argv[1:])"] + args
                    if traced else [str(job)], extra_env=step, timeout=400)
        got = ranks_of(p, 4)
        for r, g in got.items():
            assert g["ok"] and g["replayed"] and g["transport"] == "staged", g
            assert g["messages"] == 0 and g["received"] == 0 and g["fs_calls"] == 0, g
            assert g["norm"] == 2.0 and g["value"] == "sub of pkg_a" and g["data"] == 1400, g
            assert g["numpy"] == numpy_file
        assert "mpiimport:" not in p.stderr, p.stderr
    # after the mark, per process: install() and the imports; data files are
    # open()ed by the program itself
    marked, calls = 0, []
    for name in os.listdir(trace):      # one file per process
        after = False
        for line in open(trace / name).read().splitlines():
            if "/mpiimport-test-mark" in line:
                after = True
                marked += 1
            elif after and '"' + str(site) in line and "payload.txt" not in line:
                calls.append(line)
    assert marked == 4 and calls == [], (marked, calls[:20])
    # the stage stays for the next step, until unstaged
    assert os.listdir(stage_dir) == roots
    p = mpiimport_cli(["unstage", str(image)], env)
    assert p.returncode == 0 and "removed" in p.stdout, p.stdout + p.stderr
    assert os.listdir(stage_dir) == []


@pytest.mark.parametrize("damage", ["partial", "file size", "index byte", "seal"])
def test_a_damaged_stage_is_refused_and_the_job_imports_plainly(tmp_path, damage):
    """A stage that is not whole is refused (the job imports plainly); a
    staged copy of the wrong size is not served (that module is)."""
    site, job, stage_dir, image, env = staged_setup(tmp_path)
    p = mpiimport_cli(["stage", str(image)], env)
    assert p.returncode == 0, p.stderr
    root = stage_dir / os.listdir(stage_dir)[0]
    if damage == "partial":
        # a stager killed before its rename leaves only its .part directory
        os.rename(root, str(root) + ".part-12345")
    elif damage == "file size":
        pyc = [n for n in os.listdir(str(root) + str(site / "pkg_a" / "__pycache__")) if n.startswith("sub.")]
        with open(str(root) + str(site / "pkg_a" / "__pycache__" / pyc[0]), "ab") as f:
            f.write(b"more bytes")
    elif damage == "index byte":
        index = root / ".mpiimport" / "index"
        data = bytearray(index.read_bytes())
        data[len(data) // 2] ^= 0xFF
        index.write_bytes(bytes(data))
    else:
        (root / ".mpiimport" / "seal").write_bytes(b"MPIISEAL")
    step = dict(env, MPIIMPORT_IMAGE=str(image), MPIIMPORT_STAGED="1")
    p = run_mpi(2, [str(job)], extra_env=step, timeout=400)
    got = ranks_of(p, 2)
    if damage == "file size":
        # a process checks each staged copy when it uses it (not every file at
        # start-up): the stage is used, the damaged copy never served, its
        # module imported plainly, said once per rank
        for r, g in got.items():
            assert g["ok"] and g["value"] == "sub of pkg_a" and g["data"] == 1400, g
        said = [l for l in p.stderr.splitlines() if l.startswith("mpiimport: rank ")]
        assert len(said) == 2 and all("sub" in l and "importing it normally" in l for l in said), p.stderr
        return
    for r, g in got.items():
        assert not g["ok"] and g["value"] == "sub of pkg_a" and g["data"] == 1400, g   # plain, right bytes
    said = [l for l in p.stderr.splitlines() if l.startswith("mpiimport: rank ")]
    assert len(said) == 2 and all("importing normally" in l for l in said), p.stderr
    if damage == "partial":
        assert "not staged on this node" in said[0]
    else:
        assert "stage of" in said[0], said
    # staging again repairs it
    p = mpiimport_cli(["stage", str(image)], env)
    assert p.returncode == 0 and "staged already" not in p.stdout, p.stdout + p.stderr
    p = run_mpi(2, [str(job)], extra_env=step, timeout=400)
    assert all(g["ok"] and g["replayed"] for g in ranks_of(p, 2).values()), p.stderr
