"""Drives the registry with the unmodified PyPI `py-consul` client.

Run by crates/registry/tests/consul_clients.rs as `python py_consul.py PORT`; exits non-zero
with the failed assertion on any difference from what Consul answers.
"""

import sys
import threading
import time

import consul

PORT = int(sys.argv[1])
c = consul.Consul(host="127.0.0.1", port=PORT)


def eventually(what, probe, within=5.0):
    """Polls `probe` until it is truthy; the registry probes new checks at once."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {within}s")


def passing(service):
    return c.health.service(service, passing=True)[1]


# Register with lowercase keys and checks, as py-consul sends them.
assert c.agent.service.register(
    "web", service_id="web1", port=8000, address="127.0.0.1", tags=["primary"],
    meta={"zone": "eu-1"}, check=consul.Check.ttl("30s"),
)
leader_url = f"http://127.0.0.1:{PORT}/v1/status/leader"
assert c.agent.service.register(
    "api", service_id="api1", port=9000, check=consul.Check.http(leader_url, "1h"),
)

services = c.agent.services()
assert services["web1"]["Service"] == "web", services
assert services["web1"]["Port"] == 8000
assert services["web1"]["Tags"] == ["primary"]
assert services["web1"]["Meta"] == {"zone": "eu-1"}
assert services["api1"]["Service"] == "api"

# The lowercase check was kept: a TTL check starts critical, as in Consul.
checks = c.agent.checks()
assert checks["service:web1"]["Status"] == "critical", checks
assert checks["service:web1"]["Type"] == "ttl"
assert passing("web") == []

# An HTTP check runs at once, not at a random point of its (one hour) interval.
eventually("api passing", lambda: passing("api"))

# TTL pass and fail.
assert c.agent.check.ttl_pass("service:web1", "all good")
entry = passing("web")[0]
assert entry["Service"]["ID"] == "web1"
assert entry["Checks"][0]["Output"] == "all good", entry
assert c.agent.check.ttl_fail("service:web1", "broken")
_, web_checks = c.health.checks("web")
assert [ch["Status"] for ch in web_checks] == ["critical"], web_checks
assert c.agent.check.ttl_pass("service:web1")

# A blocking query wakes on the maintenance change.
index, _ = c.health.service("web")
woken = {}


def block():
    woken["index"], woken["nodes"] = c.health.service("web", index=index, wait="30s")


waiter = threading.Thread(target=block)
waiter.start()
time.sleep(0.2)
assert waiter.is_alive(), "a blocking query answered before any change"
started = time.monotonic()
assert c.agent.service.maintenance("web1", True, "upgrading")
waiter.join(10)
assert not waiter.is_alive(), "the blocking query did not wake on the change"
assert time.monotonic() - started < 5
assert woken["index"] != index
maint = [ch for ch in woken["nodes"][0]["Checks"] if ch["CheckID"] == "_service_maintenance:web1"]
assert maint and maint[0]["Status"] == "critical" and maint[0]["Notes"] == "upgrading", woken
assert passing("web") == []
_, critical = c.health.state("critical")
assert "_service_maintenance:web1" in [ch["CheckID"] for ch in critical], critical

# As in Consul, re-registering does not end maintenance; disabling it does.
assert c.agent.service.register("web", service_id="web1", port=8000, address="127.0.0.1",
                                tags=["primary"], meta={"zone": "eu-1"},
                                check=consul.Check.ttl("30s"))
assert passing("web") == []
assert c.agent.service.maintenance("web1", False)
assert [e["Service"]["ID"] for e in passing("web")] == ["web1"]

# Cluster-shaped reads.
assert c.catalog.datacenters() == ["dc1"]
_, nodes = c.catalog.nodes()
assert [n["Node"] for n in nodes] == ["flotilla"], nodes
assert c.status.leader()
_, catalog = c.catalog.services()
assert catalog == {"api": [], "web": ["primary"]}, catalog
_, web_nodes = c.catalog.service("web")
assert web_nodes[0]["ServicePort"] == 8000

# Deregister.
assert c.agent.service.deregister("web1")
assert c.agent.service.deregister("api1")
assert c.agent.services() == {}
_, catalog = c.catalog.services()
assert catalog == {}, catalog
print("py-consul: all steps passed")
