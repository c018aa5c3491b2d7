"""The demo: its plan, its scheduler, its results file and the rendered results page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from orchestration.demo import Run, demo_plan, next_ready
from orchestration.report import README_END, README_START, render_markdown, update_readme

FRACTIONS = ["100", "50", "25"]
SCALES = ["ood0", "ood10", "ood25", "100"]


def test_plan_orders_every_run_after_what_it_needs():
    plan = demo_plan("synthetic_cpjump1", FRACTIONS, "synthetic_jump_profiles_small", SCALES)
    names = [r.name for r in plan]
    assert len(names) == len(set(names)) == 16
    pos = {n: i for i, n in enumerate(names)}
    for r in plan:
        assert all(pos[a] < pos[r.name] for a in r.after), r  # a run only waits for runs listed before it
    by = {r.name: r for r in plan}
    assert by["ingest_job:synthetic_cpjump1:100"].exclusive and sum(r.exclusive for r in plan) == 1
    assert "dp_recipe_job:synthetic_cpjump1:100" in by["train_eval_job:synthetic_cpjump1:100"].after
    assert set(by["publish_job:synthetic_cpjump1:100"].after) == set(names) - {"publish_job:synthetic_cpjump1:100"}
    assert set(by["scaling_job:synthetic_cpjump1:100"].after) == {
        f"train_eval_job:synthetic_cpjump1:{f}" for f in FRACTIONS
    }
    # the forecast ledger: the laws of the three smaller scales are fitted before the largest is materialized
    early = by["scaling_job:synthetic_jump_profiles_small:before-100"]
    assert set(early.after) == {f"phenoca_job:synthetic_jump_profiles_small:{s}" for s in SCALES[:3]}
    assert early.name in by["phenoca_job:synthetic_jump_profiles_small:100"].after
    assert early.name in by["scaling_job:synthetic_jump_profiles_small:100"].after
    no_profiles = demo_plan("synthetic_cpjump1", ["100"], "", SCALES)
    assert [r.job for r in no_profiles] == [
        "ingest_job",
        "dp_recipe_job",
        "train_eval_job",
        "holdout_job",
        "scaling_job",
        "publish_job",
    ]


def test_scheduler_runs_exclusive_runs_alone_and_waits_for_dependencies():
    a, b = Run("a", "d", "1", exclusive=True), Run("b", "d", "1", ("a:d:1",))
    c, d = Run("c", "d", "1"), Run("d", "d", "1", ("b:d:1", "c:d:1"))
    pending = [a, b, c, d]
    assert next_ready(pending, set(), []) is a  # nothing runs: the exclusive run may start
    assert next_ready([b, c, d], set(), [a]) is None  # nothing beside it
    assert next_ready([a, b, d], set(), [c]) is None  # an exclusive run waits until nothing runs
    assert next_ready([b, c, d], {"a:d:1"}, []) is b
    assert next_ready([c, d], {"a:d:1", "b:d:1"}, []) is c
    assert next_ready([d], {"a:d:1", "b:d:1"}, [c]) is None
    assert next_ready([d], {"a:d:1", "b:d:1", "c:d:1"}, []) is d


def _results(total: float, seconds: float) -> dict:
    return {
        "run": {
            "code_version": "0.1.0+gabc",
            "finished_at": "2026-12-03T00:00:00Z",
            "machine": {"cpu": "test CPU", "cores": 2, "memory_gib": 23.4, "python": "3.11", "torch": "2"},
        },
        "plan": {"dataset": "ds", "fractions": ["100"], "profiles": "", "scales": []},
        "jobs": [{"job": "ingest_job", "dataset": "ds", "fraction": "100", "seconds": seconds}],
        "assets": [{"asset": "raw_images", "partition": "", "job": "ingest_job", "seconds": seconds / 2}],
        "seconds": {"startup": 1.0, "pipeline": total - 1, "total": total},
        "headline_fraction": "100",
        "headline": [
            {
                "fraction": "100",
                "method": "MP",
                "analysis": "knn",
                "metric": "best_f1",
                "parameter": 3.0,
                "value": 0.3456,
                "ci_low": 0.2,
                "ci_high": 0.45,
                "n": 66,
                "label": "k-NN best weighted F1",
            }
        ],
        "best_k": [{"fraction": "100", "method": "MP", "value": 3.0}],
        "checkpoints": [],
        "holdout": [],
    }


def test_results_page_gives_the_spread_of_several_runs(tmp_path):
    page = render_markdown([_results(480.0, 180.0), _results(495.0, 190.0)])
    assert "| `ingest_job` | 180–190 |" in page
    assert "**480–495**" in page
    assert "0.346 [0.20, 0.45] (k = 3)" in page
    assert "0.1.0+gabc" in page and "test CPU" in page
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_START}\nold\n{README_END}\n\ntail\n")
    from orchestration.report import render_readme_block

    assert update_readme(readme, render_readme_block([_results(480.0, 180.0)]))
    text = readme.read_text()
    assert "old" not in text and "**480 s**" in text and text.endswith("tail\n")


def test_results_page_says_which_runs_shared_the_machine_or_measured_other_metrics():
    from orchestration.report import render_readme_block

    alone, shared = _results(480.0, 180.0), _results(700.0, 260.0)
    alone["machine_share"] = {"other_share": 0.004, "steal_share": 0.0, "other_cpu_s": 3.8}
    shared["machine_share"] = {"other_share": 0.41, "steal_share": 0.01, "other_cpu_s": 574.0}
    shared["headline"] = [{**shared["headline"][0], "value": 0.2}]
    page = render_markdown([alone, shared])
    assert "other processes used 0.4 % of the machine's CPU (3.8 core-s)" in page
    assert "other processes used 41.0 %" in page and "not timed alone" in page
    assert "Run(s) 2 shared the machine" in page and "Run(s) 2 measured other metrics than run 1" in page
    assert "each alone on the machine: other processes and steal at most 0.4 %" in render_readme_block([alone])
    assert "run(s) 2 shared the machine" in render_readme_block([alone, shared])
    assert "machine share not recorded" in render_readme_block([_results(480.0, 180.0)])
    unscored = _results(480.0, 180.0)  # a metric without a value (e.g. no test well of a class) compares too
    unscored["headline"] = [{**unscored["headline"][0], "value": None}]
    assert "Run(s) 2 measured other metrics" in render_markdown([alone, unscored])


def test_machine_share_counts_a_sibling_process_as_other_work_and_waited_children_as_own():
    from moa_core.provenance import MachineShare

    burn = [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"]
    share = MachineShare.start()
    sibling = subprocess.Popen(burn)  # not waited for before stop(): another process's work
    time.sleep(1.8)
    share.stop()
    sibling.wait()
    assert share.other_cpu_s is not None and share.other_cpu_s > 1.0
    share = MachineShare.start()
    subprocess.run(burn, check=True)  # a waited child: the run's own
    share.stop()
    assert share.own_cpu_s > 1.0 and 0 <= share.as_dict()["other_share"] < 1


def test_report_command_refuses_what_is_not_a_results_file(tmp_path, capsys):
    from orchestration.report import main as report_main

    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(SystemExit):
        report_main([str(bad), "--out", str(tmp_path / "r.md")])
    assert "not a demo results file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report_main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "r.md")])
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_results(480.0, 180.0)))
    assert report_main([str(good), "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# Demo results")


@pytest.mark.slow
def test_demo_on_the_mini_dataset_runs_every_job_on_two_workers(tmp_path, shared_dir):
    """The demo itself, end to end on the mini dataset, run as the README runs it (``python -m
    orchestration.demo`` in its own process, so its spawned workers re-import a clean ``__main__``):
    2 workers sharing one warehouse and one Dagster instance; the results file it writes renders."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["MOA_SHARED_DIR"] = str(shared_dir)
    out = tmp_path / "results.json"
    args = ["--dataset", "synthetic_cpjump1_mini", "--fractions", "100", "--profiles", ""]
    args += ["--data-dir", str(tmp_path / "data"), "--results", str(out), "--parallel", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "orchestration.demo", *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Results file:" in proc.stdout
    res = json.loads(out.read_text())
    assert [j["job"] for j in res["jobs"]][0] == "ingest_job" and res["jobs"][-1]["job"] == "publish_job"
    assert len({j["worker"] for j in res["jobs"]}) == 2  # both workers ran something
    assert {h["method"] for h in res["headline"]} >= {"MP", "CP"}
    assert res["run"]["machine"]["cores"] and res["seconds"]["total"] > 0
    ms = res["machine_share"]  # the workers' CPU is the demo's own once they have exited
    assert ms["own_cpu_s"] > 10 and ms["wall_s"] > 0 and ms["other_share"] is not None
    assert (tmp_path / "data" / "snapshot" / "warehouse.duckdb").is_file()
    assert "# Demo results" in render_markdown([res])


def test_the_results_page_gives_the_forecast_ledgers_record_per_law():
    from orchestration.report import ledger_record_table

    row = {"dataset": "p", "study": "phenoca_ood", "task": "moa_top10", "family": "IBP", "reliable": True}
    rows = [
        row
        | {"form": "averaged", "fit_id": "a", "n_max_observed": 100.0, "n": 300.0, "decades": 0.477}
        | {
            "predicted": 0.7,
            "low": 0.6,
            "high": 0.8,
            "observed": 0.75,
            "error": -0.05,
            "abs_error": 0.05,
            "inside": True,
        },
        row
        | {"form": "linear", "fit_id": "a", "n_max_observed": 100.0, "n": 300.0, "decades": 0.477}
        | {
            "predicted": 0.9,
            "low": None,
            "high": None,
            "observed": 0.75,
            "error": 0.15,
            "abs_error": 0.15,
            "inside": None,
        },
    ]
    table = ledger_record_table({"forecast_ledger": rows})
    lines = table.splitlines()
    avg = next(line for line in lines if line.startswith("| averaged"))
    assert "100% of 1" in avg and "0.05" in avg
    assert "no interval" in next(line for line in lines if line.startswith("| linear"))
    assert ledger_record_table({}) == ""
