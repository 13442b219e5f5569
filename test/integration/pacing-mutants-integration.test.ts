// The edges of pacing and of the last review's fixes that the other integration tests leave open, each
// pinned by a case a mutation pass found unguarded. The relay's pacer (the real Durable Object, one of its
// own per test so that no test's leases or schedule reach another's): waiters first, an ended lease not
// renewed, every waiter there is room for served at once, leases and renewals kept across an eviction.
// The consumer against the pacing relay: a lease lost while the next chunk is claimed, and no place again,
// hands the whole batch back with each job's own backoff; a first session with no place hands back the jobs
// no lane took with it too; what the time budget hands back comes again at once. Failover: an extra session
// turned away is no reason for it, and lanes that join after it stay on the transport failed over to.
// Email Service as the fallback: a temporary refusal stays as it was said; a send() gone unanswered stops
// the mail there, saying so (4.4.7).
import { evictDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import type { OutboxJob } from "../../src/delivery/outbox";
import type { RelayPacer } from "../../src/pacing/relay-pacer";
import { captureLogs, uniqueRecipient } from "../helpers/api";
import { dbWithBatch, deliver, insertQueuedMessage, loadMessage, runQueue } from "../helpers/factories";
import type { PacingRelayStats } from "../helpers/pacing-relay";

const smtp = inject("smtp");
const control = (path: string) => fetch(`http://127.0.0.1:${smtp.drop.controlPort}/pacing/${path}`).then((r) => r.json<PacingRelayStats>());
const setGate = (mode: "open" | "down") => fetch(`http://127.0.0.1:${smtp.gate.controlPort}/gate/${mode}`).then((r) => r.json());
const RELAY = { SMTP_PORT: String(smtp.pacing.smtpPort) };
const bindings = env as unknown as { PACER: DurableObjectNamespace<RelayPacer>; EMAIL: SendEmail; EMAIL_OTHER_SENDER: SendEmail };

type Pacer = DurableObjectStub<RelayPacer>;
type Grant = { granted: true; leaseId: string } | { granted: false };
/** A pacer of the test's own. */
const freshPacer = (): Pacer => bindings.PACER.getByName(`mutants-${crypto.randomUUID()}`);
/** A PACER binding for a consumer run that hands out `stub` for any relay. */
const pacerBinding = (stub: unknown) => ({ getByName: () => stub });
const leaseOf = (grant: Grant): string => {
  if (!grant.granted) throw new Error("no lease was granted");
  return grant.leaseId;
};

/**
 * The test database, except that the `n`th claim (the D1 batch that takes messages into "sending") takes
 * `delayMs` longer, as a slow D1 round trip would.
 */
function dbSlowingClaim(n: number, delayMs: number): D1Database {
  let claims = 0;
  return dbWithBatch(async (statements, sqlOf) => {
    if (statements.some((s) => sqlOf(s)?.includes("attempts = attempts + 1")) && (claims += 1) === n) await new Promise((resolve) => setTimeout(resolve, delayMs));
    return env.DB.batch(statements);
  });
}

/** Each job of the batch as on its `attempts`th delivery, with its retry() watched (and still done). */
function watchRetries(attempts: number, spies: Map<string, ReturnType<typeof vi.spyOn>>) {
  return (batch: MessageBatch<OutboxJob>) => {
    for (const msg of batch.messages) {
      Object.defineProperty(msg, "attempts", { value: attempts });
      spies.set(msg.body.id, vi.spyOn(msg, "retry"));
    }
  };
}

/** The real binding, counting its calls; `send` replaces what each call does. */
function countedEmail(send: (message: EmailMessage) => Promise<EmailSendResult> = (m) => bindings.EMAIL.send(m)) {
  const counted = { calls: 0, send: (message: EmailMessage) => ((counted.calls += 1), send(message)) };
  return counted;
}

/**
 * A pacer of the test's own that does what `hooks` say before its acquire and after its release (which
 * still reach the real Durable Object), as a PACER binding for a consumer run.
 */
function hookedPacer(hooks: { beforeAcquire?: (n: number) => Promise<unknown>; afterRelease?: (n: number) => void }) {
  const real = freshPacer();
  let acquires = 0;
  let releases = 0;
  const pacer = {
    acquire: async (max: number, leaseMs: number, waitMs: number) => {
      await hooks.beforeAcquire?.((acquires += 1));
      return real.acquire(max, leaseMs, waitMs);
    },
    renew: (id: string, leaseMs: number) => real.renew(id, leaseMs),
    release: async (id: string) => {
      await real.release(id);
      hooks.afterRelease?.((releases += 1));
    },
    reserve: (perSecond: number, count: number) => real.reserve(perSecond, count),
    throttled: () => real.throttled(),
  };
  return { binding: pacerBinding(pacer), acquires: () => acquires };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the relay's pacer", () => {
  it("keeps those already waiting first: an ask that does not wait gets no place past them, even under a higher limit", async () => {
    const pacer = freshPacer();
    const held = leaseOf(await pacer.acquire(1, 60_000, 0));
    const waiting = pacer.acquire(1, 60_000, 5000);
    expect(await pacer.acquire(2, 60_000, 0)).toEqual({ granted: false });
    await pacer.release(held);
    await pacer.release(leaseOf(await waiting));
  });

  it("does not renew a lease that has ended, even when nobody has taken its place yet", async () => {
    const pacer = freshPacer();
    const held = leaseOf(await pacer.acquire(2, 60_000, 0));
    const ending = leaseOf(await pacer.acquire(2, 300, 0));
    // Under a limit of 1 this waiter is never served while `held` runs, so nothing is granted in between:
    // its refusal, after 600 ms, is the moment `ending` has ended and is still on the books.
    expect(await pacer.acquire(1, 60_000, 600)).toEqual({ granted: false });
    expect(await pacer.renew(ending, 60_000)).toBe(false);
    const next = leaseOf(await pacer.acquire(2, 60_000, 0));
    await Promise.all([pacer.release(held), pacer.release(next)]);
  });

  it("serves every waiter there is room for at once when the one at the head of the line gives up", async () => {
    const pacer = freshPacer();
    const held = leaseOf(await pacer.acquire(1, 60_000, 0));
    // The head waits under a limit of 1 (no room while `held` runs); the two behind it under 3 (room for both).
    const head = pacer.acquire(1, 60_000, 300);
    const behind = [pacer.acquire(3, 60_000, 3000), pacer.acquire(3, 60_000, 3000)];
    expect(await head).toEqual({ granted: false });
    const granted = await Promise.all(behind);
    expect(granted.map((g) => g.granted)).toEqual([true, true]);
    await Promise.all([held, ...granted.map(leaseOf)].map((id) => pacer.release(id)));
  });

  it("keeps its leases, and their renewals, when it is evicted and starts again from storage", async () => {
    const pacer = freshPacer();
    const kept = leaseOf(await pacer.acquire(2, 60_000, 0));
    const renewed = leaseOf(await pacer.acquire(2, 500, 0));
    expect(await pacer.renew(renewed, 60_000)).toBe(true);
    await evictDurableObject(pacer);
    // Both places are still taken after the restart (the renewed one for a minute, not for 500 ms).
    expect(await pacer.acquire(2, 60_000, 1000)).toEqual({ granted: false });
    await Promise.all([pacer.release(kept), pacer.release(renewed)]);
    await pacer.release(leaseOf(await pacer.acquire(2, 60_000, 0)));
  });
});

describe("the consumer when pacing holds it back", () => {
  it("hands the whole batch back with each job's own backoff when its lease is lost while the next chunk is claimed and no place comes free", async () => {
    await control("reset");
    const real = freshPacer();
    let acquires = 0;
    // The pacer as a session sees it when its place is gone: renewals answered "no such lease", and
    // another invocation holding the place when the lane asks again.
    const losing = {
      acquire: (max: number, leaseMs: number, waitMs: number) => ((acquires += 1) === 1 ? real.acquire(max, leaseMs, waitMs) : Promise.resolve({ granted: false })),
      renew: async () => false,
      release: (id: string) => real.release(id),
      reserve: (perSecond: number, count: number) => real.reserve(perSecond, count),
      throttled: () => real.throttled(),
    };
    const batch = [await insertQueuedMessage(), await insertQueuedMessage(), await insertQueuedMessage()];
    const retries = new Map<string, ReturnType<typeof vi.spyOn>>();
    // One session: the first message is claimed alone; the other two are claimed once the session is up,
    // in a D1 round trip slow enough (1.5 s) for the first renewal (after 2 s / 3) to find the lease gone.
    const { result } = await runQueue(
      "mailroom-outbox",
      batch.map((m) => m.id),
      { ...RELAY, SMTP_SESSIONS: "1", SMTP_MAX_CONNECTIONS: "1", PACING_LEASE_SECONDS: "2", RETRY_BASE_DELAY_SECONDS: "10", PACER: pacerBinding(losing), DB: dbSlowingClaim(2, 1500) },
      watchRetries(3, retries),
    );
    expect(acquires).toBe(2);
    expect(result.explicitAcks).toEqual([]);
    expect([...result.retryMessages].sort((a, b) => a.msgId.localeCompare(b.msgId))).toEqual(batch.map((m) => ({ msgId: `job-${m.id}` })).sort((a, b) => a.msgId.localeCompare(b.msgId)));
    for (const { id } of batch) {
      // 10 s · 2^(3 − 1): the job's own backoff, not at once (the place would still be taken).
      expect(retries.get(id)!.mock.calls).toEqual([[{ delaySeconds: 40 }]]);
      expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
    }
    const stats = await control("stats");
    expect(stats.connections).toBe(1);
    expect(stats.mailFrom).toHaveLength(0);
  });

  it("hands back the jobs no lane has taken with the job's own backoff too, when the first session gets no place", async () => {
    await control("reset");
    const pacer = freshPacer();
    const held = leaseOf(await pacer.acquire(1, 600_000, 0));
    try {
      const batch = [await insertQueuedMessage(), await insertQueuedMessage(), await insertQueuedMessage()];
      const retries = new Map<string, ReturnType<typeof vi.spyOn>>();
      // A short claim leaves the invocation a second or so to wait for a place in.
      await runQueue(
        "mailroom-outbox",
        batch.map((m) => m.id),
        { ...RELAY, SMTP_MAX_CONNECTIONS: "1", DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "100", RETRY_BASE_DELAY_SECONDS: "10", PACER: pacerBinding(pacer) },
        watchRetries(2, retries),
      );
      for (const { id } of batch) {
        expect(retries.get(id)!.mock.calls).toEqual([[{ delaySeconds: 20 }]]);
        expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
      }
      expect((await control("stats")).connections).toBe(0);
    } finally {
      await pacer.release(held);
    }
  });
});

describe("the consumer when its time budget is used up", () => {
  it("hands the rest back to come again at once: no backoff, since nothing was attempted and nothing held them back", async () => {
    // A 5 s lease gives a budget of 0.67 s; this relay takes 1 s to accept each "slow-" message. One session.
    const batch = [];
    for (let i = 0; i < 3; i++) batch.push(await insertQueuedMessage({ to: uniqueRecipient("slow") }));
    const retries = new Map<string, ReturnType<typeof vi.spyOn>>();
    await runQueue(
      "mailroom-outbox",
      batch.map((m) => m.id),
      { SMTP_PORT: String(smtp.dataPolicy.smtpPort), DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "2000", SMTP_SESSIONS: "1", RETRY_BASE_DELAY_SECONDS: "10" },
      watchRetries(3, retries),
    );
    expect((await loadMessage(batch[0]!.id)).message.status).toBe("sent");
    expect(retries.get(batch[0]!.id)!.mock.calls).toEqual([]);
    for (const { id } of batch.slice(1)) {
      const calls = retries.get(id)!.mock.calls as [{ delaySeconds?: number } | undefined][];
      expect(calls).toHaveLength(1);
      expect(calls[0]![0]?.delaySeconds).toBeUndefined();
      expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
    }
  });
});

describe("TRANSPORT=smtp,cloudflare with several sessions", () => {
  const logged = (lines: string[], msg: string) => lines.map((l) => JSON.parse(l)).filter((e) => e.msg === msg);

  /**
   * Three mails over SMTP_SESSIONS=3 with `pacer`, two of whose sessions the relay turns away: all three
   * go over SMTP (Email Service never asked, no failover), and the one refusal log line counts one session
   * up and two turned away. Returns the batch.
   */
  const deliverThreeStayingOnSmtp = async (pacer: ReturnType<typeof hookedPacer>) => {
    const email = countedEmail();
    const batch = [await insertQueuedMessage(), await insertQueuedMessage(), await insertQueuedMessage()];
    const logs = captureLogs();
    try {
      await deliver(batch.map((m) => m.id), { TRANSPORT: "smtp,cloudflare", SMTP_SESSIONS: "3", SMTP_MAX_CONNECTIONS: "10", EMAIL: email, PACER: pacer.binding });
    } finally {
      logs.restore();
      await setGate("open");
    }
    expect(pacer.acquires()).toBe(3);
    expect(email.calls).toBe(0);
    expect(logged(logs.lines, "transport cannot be used; failing over")).toEqual([]);
    expect(logged(logs.lines, "not every session could be opened; the others carry on")).toMatchObject([{ sessions: 1, turned_away: 2 }]);
    return batch;
  };

  it("does not fail over when an extra session is turned away once the first is up: the lanes up carry on over SMTP", async () => {
    let down: Promise<unknown> | undefined;
    // The relay goes down for new connections the moment the first extra session asks for its place.
    const pacer = hookedPacer({ beforeAcquire: async (n) => n >= 2 && (await (down ??= setGate("down"))) });
    const batch = await deliverThreeStayingOnSmtp(pacer);
    for (const { id } of batch) expect((await loadMessage(id)).events.at(-1)).toMatchObject({ type: "sent", transport: "smtp" });
  });

  it("does not fail over while a session's handshake is still under way: sessions refused first leave the batch to the one that opens", async () => {
    let bothRefused!: () => void;
    const refused = new Promise<void>((resolve) => (bothRefused = resolve));
    let down: Promise<unknown> | undefined;
    // The first session connects only once the other two were refused (each gives its place back).
    const pacer = hookedPacer({
      beforeAcquire: async (n) => {
        if (n > 1) return down ??= setGate("down");
        await refused;
        return setGate("open");
      },
      afterRelease: (n) => n === 2 && bothRefused(),
    });
    const batch = await deliverThreeStayingOnSmtp(pacer);
    for (const { id } of batch) expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
  });

  it("opens the extra sessions on the transport the batch failed over to, without trying the relay again", async () => {
    const email = countedEmail();
    const batch = [await insertQueuedMessage(), await insertQueuedMessage(), await insertQueuedMessage()];
    const logs = captureLogs();
    try {
      await deliver(batch.map((m) => m.id), { TRANSPORT: "smtp,cloudflare", SMTP_PORT: String(smtp.closedPort), SMTP_SESSIONS: "3", EMAIL: email });
    } finally {
      logs.restore();
    }
    expect(email.calls).toBe(3);
    for (const { id } of batch) expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
    expect(logged(logs.lines, "transport cannot be used; failing over")).toHaveLength(1);
    expect(logged(logs.lines, "not every session could be opened; the others carry on")).toEqual([]);
  });
});

describe("Cloudflare Email Service's answers", () => {
  it("keeps a temporary refusal as it was said when Email Service is the fallback: nothing to make temporary", async () => {
    const { id } = await insertQueuedMessage();
    await deliver([id], { TRANSPORT: "smtp,cloudflare", SMTP_PORT: String(smtp.closedPort), EMAIL: bindings.EMAIL_OTHER_SENDER });
    const { message } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/^send_email to <[^>]+> answered 451 4\.7\.1 E_SENDER_NOT_VERIFIED: email from noreply@mailroom\.test not allowed$/);
  });

  it("stops at a send() gone unanswered: that recipient waits as a possible duplicate (4.4.7), the next is not begun, and the mail says why", async () => {
    const to = [uniqueRecipient("unanswered"), uniqueRecipient("unbegun")];
    const { id } = await insertQueuedMessage({ to });
    const hanging = countedEmail(() => new Promise<EmailSendResult>(() => {}));
    await deliver([id], { TRANSPORT: "cloudflare", SMTP_HOST: "", EMAIL: hanging, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "100" });
    expect(hanging.calls).toBe(1);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/^send_email to <[^>]+>: no answer before the attempt's time was up; .*possible duplicate/);
    expect(recipients.map((r) => [r.status, r.smtpCode])).toEqual([["deferred", 451], ["pending", null]]);
    expect(recipients[0]!.detail).toMatch(/^send_email to <[^>]+> answered 451 4\.4\.7 no answer before the attempt's time was up; /);
  });
});
