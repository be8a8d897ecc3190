"""The sbatch script of docs/job-scripts.md ("A staged image, for every step
of an allocation"), run for real on the test command's one-node Slurm: a
staging step of one task per node (rank 0 reads the image, the others
receive it), Python steps served from the node's stage by the import hook,
an `mpiimport run` step of a program linked against libraries in the
shared directory, and the unstaging step. Runs only as python_srun.*."""
import os
import subprocess

import pytest

from conftest import LAUNCHER_KIND, PYTHON
from test_run_audit import LAUNCHER, needs_pmix_transport, workload  # noqa: F401  (the fixture)


SCRIPT = """#!/bin/bash
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --time=00:10:00
set -e
IMG={image}
export PATH={bindir}:$PATH MPIIMPORT_STAGE_DIR={stage} MPIIMPORT_RANKS_PER_NODE=2

# one task per node: each node's /dev/shm gets the image (files, index, seal)
srun --mpi=pmix --ntasks-per-node=1 --ntasks=$SLURM_JOB_NUM_NODES mpiimport stage $IMG
ls {stage} > {out}/after-stage

# Python steps: the import hook serves from the node's stage
export MPIIMPORT_IMAGE=$IMG MPIIMPORT_STAGED=1
srun --mpi=pmix {python} {job}
srun --mpi=pmix {python} {job}

# any program, the dynamic loader and its own open()/stat() served too
srun --mpi=pmix mpiimport run --image $IMG -- {app}

srun --mpi=pmix --ntasks-per-node=1 --ntasks=$SLURM_JOB_NUM_NODES mpiimport unstage $IMG
ls {stage} > {out}/after-unstage
"""


def test_the_documented_sbatch_script_stages_runs_and_unstages(workload):  # noqa: F811
    if LAUNCHER_KIND != "srun":
        pytest.skip("runs as python_srun.test_slurm_jobscript (needs the test command's Slurm)")
    needs_pmix_transport()
    tmp_path, shared, image, env = workload
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "job.sbatch"
    script.write_text(SCRIPT.format(image=image, bindir=os.path.dirname(LAUNCHER), stage=env["MPIIMPORT_STAGE_DIR"],
                                    out=out, python=PYTHON, job=tmp_path / "job.py", app=tmp_path / "app"))
    run_env = dict(os.environ, PYTHONPATH=env["PYTHONPATH"], MPIIMPORT_SHARED_PREFIXES=env["MPIIMPORT_SHARED_PREFIXES"],
                   MPIIMPORT_TIMEOUT="60", MPIIMPORT_RECORD="0")
    log = tmp_path / "slurm.out"
    p = subprocess.run(["sbatch", "--wait", "--chdir", str(tmp_path), "-o", str(log), str(script)],
                       env=run_env, capture_output=True, text=True, timeout=600)
    text = log.read_text() if log.exists() else ""
    assert p.returncode == 0, p.stdout + p.stderr + text
    assert text.count("mpiimport stage: rank 0 of 1: staged") == 1, text
    # two Python steps of four ranks, each served from the stage (no collective)
    assert text.count("job True staged 42") == 8, text
    assert text.count("value 42 files 2") == 4 and "plainly" not in text, text
    assert "removed" in text, text
    assert (out / "after-stage").read_text().strip() != ""
    assert (out / "after-unstage").read_text().strip() == ""
