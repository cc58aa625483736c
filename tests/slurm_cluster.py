"""A real single-node Slurm on this machine, for the slow tier's cluster test: Debian's
slurm-wlm and munge (installed by .ci/run as root), configured for localhost with the
machine's cores, started and stopped here. Its configuration lives in its own folder
(``SLURM_CONF`` points there), so an existing cluster's /etc/slurm is never touched.

    python tests/slurm_cluster.py up      # start (prints the SLURM_CONF to export)
    python tests/slurm_cluster.py down    # stop what ``up`` started

``start()`` returns None when the cluster answers, else the reason it cannot (not root,
the packages missing, a daemon that does not come up): the test is skipped with it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HOME = Path(os.environ.get("WRAPCLI_SLURM_DIR", "/tmp/wrapcli-slurm"))
CONF = HOME / "slurm.conf"
DAEMONS = ("munged", "slurmctld", "slurmd")


def config(host: str, cpus: int) -> str:
    """slurm.conf for one node: no cgroups (processes tracked by their parent), no
    accounting database (completed jobs go to a text log), CPUs as consumable resources."""
    return "\n".join([
        "ClusterName=wrapcli-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"StateSaveLocation={HOME}/state",
        f"SlurmdSpoolDir={HOME}/spool",
        f"SlurmctldPidFile={HOME}/slurmctld.pid",
        f"SlurmdPidFile={HOME}/slurmd.pid",
        f"SlurmctldLogFile={HOME}/slurmctld.log",
        f"SlurmdLogFile={HOME}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={HOME}/jobcomp.log",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        f"PartitionName=local Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def answers(env=None) -> bool:
    """Whether a cluster answers and has an idle (or mixed) node."""
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30,
                          env=env or os.environ)
    return done.returncode == 0 and any(s.strip().rstrip("*") in ("idle", "mix", "alloc") for s in done.stdout.split())


def start() -> str | None:
    """Start munge, slurmctld and slurmd with this folder's config; None once the node is
    idle, else why not."""
    missing = [d for d in ("munged", "slurmctld", "slurmd", "srun", "sbatch", "squeue") if shutil.which(d) is None
               and not Path("/usr/sbin", d).exists()]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)"
    if answers():  # a cluster this environment already reaches
        return None
    if os.geteuid() != 0:
        return "starting a local Slurm needs root (munged and slurmd run as root here)"
    os.environ["SLURM_CONF"] = str(CONF)
    if CONF.exists() and answers():
        return None
    for sub in ("state", "spool"):
        (HOME / sub).mkdir(parents=True, exist_ok=True)
    CONF.write_text(config(socket.gethostname(), os.cpu_count() or 1))
    Path("/run/munge").mkdir(exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    steps = [["runuser", "-u", "munge", "--", "/usr/sbin/munged"], ["/usr/sbin/slurmctld", "-c"],
             ["/usr/sbin/slurmd", "-c"]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0 and "munged" not in cmd[-1]:
            return f"{cmd[0]} did not start: {(done.stderr or done.stdout).strip()[:200]}"
    for _ in range(60):
        if answers():
            return None
        time.sleep(1)
    log = (HOME / "slurmctld.log").read_text()[-300:] if (HOME / "slurmctld.log").exists() else ""
    return f"the local Slurm did not report an idle node within 60 s ({log.strip()[-200:]})"


def stop() -> None:
    for name in ("slurmd", "slurmctld"):
        pid = HOME / f"{name}.pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], capture_output=True)
    subprocess.run(["pkill", "-x", "munged"], capture_output=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["up"]:
        why = start()
        print(f"export SLURM_CONF={CONF}" if why is None else f"slurm not started: {why}")
        sys.exit(0)
    if sys.argv[1:] == ["down"]:
        stop()
        sys.exit(0)
    sys.exit("usage: python tests/slurm_cluster.py up|down")
