"""convtool.cluster, `apply --scheduler` and `pipeline --scheduler`: a real Dask scheduler and two
worker processes on loopback give the local run's bytes, records, errors and exit code; a worker
killed mid-batch costs a retry, not a file (pipeline's panels, grids and stage files too); Dask
stays unimported without --scheduler; clear one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from convtool import imaging
from convtool.batch import apply_task, cluster
from convtool.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
START_TIMEOUT = 60


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=log.parent,
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in processes:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two single-threaded worker processes (no nanny: a killed worker
    stays dead), all on 127.0.0.1; every process is stopped, whatever happens."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    processes: list[subprocess.Popen] = []
    try:
        processes.append(
            _spawn(
                [
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                folder / "scheduler.log",
            )
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert processes[0].poll() is None, (folder / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = []
        for n in range(2):
            worker = _spawn(
                [
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    f"w{n}",
                ],
                folder / f"worker{n}.log",
            )
            processes.append(worker)
            workers.append(worker)
        with Client(address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
        yield address, workers
    finally:
        _stop(processes)


def pictures(folder: Path, count: int, size: int = 256) -> list[str]:
    """`count` distinct RGB pictures, named p00.png, p01.png, ..."""
    rng = np.random.default_rng(count)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = folder / f"p{i:02d}.png"
        imaging.write_image(name, rng.random((size, size, 3)))
        names.append(name.name)
    return names


def convtool(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """This tree's convtool in a fresh process (PYTHONPATH: not another installed copy)."""
    return subprocess.run(
        [sys.executable, "-m", "convtool", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
        timeout=120,
    )


def run_cli(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return convtool(cwd, "apply", *args, env=env)


def test_cluster_run_equals_local_run(dask_cluster, tmp_path):
    address, _ = dask_cluster
    names = pictures(tmp_path, 6)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    inputs = [*names, "broken.png", "missing.png"]
    runs = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", address])):
        (tmp_path / where).mkdir()
        args = [*inputs, "-k", "sobel_x", "-k", "gaussian:5", "-o", f"{where}/", "--json"]
        runs[where] = run_cli(tmp_path, *args, *extra)
    local, remote = runs["local"], runs["remote"]
    assert local.returncode == remote.returncode == 1
    assert "Traceback" not in remote.stderr
    assert remote.stderr == local.stderr.replace("local/", "remote/")
    assert remote.stdout == local.stdout.replace("local/", "remote/")
    assert len(remote.stdout.splitlines()) == 2 * len(inputs)  # records and error records
    written = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(written) == 2 * len(names)
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == written
    for name in written:
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_worker_killed_mid_batch_costs_no_file(dask_cluster, tmp_path):
    from distributed import Client

    address, workers = dask_cluster
    names = pictures(tmp_path, 24, size=400)
    (tmp_path / "out").mkdir()
    env = dict(os.environ, CONVTOOL_SCHEDULER=address, PYTHONPATH=str(ROOT))
    args = [*names, "-k", "gaussian:15", "-o", "out/"]
    batch = subprocess.Popen(
        [sys.executable, "-m", "convtool", "apply", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = workers[0]
        with Client(address, timeout=START_TIMEOUT) as client:
            info = client.scheduler_info()["workers"]
            (where,) = [a for a, w in info.items() if w["name"] == "w0"]
            deadline = time.monotonic() + 60
            # kill it once it has pictures in hand and others are already written
            while not (
                client.processing().get(where) and len(list((tmp_path / "out").glob("p*.png"))) >= 2
            ):
                assert batch.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        _, stderr = batch.communicate(timeout=120)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 0, stderr
    done = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert done == sorted(n.replace(".png", ".gaussian_15.png") for n in names)  # no .tmp left
    local = run_cli(tmp_path, names[-1], "-k", "gaussian:15", "-o", "last.png")
    assert local.returncode == 0
    last = names[-1].replace(".png", ".gaussian_15.png")
    assert (tmp_path / "out" / last).read_bytes() == (tmp_path / "last.png").read_bytes()


CHAIN = "conv:sobel_x+sobel_y -> relu -> maxpool:2"


def records(stdout: str) -> list[dict]:
    """--json records, stage times (which no two runs share) left out."""
    out = [json.loads(line) for line in stdout.splitlines()]
    for record in out:
        for stage in record.get("stages", []):
            stage.pop("seconds")
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_pipeline_on_the_cluster_equals_a_local_run(dask_cluster, tmp_path):
    address, _ = dask_cluster
    names = pictures(tmp_path, 4, size=64)
    imaging.write_image(tmp_path / "grey.png", np.random.default_rng(1).random((50, 60)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    inputs = [*names, "grey.png", "broken.png", "missing.png"]
    runs = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", address])):
        (tmp_path / where).mkdir()
        outputs = ["-o", f"{where}/", "--format", "npy", "--panel", f"{where}/", "--grid"]
        outputs += [f"{where}/", "--save-stages", f"{where}/st", "--json"]
        runs[where] = convtool(tmp_path, "pipeline", *inputs, "--stage", CHAIN, *outputs, *extra)
    local, remote = runs["local"], runs["remote"]
    assert local.returncode == remote.returncode == 1
    assert "Traceback" not in remote.stderr and "broken.png" in remote.stderr
    assert remote.stderr == local.stderr.replace("local/", "remote/")
    assert records(remote.stdout) == records(local.stdout.replace("local/", "remote/"))
    assert len(records(remote.stdout)) == len(inputs)  # records and error records
    written = tree(tmp_path / "local")
    # per picture: the map, panel, grid; per stage one .npy and a picture per map
    assert len(written) == 5 * (3 + 3 * 3) and "st/p00.01-conv.sobel_y.png" in written
    assert tree(tmp_path / "remote") == written  # the same names, byte for byte

    # the tables, with $CONVTOOL_SCHEDULER, are the local run's (times aside)
    def tables(done: subprocess.CompletedProcess) -> list[str]:
        return [
            re.sub(r"\S+ ms", "ms", " ".join(line.split())) for line in done.stdout.splitlines()
        ]

    here = convtool(tmp_path, "pipeline", *names, "-k", "sobel_x")
    there = convtool(
        tmp_path, "pipeline", *names, "-k", "sobel_x", env={"CONVTOOL_SCHEDULER": address}
    )
    assert here.returncode == there.returncode == 0 and here.stderr == there.stderr == ""
    assert tables(there) == tables(here) and len(tables(here)) == 6 * len(names)


def test_no_dask_without_a_scheduler(tmp_path):
    imaging.write_image(tmp_path / "a.png", np.zeros((8, 8)))
    imaging.write_image(tmp_path / "c.png", np.ones((8, 8)))
    env = {k: v for k, v in os.environ.items() if k != "CONVTOOL_SCHEDULER"}
    env["PYTHONPATH"] = str(ROOT)
    for command in (
        ["apply", "a.png", "-k", "blur", "-o", "b.png", "--jobs", "2"],
        ["pipeline", "a.png", "c.png", "-k", "blur", "--save-stages", "st", "--jobs", "2"],
    ):
        code = (
            "import sys; from convtool.cli import cli\n"
            f"cli.main({command!r}, standalone_mode=False)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "b.png").exists() and len(list((tmp_path / "st").iterdir())) == 12


def test_missing_dask_is_one_clear_line(tmp_path, monkeypatch):
    imaging.write_image(tmp_path / "a.png", np.zeros((8, 8)))
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now fails
    args = ["apply", str(tmp_path / "a.png"), "-k", "blur", "-o", str(tmp_path / "b.png")]
    done = CliRunner().invoke(cli, [*args, "--scheduler", "tcp://127.0.0.1:8786"])
    assert done.exit_code == 1
    assert "pip install 'convtool[dask]'" in done.output
    assert len(done.output.strip().splitlines()) == 1 and not (tmp_path / "b.png").exists()


def test_unreachable_scheduler_is_one_clear_line(tmp_path):
    imaging.write_image(tmp_path / "a.png", np.zeros((8, 8)))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address, message in (
        (f"tcp://127.0.0.1:{port}", "cannot reach the Dask scheduler"),
        ("nonsense", "is not a scheduler address"),
    ):
        started = time.monotonic()
        done = run_cli(tmp_path, "a.png", "-k", "blur", "-o", "b.png", "--scheduler", address)
        assert done.returncode == 1 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert time.monotonic() - started < 8  # said at once, not after a connect timeout
    assert not (tmp_path / "b.png").exists()


def test_scheduler_usage_errors(tmp_path):
    imaging.write_image(tmp_path / "a.png", np.zeros((8, 8)))
    runner = CliRunner()
    base = ["apply", str(tmp_path / "a.png"), "-k", "blur", "--scheduler", "tcp://h:1"]
    done = runner.invoke(cli, [*base, "-o", str(tmp_path / "b.png"), "--jobs", "2"])
    assert done.exit_code == 2 and "give one of them" in done.output
    done = runner.invoke(cli, [*base, "-o", "-"])
    assert done.exit_code == 2 and "standard input and output" in done.output


# ----------------------------------------------------------------- without a cluster


def work_for_tests(task, options):
    return apply_task.run_task(task, options)


def test_shipped_items_name_paths_as_given(tmp_path, monkeypatch):
    import functools

    from convtool import filtering

    monkeypatch.chdir(tmp_path)
    imaging.write_image("a.png", np.full((6, 6), 0.5))
    options = apply_task.Options(kernels=(filtering.prepare_kernel(np.ones((3, 3)) / 9),))
    again = apply_task.Options(kernels=options.kernels, overwrite=True)
    tasks = apply_task.plan_outputs(["a.png", "gone.png"], ["box"])
    work = functools.partial(work_for_tests, options=options)
    rework = functools.partial(work_for_tests, options=again)
    items, remote = cluster.ship(tasks, work, rework, cwd=str(tmp_path))
    assert items[0].task.source == str(tmp_path / "a.png") and items[0].fresh
    records = remote(items[0])
    assert (records[0]["input"], records[0]["output"]) == ("a.png", "a.box.png")
    # the same item again (its worker was lost after writing): written again, not refused
    assert remote(items[0])[0]["output"] == "a.box.png"
    # an output there before the batch is kept, as locally
    late, _ = cluster.ship(tasks, work, rework, cwd=str(tmp_path))
    assert not late[0].fresh
    with pytest.raises(cluster.ShippedError, match=r"^a\.box\.png exists"):
        remote(late[0])
    with pytest.raises(cluster.ShippedError, match=r"^cannot read gone\.png: no such file"):
        remote(items[1])


def test_tidy_removes_only_leftover_temporaries(tmp_path):
    out = tmp_path / "x.png"
    task = apply_task.Task(str(tmp_path / "a.png"), (apply_task.Output(str(out), (0,)),))
    items, _ = cluster.ship([task], print, None, cwd="/")
    (tmp_path / ".x.png.0123abcd.tmp").write_bytes(b"partial")
    (tmp_path / ".x.png.notours.tmp").write_bytes(b"someone else's")
    (tmp_path / ".y.png.0123abcd.tmp").write_bytes(b"another output's")
    assert cluster.tidy(items) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".x.png.notours.tmp",
        ".y.png.0123abcd.tmp",
    ]


def test_shipped_pipeline_items_rewrite_only_their_own_files(tmp_path, monkeypatch):
    import functools

    from convtool import pipeline as pl
    from convtool.batch import pipeline_task as pj

    rng = np.random.default_rng(4)
    here, there = tmp_path / "here", tmp_path / "there"  # the cluster's cwd, and a local one
    for folder in (here, there):
        (folder / "out").mkdir(parents=True)
        (folder / "st").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        picture = rng.random((12, 14, 3))
        imaging.write_image(here / name, picture)
        imaging.write_image(there / name, picture)
    stages = tuple(pl.parse_stages([CHAIN]))
    options = pj.Options(stages=stages)
    work = functools.partial(pj.run_task, options=options)
    rework = functools.partial(pj.run_task, options=options._replace(overwrite=True))

    def task(stem: str) -> pj.Task:
        out = f"out/{stem}"
        return pj.Task(
            f"{stem}.png", f"{out}.npy", f"{out}.panel.png", f"{out}.grid.png", "st//", stem + "."
        )

    tasks = [task("a"), task("b"), task("c")]
    (here / "st" / "b.02-relu.npy").write_bytes(b"keep")  # a stage file there before the batch
    (here / "st" / "c.01-conv.sobel_y.png").write_bytes(b"keep")  # one named as c runs
    items, remote = cluster.ship(tasks, work, rework, cwd=str(here), layout=pj.TaskLayout(stages))
    assert items[0].task.stages_dir == str(here / "st")
    assert items[0].task.output == str(here / "out" / "a.npy")
    assert [item.fresh for item in items] == [True, False, True]

    # paths named as given: the record and files of a local run, from another folder
    monkeypatch.chdir(there)
    want = records(json.dumps(pj.run_task(tasks[0], options)))
    got = records(json.dumps(remote(items[0])))
    assert got == want and "st//a.01-conv.sobel_x.png" in [o["output"] for o in got[0]["outputs"]]
    written = tree(here)

    def of_a(files: dict[str, bytes]) -> dict[str, bytes]:
        return {k: v for k, v in files.items() if k.startswith(("out/a.", "st/a."))}

    assert of_a(written) == of_a(tree(there)) and len(of_a(written)) == 3 + 3 * 3
    # run again (its worker was lost after writing): written again, not refused
    assert records(json.dumps(remote(items[0]))) == want and tree(here) == written
    # a file there before the batch is kept, as locally, named as given
    with pytest.raises(cluster.ShippedError, match=r"^st//b\.02-relu\.npy exists; pass"):
        remote(items[1])
    for _ in range(2):  # not fresh by its .npy files, and refused before any is written
        with pytest.raises(cluster.ShippedError, match=r"^st//c\.01-conv\.sobel_y\.png exists"):
            remote(items[2])
    assert tree(here) == written
    assert (
        (here / "st" / "b.02-relu.npy").read_bytes()
        == b"keep"
        == written["st/c.01-conv.sobel_y.png"]
    )


def test_tidy_removes_pipeline_temporaries_named_as_it_ran(tmp_path):
    from convtool import pipeline as pl
    from convtool.batch import pipeline_task as pj

    stages = tuple(pl.parse_stages([CHAIN]))
    tasks = [pj.Task("a.png", "out/a.npy", stages_dir="st", prefix="a.")]
    items, _ = cluster.ship(tasks, print, None, cwd=str(tmp_path), layout=pj.TaskLayout(stages))
    (tmp_path / "out").mkdir()
    (tmp_path / "st").mkdir()
    ours = [
        "out/.a.npy.0123abcd.tmp",
        "st/.a.01-conv.sobel_x.png.89abcdef.tmp",
        "st/.a.03-maxpool.npy.00000000.tmp",
    ]
    others = [
        "st/.b.01-conv.png.0123abcd.tmp",
        "st/.a.01-conv.png.nothex.tmp",
        "st/.a.04-relu.npy.0123abcd.tmp",
        "out/.b.npy.0123abcd.tmp",
        "st/a.01-conv.npy",
    ]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"partial")
    assert cluster.tidy(items) == len(ours)
    assert sorted(tree(tmp_path)) == sorted(others)
