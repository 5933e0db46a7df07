// Drives every Vercel operation steward calls through the official SDK (`@vercel/sdk`,
// pinned in package-lock.json) against steward's emulator. The SDK validates each
// response against Vercel's own schemas, so a missing required field, a value outside an
// enum or a wrong type makes it throw: the emulator cannot drift from the real API
// without this failing.
//
// Usage: node tests/sdk/conformance.mjs BASE_URL TOKEN PROJECT
//        (or VERCEL_BASE_URL, VERCEL_TOKEN, VERCEL_PROJECT in the environment)
// Prints one line per operation: `ok NAME` or `FAIL NAME: why`; exits 1 on any failure.
// tests/vercel_sdk.rs runs it from `cargo test`.

import { Vercel } from "@vercel/sdk";
import { HTTPClient } from "@vercel/sdk/lib/http.js";
import { GetRuntimeLogsResponseBody$inboundSchema } from "@vercel/sdk/models/getruntimelogsop.js";

const [baseURL, token, project] = [
  process.argv[2] ?? process.env.VERCEL_BASE_URL,
  process.argv[3] ?? process.env.VERCEL_TOKEN,
  process.argv[4] ?? process.env.VERCEL_PROJECT,
];
if (!baseURL || !token || !project) {
  console.error("usage: node conformance.mjs BASE_URL TOKEN PROJECT");
  process.exit(2);
}

// steward builds with `autoAssignCustomDomains: false` (the CLI's `--skip-domain`), so a
// build stays STAGED until steward promotes it. The SDK's request model lacks the field
// and would strip it, so it is added to the body on the wire, as steward sends it.
// Likewise the SDK's updateRollingReleaseConfig sends no body at all (1.28.35), so the
// stages steward sends are put on the wire here.
const ROLLING_CONFIG = {
  enabled: true,
  advancementType: "manual-approval",
  target: "production",
  stages: [{ targetPercentage: 10 }, { targetPercentage: 50 }, { targetPercentage: 100 }],
};
const httpClient = new HTTPClient({
  fetcher: async (request) => {
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path === "/v13/deployments") {
      const body = { ...JSON.parse(await request.text()), autoAssignCustomDomains: false };
      return fetch(new Request(request, { body: JSON.stringify(body) }));
    }
    if (request.method === "PATCH" && path.endsWith("/rolling-release/config")) {
      const headers = new Headers(request.headers);
      headers.set("content-type", "application/json");
      return fetch(new Request(request, { body: JSON.stringify(ROLLING_CONFIG), headers }));
    }
    return fetch(request);
  },
});

// No retries: a flaky answer is a finding, not something to paper over.
const vercel = new Vercel({
  bearerToken: token,
  serverURL: baseURL,
  httpClient,
  retryConfig: { strategy: "none" },
});

let failures = 0;

/** Run one operation; print its verdict with the SDK's own validation message. */
async function op(name, call) {
  try {
    const result = await call();
    console.log(`ok ${name}`);
    return result;
  } catch (err) {
    failures += 1;
    const why = typeof err?.pretty === "function" ? err.pretty() : String(err?.stack ?? err);
    console.log(`FAIL ${name}: ${why.replaceAll("\n", "\n    ")}`);
    return undefined;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll getDeployment until READY (deadline 30 s), as steward's wait_ready does. */
async function waitReady(id) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const d = await vercel.deployments.getDeployment({ idOrUrl: id });
    if (d.readyState === "READY") return d;
    if (d.readyState === "ERROR" || d.readyState === "CANCELED") {
      throw new Error(`deployment ${id} ended ${d.readyState}`);
    }
    if (Date.now() > deadline) throw new Error(`deployment ${id} not READY after 30 s`);
    await sleep(100);
  }
}

const sha = (digit) => digit.repeat(40);

// observe: GET /v9/projects/{idOrName}?rollbackInfo=true
const observed = await op("getProject", () =>
  vercel.projects.getProject({ idOrName: project, rollbackInfo: true }),
);
if (!observed) process.exit(1);
const projectId = observed.id;
const repoId = observed.link?.repoId;

// env: upsert (encrypted and sensitive), list, list decrypted, edit, delete
await op("createProjectEnv (encrypted, upsert)", () =>
  vercel.projects.createProjectEnv({
    idOrName: projectId,
    upsert: "true",
    requestBody: {
      key: "API_URL",
      value: "https://api.example.invalid",
      type: "encrypted",
      target: ["production"],
      comment: "steward:fp=abc;at=1",
    },
  }),
);
await op("createProjectEnv (sensitive, upsert)", () =>
  vercel.projects.createProjectEnv({
    idOrName: projectId,
    upsert: "true",
    requestBody: {
      key: "DATABASE_URL",
      value: "postgres://user:pw@db.invalid/app",
      type: "sensitive",
      target: ["production"],
      comment: "steward:fp=def;src=SHOP_DB;at=1",
    },
  }),
);
await op("createProjectEnv (update by upsert)", () =>
  vercel.projects.createProjectEnv({
    idOrName: projectId,
    upsert: "true",
    requestBody: {
      key: "API_URL",
      value: "https://api2.example.invalid",
      type: "encrypted",
      target: ["production"],
      comment: "steward:fp=abd;at=2",
    },
  }),
);
const listed = await op("filterProjectEnvs", () =>
  vercel.projects.filterProjectEnvs({ idOrName: projectId }),
);
await op("filterProjectEnvs (decrypt)", () =>
  vercel.projects.filterProjectEnvs({ idOrName: projectId, decrypt: "true" }),
);
const envs = listed && "envs" in listed ? listed.envs : [];
const apiUrl = envs.find((e) => e.key === "API_URL");
await op("editProjectEnv", () =>
  vercel.projects.editProjectEnv({
    idOrName: projectId,
    id: apiUrl?.id ?? "missing",
    requestBody: { value: "https://api3.example.invalid", comment: "steward:fp=abe;at=3" },
  }),
);
await op("removeProjectEnv", () =>
  vercel.projects.removeProjectEnv({ idOrName: projectId, id: apiUrl?.id ?? "missing" }),
);

// code: build staged, wait, list by sha, promote, a second build, roll back, redeploy
const build = (digit) =>
  vercel.deployments.createDeployment({
    forceNew: "1",
    requestBody: {
      name: observed.name,
      project: projectId,
      target: "production",
      gitSource: { type: "github", repoId, ref: "main", sha: sha(digit) },
      meta: { deployedBy: "steward" },
    },
  });
const first = await op("createDeployment (git source)", () => build("a"));
const firstReady = first && (await op("getDeployment", () => waitReady(first.id)));
await op("getDeployments (project, target, sha)", () =>
  vercel.deployments.getDeployments({
    projectId,
    target: "production",
    sha: sha("a"),
    limit: 100,
  }),
);
if (firstReady) {
  await op("requestPromote", () =>
    vercel.projects.requestPromote({ projectId, deploymentId: firstReady.id }),
  );
}
const second = await op("createDeployment (second build)", () => build("b"));
const secondReady = second && (await op("getDeployment (second)", () => waitReady(second.id)));
if (secondReady) {
  await op("requestPromote (second)", () =>
    vercel.projects.requestPromote({ projectId, deploymentId: secondReady.id }),
  );
}
await op("getProject (production and last alias request)", () =>
  vercel.projects.getProject({ idOrName: projectId, rollbackInfo: true }),
);
if (firstReady) {
  await op("requestRollback", () =>
    vercel.projects.requestRollback({ projectId, deploymentId: firstReady.id }),
  );
}
await op("getDeployments (rolled-back page)", () =>
  vercel.deployments.getDeployments({ projectId, target: "production", limit: 100 }),
);
if (firstReady) {
  await op("createDeployment (redeploy)", () =>
    vercel.deployments.createDeployment({
      forceNew: "1",
      requestBody: {
        name: observed.name,
        deploymentId: firstReady.id,
        target: "production",
        meta: { action: "redeploy", deployedBy: "steward" },
      },
    }),
  );
}

// emergency stop: pause and unpause the project
await op("pauseProject", () => vercel.projects.pauseProject({ projectId }));
await op("getProject (paused)", async () => {
  const p = await vercel.projects.getProject({ idOrName: projectId });
  if (p.paused !== true) throw new Error(`paused is ${p.paused} after pauseProject`);
  return p;
});
await op("unpauseProject", () => vercel.projects.unpauseProject({ projectId }));
await op("getProject (unpaused)", async () => {
  const p = await vercel.projects.getProject({ idOrName: projectId });
  if (p.paused !== false) throw new Error(`paused is ${p.paused} after unpauseProject`);
  return p;
});

// promotion: turn the project's auto-assignment of production domains off and read it
// back (steward's take-over), then a push to the production branch (the emulator's
// admin call standing in for GitHub) builds a Git deployment whose metadata names the
// commit's author; with auto-assignment off it stays STAGED.
await op("updateProject (autoAssignCustomDomains off)", async () => {
  const p = await vercel.projects.updateProject({
    idOrName: projectId,
    requestBody: { autoAssignCustomDomains: false },
  });
  if (p.autoAssignCustomDomains !== false) {
    throw new Error(`autoAssignCustomDomains is ${p.autoAssignCustomDomains} in the answer`);
  }
  return p;
});
await op("getProject (auto-assignment off)", async () => {
  const p = await vercel.projects.getProject({ idOrName: projectId });
  if (p.autoAssignCustomDomains !== false) {
    throw new Error(`autoAssignCustomDomains is ${p.autoAssignCustomDomains} after updateProject`);
  }
  return p;
});
const pushed = await fetch(new URL("/_emulator/push", baseURL), {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({
    sha: sha("c"),
    author: "octo-dev",
    authorName: "Octo Dev",
    message: "Merge pull request #7 from octo/fast-fix",
    projects: [observed.name],
  }),
}).then((r) => r.json());
const gitBuild = pushed?.deployments?.[0]?.id;
await op("getDeployment (Git push, staged)", async () => {
  if (!gitBuild) throw new Error(`the push made no build: ${JSON.stringify(pushed)}`);
  const d = await waitReady(gitBuild);
  if (d.readySubstate !== "STAGED") throw new Error(`readySubstate is ${d.readySubstate}`);
  if (d.meta?.githubCommitAuthorLogin !== "octo-dev" || d.creator?.username !== "octo-dev") {
    throw new Error(`author not in meta/creator: ${JSON.stringify([d.meta, d.creator])}`);
  }
  return d;
});
await op("getDeployments (Git push)", () =>
  vercel.deployments.getDeployments({ projectId, target: "production", sha: sha("c") }),
);
await op("updateProject (autoAssignCustomDomains on)", () =>
  vercel.projects.updateProject({
    idOrName: projectId,
    requestBody: { autoAssignCustomDomains: true },
  }),
);

// progressive rollout: configure, start a rolling release of a third build, read it,
// approve a stage, complete; a fourth build is aborted by rolling back to the current one
await op("deleteRollingReleaseConfig", () =>
  vercel.rollingRelease.deleteRollingReleaseConfig({ idOrName: projectId }),
);
await op("updateRollingReleaseConfig", () =>
  vercel.rollingRelease.updateRollingReleaseConfig({ idOrName: projectId }),
);
await op("getRollingReleaseConfig", async () => {
  const c = await vercel.rollingRelease.getRollingReleaseConfig({ idOrName: projectId });
  const percents = c.rollingRelease?.stages?.map((s) => s.targetPercentage).join(",");
  if (percents !== "10,50,100") throw new Error(`stages are ${percents} after the update`);
  return c;
});
/** A build promoted to production as steward's bake leaves it, or one left staged. */
const ready = async (digit) => {
  const d = await build(digit);
  return waitReady(d.id);
};
const third = await op("createDeployment (canary)", () => ready("e"));
/** Check the rolling release document: its state, canary and percent. */
const expectRelease = (name, state, percent) => async (answer) => {
  const r = answer.rollingRelease;
  if (r?.state !== state || r.currentCanaryPercentage !== percent) {
    throw new Error(`${name}: state ${r?.state}, percent ${r?.currentCanaryPercentage}`);
  }
  return answer;
};
if (third) {
  await op("startRollingRelease", async () =>
    expectRelease("start", "ACTIVE", 10)(
      await vercel.rollingRelease.startRollingRelease({
        idOrName: projectId,
        requestBody: { canaryDeploymentId: third.id },
      }),
    ),
  );
  await op("getRollingRelease", async () =>
    expectRelease("get", "ACTIVE", 10)(
      await vercel.rollingRelease.getRollingRelease({ idOrName: projectId }),
    ),
  );
  await op("getRuntimeLogs", async () => {
    // The SDK reads the whole stream as one object, so each line goes through the SDK's
    // own schema for a runtime log.
    await sleep(300);
    const url = `${baseURL}/v1/projects/${projectId}/deployments/${third.id}/runtime-logs`;
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    const type = response.headers.get("content-type");
    if (!response.ok || type !== "application/stream+json") {
      throw new Error(`runtime logs answered ${response.status} ${type}`);
    }
    const lines = (await response.text()).split("\n").filter((l) => l.length > 0);
    for (const line of lines) GetRuntimeLogsResponseBody$inboundSchema.parse(JSON.parse(line));
    if (lines.length === 0) throw new Error("no runtime logs for a canary with traffic");
    return lines;
  });
  await op("approveRollingReleaseStage", async () =>
    expectRelease("approve", "ACTIVE", 50)(
      await vercel.rollingRelease.approveRollingReleaseStage({
        idOrName: projectId,
        requestBody: { nextStageIndex: 1, canaryDeploymentId: third.id },
      }),
    ),
  );
  await op("completeRollingRelease", async () =>
    expectRelease("complete", "COMPLETE", 100)(
      await vercel.rollingRelease.completeRollingRelease({
        idOrName: projectId,
        requestBody: { canaryDeploymentId: third.id },
      }),
    ),
  );
  const fourth = await op("createDeployment (aborted canary)", () => ready("f"));
  if (fourth) {
    await op("startRollingRelease (to abort)", () =>
      vercel.rollingRelease.startRollingRelease({
        idOrName: projectId,
        requestBody: { canaryDeploymentId: fourth.id },
      }),
    );
    await op("requestRollback (aborts the rolling release)", () =>
      vercel.projects.requestRollback({ projectId, deploymentId: third.id }),
    );
    await op("getRollingRelease (aborted)", async () =>
      expectRelease("aborted", "ABORTED", 0)(
        await vercel.rollingRelease.getRollingRelease({ idOrName: projectId, state: "ABORTED" }),
      ),
    );
  }
}

process.exit(failures === 0 ? 0 : 1);
