"""The image run as Fly runs it, for tests/image and bench/bench_image.py: `docker run` with a host folder as the
volume at /vol, fly.toml's [env], the secrets in the environment (never on a command line), a 1 GB memory limit, and
an init as PID 1 (Fly's own init; procman must not be PID 1). dockerd runs here without a bridge, so the container
is on the host's network, its ports chosen free on 127.0.0.1 (the stack's ports are settings)."""

from __future__ import annotations

import os
import subprocess
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.conftest import ROOT, free_port, wait_until
from tests.test_stack import PASSWORD, USER, RunningStack

CGROUPS = Path("/sys/fs/cgroup")
FLY = tomllib.loads((ROOT / "fly.toml").read_text())
PASSED_THROUGH = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def docker(*args: str, timeout: float = 120) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


@dataclass
class Container(RunningStack):
    """A running container of the image (the production stack's client, tests/test_stack.py's): `proc` is its
    attached `docker run`, `log` what the stack printed; until /admin/health was 200, `ready_after` seconds passed
    and its processes used `ready_cpu` seconds of CPU."""

    name: str = ""
    ready_after: float = 0.0
    ready_cpu: float = 0.0

    @property
    def init(self) -> psutil.Process:
        """PID 1 in the container (docker's init), as seen from the host."""
        return psutil.Process(int(docker("inspect", "-f", "{{.State.Pid}}", self.name)))

    def cpu_seconds(self) -> float:
        """CPU time its processes have used so far, as its cgroup counts it (v1 or v2)."""
        for line in Path(f"/proc/{self.init.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            folder = CGROUPS / controllers / path.lstrip("/")
            if "cpuacct" in controllers.split(","):
                return int((folder / "cpuacct.usage").read_text()) / 1e9
            if not controllers and (folder / "cpu.stat").exists():
                stat = dict(row.split() for row in (folder / "cpu.stat").read_text().splitlines())
                return int(stat["usage_usec"]) / 1e6
        raise RuntimeError(f"no CPU accounting for {self.name}")

    def processes(self) -> list[psutil.Process]:
        """Every process of the stack: what runs below the container's init."""
        return self.init.children(recursive=True)

    def stop(self) -> tuple[float, int]:
        """`docker stop` with fly.toml's kill_timeout, as Fly stops a machine: (seconds it took, exit code)."""
        started = time.monotonic()
        docker("stop", "--time", str(FLY["kill_timeout"]), self.name, timeout=FLY["kill_timeout"] + 30)
        return time.monotonic() - started, self.proc.wait(10)

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.name], capture_output=True, check=False)


def run_container(image: str, volume: Path, log: Path, secrets: dict[str, str], timeout: float = 120) -> Container:
    """Start the image with `volume` at /vol and `secrets` (besides the Caddy credentials) in its environment; return
    once /admin/health answers 200 through Caddy."""
    ports = {name: str(free_port()) for name in ("HTTP", "REDIS", "OPENCODE", "SIDECAR")}
    env = {
        **FLY["env"],
        **{f"MECODES_{name}_PORT": port for name, port in ports.items()},
        "MECODES_HTTP_BIND": "127.0.0.1",
        "CADDY_AUTH_USER": USER,
        "CADDY_AUTH_PASSWORD": PASSWORD,
        **secrets,
        **{name: os.environ[name] for name in PASSED_THROUGH if name in os.environ},
    }
    name = f"mecodes-test-{uuid.uuid4().hex[:8]}"
    volume.mkdir(parents=True, exist_ok=True)
    volume.chmod(0o755)  # a fresh volume's root, as Fly mounts it: root's, open to read
    command = ["docker", "run", "--name", name, "--init", "--network", "host", "--memory", "1g"]
    command += ["--volume", f"{volume}:/vol", *(arg for key in env for arg in ("--env", key)), image]
    with log.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)
    container = Container(proc, f"http://127.0.0.1:{ports['HTTP']}", env, log, name)

    def healthy() -> bool:
        assert proc.poll() is None, f"the container exited: {log.read_text()[-3000:]}"
        try:
            return container.request("GET", "/admin/health", auth=None)[0] == 200
        except OSError:
            return False

    try:
        wait_until(healthy, timeout, "/admin/health through Caddy in the container")
    except BaseException:
        container.remove()
        raise
    container.ready_after = time.monotonic() - started
    container.ready_cpu = container.cpu_seconds()
    return container
