// Restarts, the way they happen: `wrangler dev` killed with SIGKILL while mails are queued and one attempt
// is in the middle of talking to the relay, then started again on the same local state; and a wrong
// SMTP_HOST fixed by a restart after every queue retry was used up. The local queue lived in memory and is
// gone; the rows in D1 are not. The sweep (run as `npm start` runs it) puts them back on the queue, a claim
// left by a killed attempt expires, and every mail arrives exactly once.
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { callApi, createStack, type Stack } from "../helpers/e2e-stack";

const MAILS = 12;

let stack: Stack;
let wrangler: WranglerDev | undefined;

beforeAll(async () => {
  // An attempt may take 10 s − 2 s margin, enough for a 4 s wait on the relay's final reply.
  stack = await createStack({ withGate: true, vars: { SMTP_TIMEOUT_MS: "4000", DELIVERY_LEASE_SECONDS: "10", SWEEP_GRACE_SECONDS: "0" } });
});

afterAll(async () => {
  await wrangler?.stop();
  await stack?.close();
});

const api = (pathname: string, init?: RequestInit) => callApi(wrangler!.url, stack.apiKey, pathname, init);

type EmailView = { status: string; attempts: number; events: { type: string; attempt: number | null; detail: string | null }[] };
const view = async (id: string) => (await (await api(`/v1/emails/${id}`)).json()) as EmailView;

describe("crash recovery under wrangler dev", () => {
  it("delivers every mail exactly once after a SIGKILL with mails queued and an attempt in flight", async () => {
    stack.gate!.mode = "hold"; // the relay accepts the connection and says nothing: the first attempt hangs
    const connected = stack.gate!.nextConnection();
    wrangler = await startWranglerDev(stack.options);

    const mails = Array.from({ length: MAILS }, () => ({ to: `crash-${randomUUID().slice(0, 8)}@example.com`, id: "" }));
    for (const mail of mails) {
      const res = await api("/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ to: mail.to, subject: "Survives a crash", text: "Hello" }) });
      expect(res.status).toBe(202);
      mail.id = ((await res.json()) as { id: string }).id;
    }
    await connected; // an attempt is now inside its SMTP session, holding its claim
    const before = await Promise.all(mails.map((m) => view(m.id)));
    expect(before.filter((e) => e.status === "sending")).toHaveLength(1);
    expect(before.filter((e) => e.status === "queued")).toHaveLength(MAILS - 1);

    await wrangler.kill();
    stack.gate!.mode = "open";
    wrangler = await startWranglerDev({ ...stack.options, sweepEveryMs: 500 });

    const deadline = Date.now() + 30_000;
    let after = await Promise.all(mails.map((m) => view(m.id)));
    while (after.some((e) => e.status !== "sent")) {
      if (Date.now() > deadline) throw new Error(`not all sent: ${after.map((e) => e.status).join(", ")}\n${wrangler.output()}`);
      await delay(200);
      after = await Promise.all(mails.map((m) => view(m.id)));
    }

    for (const mail of mails) expect(stack.inbox.messages.filter((m) => m.envelope.to.includes(mail.to))).toHaveLength(1);
    const interrupted = after.filter((e) => e.events.some((x) => x.type === "interrupted"));
    expect(interrupted).toHaveLength(1);
    expect(interrupted[0]!.events.map((e) => [e.type, e.attempt])).toEqual([["accepted", null], ["interrupted", 1], ["sent", 2]]);
    expect(after.filter((e) => e.attempts !== 1)).toEqual(interrupted);
  });

  it("delivers mail accepted while SMTP_HOST was wrong, past every queue retry, once the setting is fixed", async () => {
    await wrangler?.stop();
    // A typo in SMTP_HOST (nothing listens on 127.0.0.2), retries without delay to get past max_retries (8) fast.
    const vars = { ...stack.options.vars, RETRY_BASE_DELAY_SECONDS: "0", ENVIRONMENT: "development" }; // zero delays: development only
    wrangler = await startWranglerDev({ ...stack.options, vars: { ...vars, SMTP_HOST: "127.0.0.2" } });
    const to = `typo-${randomUUID().slice(0, 8)}@example.com`;
    const res = await api("/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ to, subject: "Despite a typo", text: "Hello" }) });
    const { id } = (await res.json()) as { id: string };

    let during = await view(id);
    for (const deadline = Date.now() + 30_000; during.attempts <= 10; during = await view(id)) {
      if (Date.now() > deadline) throw new Error(`only ${during.attempts} attempts:\n${wrangler.output()}`);
      await delay(100);
    }
    expect(["retrying", "sending"]).toContain(during.status);
    expect(during.events.some((e) => e.type === "failed")).toBe(false);

    // The fix is a new deployment; locally the restart also drops the queue, so the sweep finds the mail.
    await wrangler.stop();
    wrangler = await startWranglerDev({ ...stack.options, vars, sweepEveryMs: 500 });
    let after = await view(id);
    for (const deadline = Date.now() + 30_000; after.status !== "sent"; after = await view(id)) {
      if (Date.now() > deadline) throw new Error(`still ${after.status}:\n${wrangler.output()}`);
      await delay(100);
    }
    expect(stack.inbox.messages.filter((m) => m.envelope.to.includes(to))).toHaveLength(1);
    expect(after.events.filter((e) => e.type === "deferred").length).toBeGreaterThan(10);
  });
});
