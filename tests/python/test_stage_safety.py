"""A staged image on a node other users share (issue 18): nothing another
user puts under the stage's predictable name is ever read as ours.

The stage directory here is world-writable and sticky, as /dev/shm is. A job
of this user runs from its staged image; while it runs, the stage goes away
(`mpiimport unstage`, as an epilog or a re-stage does) and a directory of
the same name appears, made and owned by another user ("nobody"), holding a
well-formed stage whose module and data file say INJECTED. Old code: the
running processes re-resolved <root><path> by name and read it (a module
under `mpiimport run`, the bytes of a module under MPIIMPORT_STAGED=1). Now
every process checked the root once through a descriptor it keeps
(mpii_stage_hold): the job reads the originals (genuine) from then on, says
so once, and a process started afterwards refuses the other user's
directory."""
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import PYTHON, job_env, launch_prefix

BUILD = os.environ.get("MPIIMPORT_TEST_BUILD") or os.path.dirname(os.environ["PYTHONPATH"].split(":")[0])
LAUNCHER = os.path.join(BUILD, "bin", "mpiimport")

# reads a data file and imports a module of the image, before and after it is told to go on
JOB = r"""
import os, sys, time
if os.environ.get("JOB_INSTALL"):
    import mpiimport
    mpiimport.install()
tree, go = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
rank = os.environ.get("OMPI_COMM_WORLD_RANK", "0")
import first
print("rank", rank, "before", first.WHO, open(os.path.join(tree, "first.txt")).read().split()[0], flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
import victim
print("rank", rank, "after", victim.WHO, open(os.path.join(tree, "victim.txt")).read().split()[0], flush=True)
"""


@pytest.fixture
def shared_node():
    if os.geteuid() != 0:
        pytest.skip("needs root: the other user's directory is made by chown to 'nobody'")
    if not os.path.exists(LAUNCHER):
        pytest.skip("mpiimport launcher not built")
    base = tempfile.mkdtemp(prefix="mpiimport-safety-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        shm = os.path.join(base, "shm")
        os.mkdir(shm)
        os.chmod(shm, 0o1777)            # as /dev/shm: everyone creates, sticky
        tree = os.path.join(base, "tree")
        os.mkdir(tree)
        for name in ("first", "victim"):
            with open(os.path.join(tree, name + ".py"), "w") as f:
                f.write("WHO = 'genuine'\n")
            with open(os.path.join(tree, name + ".txt"), "w") as f:
                f.write("genuine data\n")
        image = os.path.join(base, "tree.mpii")
        env = job_env({"MPIIMPORT_STAGE_DIR": shm, "PYTHONDONTWRITEBYTECODE": "1"})
        p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", tree, "-o", image], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        job = os.path.join(base, "job.py")
        with open(job, "w") as f:
            f.write(JOB)
        yield base, shm, tree, image, job, env
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _stage(image, shm, env):
    s = subprocess.run([LAUNCHER, "stage", image], env=dict(env, MPIIMPORT_STAGE_DIR=shm), capture_output=True,
                       text=True, timeout=120)
    assert s.returncode == 0, s.stdout + s.stderr
    return s


def _root_name(shm):
    # <stage dir>/mpiimport-<uid>-image-<hash of the image path>: the one entry staging made
    names = [n for n in os.listdir(shm) if n.startswith("mpiimport-%d-image-" % os.geteuid())]
    assert len(names) == 1, names
    return os.path.join(shm, names[0])


def _plant_another_users_stage(base, image, shm, env, root):
    """What another user can do once the name is free: stage the same image
    himself (elsewhere), change its files, and put it under our name."""
    scratch = os.path.join(base, "scratch")
    os.mkdir(scratch, 0o700)
    _stage(image, scratch, env)
    made = os.path.join(scratch, os.path.basename(root))
    tree_copy = made + os.path.join(base, "tree")
    for name in ("victim.py", "victim.txt", "first.py", "first.txt"):
        path = os.path.join(tree_copy, name)
        size = os.path.getsize(path)
        text = "WHO='INJECTED'" if name.endswith(".py") else "INJECTED"
        assert len(text) < size
        with open(path, "w") as f:   # the same size: the stage's own checks pass
            f.write(text.ljust(size - 1) + "\n")
    nobody = pwd.getpwnam("nobody")
    for top, dirs, files in os.walk(made):
        for n in dirs + files:
            os.lchown(os.path.join(top, n), nobody.pw_uid, nobody.pw_gid)
    os.lchown(made, nobody.pw_uid, nobody.pw_gid)
    os.rename(made, root)
    assert os.stat(root).st_uid == nobody.pw_uid


@pytest.mark.parametrize("mode", ["run", "staged"])
def test_a_stage_remade_by_another_user_is_never_read(shared_node, mode):
    base, shm, tree, image, job, env = shared_node
    _stage(image, shm, env)
    root = _root_name(shm)
    go = os.path.join(base, "go")
    if mode == "run":
        cmd = launch_prefix(2) + [LAUNCHER, "run", "--image", image, "--", PYTHON, job, tree, go]
        jenv = env
    else:
        cmd = launch_prefix(2) + [PYTHON, job, tree, go]
        jenv = dict(env, JOB_INSTALL="1", MPIIMPORT_IMAGE=image, MPIIMPORT_STAGED="1",
                    MPIIMPORT_SHARED_PREFIXES=tree)
    p = subprocess.Popen(cmd, env=jenv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # both ranks run from the stage
        deadline = time.time() + 120
        seen = []
        while len(seen) < 2 and time.time() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
        assert sorted(seen) == ["rank 0 before genuine genuine", "rank 1 before genuine genuine"], seen
        # the stage goes; another user's directory takes its name
        u = subprocess.run([LAUNCHER, "unstage", image], env=env, capture_output=True, text=True, timeout=120)
        assert u.returncode == 0 and "removed" in u.stdout, u.stdout + u.stderr
        _plant_another_users_stage(base, image, shm, env, root)
        with open(go, "w"):
            pass
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out + err
    after = sorted(l for l in out.splitlines() if " after " in l)
    assert after == ["rank 0 after genuine genuine", "rank 1 after genuine genuine"], out + err
    assert "INJECTED" not in out
    # a process started now refuses the other user's directory, and runs plainly
    if mode == "run":
        q = subprocess.run([LAUNCHER, "run", "--image", image, "--", PYTHON, "-c",
                            "import sys; sys.path.insert(0, %r); import victim; print(victim.WHO)" % tree],
                           env=env, capture_output=True, text=True, timeout=120)
    else:
        q = subprocess.run([PYTHON, "-c", "import sys, mpiimport; mpiimport.install(); sys.path.insert(0, %r); "
                            "import victim; print(victim.WHO)" % tree],
                           env=dict(env, MPIIMPORT_IMAGE=image, MPIIMPORT_STAGED="1", OMPI_COMM_WORLD_RANK="0",
                                    OMPI_COMM_WORLD_SIZE="1", MPIIMPORT_SHARED_PREFIXES=tree),
                           capture_output=True, text=True, timeout=120)
    assert q.returncode == 0 and q.stdout.strip() == "genuine", q.stdout + q.stderr
    assert "refused" in q.stderr or "not ours" in q.stderr or "importing normally" in q.stderr, q.stderr
    # and staging again under that name is refused, naming the cause (the
    # other user's directory is left alone: not ours to remove)
    s = subprocess.run([LAUNCHER, "stage", image], env=env, capture_output=True, text=True, timeout=120)
    assert s.returncode != 0 and "not ours" in s.stdout + s.stderr, s.stdout + s.stderr
    assert "made by uid %d" % pwd.getpwnam("nobody").pw_uid in s.stderr, s.stderr   # who squats it
    assert os.stat(root).st_uid == pwd.getpwnam("nobody").pw_uid


def test_a_set_user_id_program_in_a_packed_tree_keeps_its_bit_under_run(shared_node):
    """Old code: `pack --prefix` packed a set-user-ID program like any file;
    under `mpiimport run` it was executed from its staged copy (this user's,
    no set-ID bit) and ran as the caller. Now it is listed, not packed, and
    runs from the original, as plainly."""
    base, shm, tree, image, job, env = shared_node
    prog = os.path.join(tree, "whoami-euid")
    shutil.copyfile("/usr/bin/id", prog)
    nobody = pwd.getpwnam("nobody")
    os.chown(prog, nobody.pw_uid, nobody.pw_gid)
    os.chmod(prog, 0o4755)
    plain = subprocess.run([prog, "-u"], capture_output=True, text=True, timeout=60)
    if plain.stdout.strip() != str(nobody.pw_uid):
        pytest.skip("set-user-ID bits are not honoured here (a nosuid mount?)")
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", tree, "-o", image], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "set-user/group-ID programs listed, not packed" in p.stderr, p.stderr
    _stage(image, shm, env)
    r = subprocess.run([LAUNCHER, "run", "--image", image, "--", prog, "-u"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == plain.stdout, r.stdout + r.stderr
    # a file next to it is still served from the stage
    q = subprocess.run([LAUNCHER, "run", "--image", image, "--", "/bin/cat", os.path.join(tree, "first.txt")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and q.stdout.startswith("genuine"), q.stdout + q.stderr
