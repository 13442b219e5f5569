// Bounces and complaints under a real `wrangler dev`, as `npm start` runs them: the development inbox
// accepts mail for bounce-…@ and complain-…@ and a moment later sends a DSN (failed, 5.1.1) or an ARF
// complaint to the message's return path through wrangler dev's local Email Routing entry
// (/cdn-cgi/handler/email), into the Worker's email() handler. The official `resend` SDK then finds the
// addresses on the suppression list, and its suppressions.add/list/get/remove and batch calls work unchanged.
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Resend } from "resend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { createStack, type Stack } from "../helpers/e2e-stack";

let stack: Stack;
let wrangler: WranglerDev | undefined;
let resend: Resend;
const reportTo: { url?: string; delayMs?: number } = { delayMs: 100 };
const previousBaseUrl = process.env.RESEND_BASE_URL;

beforeAll(async () => {
  stack = await createStack({
    vars: { ENVIRONMENT: "development", BOUNCE_ADDRESS: "bounces@bounces.mailroom.test", BOUNCE_SECRET: randomUUID() + randomUUID() },
    inbox: { reportTo },
  });
  wrangler = await startWranglerDev(stack.options);
  reportTo.url = wrangler.url;
  process.env.RESEND_BASE_URL = `${wrangler.url}/v1`;
  resend = new Resend(stack.apiKey);
});

afterAll(async () => {
  if (previousBaseUrl === undefined) delete process.env.RESEND_BASE_URL;
  else process.env.RESEND_BASE_URL = previousBaseUrl;
  await wrangler?.stop();
  await stack?.close();
});

type View = { status: string; last_event: string; last_error: string | null; recipients: { address: string; status: string }[] };
const view = async (id: string) => (await resend.emails.get(id)).data as unknown as View;

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out\n${wrangler?.output()}`);
    await delay(100);
  }
}

describe("bounces and complaints under wrangler dev", () => {
  it("records the inbox's later DSN and ARF report through /cdn-cgi/handler/email, and suppresses both addresses", async () => {
    const [bounced, complained, fine] = [`bounce-${randomUUID().slice(0, 8)}@example.com`, `complain-${randomUUID().slice(0, 8)}@example.com`, `fine-${randomUUID().slice(0, 8)}@example.com`];
    // The complaint in a mail to one (in a mail to several, only a DSN with the secret ENVID may suppress).
    const { data } = await resend.emails.send({ from: "noreply@mailroom.test", to: [bounced, fine], subject: "Comes back", text: "x" });
    const { data: single } = await resend.emails.send({ from: "noreply@mailroom.test", to: complained, subject: "Complained about", text: "x" });
    const id = data!.id;
    const statuses = await until("both reports recorded", async () => {
      const [email, other] = [await view(id), await view(single!.id)];
      const byAddress = Object.fromEntries([...email.recipients, ...other.recipients].map((r) => [r.address, r.status]));
      return byAddress[bounced] === "bounced" && byAddress[complained] === "complained" ? byAddress : undefined;
    });
    expect(statuses[fine]).toBe("sent");
    // The envelope sender was the message's own return path, with DSNs asked for.
    const [mail] = stack.inbox.messages.filter((m) => m.envelope.to.includes(fine));
    expect(mail!.envelope.from).toMatch(/^bounces\+[a-z2-7]{42}@bounces\.mailroom\.test$/);
    expect(mail!.envelope.dsn).toMatchObject({ ret: "HDRS", envid: expect.stringMatching(/^[a-z2-7]{26}$/) });

    const listed = await resend.suppressions.list({ limit: 100 });
    expect(listed.error).toBeNull();
    const entries = listed.data!.data;
    expect(entries).toEqual(expect.arrayContaining([expect.objectContaining({ email: bounced, origin: "bounce", source_id: id }), expect.objectContaining({ email: complained, origin: "complaint", source_id: single!.id })]));
    expect((await resend.suppressions.list({ origin: "complaint" })).data!.data.map((e) => e.email)).toContain(complained);
    const got = await resend.suppressions.get(bounced);
    expect(got.data).toMatchObject({ object: "suppression", email: bounced, origin: "bounce" });

    // The next mail to them is not sent: every recipient is listed.
    const again = await resend.emails.send({ from: "noreply@mailroom.test", to: [bounced, complained], subject: "Not again", text: "x" });
    const failed = await until("the second mail settled", async () => ((await view(again.data!.id)).status === "failed" ? view(again.data!.id) : undefined));
    expect(failed.recipients.map((r) => r.status)).toEqual(["suppressed", "suppressed"]);
    expect(stack.inbox.messages.filter((m) => m.subject === "Not again")).toEqual([]);

    const removed = await resend.suppressions.remove(got.data!.id);
    expect(removed.data).toEqual({ object: "suppression", id: got.data!.id, deleted: true });
    expect((await resend.suppressions.get(bounced)).error).toMatchObject({ statusCode: 404 });
  });

  it("suppressions.add and batch.add/remove work unchanged", async () => {
    const [a, b] = [`sdk-a-${randomUUID().slice(0, 8)}@example.com`, `sdk-b-${randomUUID().slice(0, 8)}@example.com`];
    const added = await resend.suppressions.add({ email: a });
    expect(added.error).toBeNull();
    expect(added.data).toMatchObject({ object: "suppression", id: expect.any(String) });
    expect((await resend.suppressions.get(added.data!.id)).data).toMatchObject({ email: a, origin: "manual", source_id: null });
    const batch = await resend.suppressions.batch.add({ emails: [a, b] });
    expect(batch.data!.data.map((e) => e.id)[0]).toBe(added.data!.id);
    const gone = await resend.suppressions.batch.remove({ emails: [a, b] });
    expect(gone.data!.data.map((e) => e.deleted)).toEqual([true, true]);
  });
});
