// Drives the registry with the unmodified npm `consul` client.
//
// Run by crates/registry/tests/consul_clients.rs as `node node_consul.js PORT` with NODE_PATH
// pointing at the installed package; exits non-zero with the failed assertion on any
// difference from what Consul answers.
"use strict";

const assert = require("node:assert/strict");
const Consul = require("consul");

const port = Number(process.argv[2]);
const consul = new Consul({ host: "127.0.0.1", port });

async function eventually(what, probe, withinMs = 5000) {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not seen within ${withinMs} ms`);
}

const passing = (service) => consul.health.service({ service, passing: true });
const ids = (entries) => entries.map((e) => e.Service.ID);

async function main() {
  // A TTL check that starts passing (Consul's check `Status`), and an HTTP check.
  await consul.agent.service.register({
    name: "web",
    id: "web2",
    port: 8080,
    tags: ["canary"],
    meta: { zone: "eu-2" },
    check: { ttl: "30s", status: "passing" },
  });
  await consul.agent.service.register({
    name: "api",
    id: "api2",
    port: 9090,
    checks: [{ http: `http://127.0.0.1:${port}/v1/status/leader`, interval: "1h" }],
  });

  const services = await consul.agent.service.list();
  assert.equal(services.web2.Service, "web");
  assert.equal(services.web2.Port, 8080);
  assert.deepEqual(services.web2.Tags, ["canary"]);
  assert.deepEqual(services.web2.Meta, { zone: "eu-2" });
  assert.equal(services.api2.Service, "api");

  // Registered passing, so routable at once; the HTTP check runs at once.
  assert.deepEqual(ids(await passing("web")), ["web2"]);
  await eventually("api passing", async () => (await passing("api")).length === 1);

  // TTL fail and pass.
  await consul.agent.check.fail({ id: "service:web2", note: "down" });
  assert.deepEqual(await passing("web"), []);
  const checks = await consul.agent.check.list();
  assert.equal(checks["service:web2"].Status, "critical");
  assert.equal(checks["service:web2"].Output, "down");
  await consul.agent.check.pass("service:web2");
  assert.deepEqual(ids(await passing("web")), ["web2"]);

  // A blocking query (the client's watch) wakes on maintenance.
  const changed = await new Promise((resolve, reject) => {
    const watch = consul.watch({
      method: consul.health.service,
      options: { service: "web", wait: "30s" },
    });
    let answers = 0;
    watch.on("error", (err) => {
      watch.end();
      reject(err);
    });
    watch.on("change", (data) => {
      answers += 1;
      if (answers === 1) {
        // The initial answer: now change something and expect the watch to wake.
        consul.agent.service
          .maintenance({ id: "web2", enable: true, reason: "rollout" })
          .catch(reject);
        return;
      }
      watch.end();
      resolve(data);
    });
  });
  const maint = changed[0].Checks.find((c) => c.CheckID === "_service_maintenance:web2");
  assert.equal(maint.Status, "critical");
  assert.equal(maint.Notes, "rollout");
  assert.deepEqual(await passing("web"), []);
  const critical = await consul.health.state("critical");
  assert.ok(critical.some((c) => c.CheckID === "_service_maintenance:web2"));

  await consul.agent.service.maintenance({ id: "web2", enable: false });
  assert.deepEqual(ids(await passing("web")), ["web2"]);
  const webChecks = await consul.health.checks("web");
  assert.deepEqual(webChecks.map((c) => c.Status), ["passing"]);

  // Cluster-shaped reads.
  assert.deepEqual(await consul.catalog.datacenters(), ["dc1"]);
  const nodes = await consul.catalog.node.list();
  assert.deepEqual(nodes.map((n) => n.Node), ["flotilla"]);
  assert.ok(await consul.status.leader());
  assert.deepEqual(await consul.catalog.service.list(), { api: [], web: ["canary"] });
  const webNodes = await consul.catalog.service.nodes("web");
  assert.equal(webNodes[0].ServicePort, 8080);

  await consul.agent.service.deregister("web2");
  await consul.agent.service.deregister({ id: "api2" });
  assert.deepEqual(await consul.agent.service.list(), {});
  assert.deepEqual(await consul.catalog.service.list(), {});
  console.log("npm consul: all steps passed");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
