// Pacing across a crash: with SMTP_MAX_CONNECTIONS=1, `wrangler dev` is killed with SIGKILL while its one
// session holds the connection lease, and started again on the same local state (the pacer's leases are
// in its Durable Object's storage). The dead invocation's place stays taken until its lease ends, and not
// longer: the next mail connects then, and both mails arrive once.
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { callApi, createStack, type Stack } from "../helpers/e2e-stack";

const LEASE_MS = 12_000;

let stack: Stack;
let wrangler: WranglerDev | undefined;

beforeAll(async () => {
  stack = await createStack({
    withGate: true,
    vars: { SMTP_MAX_CONNECTIONS: "1", PACING_LEASE_SECONDS: String(LEASE_MS / 1000), SMTP_TIMEOUT_MS: "4000", DELIVERY_LEASE_SECONDS: "15", SWEEP_GRACE_SECONDS: "0" },
  });
});

afterAll(async () => {
  await wrangler?.stop();
  await stack?.close();
});

const api = (pathname: string, init?: RequestInit) => callApi(wrangler!.url, stack.apiKey, pathname, init);
const send = async (to: string) => {
  const res = await api("/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ to, subject: "Paced", text: "Hello" }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
};
const status = async (id: string) => ((await (await api(`/v1/emails/${id}`)).json()) as { status: string }).status;

describe("pacing across a crash of wrangler dev", () => {
  it("keeps a killed invocation's connection lease only until it ends", async () => {
    stack.gate!.mode = "hold"; // the relay accepts the connection and says nothing: the session holds its lease
    const firstConnection = stack.gate!.nextConnection();
    wrangler = await startWranglerDev(stack.options);
    const first = `paced-${randomUUID().slice(0, 8)}@example.com`;
    const firstId = await send(first);
    await firstConnection;
    const leaseTakenBy = Date.now(); // the lease was taken just before that connection

    await wrangler.kill();
    stack.gate!.mode = "open";
    wrangler = await startWranglerDev({ ...stack.options, sweepEveryMs: 500 });
    const nextConnection = stack.gate!.nextConnection().then(() => Date.now());
    const second = `paced-${randomUUID().slice(0, 8)}@example.com`;
    const secondId = await send(second);

    const connectedAt = await nextConnection;
    // Not before the dead invocation's lease ended (give or take the moment between taking it and connecting)…
    expect(connectedAt).toBeGreaterThanOrEqual(leaseTakenBy + LEASE_MS - 1000);
    // …and not long after: the pacer wakes its waiter when the lease ends (the invocation it woke may have
    // just handed its batch back, so allow for the queue's next delivery).
    expect(connectedAt).toBeLessThan(leaseTakenBy + LEASE_MS + 8000);

    for (const deadline = Date.now() + 40_000; (await status(firstId)) !== "sent" || (await status(secondId)) !== "sent"; await delay(200)) {
      if (Date.now() > deadline) throw new Error(`not both sent:\n${wrangler.output()}`);
    }
    for (const to of [first, second]) expect(stack.inbox.messages.filter((m) => m.envelope.to.includes(to))).toHaveLength(1);
  });
});
