// Starts the real SMTP servers the workerd tests deliver to, on OS-chosen ports, and hands their
// ports to the tests with provide(). Runs in Node, outside workerd.
import { readFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createServer, type IncomingMessage } from "node:http";
import { dkimVerify } from "mailauth/lib/dkim/verify";
import type { TestProject } from "vitest/node";
import { startInbox } from "../../scripts/inbox.mjs";
import { startWebhookReceiver } from "../../scripts/webhook-receiver.mjs";
import { startMisbehavingSmtp } from "./misbehaving-smtp";
import { startPacingRelay } from "./pacing-relay";
import { startPipeliningRelay } from "./pipelining-relays";
import { startRelayGate, type GateMode } from "./relay-gate";
import { SMTP_PASS, SMTP_USER, type DkimVerdict, type SmtpFixtures } from "./smtp-fixtures";
import { createServer as createNetServer } from "node:net";

const tlsDir = new URL("../fixtures/tls/", import.meta.url);
const tls = { key: readFileSync(new URL("server-key.pem", tlsDir)), cert: readFileSync(new URL("server.pem", tlsDir)) };
/** Self-signed, so nothing trusts it (test/fixtures/tls/README.md). */
const untrusted = { key: readFileSync(new URL("untrusted-key.pem", tlsDir)), cert: readFileSync(new URL("untrusted.pem", tlsDir)) };
const users = { [SMTP_USER]: SMTP_PASS };

/**
 * An independent DKIM verifier for the tests in workerd: mailauth (Node) checks a message as received,
 * looking its keys up in the records the test gives instead of DNS.
 */
async function verifyDkim(req: IncomingMessage): Promise<DkimVerdict[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const { message, records } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { message: string; records: Record<string, string> };
  const resolver = async (name: string, type: string) => {
    const record = type === "TXT" ? records[name.toLowerCase()] : undefined;
    if (record === undefined) throw Object.assign(new Error(`no ${type} record for ${name}`), { code: "ENOTFOUND" });
    return [record.match(/.{1,255}/g)!];
  };
  const { results } = await dkimVerify(message, { resolver });
  return results.map((r) => ({ result: r.status.result, comment: r.status.comment, domain: r.signingDomain, selector: r.selector, algorithm: r.algo, signedHeaders: r.signingHeaders?.keys }));
}

/**
 * What the local send_email binding wrote for the message id send() returned: miniflare keeps each mail
 * as email/email/<id>.eml (the id without its angle brackets) in its miniflare-… directory under tmp.
 */
async function sentByEmailService(messageId: string): Promise<string | undefined> {
  const id = messageId.replace(/^<|>$/g, "");
  if (!/^[A-Za-z0-9@.\-[\]]+$/.test(id)) return undefined;
  // The binding answers send() first and writes the file in its waitUntil: give it a moment.
  for (let tries = 0; tries < 100; tries++) {
    for (const dir of await readdir(tmpdir())) {
      if (!dir.startsWith("miniflare-")) continue;
      try {
        return await readFile(path.join(tmpdir(), dir, "email", "email", `${id}.eml`), "utf8");
      } catch {
        // not this instance's, or not written yet
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

export default async function setup(project: TestProject) {
  const plain = await startInbox({ security: "none" });
  const starttls = await startInbox({ security: "starttls", tls, users });
  const implicitTls = await startInbox({ security: "tls", tls, users });
  const noStarttls = await startInbox({ security: "none", users, offerStartTls: false });
  // Relays whose certificate must stop delivery: one nobody trusts, and a trusted one for 127.0.0.1 and
  // localhost presented at 127.0.0.2 (Linux answers on all of 127/8).
  const untrustedTls = await startInbox({ security: "tls", tls: untrusted, users });
  const untrustedStarttls = await startInbox({ security: "starttls", tls: untrusted, users });
  const wrongHostTls = await startInbox({ host: "127.0.0.2", security: "tls", tls, users });
  const wrongHostStarttls = await startInbox({ host: "127.0.0.2", security: "starttls", tls, users });
  const drop = await startMisbehavingSmtp("drop-mid-data");
  const silent = await startMisbehavingSmtp("silent");
  const injection = await startMisbehavingSmtp("starttls-injection");
  const trickle = await startMisbehavingSmtp("trickle");
  const dataPolicy = await startMisbehavingSmtp("data-policy");
  const flood = await startMisbehavingSmtp("flood");
  const stray = await startMisbehavingSmtp("stray-reply");
  const busy = await startMisbehavingSmtp("busy");
  const pacing = await startPacingRelay();
  const pipeliningOnly = await startPipeliningRelay("pipelining-only");
  const strictLockstep = await startPipeliningRelay("strict-lockstep");
  // Fails about a third of all attempts: 1 − (1 − 0.1)⁴ of connect, MAIL, RCPT and end of DATA.
  const chaos = await startInbox({ security: "none", chaos: { rate: 0.1, seed: 20261130 } });
  const gate = await startRelayGate(plain.smtpPort, chaos.smtpPort);
  const webhookReceiver = await startWebhookReceiver();

  // Lets tests inside workerd wait for the dropping server to be mid-DATA, then let it drop, and read
  // what the injecting server was told.
  const control = createServer(async (req, res) => {
    if (req.method === "POST" && req.url === "/dkim/verify") return res.end(JSON.stringify(await verifyDkim(req)));
    if (req.url === "/pacing/stats") return res.end(JSON.stringify(pacing.stats));
    if (req.url === "/pacing/reset") return res.end(JSON.stringify((pacing.reset(), pacing.stats)));
    if (req.url?.startsWith("/pacing/throttle/")) return res.end(JSON.stringify(pacing.throttleNext(Number(req.url.slice("/pacing/throttle/".length)))));
    if (req.url?.startsWith("/email-service/sent/")) {
      const raw = await sentByEmailService(decodeURIComponent(req.url.slice("/email-service/sent/".length)));
      res.statusCode = raw === undefined ? 404 : 200;
      return res.end(raw ?? "");
    }
    if (req.url === "/drop/data-started") await drop.dataStarted();
    else if (req.url === "/drop/release") drop.release();
    else if (req.url === "/injection/commands") return res.end(JSON.stringify(injection.commands));
    else if (req.url === "/data-policy/connections") return res.end(JSON.stringify(dataPolicy.connections));
    else if (req.url === "/data-policy/connections/reset") return res.end(JSON.stringify((dataPolicy.resetPeak(), dataPolicy.connections)));
    else if (req.url === "/pipelining-only/received") return res.end(JSON.stringify({ commands: pipeliningOnly.commands, messages: pipeliningOnly.messages, sessions: pipeliningOnly.sessions }));
    else if (req.url === "/strict-lockstep/received") return res.end(JSON.stringify({ commands: strictLockstep.commands, messages: strictLockstep.messages }));
    else if (req.url?.startsWith("/gate/")) {
      const mode = req.url.slice("/gate/".length);
      if (["open", "chaos", "tempfail", "down", "hold"].includes(mode)) gate.mode = mode as GateMode;
      return res.end(JSON.stringify({ mode: gate.mode, connections: gate.connections }));
    } else res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => control.listen(0, "127.0.0.1", resolve));
  const controlAddress = control.address();
  if (!controlAddress || typeof controlAddress === "string") throw new Error("control server has no port");

  const closed = createNetServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const closedPort = (closed.address() as { port: number }).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));

  const fixtures: SmtpFixtures = {
    closedPort,
    plain: { smtpPort: plain.smtpPort, httpPort: plain.httpPort! },
    starttls: { smtpPort: starttls.smtpPort, httpPort: starttls.httpPort! },
    tls: { smtpPort: implicitTls.smtpPort, httpPort: implicitTls.httpPort! },
    noStarttls: { smtpPort: noStarttls.smtpPort, httpPort: noStarttls.httpPort! },
    untrustedTls: { smtpPort: untrustedTls.smtpPort, httpPort: untrustedTls.httpPort! },
    untrustedStarttls: { smtpPort: untrustedStarttls.smtpPort, httpPort: untrustedStarttls.httpPort! },
    wrongHostTls: { smtpPort: wrongHostTls.smtpPort, httpPort: wrongHostTls.httpPort! },
    wrongHostStarttls: { smtpPort: wrongHostStarttls.smtpPort, httpPort: wrongHostStarttls.httpPort! },
    drop: { smtpPort: drop.port, controlPort: controlAddress.port },
    silent: { smtpPort: silent.port },
    injection: { smtpPort: injection.port },
    trickle: { smtpPort: trickle.port },
    dataPolicy: { smtpPort: dataPolicy.port },
    flood: { smtpPort: flood.port },
    stray: { smtpPort: stray.port },
    busy: { smtpPort: busy.port },
    pacing: { smtpPort: pacing.port },
    gate: { smtpPort: gate.port, controlPort: controlAddress.port },
    chaos: { smtpPort: chaos.smtpPort, httpPort: chaos.httpPort! },
    pipeliningOnly: { smtpPort: pipeliningOnly.port },
    strictLockstep: { smtpPort: strictLockstep.port },
    webhookReceiver: { port: webhookReceiver.port },
  };
  project.provide("smtp", fixtures);

  return async () => {
    control.closeAllConnections();
    await new Promise<void>((resolve) => control.close(() => resolve()));
    await Promise.all([plain.close(), starttls.close(), implicitTls.close(), noStarttls.close(), untrustedTls.close(), untrustedStarttls.close(), wrongHostTls.close(), wrongHostStarttls.close(), drop.close(), silent.close(), injection.close(), trickle.close(), dataPolicy.close(), flood.close(), stray.close(), busy.close(), pacing.close(), gate.close(), chaos.close(), pipeliningOnly.close(), strictLockstep.close(), webhookReceiver.close()]);
  };
}
