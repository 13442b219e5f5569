// A crash, the way it happens: `wrangler dev` killed with SIGKILL while mails are queued and one attempt
// is in the middle of talking to the relay, then started again on the same local state. The local queue
// lived in memory and is gone; the rows in D1 are not. The sweep (run as `npm start` runs it) puts them
// back on the queue, the claim left by the killed attempt expires, and every mail arrives exactly once.
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInbox, type Inbox } from "../../scripts/inbox.mjs";
import { applyMigrations, startWranglerDev, type WranglerDev, type WranglerDevOptions } from "../../scripts/wrangler-dev.mjs";
import { startRelayGate, type RelayGate } from "../helpers/relay-gate";

const API_KEY = "e2e-crash-key";
const MAILS = 12;

let stateDir: string;
let inbox: Inbox | undefined;
let gate: RelayGate | undefined;
let wrangler: WranglerDev | undefined;
let options: WranglerDevOptions;

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), "mailroom-crash-"));
  const envFile = path.join(stateDir, "e2e.env");
  await writeFile(envFile, "# empty on purpose: every setting comes from --var\n");
  const env = { CLOUDFLARE_INCLUDE_PROCESS_ENV: "false" };
  inbox = await startInbox({ httpPort: null });
  gate = await startRelayGate(inbox.smtpPort);
  await applyMigrations({ persistTo: stateDir, env });
  options = {
    persistTo: stateDir,
    envFile,
    env,
    vars: {
      SMTP_HOST: "127.0.0.1",
      SMTP_PORT: String(gate.port),
      SMTP_SECURITY: "none",
      MAIL_FROM: "Mailroom E2E <noreply@mailroom.test>",
      API_KEYS: `e2e:${createHash("sha256").update(API_KEY).digest("hex")}`,
      // An attempt may take 10 s − 2 s margin, enough for a 4 s wait on the relay's final reply.
      SMTP_TIMEOUT_MS: "4000",
      DELIVERY_LEASE_SECONDS: "10",
      SWEEP_GRACE_SECONDS: "0",
    },
  };
});

afterAll(async () => {
  await wrangler?.stop();
  await gate?.close();
  await inbox?.close();
  await rm(stateDir, { recursive: true, force: true });
});

async function api(pathname: string, init: RequestInit = {}) {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${API_KEY}`);
  return fetch(`${wrangler!.url}${pathname}`, { ...init, headers });
}

type EmailView = { status: string; attempts: number; events: { type: string; attempt: number | null; detail: string | null }[] };
const view = async (id: string) => (await (await api(`/v1/emails/${id}`)).json()) as EmailView;

describe("crash recovery under wrangler dev", () => {
  it("delivers every mail exactly once after a SIGKILL with mails queued and an attempt in flight", async () => {
    gate!.mode = "hold"; // the relay accepts the connection and says nothing: the first attempt hangs
    const connected = gate!.nextConnection();
    wrangler = await startWranglerDev(options);

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
    gate!.mode = "open";
    wrangler = await startWranglerDev({ ...options, sweepEveryMs: 500 });

    const deadline = Date.now() + 30_000;
    let after = await Promise.all(mails.map((m) => view(m.id)));
    while (after.some((e) => e.status !== "sent")) {
      if (Date.now() > deadline) throw new Error(`not all sent: ${after.map((e) => e.status).join(", ")}\n${wrangler.output()}`);
      await delay(200);
      after = await Promise.all(mails.map((m) => view(m.id)));
    }

    for (const mail of mails) expect(inbox!.messages.filter((m) => m.envelope.to.includes(mail.to))).toHaveLength(1);
    const interrupted = after.filter((e) => e.events.some((x) => x.type === "interrupted"));
    expect(interrupted).toHaveLength(1);
    expect(interrupted[0]!.events.map((e) => [e.type, e.attempt])).toEqual([["accepted", null], ["interrupted", 1], ["sent", 2]]);
    expect(after.filter((e) => e.attempts !== 1)).toEqual(interrupted);
  });
});
