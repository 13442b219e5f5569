// The edges of pacing that pacing-unit.test.ts and the integration tests leave open, each pinned by a case
// a mutation pass found unguarded: a throttling answer after the rate has recovered, a per-recipient
// "rate" answer that is not about the relay's pace, the settings' upper bounds; and the paced transport
// itself (src/transport/smtp/paced.ts) driven with a fake relay session and a fake pacer, for what no
// SMTP fixture can be made to do on demand: a throttling greeting or RCPT reply, a lease the pacer says
// is gone, a pacer that fails in the middle of a pipelined pair, a kept slot that went by while the lane
// was held up, a slot past the attempt's deadline, and the order in which a session gives its place back.
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/config";
import { factorAt, FRESH_SCHEDULE, isThrottlingReply, RECOVERY_STEP_MS, reserveSlots, throttle, type SendSchedule } from "../../src/core/pacing";
import { pacedTransport, type PacingSettings } from "../../src/transport/smtp/paced";
import type { NextMail, OutgoingMail, SmtpFailure, SmtpResult, SmtpTransaction, TransportSession } from "../../src/transport/transport";
import { configProblems } from "../helpers/config";

const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `web:${"a".repeat(64)}` };
const PACER = { getByName: () => ({}) };

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the pacing rules at their edges", () => {
  it("halves the rate in force, not the one of the last answer, when the relay throttles again after the rate recovered", () => {
    const throttled = throttle(FRESH_SCHEDULE, 10_000);
    const recovered = 10_000 + 5 * RECOVERY_STEP_MS;
    expect(factorAt(throttled, recovered)).toBe(1);
    const again = throttle(throttled, recovered);
    expect(again.factor).toBe(0.5);
    expect(reserveSlots(again, 10, 2, again.nextSlotAt).at).toEqual([again.nextSlotAt, again.nextSlotAt + 200]);
  });

  it("does not take a 450 about one mailbox's rate (Gmail's 4.2.1) for the relay's pace", () => {
    expect(isThrottlingReply(450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered")).toBe(false);
    expect(isThrottlingReply(452, "4.2.2 rate of delivery exceeded")).toBe(false);
  });
});

describe("the pacing settings at their upper bounds", () => {
  const problems = (env: Record<string, unknown>) => configProblems({ ...base, PACER, ...env });

  it("take the largest values allowed and refuse the next ones, by name", () => {
    expect(parseConfig({ ...base, PACER, SMTP_MAX_CONNECTIONS: "10000", SMTP_MAX_PER_SECOND: "10000", PACING_LEASE_SECONDS: "600" }).pacing).toEqual({ maxConnections: 10_000, maxPerSecond: 10_000, leaseMs: 600_000 });
    expect(problems({ SMTP_MAX_CONNECTIONS: "10001" })).toEqual(["SMTP_MAX_CONNECTIONS: must be at most 10000"]);
    expect(problems({ SMTP_MAX_PER_SECOND: "10000.5" })).toEqual(["SMTP_MAX_PER_SECOND: must be at most 10000"]);
    expect(problems({ SMTP_MAX_PER_SECOND: "1", PACING_LEASE_SECONDS: "601" })).toEqual(["PACING_LEASE_SECONDS: must be at most 600"]);
  });

  it("name SMTP_MAX_CONNECTIONS for a missing PACER when both limits are set", () => {
    expect(problems({ SMTP_MAX_CONNECTIONS: "2", SMTP_MAX_PER_SECOND: "5", PACER: undefined })).toEqual(["SMTP_MAX_CONNECTIONS: pacing needs the Durable Object binding named PACER (see wrangler.toml)"]);
  });
});

// --- The paced transport, around a fake relay session and a fake pacer ---

const OK: SmtpTransaction = { recipients: [], end: { ok: true, value: { code: 250, reply: "2.0.0 Ok: queued" } } };

let mails = 0;
/** A mail for the session; only its identity and deadline matter to pacing. */
function mail(deadline = Date.now() + 60_000): OutgoingMail {
  mails += 1;
  return { envelope: { from: "noreply@acme.example", recipients: [`to-${mails}@example.com`] }, message: `mail ${mails}`, fromAddress: "noreply@acme.example", deadline } as unknown as OutgoingMail;
}

/** What the pacer was asked, in order, as "acquire", "renew", "release", "reserve:<count>", "throttled". */
type PacerCall = string;

/**
 * A pacer in memory: leases always granted (id "lease-1"), renewals kept, and a send schedule by the
 * real rules (core/pacing.ts) on the clock the code sees; `reserve` can be replaced per test.
 */
function fakePacer(overrides: { renew?: () => Promise<boolean>; reserve?: (perSecond: number, count: number) => Promise<number[]> } = {}) {
  const calls: PacerCall[] = [];
  let schedule: SendSchedule = FRESH_SCHEDULE;
  const take = (perSecond: number, count: number) => {
    const reserved = reserveSlots(schedule, perSecond, count, Date.now());
    schedule = reserved.schedule;
    return reserved.at;
  };
  const stub = {
    acquire: async () => (calls.push("acquire"), { granted: true as const, leaseId: "lease-1" }),
    renew: async () => (calls.push("renew"), overrides.renew ? overrides.renew() : true),
    release: async () => void calls.push("release"),
    reserve: async (perSecond: number, count: number) => (calls.push(`reserve:${count}`), overrides.reserve ? overrides.reserve(perSecond, count) : take(perSecond, count)),
    throttled: async () => void calls.push("throttled"),
  };
  /** Slots taken by other invocations, not through the session. */
  const others = (perSecond: number, count: number) => take(perSecond, count);
  return { calls, stub: stub as unknown as Parameters<typeof pacedTransport>[1], others };
}

/** A relay session that answers each mail with `answer` at once, and records when each went and with what behind it. */
function fakeRelay({ open, answer = () => OK }: { open?: SmtpResult<never>; answer?: (m: OutgoingMail) => SmtpTransaction } = {}) {
  const sent: { mail: OutgoingMail; next: NextMail | undefined; at: number }[] = [];
  const order: string[] = [];
  const session: TransportSession = {
    transport: "smtp",
    isBroken: false,
    async send(m, options = {}) {
      sent.push({ mail: m, next: options.next, at: Date.now() });
      return answer(m);
    },
    async close() {
      order.push("relay closed");
    },
  };
  return { sent, order, transport: { name: "smtp" as const, open: async () => open ?? { ok: true as const, value: session } } };
}

async function openPaced(relay: ReturnType<typeof fakeRelay>, pacer: ReturnType<typeof fakePacer>, settings: PacingSettings) {
  const opened = await pacedTransport(relay.transport, pacer.stub, settings).open({ deadline: Date.now() + 60_000, waitUntil: Date.now() + 1000 });
  if (!opened.ok) throw new Error(opened.failure.message);
  return opened.value;
}

/** Date.now() as the code sees it, movable ahead (a lane held up) without waiting. */
function movableClock() {
  const realNow = Date.now.bind(Date);
  let ahead = 0;
  vi.spyOn(Date, "now").mockImplementation(() => realNow() + ahead);
  return { advance: (ms: number) => void (ahead += ms) };
}

describe("the paced transport", () => {
  it("slows every sender when the relay greets with a throttling answer, and gives the connection's place back", async () => {
    const failure: SmtpFailure = { kind: "reply", stage: "greeting", command: "(greeting)", code: 421, reply: "4.7.0 Error: too many connections, rate limit exceeded", message: "greeting answered 421" };
    const relay = fakeRelay({ open: { ok: false, failure } });
    const pacer = fakePacer();
    const opened = await pacedTransport(relay.transport, pacer.stub, { maxConnections: 1, leaseMs: 30_000 }).open({ deadline: Date.now() + 60_000 });
    expect(opened).toEqual({ ok: false, failure });
    expect(pacer.calls).toEqual(["acquire", "throttled", "release"]);
  });

  it("gives the place back when the relay cannot be reached, and says nothing of throttling", async () => {
    const failure: SmtpFailure = { kind: "connection", stage: "connect", command: "(connect)", message: "connection refused" };
    const pacer = fakePacer();
    await pacedTransport(fakeRelay({ open: { ok: false, failure } }).transport, pacer.stub, { maxConnections: 1, leaseMs: 30_000 }).open({ deadline: Date.now() + 60_000 });
    expect(pacer.calls).toEqual(["acquire", "release"]);
  });

  it("slows every sender when one recipient's answer is throttling, though the mail went to another", async () => {
    const relay = fakeRelay({
      answer: () => ({
        recipients: [
          { recipient: "a@example.com", code: 250, reply: "2.1.5 Ok", command: "RCPT TO:<a@example.com>" },
          { recipient: "b@example.com", code: 451, reply: "4.7.1 Rate limited, try again later", command: "RCPT TO:<b@example.com>" },
        ],
        end: OK.end,
      }),
    });
    const pacer = fakePacer();
    const session = await openPaced(relay, pacer, { maxPerSecond: 100, leaseMs: 30_000 });
    await session.send(mail(), { next: "quit" });
    expect(pacer.calls).toEqual(["reserve:1", "throttled"]);
    await session.close();
  });

  it("closes the connection before it gives its place back", async () => {
    const relay = fakeRelay();
    const pacer = fakePacer();
    const stub = pacer.stub as unknown as { release: () => Promise<void> };
    const release = stub.release;
    stub.release = async () => (relay.order.push("place given back"), release());
    const session = await openPaced(relay, pacer, { maxConnections: 1, leaseMs: 30_000 });
    await session.close();
    expect(relay.order).toEqual(["relay closed", "place given back"]);
  });

  it("renews the lease well before it could end", async () => {
    const leaseMs = 900;
    let renewed: () => void = () => {};
    const firstRenewal = new Promise<void>((resolve) => (renewed = resolve));
    const pacer = fakePacer({ renew: async () => (renewed(), true) });
    const started = Date.now();
    const session = await openPaced(fakeRelay(), pacer, { maxConnections: 1, leaseMs });
    await firstRenewal;
    // A renewal every third of the lease: the first comes after ~300 ms, long before the lease's 900.
    expect(Date.now() - started).toBeLessThan(leaseMs);
    await session.close();
  });

  it("breaks the session once the pacer says its lease is gone, and renews nothing after the session ends", async () => {
    let lost = false;
    const pacer = fakePacer({ renew: async () => !lost });
    const relay = fakeRelay();
    const leaseMs = 60; // a renewal every 20 ms
    const session = await openPaced(relay, pacer, { maxConnections: 1, leaseMs });
    await vi.waitFor(() => expect(pacer.calls.filter((c) => c === "renew").length).toBeGreaterThan(0));
    expect(session.isBroken).toBe(false);
    lost = true;
    await vi.waitFor(() => expect(session.isBroken).toBe(true));
    await session.close();
    const callsAtEnd = pacer.calls.length;
    expect(pacer.calls.at(-1)).toBe("release");
    // Ten renewal periods later, still nothing more.
    await new Promise((resolve) => setTimeout(resolve, 10 * (leaseMs / 3)));
    expect(pacer.calls.length).toBe(callsAtEnd);
  });

  it("sends a mail whose envelope is already on the wire even when the pacer cannot be asked for the next slot", async () => {
    let reserves = 0;
    const pacer = fakePacer({
      reserve: async (_perSecond, count) => {
        reserves += 1;
        if (reserves === 2) throw new Error("pacer unreachable");
        return Array.from({ length: count }, () => Date.now()); // every slot has come
      },
    });
    const relay = fakeRelay();
    const session = await openPaced(relay, pacer, { maxPerSecond: 10, leaseMs: 30_000 });
    const [m1, m2, m3] = [mail(), mail(), mail()];
    expect(await session.send(m1, { next: m2 })).toEqual(OK);
    expect(relay.sent[0]!.next).toBe(m2); // its slot had come: pipelined behind m1's dot
    // m2 is mid-transaction: it goes, without m3 behind it (m3 asks again in its own send).
    expect(await session.send(m2, { next: m3 })).toEqual(OK);
    expect(relay.sent[1]).toMatchObject({ mail: m2, next: undefined });
    expect(await session.send(m3, { next: "quit" })).toEqual(OK);
    expect(relay.sent.map((s) => s.mail)).toEqual([m1, m2, m3]);
    // A mail not on the wire is held back instead when the pacer cannot be asked.
    reserves = 1;
    const m4 = mail();
    const held = await session.send(m4, { next: "quit" });
    expect(held.end).toMatchObject({ ok: false, failure: { stage: "pacing", command: "(waiting for a send slot)" } });
    expect(relay.sent).toHaveLength(3);
    await session.close();
  });

  it("takes a new slot for a mail whose kept slot went by while the lane was held up, behind the slots others took since", async () => {
    const clock = movableClock();
    const pacer = fakePacer();
    const relay = fakeRelay();
    const session = await openPaced(relay, pacer, { maxPerSecond: 10, leaseMs: 30_000 });
    const [m1, m2] = [mail(), mail()];
    await session.send(m1, { next: m2 });
    expect(relay.sent[0]!.next).toBeUndefined(); // m2's slot is 100 ms away: not pipelined, kept for its send
    clock.advance(1000); // the lane is held up for a second, and other invocations take the next two slots
    const others = pacer.others(10, 2);
    await session.send(m2, { next: "quit" });
    expect(relay.sent[1]!.at).toBeGreaterThanOrEqual(others[1]! + 100);
    expect(pacer.calls.filter((c) => c.startsWith("reserve"))).toEqual(["reserve:2", "reserve:1"]);
    await session.close();
  });

  it("takes exactly one slot per mail in a paced run: none reserved and left unused", async () => {
    const pacer = fakePacer();
    const relay = fakeRelay();
    const session = await openPaced(relay, pacer, { maxPerSecond: 10, leaseMs: 30_000 });
    const run = [mail(), mail(), mail(), mail()];
    for (let i = 0; i < run.length; i++) await session.send(run[i]!, { next: run[i + 1] ?? "quit" });
    const reserved = pacer.calls.filter((c) => c.startsWith("reserve")).map((c) => Number(c.split(":")[1]));
    expect(reserved.reduce((a, b) => a + b, 0)).toBe(run.length);
    // And they went a slot (100 ms) apart, less what a timer may give away.
    for (let i = 1; i < relay.sent.length; i++) expect(relay.sent[i]!.at - relay.sent[i - 1]!.at).toBeGreaterThanOrEqual(90);
    await session.close();
  });

  it("does not wait for a slot that comes after the attempt's deadline: the mail is held back at once", async () => {
    const pacer = fakePacer();
    const relay = fakeRelay();
    const session = await openPaced(relay, pacer, { maxPerSecond: 10, leaseMs: 30_000 });
    pacer.others(10, 20); // the next free slot is two seconds away
    const started = Date.now();
    const transaction = await session.send(mail(Date.now() + 500), { next: "quit" });
    expect(transaction.end).toMatchObject({ ok: false, failure: { kind: "timeout", stage: "pacing", message: "SMTP_MAX_PER_SECOND (10) left no slot before the attempt's time was up" } });
    expect(relay.sent).toHaveLength(0);
    expect(Date.now() - started).toBeLessThan(1000);
    await session.close();
  });
});
