"""Recorded lists and packed images: one broadcast per job, no collective
after install(), changes to sources picked up, bad images refused, shared cache
directories, `python3 -m mpiimport pack/show`, and the site hook."""
import os
import re
import shlex
import shutil
import subprocess
import threading

import pytest

from conftest import JOBS, MPIRUN, PYTHON, job_env, load_ranks, run_mpi


def tree(tmp_path, value=1):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "mod_a.py").write_text("VALUE = %r\n" % value)
    (site / "extra_mod.py").write_text("VALUE = 'only one rank imports me'\n")
    shutil.copy(os.path.join(JOBS, "app.py"), site / "app.py")
    return site


def run_app(n, site, out, env, extra=()):
    out.mkdir(exist_ok=True)
    e = {"APP_INSTALL": "1", "MPIIMPORT_TIMEOUT": "30",
         "MPIIMPORT_SHARED_PREFIXES": str(site) + ":/usr/lib/python3"}
    e.update(env)
    run_mpi(n, [str(site / "app.py"), str(out)] + list(extra), extra_env=e)
    return load_ranks(str(out), n)


def test_record_replay_and_a_changed_source(tmp_path):
    site, cache = tree(tmp_path), tmp_path / "cache"
    env = {"MPIIMPORT_RECORD": "1", "MPIIMPORT_CACHE_DIR": str(cache)}
    first = run_app(4, site, tmp_path / "o1", env)
    assert not any(r["stats"]["replayed"] for r in first)
    lists = os.listdir(cache)
    assert len(lists) == 1 and lists[0].endswith(".mpiilist")
    lockstep_bcasts = first[0]["stats"]["bcast_count"]
    assert lockstep_bcasts > 20

    second = run_app(4, site, tmp_path / "o2", env, extra=["2", "extra_mod"])
    for r in second:
        st = r["stats"]
        assert st["replayed"] and r["value"] == 1 and r["sum"] == 10.0
        assert st["bcast_count"] == 1, st   # the whole job: one message
        assert st["fallbacks"] == 0, st     # a gap in the image is one fact, not a plain import
        if r is not second[0] and r is not second[2]:
            assert st["fs_calls"] == 0
    # rank 2's extra module: not in the image; rank 2 fetched those facts itself
    # (its source's stat and cache, compiled once), no collective, no warning
    assert second[2]["extra"] == "extra_mod" and second[2]["stats"]["bcast_count"] == 1
    assert 1 <= second[2]["stats"]["fs_calls"] <= 6, second[2]["stats"]
    assert second[2]["stats"]["image_misses"] >= 1 and second[1]["stats"]["image_misses"] == 0

    (site / "mod_a.py").write_text("VALUE = 'changed source, longer'\n")
    third = run_app(4, site, tmp_path / "o3", env)
    for r in third:
        assert r["stats"]["replayed"] and r["value"] == "changed source, longer"
    source, reused, reread = third[0]["stats"]["replay"]
    assert reread > 50  # a recorded list holds no bytes: every file it names is read afresh


def test_pack_show_and_replay_an_image(tmp_path):
    site = tree(tmp_path, value="packed")
    image = tmp_path / "app.mpii"
    # caches written first, so that packing itself changes nothing it recorded
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(site)], check=True)
    env = job_env({"MPIIMPORT_SHARED_PREFIXES": str(site) + ":/usr/lib/python3",
                   "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--", str(site / "app.py"), "-"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    show = subprocess.run([PYTHON, "-m", "mpiimport", "show", str(image), "--all"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert show.returncode == 0, show.stderr
    assert "mod_a.py" in show.stdout and "_multiarray_umath" in show.stdout
    assert "packed image of" in show.stdout
    # summarised by top-level package, the biggest first: numpy here
    lines = show.stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith("by top-level package"))
    assert lines[at + 1].split()[0] == "numpy", show.stdout[:2000]
    assert any(l.strip().startswith(str(site) + "/") for l in lines[at:]), show.stdout[:2000]
    for trust in ("0", "1"):
        ranks = run_app(4, site, tmp_path / ("o" + trust), {"MPIIMPORT_IMAGE": str(image),
                                                           "MPIIMPORT_TRUST_IMAGE": trust})
        for r in ranks:
            assert r["stats"]["replayed"] and r["value"] == "packed" and r["stats"]["bcast_count"] == 1
            if r is not ranks[0]:
                assert r["stats"]["fs_calls"] == 0
        source, reused, reread = ranks[0]["stats"]["replay"]
        assert reread == 0 and reused > 100, (trust, ranks[0]["stats"])
        if trust == "1":
            # no staleness checks: rank 0 opened the image and nothing else
            assert ranks[0]["stats"]["fs_calls"] == 4, ranks[0]["stats"]


def test_a_gap_in_an_image_costs_one_fact(tmp_path):
    """The same imports run another way than they were packed (-c, from another
    directory): sys.path[0] is a directory the image does not list. Every rank
    lists it itself and goes on from the image: a handful of calls under the
    shared prefixes per non-root rank after install() (strace), not a plain
    import of every top-level module."""
    if shutil.which("strace") is None:
        pytest.fail("strace is required (apt install strace)")
    site = tree(tmp_path, value="packed")
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(site)], check=True)
    image = tmp_path / "app.mpii"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    prefixes = [str(site), "/usr/lib/python3", "/usr/lib/python3.11", str(elsewhere)]
    env = job_env({"MPIIMPORT_SHARED_PREFIXES": ":".join(prefixes),
                   "PYTHONPATH": os.environ.get("PYTHONPATH", "") + ":" + str(site)})
    p = subprocess.run([PYTHON, "-m", "mpiimport", "pack", "-o", str(image), "--", str(site / "app.py"), "-"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    traces, out = tmp_path / "traces", tmp_path / "out"
    traces.mkdir()
    out.mkdir()
    code = "exec(open(%r).read())" % str(site / "app.py")
    script = ("cd %s && exec strace -f -qq -e trace=%%file -o %s/trace.${PMIX_RANK:-$OMPI_COMM_WORLD_RANK} %s -c %s %s"
              % (shlex.quote(str(elsewhere)), traces, PYTHON, shlex.quote(code), out))
    env.update({"APP_INSTALL": "1", "MPIIMPORT_IMAGE": str(image), "MPIIMPORT_TIMEOUT": "60"})
    n = 3
    p = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", str(n), "sh", "-c", script],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = load_ranks(str(out), n)
    path_re = re.compile(r'"([^"]*)"')
    for r in ranks:
        assert r["stats"]["replayed"] and r["value"] == "packed" and r["stats"]["fallbacks"] == 0, r["stats"]
    for rank in range(1, n):
        calls, after = [], False
        with open(traces / ("trace.%d" % rank)) as f:
            for line in f:
                if "/mpiimport-test-marker/installed/" in line:
                    after = True
                    continue
                m = path_re.search(line)
                if " getcwd(" in line:  # answered by the kernel from the process's cwd
                    continue
                if after and m and any(m.group(1) == pre or m.group(1).startswith(pre + "/")
                                       for pre in prefixes):
                    calls.append(line.strip())
        assert after, "no marker in rank %d's trace" % rank
        assert 1 <= len(calls) <= 5, (rank, len(calls), calls[:20])
        assert ranks[rank]["stats"]["image_misses"] >= 1


def test_bad_image_is_refused_and_the_job_imports(tmp_path):
    site = tree(tmp_path)
    bad = tmp_path / "bad.mpii"
    bad.write_bytes(b"MPIIMG\r\n" + b"\x01" * 200)
    p = run_mpi(2, [str(site / "app.py"), "-"], extra_env={
        "APP_INSTALL": "1", "MPIIMPORT_IMAGE": str(bad),
        "MPIIMPORT_SHARED_PREFIXES": str(site) + ":/usr/lib/python3"})
    assert "refused" in p.stderr and str(bad) in p.stderr


def test_two_jobs_share_a_cache_directory(tmp_path):
    site, cache = tree(tmp_path), tmp_path / "cache"
    env = {"MPIIMPORT_RECORD": "1", "MPIIMPORT_CACHE_DIR": str(cache)}
    errors = []

    def job(i):
        try:
            run_app(2, site, tmp_path / ("j%d" % i), env)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    (listed,) = os.listdir(cache)  # both wrote the same key; no temporary file left
    ranks = run_app(2, site, tmp_path / "after", env)
    assert all(r["stats"]["replayed"] for r in ranks)


def test_site_hook_on_and_off(tmp_path):
    site = tree(tmp_path)
    pydir = os.environ["PYTHONPATH"].split(":")[0]
    assert os.path.exists(os.path.join(pydir, "mpiimport.pth"))
    code = ("import site, sys; site.addsitedir(%r); sys.path.insert(0, %r); import mod_a, numpy; "
            "print('active %%s' %% ('mpiimport' in sys.modules and type(sys.meta_path[0]).__name__ == 'MpiFinder'))"
            % (pydir, str(site)))
    on = run_mpi(2, ["-c", code], extra_env={"MPIIMPORT": "1", "PYTHONPATH": ""})
    assert on.stdout.count("active True") == 2, on.stdout + on.stderr
    off = run_mpi(2, ["-c", code], extra_env={"PYTHONPATH": ""})
    assert off.stdout.count("active False") == 2, off.stdout + off.stderr


def test_pack_shows_progress_on_a_terminal_only(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("import json, time\ntime.sleep(0.8)\n")
    env = job_env({"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    cmd = "%s -m mpiimport pack -o %s -- %s" % (PYTHON, tmp_path / "a.mpii", app)
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert tty.returncode == 0, tty.stdout + tty.stderr
    assert "files," in tty.stdout and "MiB/s" in tty.stdout, tty.stdout
    plain = subprocess.run(shlex.split(cmd), env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "MiB/s" not in plain.stderr, plain.stderr
