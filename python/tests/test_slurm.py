"""`modlab slurm` on a real Slurm: a single-node cluster started for the test (scripts/slurm-cluster:
Debian's slurmctld, slurmd and munge, its configuration in a temporary folder), the quick-start
sweep submitted as a 2-task job array, every run completed, and the one sweep.h5 the tasks wrote
equal to that of a local `modlab run` of the same sweep. Also: a second submission while the
folder's job is queued is refused, and one after all runs completed submits nothing.

Needs root and the Slurm packages (scripts/setup --for-tests); skips saying which is missing.
Run from python/ (CTest does, as python/test_slurm):
    MODLAB_EXE=../build/bin/modlab python3 -m unittest -v tests.test_slurm
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import modlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(REPO, "scripts", "slurm-cluster")
SWEEP = os.path.join(REPO, "sweeps", "quickstart.toml")


def missing_requirements():
    """Why this machine cannot start a test Slurm, or None."""
    if not os.environ.get("MODLAB_EXE"):
        return "MODLAB_EXE is unset: set it to the modlab executable (build/bin/modlab)"
    if os.geteuid() != 0:
        return "the test Slurm's daemons must be started as root"
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin"):
            return f"{tool} is not installed (scripts/setup --for-tests installs Slurm and munge)"
    return None


class SlurmArray(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = missing_requirements()
        if why:
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="modlab_slurm_")
        cls.cluster = os.path.join(cls.tmp, "cluster")
        up = subprocess.run([CLUSTER, "start", cls.cluster], capture_output=True, text=True)
        if up.returncode != 0:
            shutil.rmtree(cls.tmp)
            raise AssertionError(f"the test Slurm did not start:\n{up.stdout}{up.stderr}")
        cls.env = dict(os.environ, SLURM_CONF=os.path.join(cls.cluster, "slurm.conf"))

    @classmethod
    def tearDownClass(cls):
        subprocess.run([CLUSTER, "stop", cls.cluster], capture_output=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def modlab(self, *args):
        return subprocess.run([os.environ["MODLAB_EXE"], *args], capture_output=True, text=True,
                              env=self.env, cwd=self.tmp)

    def squeue(self, job):
        out = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format", "%i %T"],
                             capture_output=True, text=True, env=self.env)
        return out.stdout.strip()

    def wait_for(self, job, seconds=180):
        deadline = time.monotonic() + seconds
        while self.squeue(job):
            self.assertLess(time.monotonic(), deadline, f"job {job} still queued after {seconds} s")
            time.sleep(0.5)

    def submit(self, *args):
        done = self.modlab("slurm", SWEEP, *args)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("submitted job ", done.stdout)
        return done.stdout.split("submitted job ")[1].split(":")[0]

    def test_a_dry_run_prints_the_array_without_submitting(self):
        out = os.path.join(self.tmp, "dry")
        done = self.modlab("slurm", SWEEP, "--tasks", "2", "--out", out, "--dry-run")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("#SBATCH --array=0-1\n", done.stdout)
        self.assertIn('--shard "${SLURM_ARRAY_TASK_ID}/2"', done.stdout)
        self.assertFalse(os.path.exists(out))

    def test_a_second_submission_while_the_job_is_queued_is_refused(self):
        out = os.path.join(self.tmp, "held")
        job = self.submit("--tasks", "2", "--out", out, "--", "--hold")
        try:
            again = self.modlab("slurm", SWEEP, "--tasks", "2", "--out", out)
            self.assertNotEqual(again.returncode, 0)
            self.assertIn(f"job {job} of this output folder", again.stderr)
            self.assertIn("still queued or running", again.stderr)
        finally:
            subprocess.run(["scancel", job], env=self.env)
            self.wait_for(job)

    def test_a_two_task_array_writes_the_sweep_a_local_run_writes(self):
        out = os.path.join(self.tmp, "slurm")
        job = self.submit("--tasks", "2", "--out", out)
        local = self.modlab("run", SWEEP, "--jobs", "2", "--threads", "2", "--out", os.path.join(self.tmp, "local"))
        self.assertEqual(local.returncode, 0, local.stderr)
        self.wait_for(job)
        for task in (0, 1):
            log = os.path.join(out, "slurm", f"{job}_{task}.out")
            self.assertTrue(os.path.exists(log), f"no log of array task {task}")
        mine, theirs = modlab.load_sweep(out), modlab.load_sweep(os.path.join(self.tmp, "local"))
        self.assertEqual(list(mine["status"]), ["completed"] * len(theirs))
        self.assertEqual(list(mine["run_id"]), list(theirs["run_id"]))
        metrics = [c for c in theirs.columns if c.startswith(("final_", "test_", "train_"))]
        self.assertTrue(metrics, f"no metric columns in {list(theirs.columns)}")
        for c in metrics:
            np.testing.assert_allclose(mine[c].to_numpy(float), theirs[c].to_numpy(float), rtol=1e-6, err_msg=c)
        again = self.modlab("slurm", SWEEP, "--tasks", "2", "--out", out)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("runs are complete", again.stdout)


if __name__ == "__main__":
    unittest.main()
