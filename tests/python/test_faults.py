"""Faults a real job meets (issue: fork, threads, bad input, messages): each
test fails without its fix. Multi-rank where the fault needs ranks."""
import json
import os
import signal
import stat
import subprocess
import time

from conftest import JOBS, MPIRUN, PYTHON, job_env, load_ranks, run_mpi

FAULTS = os.path.join(JOBS, "faults.py")


def test_fork_and_a_fork_pool_import_plainly_and_leave_the_job_unharmed(tmp_path):
    p = run_mpi(2, [FAULTS, "fork", str(tmp_path)], extra_env={"MPIIMPORT_TIMEOUT": "20"}, timeout=300)
    ranks = load_ranks(str(tmp_path), 2)
    for r in ranks:
        assert r["installed"] and r["child"] == {"installed": False, "stats_installed": False, "value": "1/3"}
        assert r["child_status"] == 0
        assert r["pool"] == ["0.25", "0.5", "0.75"] and r["after"] == 2
        assert r["stats"]["fallbacks"] == 0, r["stats"]
        assert not os.path.exists(r["stats"]["stage_root"]), "stage left behind"
    for bad in ("corrupt", "checksum", "Traceback", "Segmentation"):
        assert bad not in p.stderr, p.stderr[-3000:]
    # each forked process says so once, naming itself
    said = [l for l in p.stderr.splitlines() if "forked from this rank" in l]
    assert said and len(said) == len(set(said)), p.stderr
    pids = [l.split("process ")[1].split(",")[0] for l in said]
    assert len(pids) == len(set(pids))


def test_threads_read_served_files_while_another_imports(tmp_path):
    # freed memory is filled with 0x55, so a read of a reallocated table shows
    run_mpi(2, [FAULTS, "threads", str(tmp_path)], extra_env={"MPIIMPORT_TIMEOUT": "60",
                                                              "MALLOC_PERTURB_": "85"}, timeout=300)
    for r in load_ranks(str(tmp_path), 2):
        assert r["errors"] == [] and r["checked"] > 0, r


def test_an_image_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path):
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    code = "import mpiimport, json; print('installed', mpiimport.install()); import json"
    for image in (str(fifo), "/dev/zero"):
        p = run_mpi(2, ["-c", code], extra_env={"MPIIMPORT_IMAGE": image}, timeout=60)
        assert p.stdout.count("installed True") == 2, p.stdout + p.stderr
        lines = [l for l in p.stderr.splitlines() if l.startswith("mpiimport:")]
        # one line, the right reason, nothing about "not found"
        assert len(lines) == 1, p.stderr
        assert "not a regular file" in lines[0] and image in lines[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_missing_image_is_one_line_too(tmp_path):
    code = "import mpiimport; mpiimport.install()"
    p = run_mpi(2, ["-c", code], extra_env={"MPIIMPORT_IMAGE": str(tmp_path / "none.mpii")}, timeout=60)
    lines = [l for l in p.stderr.splitlines() if l.startswith("mpiimport:")]
    assert len(lines) == 1 and "not found" in lines[0], p.stderr


def test_a_stage_directory_that_cannot_be_made_names_its_path_and_the_reason(tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("not a directory\n")
    code = ("import mpiimport; mpiimport.install(); import numpy; "
            "print('ok', numpy.__name__, mpiimport.stats()['fallbacks'])")
    p = run_mpi(2, ["-c", code], extra_env={"MPIIMPORT_STAGE_DIR": str(afile / "under")}, timeout=300)
    assert p.stdout.count("ok numpy") == 2, p.stdout + p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("mpiimport:")]
    assert lines, p.stderr
    assert str(afile / "under") in lines[0] and "Not a directory" in lines[0], lines


def test_stats_without_install_has_the_same_keys():
    code = ("import json, mpiimport; ok = mpiimport.install(); st = mpiimport.stats(); "
            "print(json.dumps([ok, sorted(st), st['installed'], st['rank'], st['fallbacks']]))")
    env = job_env({"MPIIMPORT_DISABLE": "1"})
    off = json.loads(subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout)
    on = run_mpi(1, ["-c", code])
    on = json.loads(on.stdout.strip().splitlines()[-1])
    assert off[0] is False and on[0] is True
    assert off[1] == on[1]
    assert off[2:] == [False, 0, 0] and on[2] is True


def test_a_cache_directory_others_can_write_is_not_used(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    code = "import mpiimport; mpiimport.install(); import json; print('ok', mpiimport.stats()['list_path'])"
    env = {"MPIIMPORT_RECORD": "1", "MPIIMPORT_CACHE_DIR": str(cache)}
    p = run_mpi(2, ["-c", code], extra_env=env, timeout=120)
    assert p.stdout.count("ok None") == 2, p.stdout + p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("mpiimport:")]
    assert len(lines) == 1 and "writable by group and others" in lines[0] and str(cache) in lines[0], p.stderr
    assert os.listdir(cache) == []          # nothing recorded there either
    os.chmod(cache, 0o700)                  # this user's own, private: used and recorded
    p = run_mpi(2, ["-c", code], extra_env=env, timeout=120)
    assert "not used" not in p.stderr and len(os.listdir(cache)) == 1, p.stderr


def test_sigterm_cleans_the_stage_before_the_ranks_die(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir(mode=0o700)
    code = ("import os, time, mpiimport; mpiimport.install(); import numpy; "
            "print('READY', os.getpid(), mpiimport.stats()['stage_root'], flush=True); time.sleep(120)")
    cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp", "-n", "2",
           PYTHON, "-c", code]
    p = subprocess.Popen(cmd, env=job_env({"MPIIMPORT_STAGE_DIR": str(stage)}), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    ready = []
    try:
        while len(ready) < 2:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            if line.startswith("READY"):
                ready.append(line.split())
        root = ready[0][2]
        assert os.path.isdir(root) and os.path.isdir(root + ".live")
        for _, pid, _ in ready:           # as a scheduler does: every task
            os.kill(int(pid), signal.SIGTERM)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0
    assert os.listdir(stage) == [], os.listdir(stage)


def test_start_up_sweeps_what_killed_jobs_of_this_user_left(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    uid = os.geteuid()

    def plant(name, pids, old=True):
        root = stage / name
        (root / "usr" / "lib").mkdir(parents=True, mode=0o700)
        (root / "usr" / "lib" / "libx.so").write_bytes(b"x" * 1000)
        os.chmod(root, 0o700)
        live = stage / (name + ".live")
        live.mkdir(mode=0o700)
        for pid in pids:
            (live / str(pid)).write_text("")
        if old:   # a registry last changed two minutes ago
            then = time.time() - 120
            os.utime(str(live), (then, then))
        return root

    gone = plant("mpiimport-%d-killed-0000000000000001-n0" % uid, [dead.pid])
    alive = plant("mpiimport-%d-running-0000000000000002-n0" % uid, [dead.pid, os.getpid()])
    # a job being made right now (its registry made, its first process not yet
    # in it): another job's sweep must leave it alone
    young = plant("mpiimport-%d-starting-0000000000000003-n0" % uid, [dead.pid], old=False)
    shm_dead = "/dev/shm/mpiimport-%d-0-%016x" % (dead.pid, 0xABC)
    shm_alive = "/dev/shm/mpiimport-%d-0-%016x" % (os.getpid(), 0xABD)
    for f in (shm_dead, shm_alive):
        with open(f, "wb") as fh:
            fh.write(b"region")
    try:
        code = "import mpiimport; mpiimport.install(); print('swept', mpiimport.stats()['swept'])"
        p = run_mpi(2, ["-c", code], extra_env={"MPIIMPORT_STAGE_DIR": str(stage)}, timeout=120)
        assert not gone.exists() and not (stage / (gone.name + ".live")).exists()
        assert alive.exists() and (alive / "usr" / "lib" / "libx.so").exists()
        assert young.exists() and (young / "usr" / "lib" / "libx.so").exists()
        assert not os.path.exists(shm_dead) and os.path.exists(shm_alive)
        # rank 0 (the node's first) swept: at least the stage under its private stage
        # directory (another job of this user, a concurrent test, may sweep /dev/shm first)
        counts = sorted(int(l.split()[1]) for l in p.stdout.splitlines() if l.startswith("swept"))
        assert counts[0] == 0 and counts[1] >= 1, p.stdout
    finally:
        for f in (shm_dead, shm_alive):
            if os.path.exists(f):
                os.unlink(f)


def test_srun_without_pmix_imports_plainly_and_says_how_to_launch():
    # What srun -n 4 without --mpi=pmix gives a task: Slurm's variables, no PMIx server.
    env = {k: v for k, v in job_env().items() if not k.startswith(("PMIX_", "OMPI_", "PMI_"))}
    env.update(SLURM_PROCID="1", SLURM_NTASKS="4", SLURM_JOB_ID="77", SLURM_STEP_ID="0",
               MPIIMPORT_TRANSPORT="mpi")
    code = "import mpiimport, json; print('installed', mpiimport.install()); print(json.dumps(1))"
    p = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "installed False" in p.stdout, p.stdout + p.stderr
    assert "srun --mpi=pmix" in p.stderr and p.stderr.count("mpiimport:") == 1, p.stderr


def test_a_bad_setting_on_one_rank_and_the_job_still_agrees(tmp_path):
    code = ("import mpiimport, json; ok = mpiimport.install(); import numpy; "
            "print('RANK', mpiimport.stats()['rank'], ok, numpy.__name__, flush=True)")
    for bad_rank, want in ((1, True), (0, False)):
        script = ("if [ \"$OMPI_COMM_WORLD_RANK\" = %d ]; then export MPIIMPORT_TIMEOUT=abc; fi; "
                  "exec %s -c %s" % (bad_rank, PYTHON, __import__("shlex").quote(code)))
        cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader,tcp",
               "-n", "3", "sh", "-c", script]
        p = subprocess.run(cmd, env=job_env({"MPIIMPORT_TIMEOUT": "20"}), capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        got = sorted(l.split()[1:] for l in p.stdout.splitlines() if l.startswith("RANK"))
        assert [g[1:] for g in got] == [[str(want), "numpy"]] * 3, p.stdout + p.stderr
        lines = [l for l in p.stderr.splitlines() if l.startswith("mpiimport:")]
        assert len(lines) == 1 and "MPIIMPORT_TIMEOUT='abc'" in lines[0], p.stderr
        assert ("every rank imports normally" in lines[0]) == (not want), lines


def test_non_root_ranks_keep_no_private_copy_of_file_bytes(tmp_path):
    """The bytes a non-root rank receives go to the node's stage once (3 ranks,
    one node), and so do those rank 0 read once it has sent them: every rank
    keeps the facts only, and what it imports is right."""
    code = ("import json, mpiimport; mpiimport.install(); import numpy, numpy.linalg; "
            "st = mpiimport.stats(); import os; "
            "print('MEM', json.dumps([st['rank'], st['bcast_bytes'], st['known_bytes'], "
            "float(numpy.linalg.norm(numpy.ones(4)))]))")
    p = run_mpi(3, ["-c", code], extra_env={"MPIIMPORT_TIMEOUT": "60"}, timeout=300)
    got = {r[0]: r for r in (json.loads(l[4:]) for l in p.stdout.splitlines() if l.startswith("MEM "))}
    assert sorted(got) == [0, 1, 2], p.stdout + p.stderr
    image = got[0][1]
    assert image > 5 << 20
    for r in (0, 1, 2):
        assert got[r][3] == 2.0
        assert got[r][2] < 0.05 * image, (r, got[r], image)


def test_a_file_name_that_is_not_utf8_is_a_path_like_any_other(tmp_path):
    """Old code: `pack --prefix` of a tree holding a file named in Latin-1
    (bytes that are not UTF-8, as old archives have) died in a traceback and
    wrote no image. Now it is packed, shown, staged and served under
    `mpiimport run` with its bytes, as the file system has it; a module
    next to it is imported through the hook as plainly."""
    build = os.environ.get("MPIIMPORT_TEST_BUILD", "")
    launcher = os.path.join(build, "bin", "mpiimport")
    top = tmp_path / "tree"
    (top / "pkg").mkdir(parents=True)
    latin = os.fsdecode(b"caf\xe9.txt")
    with open(os.path.join(str(top / "pkg"), latin), "w") as f:
        f.write("latin-1 name\n")
    (top / "pkg" / "__init__.py").write_text("VALUE = 42\n")
    image = tmp_path / "tree.mpii"
    shm = tmp_path / "shm"
    shm.mkdir(mode=0o700)
    env = job_env({"MPIIMPORT_STAGE_DIR": str(shm)})
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "--prefix", str(top), "-o", str(image)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    show = subprocess.run([PYTHON, "-m", "mpiimport", "show", str(image), "--all"], env=env,
                          capture_output=True, timeout=120)
    assert show.returncode == 0 and b"caf\xe9.txt" in show.stdout, show.stdout + show.stderr
    s = subprocess.run([launcher, "stage", str(image)], env=env, capture_output=True, text=True, timeout=120)
    assert s.returncode == 0, s.stdout + s.stderr
    probe = ("import os, sys; sys.path.insert(0, %r); import pkg; d = %r; "
             "print(sorted(os.listdir(d)), [open(os.path.join(d, n), 'rb').read() for n in sorted(os.listdir(d)) "
             "if n.endswith('.txt')], pkg.VALUE)" % (str(top), str(top / "pkg")))
    plain = subprocess.run([PYTHON, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    run = subprocess.run([launcher, "run", "--image", str(image), "--", PYTHON, "-c", probe], env=env,
                         capture_output=True, text=True, timeout=120)
    hook = run_mpi(2, ["-c", "import mpiimport; mpiimport.install(); " + probe],
                   extra_env={"MPIIMPORT_SHARED_PREFIXES": str(top), "MPIIMPORT_TIMEOUT": "20"}, timeout=300)
    subprocess.run([launcher, "unstage", str(image)], env=env, capture_output=True, timeout=120)
    assert plain.returncode == 0 and "caf\\udce9.txt" in plain.stdout, plain.stderr
    assert run.returncode == 0 and run.stdout == plain.stdout, run.stdout + run.stderr
    assert hook.stdout.splitlines() == plain.stdout.splitlines() * 2, hook.stdout + hook.stderr
    assert "mpiimport" not in hook.stderr, hook.stderr
