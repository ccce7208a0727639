"""Online serving throughput and latency: mlprod vs MLflow, BentoML and two bare FastAPI apps, side by side.

Run: ``.venv/bin/python bench/serve/run.py [--model context|schedule] [--sample 1.0]
[--only mlprod,mlprod-buffered,mlprod-fsync,mlprod-rows,mlprod-oip,mlflow,bentoml,lightgbm,onnx]
[--duration 15] [--requests 2000] [--connections 8] [--wrk-threads 1] [--warmup 3] [--rounds 1]
[--work-dir DIR]``.

One model for everyone (``prepare.py``): by default the flights LightGBM (200 trees) trained on the
feature set ``flight-context`` as ``mlprod demo`` trains it, in a temporary mlprod workspace, aliased
``champion``, exported to ONNX (parity-checked by the registry), and its 15 context features
materialized into the online store; ``--model schedule`` trains the schedule-only model instead (no
feature set). The same version is handed to each peer: its LightGBM text file to the bare LightGBM
app, to MLflow (``mlflow.lightgbm.save_model`` in MLflow's venv) and to BentoML (its model store under
a temporary ``BENTOML_HOME``, in BentoML's venv); its ONNX file to the bare onnxruntime app. MLflow and
BentoML get their own venvs under ``~/.cache/mlprod-bench/<tool>-venv`` (``$BENCH_CACHE``),
created once and reused; the bare apps run in mlprod's venv.

Every target gets the same flight in the request shape its tool expects: ``mlprod`` the entity-key
request (the schedule inputs, the entity keys and ``as_of``: the server looks the context features up
in the online store and logs the prediction), ``mlprod-rows`` the complete raw row (no lookup), the
peers the complete row encoded as numbers. Each server runs as one process on a free loopback port;
the harness waits until it is healthy, checks its answer against the registry's prediction, warms it
up, then runs ``wrk`` (``bench/serve/wrk/post.lua``) twice: one connection for exactly ``--requests``
requests (p50 / p99 from those requests' latencies), and ``--connections`` connections for
``--duration`` seconds (req/s). Every non-2xx answer is counted. The table puts the targets side by
side with the ratios and verdicts of the issue's goals.

A target is a name, a command, a health path and one request (``Target``); add one by writing a
factory and listing it in ``TARGETS``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prepare import MODELS, Model, prepare_model, say

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
LUA = HERE / "wrk" / "post.lua"
VENV_BIN = Path(sys.executable).parent
# not MLPROD_*: mlprod refuses unknown MLPROD_* variables, and the servers inherit the environment
CACHE = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "mlprod-bench"))
LIGHTGBM = f"lightgbm=={importlib.metadata.version('lightgbm')}"  # the peers run mlprod's LightGBM
PEER_REQUIREMENTS = {
    "mlflow": ["mlflow==3.17.2", LIGHTGBM],
    "bentoml": ["bentoml==1.4.40", LIGHTGBM],
}
# peers predict a single row on one thread, as mlprod and the bare apps do (conservative for our goals)
PEER_ENV = {"OMP_NUM_THREADS": "1", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}
GOALS = {"mlflow": 10.0, "bentoml": 5.0, "onnx": 0.8}  # mlprod throughput / peer throughput, at least
P99_GOAL_MS = 2.0
GOAL_TARGET = "mlprod"  # the goals hold with online feature lookup (context model) and the log on
PARITY = 1e-4  # ONNX predicts in float32


# -------------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One server under test: how to start it, when it is up, and the one request it is sent."""

    name: str
    what: str  # one line for the table's legend
    command: list[str]  # "{port}" is replaced by the chosen port
    health_path: str
    path: str
    body: Any  # JSON-serialisable request body
    probability: Callable[[Any], float]  # reads the row's prediction out of the JSON answer
    problem: Callable[[Any], str | None] = lambda answer: None  # what is wrong with a right probability
    logged: dict[str, Any] | None = None  # mlprod: the inputs its prediction log must hold for the request
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    method: str = "POST"
    startup_seconds: float = 180.0


def mlprod_target(model: Model) -> Target:
    """mlprod's native endpoint; with the context model, an entity-key request (online lookup on)."""
    if model.lookup_row is None:
        body: dict[str, Any] = {"rows": [model.row]}
        request = "{rows: [raw row]}"
    else:
        body = {"rows": [model.lookup_row], "as_of": model.as_of}
        looked_up = len(model.looked_up or [])
        request = f"{{rows: [schedule inputs + entity keys], as_of}}, {looked_up} features looked up"
    return Target(
        name="mlprod",
        what=f"mlprod serve (ONNX export, serve.model_format=auto), POST /v1/models/{model.name}@champion/"
        f"predict {request}, prediction log on",
        command=[str(VENV_BIN / "mlprod"), "-C", str(model.workspace), "serve", "--port", "{port}"],
        health_path="/v2/health/ready",
        path=f"/v1/models/{model.name}@champion/predict",
        body=body,
        probability=lambda answer: float(answer["predictions"][0]),
        problem=_feature_misses,
        logged=model.row,
    )


def mlprod_rows_target(model: Model) -> Target:
    """The same server sent the complete raw row: every input given, no lookup (its cost, by difference)."""
    return dataclasses.replace(
        mlprod_target(model),
        name="mlprod-rows",
        what="the same mlprod server, POST {rows: [complete raw row]}: every input given, no lookup",
        body={"rows": [model.row]},
    )


def _feature_misses(answer: Any) -> str | None:
    misses = answer.get("feature_misses")
    return None if misses is None else f"the online store missed views {misses}"


def mlflow_target(model: Model) -> Target:
    """``mlflow models serve`` of the same booster saved with ``mlflow.lightgbm.save_model``."""
    python = ensure_venv("mlflow")
    saved = model.work / "mlflow-model"
    if not saved.exists():
        run_quietly(
            [
                str(python),
                str(APPS / "mlflow_save.py"),
                str(model.text_file),
                str(saved),
                ",".join(model.inputs),
            ],
            env=PEER_ENV,
        )
    return Target(
        name="mlflow",
        what=f"mlflow {PEER_REQUIREMENTS['mlflow'][0].split('==')[1]} models serve (1 worker), "
        "POST /invocations {dataframe_split}",
        command=[
            str(python.parent / "mlflow"),
            "models",
            "serve",
            "-m",
            str(saved),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
        ],
        health_path="/ping",
        path="/invocations",
        body={"dataframe_split": {"columns": model.inputs, "data": [model.numeric]}},
        probability=lambda answer: float(answer["predictions"][0]),
        env=activated(python, PEER_ENV),
    )


def bentoml_target(model: Model) -> Target:
    """``bentoml serve`` of ``apps/bentoml_service.py`` over the same booster in a BentoML model store."""
    python = ensure_venv("bentoml")
    home = model.work / "bentoml-home"
    env = activated(python, {**PEER_ENV, "BENTOML_HOME": str(home)})
    if not home.exists():
        run_quietly([str(python), str(APPS / "bentoml_save.py"), str(model.text_file)], env=env)
    return Target(
        name="bentoml",
        what=f"bentoml {PEER_REQUIREMENTS['bentoml'][0].split('==')[1]} serve (1 worker), "
        "POST /predict {rows: [[numbers]]}",
        command=[
            str(python.parent / "bentoml"),
            "serve",
            "bentoml_service:FlightsDelay",
            "--working-dir",
            str(APPS),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ],
        health_path="/readyz",
        path="/predict",
        body={"rows": [model.numeric]},
        probability=lambda answer: float(answer[0]),
        env=env,
    )


def bare_target(name: str, module: str, model_file: Path, model: Model, what: str) -> Target:
    return Target(
        name=name,
        what=what,
        command=[
            str(VENV_BIN / "python"),
            "-m",
            "uvicorn",
            f"{module}:app",
            "--app-dir",
            str(APPS),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        health_path="/health",
        path="/predict",
        body=dict(zip(model.inputs, model.numeric, strict=True)),
        probability=lambda answer: float(answer["probability"]),
        env={"BENCH_MODEL": str(model_file), "BENCH_INPUTS": ",".join(model.inputs)},
    )


def lightgbm_target(model: Model) -> Target:
    what = "bare FastAPI + Booster.predict (apps/fastapi_lightgbm.py), POST /predict {name: number}"
    return bare_target("lightgbm", "fastapi_lightgbm", model.text_file, model, what)


def onnx_target(model: Model) -> Target:
    what = "bare FastAPI + onnxruntime (apps/fastapi_onnx.py), POST /predict {name: number}"
    return bare_target("onnx", "fastapi_onnx", model.onnx_file, model, what)


# ---------------------------------------- Open Inference Protocol vs native (issue 25, item 7) -----

OIP_GOAL = 0.9  # the protocol route's throughput / the native route's, for the same complete row


def mlprod_oip_target(model: Model) -> Target:
    """The same server sent the complete row through the Open Inference Protocol's infer route, built as
    a client following the model metadata builds it (tritonclient's JSON request): one ``[1]`` tensor per
    input, typed as ``GET /v2/models/NAME`` types it (``advertised_datatype``: ``FP64`` for a number
    that may be missing, ``INT64`` for another integral one, ``BYTES`` for a category), ``NaN`` for the
    missing value, and the answer asked for as JSON."""
    from mlprod.models import Registry
    from mlprod.workspace import Workspace

    with Workspace.open(model.workspace) as workspace:
        signature = Registry(workspace).get(f"{model.name}/{model.version}").signature
    looked_up = set(model.looked_up or [])

    def datatype(name: str) -> str:
        spec = next(f for f in signature.inputs if f.name == name)
        if spec.kind == "category":
            return "BYTES"
        return "FP64" if not spec.integral or spec.nullable or name in looked_up else "INT64"

    def value(name: str) -> Any:
        raw = model.row[name]
        if datatype(name) == "FP64":
            return math.nan if raw is None else float(raw)
        return raw

    inputs = [
        {"name": name, "shape": [1], "datatype": datatype(name), "data": [value(name)]}
        for name in model.inputs
    ]
    native = mlprod_rows_target(model) if model.lookup_row is not None else mlprod_target(model)
    return dataclasses.replace(
        native,
        name="mlprod-oip",
        what=f"the same mlprod server, POST /v2/models/{model.name}@champion/infer, the complete row as "
        "tensors typed by the model metadata (NaN for the missing value), JSON answer",
        path=f"/v2/models/{model.name}@champion/infer",
        body={"inputs": inputs, "outputs": [{"name": "probability", "parameters": {"binary_data": False}}]},
        probability=lambda answer: float(answer["outputs"][0]["data"][0]),
        problem=lambda answer: None,
    )


def oip_baseline(model: Model) -> str:
    """The native target sent the same complete row: ``mlprod-rows`` (context model) or ``mlprod``."""
    return "mlprod-rows" if model.lookup_row is not None else "mlprod"


def report_protocol(by_name: dict[str, Result], model: Model) -> None:
    """The protocol route against the native one: req/s and server CPU side by side, ratio, verdict."""
    oip, native = by_name.get("mlprod-oip"), by_name.get(oip_baseline(model))
    if oip is None or native is None:
        return
    ratio = oip.loaded.rps / native.loaded.rps
    by_cpu = native.cpu_per_request_us / oip.cpu_per_request_us
    print()
    print(f"Open Inference Protocol vs native: mlprod-oip vs {native.target.name} (the same complete row)")
    for label, a, b, unit in (
        ("single p50", oip.single.percentile_ms(50), native.single.percentile_ms(50), "ms"),
        ("single p99", oip.single.percentile_ms(99), native.single.percentile_ms(99), "ms"),
        ("server CPU / request", oip.cpu_per_request_us, native.cpu_per_request_us, "µs"),
        ("req/s", oip.loaded.rps, native.loaded.rps, ""),
    ):
        print(f"  {label:<22}{a:>10,.2f} vs {b:>10,.2f} {unit:<3} ({a - b:+,.2f})")
    label, goal = f"mlprod-oip / {native.target.name}", f"{OIP_GOAL:g}x"
    print(
        f"  {label:<26}{ratio:>5.2f}x   goal >= {goal:<6}{verdict(ratio >= OIP_GOAL):<6}"
        f"(by CPU per request {by_cpu:.2f}x)"
    )


# ------------------------------------------------------------------ end of the protocol comparison -----


TARGETS: dict[str, Callable[[Model], Target]] = {
    "mlprod": mlprod_target,
    "mlprod-rows": mlprod_rows_target,
    "mlprod-oip": mlprod_oip_target,
    "mlflow": mlflow_target,
    "bentoml": bentoml_target,
    "lightgbm": lightgbm_target,
    "onnx": onnx_target,
}


# ------------------------------------------------------------- durable prediction log (issue 25, item 2)
# mlprod-buffered and mlprod-fsync are the mlprod target with the write-ahead log off (rows only in
# memory until the flush, the previous behaviour) and with fsync = "always" (group commit); they run
# right after mlprod, and report_durable prints mlprod's throughput against them.

DURABLE_GOAL = 0.9  # mlprod (write-ahead on) / mlprod-buffered throughput, at least: a cost of 10 % at most


def mlprod_buffered_target(model: Model) -> Target:
    return dataclasses.replace(
        mlprod_target(model),
        name="mlprod-buffered",
        what="the mlprod target with prediction_log.write_ahead = false: rows only in memory until the flush",
        env={"MLPROD_PREDICTION_LOG_WRITE_AHEAD": "false"},
    )


def mlprod_fsync_target(model: Model) -> Target:
    return dataclasses.replace(
        mlprod_target(model),
        name="mlprod-fsync",
        what='the mlprod target with prediction_log.fsync = "always": each answer waits for a shared fsync',
        env={"MLPROD_PREDICTION_LOG_FSYNC": "always"},
    )


def report_durable(by_name: dict[str, Result]) -> None:
    ours, buffered = by_name.get(GOAL_TARGET), by_name.get("mlprod-buffered")
    if ours is None or buffered is None:
        return
    print()
    print(f"durable log: {GOAL_TARGET} (write-ahead, the default) vs without it (req/s, server CPU µs/req)")
    for name in ("mlprod-buffered", "mlprod-fsync"):
        other = by_name.get(name)
        if other is None:
            continue
        print(f"  {name:<22}{other.loaded.rps:>10,.0f} req/s {other.cpu_per_request_us:>8,.0f} µs/req")
    print(f"  {GOAL_TARGET:<22}{ours.loaded.rps:>10,.0f} req/s {ours.cpu_per_request_us:>8,.0f} µs/req")
    ratio = ours.loaded.rps / buffered.loaded.rps
    by_cpu = buffered.cpu_per_request_us / ours.cpu_per_request_us
    label = f"{GOAL_TARGET} / mlprod-buffered"
    print(
        f"  {label:<22}{ratio:>9.2f}x   goal >= {DURABLE_GOAL:g}x  {verdict(ratio >= DURABLE_GOAL):<6}"
        f"(by CPU per request {by_cpu:.2f}x)"
    )


Factories = dict[str, Callable[[Model], Target]]


def with_durable_targets(targets: Factories) -> Factories:
    """``targets`` with the two durable-log variants right after mlprod (close in time: less noise)."""
    out: Factories = {}
    for name, factory in targets.items():
        out[name] = factory
        if name == GOAL_TARGET:
            out["mlprod-buffered"] = mlprod_buffered_target
            out["mlprod-fsync"] = mlprod_fsync_target
    return out


TARGETS = with_durable_targets(TARGETS)


# ------------------------------------------------------------------------------------------ peer venvs


def ensure_venv(tool: str) -> Path:
    """The python of ``tool``'s venv, created (``python3 -m venv``) and installed when missing or stale."""
    venv = CACHE / f"{tool}-venv"
    python = venv / "bin" / "python"
    wanted = "\n".join(PEER_REQUIREMENTS[tool]) + "\n"
    marker = venv / "mlprod-bench-requirements.txt"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    say(f"installing {' '.join(PEER_REQUIREMENTS[tool])} into {venv} (once; a few minutes) …")
    started = time.perf_counter()
    if not python.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)], check=True)
    run_quietly(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_REQUIREMENTS[tool]]
    )
    marker.write_text(wanted)  # last: an interrupted install is redone next time
    say(f"  {tool} venv ready in {time.perf_counter() - started:.0f}s")
    return python


def activated(python: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the venv's ``bin`` first on PATH, as ``activate`` does (MLflow runs ``uvicorn``)."""
    return {
        **env,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(python.parent.parent),
    }


def run_quietly(command: list[str], *, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{tail}")
    return done.stdout


# --------------------------------------------------------------------------------------------- servers


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(target: Target, work: Path) -> Iterator[Server]:
    """Start the target's server in its own process group; yield once its health URL answers 200."""
    port = free_port()
    log = work / f"{target.name}.log"
    command = [part.replace("{port}", str(port)) for part in target.command]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=target.cwd,
            env={**os.environ, **target.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_healthy(server, target)
        yield server
    finally:
        stop(process)


def wait_healthy(server: Server, target: Target) -> None:
    deadline = time.monotonic() + target.startup_seconds
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                code = server.process.returncode
                raise SystemExit(f"{target.name} exited ({code}) before answering:\n{tail(server.log)}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(target.health_path).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{target.name} not healthy after {target.startup_seconds:.0f}s:\n{tail(server.log)}"
                )
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (workers included), SIGKILL it after 20 s."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of the live processes in ``root``'s process group or below it (BentoML's workers
    get their own group)."""
    stats: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, pgrp, ticks)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # fields after "(comm)": state, ppid, pgrp, …, utime (11), stime (12)
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    inside = {pid for pid, (_, pgrp, _) in stats.items() if pgrp == root}
    stack = [root]
    while stack:
        pid = stack.pop()
        inside.add(pid)
        stack.extend(children.get(pid, []))
    return sum(stats[pid][2] for pid in inside if pid in stats) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (``/proc/stat``), to tell what other processes took."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------ wrk


@dataclass
class WrkRun:
    seconds: float
    requests: int
    responses: int
    non2xx: int
    first_non2xx: str
    errors: dict[str, int]
    latencies_us: np.ndarray  # one value per completed request
    wrk_cpu: float  # CPU seconds wrk itself used

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, p: float) -> float:
        return float(np.percentile(self.latencies_us, p)) / 1000


def wrk(
    url: str,
    target: Target,
    body_file: Path,
    *,
    threads: int,
    connections: int,
    seconds: float,
    stop_after: int = 0,
) -> WrkRun:
    """Run wrk with ``post.lua``; with ``stop_after``, end it as soon as that many responses arrived."""
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{math.ceil(seconds)}s", "--timeout", "10s",
        "-s", str(LUA), url,
    ]  # fmt: skip
    env = {
        **os.environ,
        "WRK_METHOD": target.method,
        "WRK_PATH": target.path,
        "WRK_BODY_FILE": str(body_file),
        "WRK_STOP_AFTER": str(stop_after),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    found: dict[str, Any] | None = None
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("WRKSTOPPED"):
            process.send_signal(signal.SIGINT)  # wrk's main thread would otherwise sleep out -d
        elif line.startswith("WRKJSON "):
            found = json.loads(line[len("WRKJSON ") :])
    stderr = process.stderr.read() if process.stderr else ""
    process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if found is None:
        raise SystemExit(f"wrk gave no result ({process.returncode}):\n{''.join(output)}{stderr}")
    pairs = np.array(found["latency_us"], dtype=np.int64).reshape(-1, 2)
    return WrkRun(
        seconds=found["duration_us"] / 1e6,
        requests=found["requests"],
        responses=found["responses"],
        non2xx=found["non2xx"],
        first_non2xx=found["first_non2xx"],
        errors=found["errors"],
        latencies_us=np.repeat(pairs[:, 0], pairs[:, 1]),
        wrk_cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )


# ------------------------------------------------------------------------------------------- measuring


@dataclass
class Result:
    """One target's runs; over several rounds, the best of each kind (the least disturbed by neighbours)."""

    target: Target
    predicted: float
    single: WrkRun  # the single-connection run
    loaded: WrkRun  # the throughput run
    server_cpu: float  # CPU seconds of the server's processes during the throughput run
    other_cpu: float  # CPU seconds of everything else on the machine (not wrk, not the server) meanwhile
    non2xx: int
    socket_errors: int
    answered: int = 0  # 2xx answers over the server's life (warm-ups and checks included)
    logged: int | None = None  # rows the prediction log gained meanwhile (mlprod targets)
    rounds: int = 1

    @property
    def cpu_per_request_us(self) -> float:
        return self.server_cpu / max(self.loaded.requests, 1) * 1e6

    def merge(self, later: Result) -> Result:
        """Lowest single-connection p99 and highest throughput of the two; errors add up."""
        single = min(self.single, later.single, key=lambda run: run.percentile_ms(99))
        loaded = self if self.loaded.rps >= later.loaded.rps else later
        return Result(
            self.target,
            self.predicted,
            single,
            loaded.loaded,
            loaded.server_cpu,
            loaded.other_cpu,
            self.non2xx + later.non2xx,
            self.socket_errors + later.socket_errors,
            self.answered + later.answered,
            None if self.logged is None or later.logged is None else self.logged + later.logged,
            self.rounds + later.rounds,
        )


def socket_errors(run: WrkRun) -> int:
    return sum(count for kind, count in run.errors.items() if kind != "status")


def measure(target: Target, model: Model, args: argparse.Namespace) -> Result:
    body_file = model.work / f"{target.name}.body.json"
    body_file.write_text(json.dumps(target.body))
    checked = dict(target.body)
    if target.logged is not None:  # find this request in the prediction log afterwards
        checked["id"] = f"bench-check-{target.name}-{time.time_ns()}"
    log_before = log_files(model) if target.logged is not None else set()
    say(f"{target.name}: starting …")
    with running(target, model.work) as server:
        answer = httpx.request(  # json.dumps, as for wrk's body: NaN as tritonclient sends it
            target.method,
            server.url + target.path,
            content=json.dumps(checked),
            headers={"content-type": "application/json"},
            timeout=30.0,
        )
        if answer.status_code != 200:
            raise SystemExit(f"{target.name} answered {answer.status_code}: {answer.text[:500]}")
        predicted = target.probability(answer.json())
        if abs(predicted - model.expected) > PARITY:
            raise SystemExit(
                f"{target.name} predicts {predicted!r}, the registry {model.expected!r}: not the same model"
            )
        problem = target.problem(answer.json())
        if problem is not None:
            raise SystemExit(f"{target.name}: {problem}; answer {answer.text[:500]}")
        common = functools.partial(wrk, server.url, target, body_file)
        warmups = [
            common(threads=1, connections=1, seconds=args.warmup),
            common(threads=args.wrk_threads, connections=args.connections, seconds=args.warmup),
        ]
        say(f"{target.name}: {args.requests} requests on one connection …")
        single = common(threads=1, connections=1, seconds=args.requests_cap, stop_after=args.requests)
        if single.responses != args.requests:
            say(f"  warning: {single.responses} responses in {args.requests_cap:.0f}s, not {args.requests}")
        say(f"{target.name}: {args.connections} connections for {args.duration:g}s …")
        server_before, machine_before = tree_cpu_seconds(server.process.pid), machine_cpu_seconds()
        loaded = common(threads=args.wrk_threads, connections=args.connections, seconds=args.duration)
        server_cpu = tree_cpu_seconds(server.process.pid) - server_before
        other_cpu = machine_cpu_seconds() - machine_before - server_cpu - loaded.wrk_cpu
    answered = 1 + sum(run.responses - run.non2xx for run in (*warmups, single, loaded))
    logged = None
    if target.logged is not None:  # the server has stopped gracefully: its log is flushed
        logged = check_logged(target, model, checked["id"], log_before)
    result = Result(
        target,
        predicted,
        single,
        loaded,
        server_cpu,
        max(0.0, other_cpu),
        single.non2xx + loaded.non2xx,
        socket_errors(single) + socket_errors(loaded),
        answered,
        logged,
    )
    say(
        f"{target.name}: {loaded.rps:,.0f} req/s, p50 {single.percentile_ms(50):.2f} ms, "
        f"p99 {single.percentile_ms(99):.2f} ms, non-2xx {result.non2xx}"
    )
    for run in (single, loaded):
        if run.first_non2xx:
            say(f"  first non-2xx answer: {run.first_non2xx}")
    return result


def log_files(model: Model) -> set[Path]:
    """The prediction log's complete files (a write in progress has a dot-name)."""
    return set(model.prediction_log.rglob("part-*.parquet")) if model.prediction_log.is_dir() else set()


def check_logged(target: Target, model: Model, request_id: str, before: set[Path]) -> int:
    """The rows the server added to its prediction log; stops the run unless the checked request is
    there with the complete inputs (the looked-up features included) and the answered prediction."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    new = sorted(str(path) for path in log_files(model) - before)
    if not new:
        raise SystemExit(f"{target.name}: the prediction log under {model.prediction_log} gained no file")
    dataset = ds.dataset(new, format="parquet")
    found = dataset.to_table(
        columns=["inputs", "prediction"], filter=pc.field("request_id") == request_id
    ).to_pylist()
    if len(found) != 1:
        raise SystemExit(f"{target.name}: request {request_id} is logged {len(found)} times, not once")
    inputs = json.loads(found[0]["inputs"])
    assert target.logged is not None
    wrong = {
        name: inputs.get(name, "absent")
        for name, value in target.logged.items()
        if not _same(inputs.get(name, "absent"), value)
    }
    if wrong or abs(found[0]["prediction"] - model.expected) > PARITY:
        raise SystemExit(
            f"{target.name}: the prediction log holds {found[0]}; these inputs differ from the row: {wrong}"
        )
    return int(dataset.count_rows())


def _same(logged: Any, value: Any) -> bool:
    if value is None or logged is None:
        return value is None and logged is None
    if isinstance(value, float) or isinstance(logged, float):
        return isinstance(logged, int | float) and math.isclose(logged, value, rel_tol=1e-12)
    return bool(logged == value)


# -------------------------------------------------------------------------------------------- reporting


def report(results: list[Result], model: Model, args: argparse.Namespace) -> None:
    print()
    trained = f"{model.training_rows:,} training rows" + (
        f", sample {model.sample:g}" if model.sample < 1 else ""
    )
    what = "on feature set flight-context" if model.kind == "context" else "schedule-only"
    print(
        f"LightGBM {model.trees} trees {what} ({model.name}/{model.version}, {trained}); {model.flight}; "
        f"{os.cpu_count()} cores shared by wrk, the server and whatever else runs"
    )
    print(
        f"single connection: {args.requests} requests (p50/p99/max); throughput: wrk -t{args.wrk_threads} "
        f"-c{args.connections} -d{args.duration:g}s; best of {args.rounds} round(s) each"
    )
    width = max(12, *(len(r.target.name) + 1 for r in results))
    header = (
        f"{'target':<{width}}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{f'p99@{args.connections}':>8}"
        f"{'non-2xx':>8}{'sock err':>9}{'server':>8}{'wrk':>6}{'other':>7}{'CPU µs/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        single, loaded, seconds = r.single, r.loaded, r.loaded.seconds
        print(
            f"{r.target.name:<{width}}{loaded.rps:>8,.0f}{single.percentile_ms(50):>8.2f}"
            f"{single.percentile_ms(99):>8.2f}{single.percentile_ms(100):>8.2f}{loaded.percentile_ms(99):>8.2f}"
            f"{r.non2xx:>8}{r.socket_errors:>9}{r.server_cpu / seconds:>8.0%}{loaded.wrk_cpu / seconds:>6.0%}"
            f"{r.other_cpu / seconds:>7.0%}{r.cpu_per_request_us:>11,.0f}"
        )
    print(
        "server / wrk / other: CPU used during the throughput run, in shares of one core (other: the rest\n"
        "of the machine; high means a noisy run). CPU µs/req: the server's CPU per request in that run."
    )
    for r in results:
        print(f"  {r.target.name:<{width}}{r.target.what}")

    by_name = {r.target.name: r for r in results}
    logging = [r for r in results if r.logged is not None]
    if logging:
        print()
        print("prediction log: rows the server logged / 2xx answers it gave (warm-ups and checks included)")
    for r in logging:
        assert r.logged is not None
        print(f"  {r.target.name:<22}{r.logged:>10,} / {r.answered:,}   {verdict(r.logged >= r.answered)}")
    report_protocol(by_name, model)
    ours, rows = by_name.get(GOAL_TARGET), by_name.get("mlprod-rows")
    if ours is not None and rows is not None and model.lookup_row is not None:
        print()
        print("online lookup: mlprod (entity keys, lookup) vs mlprod-rows (complete row, no lookup)")
        for label, a, b, unit in (
            ("single p50", ours.single.percentile_ms(50), rows.single.percentile_ms(50), "ms"),
            ("single p99", ours.single.percentile_ms(99), rows.single.percentile_ms(99), "ms"),
            ("server CPU / request", ours.cpu_per_request_us, rows.cpu_per_request_us, "µs"),
            ("req/s", ours.loaded.rps, rows.loaded.rps, ""),
        ):
            print(f"  {label:<22}{a:>10,.2f} vs {b:>10,.2f} {unit:<3} ({a - b:+,.2f})")
    if ours is None:
        return
    print()
    print(
        f"goals ({GOAL_TARGET}): throughput ratio at least (and that ratio by server CPU per request), "
        "p99 below, no error"
    )
    for peer, goal in GOALS.items():
        other = by_name.get(peer)
        if other is None:
            print(f"  {f'{GOAL_TARGET} / {peer}':<22}{'not run':>10}")
            continue
        ratio = ours.loaded.rps / other.loaded.rps
        by_cpu = other.cpu_per_request_us / ours.cpu_per_request_us
        label, target = f"{GOAL_TARGET} / {peer}", f"{goal:g}x"
        print(
            f"  {label:<22}{ratio:>9.2f}x   goal >= {target:<6}{verdict(ratio >= goal):<6}"
            f"(by CPU per request {by_cpu:.2f}x)"
        )
    p99 = ours.single.percentile_ms(99)
    label, target = f"{GOAL_TARGET} p99", f"{P99_GOAL_MS:g} ms"
    print(f"  {label:<22}{p99:>7.2f} ms   goal < {target:<6}{verdict(p99 < P99_GOAL_MS)}")
    errors = ours.non2xx + ours.socket_errors
    print(f"  {f'{GOAL_TARGET} errors':<22}{errors:>10}   goal = {'0':<6}{verdict(errors == 0)}")
    report_durable(by_name)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="context",
        help="context: trained on feature set flight-context, mlprod looks the features up (default); "
        "schedule: the schedule-only model, no feature set",
    )
    parser.add_argument(
        "--sample", type=float, default=1.0, help="context model: fraction of January-June flights loaded"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated targets of {', '.join(TARGETS)} (default: all; mlprod-rows only with the "
        "context model)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="throughput run, seconds")
    parser.add_argument("--requests", type=int, default=2000, help="single-connection requests")
    parser.add_argument("--connections", type=int, default=8, help="throughput run connections")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads for the throughput run")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every target; keep the best runs")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up, each way")
    parser.add_argument("--work-dir", type=Path, help="keep the workspace, models and logs here")
    args = parser.parse_args()
    if args.only is None:
        args.only = ",".join(n for n in TARGETS if args.model == "context" or n != "mlprod-rows")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        parser.error(f"--only: unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    if "MLPROD_BENCH_CACHE" in os.environ:  # mlprod would refuse it as an unknown MLPROD_* variable
        parser.error("MLPROD_BENCH_CACHE is now BENCH_CACHE (the servers refuse unknown MLPROD_* variables)")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    if not 0 < args.sample <= 1:
        parser.error(f"--sample must be in (0, 1], got {args.sample}")
    args.requests_cap = max(120.0, args.requests * 0.05)  # a server slower than 50 ms a request is cut off

    with contextlib.ExitStack() as stack:
        if args.work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlprod-bench-serve-")))
        else:
            work = args.work_dir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        model = prepare_model(work, args.model, sample=args.sample)
        targets = [TARGETS[name](model) for name in names]
        results: dict[str, Result] = {}
        for round_ in range(args.rounds):
            if args.rounds > 1:
                say(f"round {round_ + 1} of {args.rounds}")
            for target in targets:  # interleaved, so a noisy spell hits one round of a target, not all
                result = measure(target, model, args)
                results[target.name] = (
                    results[target.name].merge(result) if target.name in results else result
                )
        report(list(results.values()), model, args)


if __name__ == "__main__":
    main()
