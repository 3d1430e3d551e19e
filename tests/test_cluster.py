"""``pipeline.cluster``: commands as Ray tasks on a local cluster, each with its own exit code and
output, threads pinned per task (the whole sweep on the micro repository:
``test_dvc_pipeline.py::test_unlearncanvas_sweep_and_same_seeds_same_numbers``)."""

import pytest

from pipeline import cluster
from pipeline.errors import ParamsError


def test_tasks_report_their_own_exit_code_output_and_threads(tmp_path):
    jobs = [cluster.Job("ok", "echo threads=$OMP_NUM_THREADS; echo made > out.txt", str(tmp_path)),
            cluster.Job("bad", "echo oops >&2; exit 3", str(tmp_path))]
    done = cluster.run_jobs(jobs, workers=2, threads=1)
    assert [d.name for d in done] == ["ok", "bad"]  # the jobs' order, whatever finished first
    assert done[0].returncode == 0 and "threads=1" in done[0].tail
    assert (tmp_path / "out.txt").read_text() == "made\n"  # run in its own folder
    assert done[1].returncode == 3 and "oops" in done[1].tail


def test_bad_settings_are_one_error_before_any_cluster_starts():
    with pytest.raises(ParamsError, match="threads and workers"):
        cluster.run_jobs([cluster.Job("x", "true", ".")], threads=0)
    assert cluster.run_jobs([], workers=2) == []  # nothing to run: no cluster either
