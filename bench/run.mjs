// `npm run bench`: Mailroom's delivery throughput against the classic patterns, measured in one run on
// this machine. A relay process adds a fixed round-trip time in front of an SMTP sink (bench/relay.mjs);
// through it go (1) one connection per mail with unbounded concurrency (the FastAPI BackgroundTasks +
// aiosmtplib service's pattern), (2) nodemailer's pooled transport with 5 connections, and (3) the real
// Mailroom path under `wrangler dev`: POST → D1 + queue → consumer → relay, posted as it goes, posted in
// batches of 100 (POST /v1/emails/batch), as a scheduled backlog (no API traffic beside the consumer), and in
// batches again with a webhook subscribed to email.sent (a receiver in this process). It prints delivered mails per second and the
// ratios, round trips per message (counted at the proxy), accept requests per second and p50/p99 against
// /healthz (and an invalid POST) in the same wrangler dev, CPU ms per delivered mail, by process, and what
// each delivered mail costs — D1 rows, queue operations, subrequests, CPU — and a million of them in dollars.
// The relay greets one round trip after the connection (as a submission relay does); the pool and the
// backlog are measured once more with it holding each greeting back as smtp-server does on its own.
//   node bench/run.mjs [--messages=1000] [--rtt=10] [--concurrency=8] [--greeting-hold=100]
import { fork } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import nodemailer from "nodemailer";
import { startWebhookReceiver } from "../scripts/webhook-receiver.mjs";
import { applyMigrations, startWranglerDev } from "../scripts/wrangler-dev.mjs";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
const MESSAGES = Number(args.messages ?? 1000);
const RTT_MS = Number(args.rtt ?? 10);
const CONCURRENCY = Number(args.concurrency ?? 8);
/** The greeting hold of smtp-server's early-talker check, measured once beside the relay that greets at once. */
const GREETING_HOLD_MS = Number(args["greeting-hold"] ?? 100);
const TICKS_PER_SECOND = 100;
/** API keys the posts are spread over: 1000 posts and 500 refused ones stay far below 100 per key in 10 s. */
const KEYS = 50; // Linux USER_HZ, the unit of /proc/<pid>/stat times

const relay = fork(new URL("./relay.mjs", import.meta.url), [String(RTT_MS)], { stdio: "inherit" });
const { port: relayPort } = (await once(relay, "message"))[0];
const relayStats = async (command = "stats") => (relay.send(command), (await once(relay, "message"))[0]);

const mail = (i) => ({ from: "Bench <bench@mailroom.test>", to: `user${i}@example.com`, subject: `Bench ${i}`, text: `Message ${i}\n`.repeat(20) });
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const clientCpuMs = () => (process.cpuUsage().user + process.cpuUsage().system) / 1000;

/** CPU ms used so far by the processes of a group (wrangler → node → workerd), by process name. */
function groupCpuMs(pgid) {
  const byName = {};
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid) byName[name] = (byName[name] ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
    } catch {
      // exited meanwhile
    }
  }
  return byName;
}

/** CPU ms per mail between two groupCpuMs() readings: in all, and by process name. */
function cpuPerMail(before, after) {
  const byName = Object.fromEntries(Object.entries(after).map(([name, ms]) => [name, (ms - (before[name] ?? 0)) / MESSAGES]));
  return { total: Object.values(byName).reduce((a, b) => a + b, 0), byName };
}

/**
 * Sums what Mailroom's log lines say each request and each queue batch cost (d1_rows_read, d1_rows_written,
 * queue_ops, binding_calls), and counts invocations and delivered mails, from wrangler dev's output.
 */
function createUsageCollector() {
  const totals = { requests: 0, batches: 0, rowsRead: 0, rowsWritten: 0, queueOps: 0, bindingCalls: 0, sent: 0, hooked: 0 };
  let partial = "";
  let batchSinceLastSent = true;
  let batchSinceLastHook = true;
  const waiters = new Set();
  const read = (line) => {
    if (!line.startsWith("{")) return;
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      return;
    }
    if (entry.msg === "delivery attempt" && entry.outcome === "sent") (totals.sent++, (batchSinceLastSent = false));
    if (entry.msg === "webhook attempt" && entry.outcome === "success") (totals.hooked++, (batchSinceLastHook = false));
    if (entry.msg !== "request" && entry.msg !== "queue batch") return;
    if (entry.msg === "request") totals.requests++;
    else if (entry.queue === "mailroom-webhooks") (totals.batches++, (batchSinceLastHook = true));
    else (totals.batches++, (batchSinceLastSent = true));
    totals.rowsRead += entry.d1_rows_read ?? 0;
    totals.rowsWritten += entry.d1_rows_written ?? 0;
    totals.queueOps += entry.queue_ops ?? 0;
    totals.bindingCalls += entry.binding_calls ?? 0;
  };
  return {
    onOutput(chunk, stream) {
      if (stream !== "stdout") return;
      const lines = (partial + chunk).split("\n");
      partial = lines.pop();
      for (const line of lines) read(line.trim());
      for (const check of waiters) check();
    },
    snapshot: () => ({ ...totals }),
    /**
     * Resolves once `count` more mails than in `since` were logged sent (with `hooks`, also `count` more
     * webhook events delivered) and the batch that did the last one has logged its cost.
     */
    settled(since, count, { hooks = false, timeoutMs = 60_000 } = {}) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => (waiters.delete(check), reject(new Error(`only ${totals.sent - since.sent} of ${count} deliveries (${totals.hooked - since.hooked} webhook events) logged`))), timeoutMs);
        const check = () => {
          if (totals.sent - since.sent < count || !batchSinceLastSent) return;
          if (hooks && (totals.hooked - since.hooked < count || !batchSinceLastHook)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve({ ...totals });
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/** Per delivered mail, between two snapshots; SMTP connections (counted at the relay) are subrequests too. */
function usagePerMail(before, after, connections) {
  const per = (key) => (after[key] - before[key]) / MESSAGES;
  return {
    requests: per("requests") + per("batches"), // a queue consumer invocation is billed as a request
    rowsRead: per("rowsRead"),
    rowsWritten: per("rowsWritten"),
    queueOps: per("queueOps"),
    subrequests: per("bindingCalls") + connections / MESSAGES,
  };
}

/** Workers Paid list prices, in dollars: requests $0.30/M, CPU $0.02 per M ms, Queues $0.40 per M operations, D1 $1.00 per M rows written, $0.001 per M read. */
const costPerMillionMails = ({ requests, rowsRead, rowsWritten, queueOps }, cpuMs) => requests * 0.3 + cpuMs * 0.02 + queueOps * 0.4 + rowsWritten * 1.0 + rowsRead * 0.001;

async function waitForMails(count, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await relayStats();
    if (stats.mails >= count) return stats;
    if (Date.now() > deadline) throw new Error(`only ${stats.mails} of ${count} mails arrived within ${timeoutMs} ms`);
    await delay(20);
  }
}

/** Runs `task(i)` for i < count with `concurrency` in flight; returns each call's latency in ms, sorted. */
async function load(count, concurrency, task) {
  const latencies = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const started = performance.now();
        await task(i);
        latencies.push(performance.now() - started);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

async function baseline(name, transportOptions) {
  await relayStats("reset");
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: relayPort, secure: false, ignoreTLS: true, ...transportOptions });
  const cpu = clientCpuMs();
  const started = Date.now();
  await Promise.all(Array.from({ length: MESSAGES }, (_, i) => transport.sendMail(mail(i))));
  const stats = await waitForMails(MESSAGES, 600_000);
  transport.close();
  return { name, perSecond: MESSAGES / ((stats.lastMailAt - started) / 1000), roundTrips: stats.roundTrips / MESSAGES, connections: stats.connections, cpuMs: (clientCpuMs() - cpu) / MESSAGES };
}

async function mailroom() {
  const stateDir = await mkdtemp(path.join(tmpdir(), "mailroom-bench-"));
  const envFile = path.join(stateDir, "bench.env");
  await writeFile(envFile, "# every setting comes from --var\n");
  const env = { CLOUDFLARE_INCLUDE_PROCESS_ENV: "false" };
  // Many clients, each well within the per-key send limit (SEND_RATE_LIMIT: 100 in 10 s), as a service
  // shared by many products would see: request i goes with key i mod KEYS.
  const apiKeys = Array.from({ length: KEYS }, () => `bench-${randomUUID()}`);
  const keyFor = (i) => apiKeys[((i % KEYS) + KEYS) % KEYS];
  await applyMigrations({ persistTo: stateDir, env });
  const usage = createUsageCollector();
  const wrangler = await startWranglerDev({
    persistTo: stateDir,
    envFile,
    env,
    onOutput: usage.onOutput,
    vars: {
      SMTP_HOST: "127.0.0.1",
      SMTP_PORT: String(relayPort),
      SMTP_SECURITY: "none",
      MAIL_FROM: "Bench <bench@mailroom.test>",
      // development: the webhook receiver is http:// on loopback
      ENVIRONMENT: "development",
      API_KEYS: apiKeys.map((key, n) => `bench${n}:${createHash("sha256").update(key).digest("hex")}`).join(","),
    },
  });
  try {
    const post = (i, fields = {}) =>
      fetch(`${wrangler.url}/v1/emails`, {
        method: "POST",
        headers: { Authorization: `Bearer ${keyFor(i)}`, "Content-Type": "application/json" },
        body: JSON.stringify({ ...mail(i), from: undefined, ...fields }),
      }).then(async (res) => {
        if (res.status !== 202) throw new Error(`POST answered ${res.status}: ${await res.text()}`);
      });
    // Warm up the isolate, D1 and the queue, and let that mail through before measuring.
    await post(-1);
    await waitForMails(1, 60_000);

    const healthStarted = performance.now();
    const health = await load(Math.min(MESSAGES, 500), CONCURRENCY, () => fetch(`${wrangler.url}/healthz`).then((res) => res.arrayBuffer()));
    const healthSeconds = (performance.now() - healthStarted) / 1000;

    // The same POST with a body that fails validation: authentication, parsing and validation, no writes.
    const refusedStarted = performance.now();
    const refused = await load(Math.min(MESSAGES, 500), CONCURRENCY, (i) =>
      fetch(`${wrangler.url}/v1/emails`, { method: "POST", headers: { Authorization: `Bearer ${keyFor(i)}`, "Content-Type": "application/json" }, body: JSON.stringify({ to: "not an address", subject: "x", text: "x" }) }).then(async (res) => {
        if (res.status !== 422) throw new Error(`invalid POST answered ${res.status}`);
        await res.arrayBuffer();
      }),
    );
    const refusedSeconds = (performance.now() - refusedStarted) / 1000;

    // Hostile input, which once cost time super-linear in its size: a 16 KB path (masked for the log line)
    // and an address padded with 40,000 spaces (parsed as an address). Each should go at about /healthz's rate.
    const hostile = async (request) => {
      const started = performance.now();
      const latencies = await load(Math.min(MESSAGES, 300), CONCURRENCY, (i) => request(i).then((res) => res.arrayBuffer()));
      return { perSecond: latencies.length / ((performance.now() - started) / 1000), p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
    };
    const longPath = await hostile(() => fetch(`${wrangler.url}/${"a".repeat(16_000)}`));
    const paddedBody = JSON.stringify({ to: `a${" ".repeat(40_000)}b@example.com`, subject: "x", text: "x" });
    const paddedAddress = await hostile((i) => fetch(`${wrangler.url}/v1/emails`, { method: "POST", headers: { Authorization: `Bearer ${keyFor(i)}`, "Content-Type": "application/json" }, body: paddedBody }));

    /** A phase's figures: delivered/s from `started`, CPU and usage per mail once its last batch has logged. */
    const measure = async (name, { started, cpu, used }, hooks = false) => {
      const stats = await waitForMails(MESSAGES, 1_800_000);
      const after = await usage.settled(used, MESSAGES, { hooks });
      const { total, byName } = cpuPerMail(cpu, groupCpuMs(wrangler.pid));
      return { name, perSecond: MESSAGES / ((stats.lastMailAt - started) / 1000), roundTrips: stats.roundTrips / MESSAGES, connections: stats.connections, cpuMs: total, cpuByName: byName, usage: usagePerMail(used, after, stats.connections) };
    };
    const phaseStart = () => ({ started: Date.now(), cpu: groupCpuMs(wrangler.pid), used: usage.snapshot() });

    await relayStats("reset");
    const asItGoes = phaseStart();
    const accepts = await load(MESSAGES, CONCURRENCY, post);
    const acceptSeconds = (Date.now() - asItGoes.started) / 1000;
    const delivery = await measure("Mailroom (wrangler dev), posted as it goes", asItGoes);

    // The same mails in batches of 100: one request (and one D1 transaction, one sendBatch) per hundred.
    await relayStats("reset");
    const batchCount = Math.ceil(MESSAGES / 100);
    /** The phase's mails in batches of 100: one request (and one D1 transaction, one sendBatch) per hundred. */
    const postBatches = () =>
      load(batchCount, Math.min(CONCURRENCY, batchCount), (b) =>
        fetch(`${wrangler.url}/v1/emails/batch`, {
          method: "POST",
          headers: { Authorization: `Bearer ${keyFor(b)}`, "Content-Type": "application/json" },
          body: JSON.stringify(Array.from({ length: Math.min(100, MESSAGES - b * 100) }, (_, k) => ({ ...mail(b * 100 + k), from: undefined }))),
        }).then(async (res) => {
          if (res.status !== 202) throw new Error(`batch POST answered ${res.status}: ${await res.text()}`);
        }),
      );
    const inBatches = phaseStart();
    await postBatches();
    const batched = await measure("Mailroom (wrangler dev), posted in batches of 100", inBatches);

    // A backlog: the same number of mails, all scheduled for one moment after every one of them has been
    // accepted, so the consumer works through them with no API traffic beside it (the delivery engine's
    // own rate, as after an outage of the relay, or for a scheduled send to many).
    // Its cost per mail counts the accepting requests too (from before they were posted); its CPU and speed, the consumer alone.
    const scheduledBacklog = async (name) => {
      await relayStats("reset");
      const used = usage.snapshot();
      const dueAt = Math.ceil((Date.now() + acceptSeconds * 1500 + 3000) / 1000) * 1000;
      await load(MESSAGES, CONCURRENCY, (i) => post(i, { scheduled_at: new Date(dueAt).toISOString() }));
      if (Date.now() >= dueAt) throw new Error("posting the backlog took longer than planned; its figures would include the API traffic");
      await delay(dueAt - Date.now());
      return measure(name, { started: dueAt, cpu: groupCpuMs(wrangler.pid), used });
    };
    const backlog = await scheduledBacklog("Mailroom (wrangler dev), a scheduled backlog");
    // Again with the relay holding each greeting back as smtp-server does on its own (relay.mjs): each
    // batch opens its sessions anew (a Worker's connection cannot outlive its invocation), the pool once.
    relay.send({ greetingHoldMs: GREETING_HOLD_MS });
    const heldBacklog = await scheduledBacklog(`the backlog, greeting held ${GREETING_HOLD_MS} ms`);
    relay.send({ greetingHoldMs: 0 });

    const requestRates = {
      accept: { perSecond: MESSAGES / acceptSeconds, p50: percentile(accepts, 50), p99: percentile(accepts, 99) },
      health: { perSecond: health.length / healthSeconds, p50: percentile(health, 50), p99: percentile(health, 99) },
      refused: { perSecond: refused.length / refusedSeconds, p50: percentile(refused, 50), p99: percentile(refused, 99) },
      longPath,
      paddedAddress,
    };

    // Batches again, now with one webhook on email.sent per key: every delivered mail is also an event
    // POSTed to the receiver. Its figures less the batches' are what webhooks add per mail.
    const receiver = await startWebhookReceiver();
    try {
      for (let k = 0; k < KEYS; k++) {
        const res = await fetch(`${wrangler.url}/v1/webhooks`, {
          method: "POST",
          headers: { Authorization: `Bearer ${keyFor(k)}`, "Content-Type": "application/json" },
          body: JSON.stringify({ endpoint: `http://127.0.0.1:${receiver.port}/webhooks/bench`, events: ["email.sent"] }),
        });
        if (res.status !== 201) throw new Error(`webhook create answered ${res.status}: ${await res.text()}`);
      }
      await relayStats("reset");
      const hooked = phaseStart();
      await postBatches();
      const withHooks = await measure("Mailroom (wrangler dev), in batches, one webhook on email.sent", hooked, true);
      const events = receiver.received("bench");
      if (events.length !== MESSAGES) throw new Error(`the receiver got ${events.length} webhook events for ${MESSAGES} mails`);
      const lastEventAt = Math.max(...events.map((e) => Date.parse(e.at)));
      withHooks.eventsPerSecond = MESSAGES / ((lastEventAt - hooked.started) / 1000);
      return { delivery, batched, backlog, heldBacklog, withHooks, ...requestRates };
    } finally {
      await receiver.close();
    }

  } finally {
    await wrangler.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

const fixed = (n, digits = 1) => n.toFixed(digits);
try {
  console.log(`bench: ${MESSAGES} messages, ${RTT_MS} ms round trip to the relay (its greeting one round trip after connecting), ${CONCURRENCY} concurrent API clients\n`);
  const perMail = await baseline("one connection per mail (FastAPI pattern)", { pool: false });
  const pooled = await baseline("nodemailer pool, 5 connections", { pool: true, maxConnections: 5, maxMessages: Infinity });
  const ours = await mailroom();
  relay.send({ greetingHoldMs: GREETING_HOLD_MS });
  const heldPool = await baseline(`nodemailer pool, greeting held ${GREETING_HOLD_MS} ms`, { pool: true, maxConnections: 5, maxMessages: Infinity });
  relay.send({ greetingHoldMs: 0 });
  console.log("| path | delivered/s | × per-mail | × nodemailer pool | round trips/msg | connections | CPU ms/mail |");
  console.log("|---|---|---|---|---|---|---|");
  for (const row of [perMail, pooled, ours.delivery, ours.batched, ours.backlog, ours.withHooks]) {
    console.log(`| ${row.name} | ${fixed(row.perSecond)} | ${fixed(row.perSecond / perMail.perSecond, 2)} | ${fixed(row.perSecond / pooled.perSecond, 2)} | ${fixed(row.roundTrips, 2)} | ${row.connections} | ${fixed(row.cpuMs, 2)} |`);
  }
  console.log(`With the relay holding each greeting ${GREETING_HOLD_MS} ms, as smtp-server does on its own: nodemailer pool ${fixed(heldPool.perSecond)}/s, the scheduled backlog ${fixed(ours.heldBacklog.perSecond)}/s (${fixed(ours.heldBacklog.perSecond / heldPool.perSecond, 2)}× that pool; ${ours.heldBacklog.connections} connections against its ${heldPool.connections})`);
  console.log(`\n| wrangler dev | requests/s | p50 ms | p99 ms |\n|---|---|---|---|`);
  console.log(`| GET /healthz | ${fixed(ours.health.perSecond)} | ${fixed(ours.health.p50)} | ${fixed(ours.health.p99)} |`);
  console.log(`| POST /v1/emails, invalid (422: no writes) | ${fixed(ours.refused.perSecond)} | ${fixed(ours.refused.p50)} | ${fixed(ours.refused.p99)} |`);
  console.log(`| POST /v1/emails (202, while delivering) | ${fixed(ours.accept.perSecond)} | ${fixed(ours.accept.p50)} | ${fixed(ours.accept.p99)} |`);
  console.log(`| hostile input: GET of a 16 KB path (404) | ${fixed(ours.longPath.perSecond)} | ${fixed(ours.longPath.p50)} | ${fixed(ours.longPath.p99)} |`);
  console.log(`| hostile input: POST with a 40,000-space address (422) | ${fixed(ours.paddedAddress.perSecond)} | ${fixed(ours.paddedAddress.p50)} | ${fixed(ours.paddedAddress.p99)} |`);
  console.log(`hostile input ÷ /healthz's requests/s: 16 KB path ${fixed(ours.longPath.perSecond / ours.health.perSecond, 2)}, padded address ${fixed(ours.paddedAddress.perSecond / ours.health.perSecond, 2)}`);
  console.log(`\naccept requests/s ÷ /healthz's: ${fixed(ours.accept.perSecond / ours.health.perSecond, 2)}`);
  console.log("\nWhat each delivered mail costs (from Mailroom's log lines; CPU: workerd's, the part Workers bills), and a million such mails at Workers Paid list prices:");
  console.log("| path | requests | D1 rows read | D1 rows written | queue ops | subrequests | CPU ms | $ per million mails | × Amazon SES ($100) | × Email Service ($350) |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const row of [ours.delivery, ours.batched, ours.backlog, ours.withHooks]) {
    const u = row.usage;
    const cpuMs = row.cpuByName.workerd ?? row.cpuMs;
    const cost = costPerMillionMails(u, cpuMs);
    console.log(`| ${row.name} | ${fixed(u.requests, 2)} | ${fixed(u.rowsRead)} | ${fixed(u.rowsWritten, 2)} | ${fixed(u.queueOps, 2)} | ${fixed(u.subrequests, 2)} | ${fixed(cpuMs, 2)} | ${fixed(cost, 2)} | ${fixed(cost / 100, 3)} | ${fixed(cost / 350, 3)} |`);
  }
  console.log("(CPU ms/mail: the client process for the baselines, the whole wrangler dev process group for Mailroom.)");
  const [a, b] = [ours.batched.usage, ours.withHooks.usage];
  console.log(`\nWebhooks (one on email.sent): ${fixed(ours.withHooks.eventsPerSecond)} events delivered/s (mails: ${fixed(ours.withHooks.perSecond)}/s, ${fixed(ours.withHooks.perSecond / ours.batched.perSecond, 2)}× the batches without); per mail they add ${fixed(b.rowsWritten - a.rowsWritten, 2)} D1 rows written, ${fixed(b.rowsRead - a.rowsRead, 1)} read, ${fixed(b.queueOps - a.queueOps, 2)} queue operations, ${fixed(b.requests - a.requests, 2)} invocations, ${fixed(b.subrequests - a.subrequests, 2)} subrequests`);
  const split = (row) => Object.entries(row.cpuByName).filter(([, ms]) => ms >= 0.05).map(([name, ms]) => `${name} ${fixed(ms, 2)}`).join(", ");
  console.log(`Mailroom's CPU ms/mail by process: posted as it goes: ${split(ours.delivery)}; in batches: ${split(ours.batched)}; the backlog: ${split(ours.backlog)}`);
} finally {
  relay.disconnect();
}
