"""``pipeline.cluster``: commands as Ray tasks on a local cluster, each with its own exit code and
output, threads pinned per task (the whole sweep on the micro repository:
``test_dvc_pipeline.py::test_unlearncanvas_sweep_and_same_seeds_same_numbers``)."""

import pytest

from pipeline import cluster
from pipeline.errors import ParamsError


def test_tasks_report_their_own_exit_code_output_and_threads(tmp_path):
    jobs = [cluster.Job("ok", "echo threads=$OMP_NUM_THREADS/$MKL_NUM_THREADS; echo made > out.txt",
                        str(tmp_path)),
            cluster.Job("bad", "echo oops >&2; exit 3", str(tmp_path))]
    done = cluster.run_jobs(jobs, workers=2, threads=1)
    assert [d.name for d in done] == ["ok", "bad"]  # the jobs' order, whatever finished first
    assert done[0].returncode == 0 and "threads=1/1" in done[0].tail  # pinned (MKL: ours only)
    assert (tmp_path / "out.txt").read_text() == "made\n"  # run in its own folder
    assert done[1].returncode == 3 and "oops" in done[1].tail


def test_bad_settings_are_one_error_before_any_cluster_starts():
    with pytest.raises(ParamsError, match="threads and workers"):
        cluster.run_jobs([cluster.Job("x", "true", ".")], threads=0)
    assert cluster.run_jobs([], workers=2) == []  # nothing to run: no cluster either


def test_sweep_runs_waves_as_tasks_and_commits_each(tmp_path):
    """A dvc.yaml of two foreach items and a table that reads them: two waves (the items at
    once, then the table), each committed, so the closing dvc repro runs nothing."""
    import subprocess

    from slug_cli import sweep

    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  item:\n    foreach: [a, b]\n    do:\n      cmd: echo ${item} > out_${item}.txt\n"
        "      outs: ['out_${item}.txt']\n  table:\n    cmd: cat out_a.txt out_b.txt > table.txt\n"
        "    deps: [out_a.txt, out_b.txt]\n    outs: [table.txt]\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    _, waves = sweep.plan("dvc.yaml", tmp_path)
    assert [sorted(j.name for j in w) for w in waves] == [["item@a", "item@b"], ["table"]]
    done, reran = sweep.sweep("dvc.yaml", address=None, workers=2, threads=1, gpus=0,
                              root=tmp_path)
    assert [d.returncode for d in done] == [0, 0, 0] and reran == 0  # committed: nothing to rerun
    assert (tmp_path / "table.txt").read_text() == "a\nb\n"
    status = subprocess.run(["dvc", "status"], cwd=tmp_path, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
