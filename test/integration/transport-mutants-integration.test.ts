// What the transport seam promises that its first tests did not pin down, each case found by a mutant
// that survived them: how Email Service's refusals in the middle of a mail settle who got it and which
// reason the mail waits for; that the envelope sender it is given is the From address even when SMTP
// would use Mailroom's return path; that a batch fails over once, not once per lane; that the mail a
// transport gets carries the attempt's deadline, and one that cannot be signed waits; what the operator's
// log and the API's history say about which transport had an attempt. Through the real local send_email
// bindings and SMTP fixtures; the binding is wrapped only where an E_* error production would throw must
// happen on a given call.
import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { api, captureLogs, inboxMessages, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";

const smtp = inject("smtp");
const bindings = env as unknown as Record<"EMAIL" | "EMAIL_ONE_RECIPIENT" | "EMAIL_OTHER_SENDER", SendEmail>;
const CLOUDFLARE_ONLY = { TRANSPORT: "cloudflare", SMTP_HOST: "" };
const FAILOVER = { TRANSPORT: "smtp,cloudflare" };
const serviceError = (code: string, message: string) => Object.assign(new Error(message), { code });

/** `base` (the real, unrestricted binding unless given), counting its calls; the calls numbered in `failOn` throw what production would. */
function wrapped(failOn: Record<number, Error> = {}, base: SendEmail = bindings.EMAIL) {
  const wrapper = {
    calls: 0,
    send(message: EmailMessage) {
      wrapper.calls += 1;
      const error = failOn[wrapper.calls];
      return error ? Promise.reject(error) : base.send(message);
    },
  };
  return wrapper;
}

/** The .eml the local binding wrote for a message id send() returned. */
async function sentCopy(messageId: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/email-service/sent/${encodeURIComponent(messageId)}`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Runs `work` with the service's log lines captured, and returns them parsed. */
async function logsOf(work: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const logs = captureLogs();
  try {
    await work();
  } finally {
    logs.restore();
  }
  return logs.lines.map((l) => JSON.parse(l));
}

describe("Email Service's refusals in the middle of a mail", () => {
  it("keeps a recipient who got the mail as sent when the service then refuses the message itself for the next", async () => {
    const [first, second] = [uniqueRecipient("got-it"), uniqueRecipient("invalid")];
    const { id } = await insertQueuedMessage({ to: [first, second] });
    const refusing = wrapped({ 2: serviceError("E_HEADER_VALUE_INVALID", "Header value invalid") });
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: refusing });
    expect(refusing.calls).toBe(2);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("sent");
    expect(recipients).toMatchObject([
      { address: first, status: "sent", smtpCode: 250 },
      { address: second, status: "bounced", smtpCode: 554, detail: `send_email to <${second}> answered 554 5.6.0 E_HEADER_VALUE_INVALID: Header value invalid` },
    ]);
  });

  it("gives the service's stop as the reason the rest wait, not an earlier recipient's temporary refusal", async () => {
    const to = [uniqueRecipient("not-now"), uniqueRecipient("limited"), uniqueRecipient("later")];
    const { id } = await insertQueuedMessage({ to });
    const limited = wrapped({ 1: serviceError("E_DELIVERY_FAILED", "Delivery failed"), 2: serviceError("E_RATE_LIMIT_EXCEEDED", "Rate limit exceeded") });
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: limited });
    expect(limited.calls).toBe(2);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(recipients.map((r) => [r.status, r.smtpCode])).toEqual([["deferred", 451], ["deferred", 451], ["pending", null]]);
    expect(message.lastError).toBe(`send_email to <${to[1]}> answered 451 4.7.0 E_RATE_LIMIT_EXCEEDED: Rate limit exceeded`);
  });

  it("waits with a temporary refusal as the reason when every recipient is refused, one of them for good (as over SMTP)", async () => {
    const refused = uniqueRecipient("refused");
    const { id } = await insertQueuedMessage({ to: [refused, "allowed@example.com"] });
    // The restricted binding refuses the first recipient itself (550 5.7.1); the second call fails as production can.
    const binding = wrapped({ 2: serviceError("E_DELIVERY_FAILED", "Delivery failed") }, bindings.EMAIL_ONE_RECIPIENT);
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: binding });
    expect(binding.calls).toBe(2);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(recipients.map((r) => [r.status, r.smtpCode])).toEqual([["bounced", 550], ["deferred", 451]]);
    expect(message.lastError).toBe("send_email to <allowed@example.com> answered 451 4.4.0 E_DELIVERY_FAILED: Delivery failed");
  });

  it("keeps an earlier recipient's own refusal when the service then refuses the message itself", async () => {
    const refused = uniqueRecipient("refused");
    const { id } = await insertQueuedMessage({ to: [refused, "allowed@example.com"] });
    // The restricted binding refuses the first recipient itself; the second call is refused for the message's size.
    const binding = wrapped({ 2: serviceError("E_CONTENT_TOO_LARGE", "Content too large") }, bindings.EMAIL_ONE_RECIPIENT);
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: binding });
    expect(binding.calls).toBe(2);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(recipients).toMatchObject([
      { address: refused, status: "bounced", smtpCode: 550, detail: `send_email to <${refused}> answered 550 5.7.1 E_RECIPIENT_NOT_ALLOWED: email to ${refused} not allowed` },
      { address: "allowed@example.com", status: "bounced", smtpCode: 554, detail: "send_email to <allowed@example.com> answered 554 5.3.4 E_CONTENT_TOO_LARGE: Content too large" },
    ]);
  });

  it("records at most 500 characters of what the service said", async () => {
    const { id, to } = await insertQueuedMessage();
    const words = `Delivery failed: ${"the far end said more than anyone reads ".repeat(50)}`;
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: wrapped({ 1: serviceError("E_DELIVERY_FAILED", words) }) });
    const reply = `E_DELIVERY_FAILED: ${words}`.slice(0, 500);
    const { message, recipients } = await loadMessage(id);
    expect(recipients[0]!.detail).toBe(`send_email to <${to}> answered 451 4.4.0 ${reply}`);
    expect(message.lastError).toBe(`send_email to <${to}> answered 451 4.4.0 ${reply}`);
  });
});

describe("the envelope sender Email Service is given", () => {
  it("is the From address even when BOUNCE_ADDRESS gives SMTP a return path of Mailroom's (the binding takes only the From address)", async () => {
    const { id, to } = await insertQueuedMessage();
    const bounce = { BOUNCE_ADDRESS: "bounces@mailroom.test", BOUNCE_SECRET: "a-bounce-secret-of-at-least-32-characters" };
    await deliver([id], { ...CLOUDFLARE_ONLY, ...bounce });
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("sent");
    const [accepted] = [...(events.find((e) => e.type === "sent")!.detail ?? "").matchAll(/<[^>]+>/g)].map((m) => m[0]);
    const copy = await sentCopy(accepted!);
    expect(copy).toMatch(/^From: Mailroom Tests <noreply@mailroom\.test>\r$/m);
    expect(copy).toMatch(new RegExp(`^To: ${to}\\r$`, "m"));
  });
});

describe("failing over", () => {
  it("happens once per batch: the lanes that join later go straight to Email Service", async () => {
    const messages = await Promise.all([1, 2, 3].map(() => insertQueuedMessage()));
    const counted = wrapped();
    const lines = await logsOf(() => deliver(messages.map((m) => m.id), { ...FAILOVER, SMTP_PORT: String(smtp.closedPort), SMTP_SESSIONS: "3", EMAIL: counted }));
    expect(counted.calls).toBe(3);
    for (const { id } of messages) expect((await loadMessage(id)).events.at(-1)).toMatchObject({ type: "sent", transport: "cloudflare" });
    expect(lines.filter((l) => l.msg === "transport cannot be used; failing over")).toHaveLength(1);
  });
});

describe("the mail a transport is given", () => {
  it("keeps the mail waiting when the DKIM key cannot be used to sign: a setting to fix, not a refusal of the mail", async () => {
    const { id, to } = await insertQueuedMessage();
    // An Ed25519 PKCS#8 whose structure parseConfig accepts, but whose key bytes WebCrypto refuses.
    const unusable = btoa(String.fromCharCode(0x30, 0x0f, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x03, 0x01, 0x02, 0x03));
    await deliver([id], { DKIM_DOMAIN: "mailroom.test", DKIM_SELECTOR: "broken", DKIM_PRIVATE_KEY: unusable });
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/^the message could not be DKIM-signed: /);
    expect(recipients.map((r) => r.status)).toEqual(["pending"]);
    expect(await inboxMessages(to)).toEqual([]);
  });

  it("gives the session the attempt's deadline: with less than one SMTP_TIMEOUT_MS left for the final dot's reply, the message is not sent", async () => {
    const { id, to } = await insertQueuedMessage();
    // The shortest lease leaves an attempt 4 s, and the reply to the final dot may take 4 s: once anything
    // at all has happened since the claim, too little is left, and the session stops before the content.
    await deliver([id], { DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "4000" });
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toContain("too little of the attempt's time was left to wait for the reply to the message; stopped before sending it");
    expect(recipients.map((r) => r.status)).toEqual(["deferred"]);
    expect(await inboxMessages(to)).toEqual([]);
  });
});

describe("which transport had an attempt", () => {
  const attemptLine = (lines: Record<string, unknown>[], id: string) => lines.find((l) => l.msg === "delivery attempt" && l.email_id === id);

  it("is in the operator's log, which names the relay only for an attempt that was the relay's and did not go out", async () => {
    // Email Service took over from a relay that refuses connections, and could not take the mail either.
    const deferred = await insertQueuedMessage();
    let lines = await logsOf(() => deliver([deferred.id], { ...FAILOVER, SMTP_PORT: String(smtp.closedPort), EMAIL: bindings.EMAIL_OTHER_SENDER }));
    expect(attemptLine(lines, deferred.id)).toMatchObject({ outcome: "retry", transport: "cloudflare" });
    expect(attemptLine(lines, deferred.id)).not.toHaveProperty("relay");

    // The relay refused the mail for now: that relay is named.
    const busy = await insertQueuedMessage({ to: `tempfail-${crypto.randomUUID().slice(0, 8)}@example.com` });
    lines = await logsOf(() => deliver([busy.id], { ...FAILOVER, SMTP_PORT: String(smtp.plain.smtpPort), EMAIL: bindings.EMAIL }));
    expect(attemptLine(lines, busy.id)).toMatchObject({ outcome: "retry", transport: "smtp", relay: `127.0.0.1:${smtp.plain.smtpPort}` });

    // The relay took it: nothing to look into.
    const sent = await insertQueuedMessage();
    lines = await logsOf(() => deliver([sent.id], { ...FAILOVER, EMAIL: bindings.EMAIL }));
    expect(attemptLine(lines, sent.id)).toMatchObject({ outcome: "sent", transport: "smtp" });
    expect(attemptLine(lines, sent.id)).not.toHaveProperty("relay");
    expect(await inboxMessages(sent.to)).toHaveLength(1);
  });

  it("is none in the log of an attempt that never left under TRANSPORT=cloudflare, which has no relay to name", async () => {
    const { id } = await insertQueuedMessage();
    // Its attachments were kept in R2, and are gone: the mail cannot be built.
    await env.DB.prepare("UPDATE messages SET attachments_key = ? WHERE id = ?").bind(`attachments/${id}`, id).run();
    const binding = wrapped();
    let result: Awaited<ReturnType<typeof deliver>>["result"] | undefined;
    const lines = await logsOf(async () => ({ result } = await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: binding })));
    expect(binding.calls).toBe(0);
    expect(result!.explicitAcks).toEqual([`job-${id}`]);
    expect((await loadMessage(id)).message.status).toBe("failed");
    const line = attemptLine(lines, id);
    expect(line).toMatchObject({ outcome: "failed" });
    expect(line).not.toHaveProperty("transport");
    expect(line).not.toHaveProperty("relay");
  });

  it("is in GET /v1/emails/{id}: on the events of the attempt's outcome, and null on the others", async () => {
    const refused = uniqueRecipient("refused");
    const { id } = await insertQueuedMessage({ to: ["allowed@example.com", refused] });
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: bindings.EMAIL_ONE_RECIPIENT });
    const res = await api(`/v1/emails/${id}`);
    expect(res.status).toBe(200);
    const view = await res.json<{ events: { type: string; transport: string | null; recipient: string | null }[] }>();
    expect(view.events.map((e) => [e.type, e.transport])).toEqual([
      ["accepted", null],
      ["bounced", "cloudflare"],
      ["sent", "cloudflare"],
    ]);
  });
});
