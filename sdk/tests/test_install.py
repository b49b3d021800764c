"""The SDK installs into a fresh virtualenv with only its declared dependencies (on the oldest
supported Python when it is available), and finds a plugin from a separately installed package
through its entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SDK, Script
from livesrv import LiveServer


def oldest_python() -> str:
    for candidate in (
        os.environ.get("CUSTODY_TEST_PYTHON", ""),
        shutil.which("python3.9") or "",
        str(Path.home() / ".pyenv" / "versions" / "3.9.18" / "bin" / "python"),
    ):
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] >= (3, 9))"], capture_output=True, text=True
            )
            if probe.returncode == 0 and probe.stdout.strip() == "True":
                return candidate
    return sys.executable


@pytest.mark.slow
def test_fresh_virtualenv_only_declared_dependencies_and_entry_point_plugin(
    server: LiveServer, tmp_path: Path, namespace: str
) -> None:
    python = oldest_python()
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = str(venv / "bin" / "python")
    before = {
        p["name"].lower()
        for p in json.loads(
            subprocess.run(
                [vpy, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
            ).stdout
        )
    }
    # install from copies: setuptools builds in the source tree and would leave build/ behind
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests", ".pytest_cache")
    sdk_copy = shutil.copytree(SDK, tmp_path / "src" / "sdk", ignore=ignore)
    plugin_copy = shutil.copytree(SDK / "tests" / "plugin_pkg", tmp_path / "src" / "plugin_pkg", ignore=ignore)
    install = subprocess.run(
        [vpy, "-m", "pip", "install", "--disable-pip-version-check", "-q", str(sdk_copy), str(plugin_copy)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    after = {
        p["name"].lower()
        for p in json.loads(
            subprocess.run(
                [vpy, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
            ).stdout
        )
    }
    assert after - before == {"custody", "custody-acme-plugin", "pluggy"}

    script = Script(tmp_path, server.url, server.token, namespace)
    script.python = vpy
    del script.env["PYTHONPATH"]  # the installed package, not the source tree
    result = script.run(
        """
        import json, sys, time
        t = time.perf_counter()
        import custody
        took = time.perf_counter() - t
        from custody_acme import AcmeTable
        assert custody.__file__.startswith(sys.prefix), custody.__file__
        with custody.run("venv-train") as run:
            run.input("acme://warehouse", "events", data=AcmeTable({"id": "int", "kind": "string"}, rows=42))
            run.log_params({"python": sys.version.split()[0]})
            open("m.bin", "wb").write(b"m")
            mv = run.log_model("venv-model", path="m.bin")
        assert custody.flush(60)
        client = custody.get_client()
        print("PLUGINS", sorted(client.plugins().names()))
        print("STATS " + json.dumps({"import_s": took, "version": mv.version, **custody.status()}))
        """,
        env={"ACME_CLUSTER": "gpu-17"},
    )
    assert "'acme'" in result.stdout.split("PLUGINS", 1)[1].splitlines()[0]
    stats = script.stats(result)
    assert stats["delivered"] >= 2 and stats["rejected"] == 0
    run = server.query(
        "SELECT r.facets FROM lineage_run r JOIN lineage_job j ON j.id = r.job_id JOIN lineage_namespace n ON n.id = j.namespace_id "
        "WHERE n.name = ? AND j.name = 'venv-train'",
        namespace,
    )[0]
    facets = json.loads(run["facets"])
    assert facets["acme_cluster"]["cluster"] == "gpu-17"
    assert facets["custody_params"]["params"]["python"].startswith(
        subprocess.run(
            [vpy, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
        ).stdout.strip()
    )
    dataset = server.query(
        "SELECT d.fields FROM lineage_dataset d JOIN lineage_namespace n ON n.id = d.namespace_id WHERE n.name = 'acme://warehouse' AND d.name = 'events'"
    )[0]
    assert [f["name"] for f in json.loads(dataset["fields"])] == ["id", "kind"]

    # the console script
    custody_bin = str(venv / "bin" / "custody")
    version = subprocess.run([custody_bin, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("custody ")
    status = subprocess.run([custody_bin, "status"], env=script.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    gate = subprocess.run(
        [custody_bin, "gate", "--model", "venv-model", "--version", stats["version"], "--env", "production"],
        env=script.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gate.returncode in (1, 2), gate.stdout + gate.stderr
