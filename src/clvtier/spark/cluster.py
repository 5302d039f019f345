"""A Spark standalone cluster on this machine (loopback only): one master and N workers started
with Spark's own ``spark-class``, for the cluster test and the scale benchmark, and for trying
``spark-submit`` before a real cluster. ``python -m clvtier.spark.cluster`` starts one and waits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def spark_home() -> Path:
    """The Spark distribution inside the pyspark package (bin/spark-class, bin/spark-submit, jars)."""
    import pyspark

    return Path(pyspark.__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as reply:
            state = json.load(reply)
    except OSError:
        return -1
    return sum(w.get("state") == "ALIVE" for w in state.get("workers", []))


@contextmanager
def standalone(workers: int = 2, cores: int = 1, memory: str = "2g", timeout: float = 120):
    """Yield the master URL (``spark://127.0.0.1:<port>``) of a running cluster of ``workers``
    workers with ``cores`` cores and ``memory`` each; every process is stopped on the way out."""
    home = spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARK_NO_DAEMONIZE": "1"}
    scratch = tempfile.TemporaryDirectory(prefix="clvtier-spark-")
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    logs = Path(scratch.name)
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env=env,
                              stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT)]
    try:
        for i in range(workers):
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                 "--cores", str(cores), "--memory", memory, "--webui-port", str(_free_port()),
                 "--work-dir", str(logs / f"work-{i}")], env=env,
                stdout=open(logs / f"worker-{i}.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while _alive_workers(ui) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                text = "\n".join(f.read_text()[-2000:] for f in sorted(logs.glob("*.log")))
                raise RuntimeError(f"the Spark standalone cluster did not start:\n{text}")
            time.sleep(0.5)
        yield url
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        scratch.cleanup()


def submit_command(master: str, args: list[str], *, executor_memory: str = "1g",
                   shuffle_partitions: int = 8, conf: dict | None = None) -> list[str]:
    """The ``spark-submit`` command running ``clvtier <args>`` on ``master`` (client mode;
    executors run this interpreter, which holds clvtier and its dependencies). Spark's default of
    200 shuffle partitions is meant for large clusters: a few per core is right here."""
    import clvtier

    entry = Path(clvtier.__file__).with_name("__main__.py")
    settings = {"spark.executor.memory": executor_memory, "spark.pyspark.python": sys.executable,
                "spark.sql.shuffle.partitions": str(shuffle_partitions),
                "spark.pyspark.driver.python": sys.executable, **(conf or {})}
    command = [str(spark_home() / "bin" / "spark-submit"), "--master", master]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, str(entry), *args]


def submit(master: str, args: list[str], *, timeout: float = 3600, **options) -> subprocess.CompletedProcess:
    """Run :func:`submit_command` and wait for it."""
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run(submit_command(master, args, **options), capture_output=True, text=True, env=env,
                          timeout=timeout)


if __name__ == "__main__":
    with standalone(int(sys.argv[1]) if len(sys.argv) > 1 else 2) as master:
        print(f"Spark standalone cluster at {master}; Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
